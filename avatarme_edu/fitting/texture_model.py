"""Texture models for the fit: a latent vector -> a UV texture, and the PCA baseline.

GANFIT replaces the 3DMM's PCA texture model by a GAN; both fit the same slot in the fit, the
:class:`TextureModel` protocol. :class:`PCATextureModel` is the classic one: the mean in-the-wild
texture plus ``K`` principal directions, ``T = mean + sum_k z_k sigma_k component_k`` with
``z ~ N(0, 1)``. It is fitted on the virtual light stage's in-the-wild textures of *training*
identities only (``identity_id % 5 != 4``, :func:`avatarme_edu.lightstage.dataset.is_held_out`),
so held-out subjects stay unseen, and it is the baseline the texture GAN must beat.

Build (and store, safetensors) with::

    python -m avatarme_edu.fitting.texture_model --profile cpu --identities 60
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from avatarme_edu.fitting.texture_gan import load_texture_gan
from avatarme_edu.profiles import Profile, get_profile
from avatarme_edu.resources import data_path

WEIGHTS_DIR = data_path("weights")
PCA_FILE, GAN_FILE = "texture_pca.safetensors", "texture_gan.safetensors"
PCA_MAP_HW = (192, 288)  # light-stage maps used to make the PCA's training textures (then area-reduced)


@runtime_checkable
class TextureModel(Protocol):
    """What the fit needs from a texture model (PCA here, the GAN in :mod:`.texture_gan`)."""

    latent_dim: int
    texture_hw: tuple[int, int]  # (H, W) = profile.texture_hw

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """``(N, latent_dim)`` -> ``(N, 3, H, W)`` float32 linear RGB in [0, 1], differentiable."""

    def initial_latent(self, n: int = 1) -> torch.Tensor:
        """``(n, latent_dim)``: where the fit starts (e.g. the mean texture)."""

    def latent_prior(self, latent: torch.Tensor) -> torch.Tensor:
        """Scalar regulariser keeping the latent plausible."""


class PCATextureModel:
    """Mean texture ``(3, H, W)``, unit ``components`` ``(K, 3*H*W)`` and their ``stddev`` ``(K,)``."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, stddev: torch.Tensor):
        if mean.ndim != 3 or mean.shape[0] != 3:
            raise ValueError(f"mean must be (3, H, W), got {tuple(mean.shape)}")
        if components.ndim != 2 or components.shape[1] != mean.numel() or stddev.shape != components.shape[:1]:
            raise ValueError(f"components must be (K, {mean.numel()}) and stddev (K,), got "
                             f"{tuple(components.shape)} and {tuple(stddev.shape)}")
        self.mean, self.components, self.stddev = mean.float(), components.float(), stddev.float()
        self.latent_dim = int(components.shape[0])
        self.texture_hw = (int(mean.shape[1]), int(mean.shape[2]))

    def to(self, device) -> "PCATextureModel":
        return PCATextureModel(self.mean.to(device), self.components.to(device), self.stddev.to(device))

    def resized(self, hw) -> "PCATextureModel":
        """The same model at another texture size (mean and components area-resampled; for small tests)."""
        k = self.latent_dim
        comps = self.components.reshape(k, 3, *self.texture_hw)
        mode = dict(mode="area") if hw[0] <= self.texture_hw[0] else dict(mode="bilinear", align_corners=False)
        mean = F.interpolate(self.mean[None], size=tuple(hw), **mode)[0]
        comps = F.interpolate(comps, size=tuple(hw), **mode).reshape(k, -1)
        return PCATextureModel(mean, comps, self.stddev)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        z = latent.reshape(-1, self.latent_dim).to(self.mean)
        flat = (z * self.stddev) @ self.components + self.mean.reshape(1, -1)
        return flat.reshape(-1, 3, *self.texture_hw).clamp(0.0, 1.0)

    def encode(self, textures: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> ``(N, K)`` latents of the closest textures the model can make."""
        d = textures.reshape(textures.shape[0], -1).to(self.mean) - self.mean.reshape(1, -1)
        return (d @ self.components.T) / self.stddev

    def initial_latent(self, n: int = 1) -> torch.Tensor:
        return torch.zeros(n, self.latent_dim, device=self.mean.device)

    def latent_prior(self, latent: torch.Tensor) -> torch.Tensor:
        """Mean squared latent (``-log`` of the Gaussian prior up to a constant, per coefficient)."""
        return (latent * latent).mean()

    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"mean": self.mean.cpu().contiguous(), "components": self.components.half().cpu().contiguous(),
                   "stddev": self.stddev.cpu().contiguous()}
        tmp = path.with_name(path.name + ".part")
        save_file(tensors, str(tmp), metadata={"model": "PCATextureModel", **(metadata or {})})
        tmp.replace(path)  # no half-written weights file is ever left under the real name
        return path

    @staticmethod
    def load(path: str | Path, device=None) -> "PCATextureModel":
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no PCA texture model at {path}; build it with "
                                    "`python -m avatarme_edu.fitting.texture_model --profile cpu`")
        t = load_file(str(path))
        model = PCATextureModel(t["mean"], t["components"].float(), t["stddev"])
        return model.to(device) if device is not None else model


def fit_pca(textures: torch.Tensor, n_components: int) -> PCATextureModel:
    """PCA of ``(N, 3, H, W)`` textures keeping ``n_components`` (at most N - 1) directions."""
    if textures.ndim != 4 or textures.shape[1] != 3 or textures.shape[0] < 2:
        raise ValueError(f"textures must be (N >= 2, 3, H, W), got {tuple(textures.shape)}")
    n = textures.shape[0]
    x = textures.reshape(n, -1).double()
    mean = x.mean(0)
    _, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
    k = max(1, min(int(n_components), n - 1))
    std = s[:k] / (n - 1) ** 0.5
    return PCATextureModel(mean.float().reshape(textures.shape[1:]), vt[:k].float(), std.float())


def training_textures(profile: Profile, n_identities: int, map_hw=PCA_MAP_HW, verbose: bool = False) -> torch.Tensor:
    """In-the-wild textures ``(N, 3, H, W)`` at ``profile.texture_hw`` of the first ``n_identities``
    *training* identities (held-out ids skipped), made the way the dataset makes them."""
    from avatarme_edu.lightstage.dataset import is_held_out, wild_generator
    from avatarme_edu.lightstage.subjects import make_subject
    from avatarme_edu.lightstage.wild import wild_texture

    small = profile.replace(map_hw=tuple(max(int(a), int(b)) for a, b in zip(map_hw, profile.texture_hw)))
    out, identity, t0 = [], 0, time.time()
    while len(out) < n_identities:
        if not is_held_out(identity):
            subject = make_subject(identity, small)
            out.append(wild_texture(subject, small, wild_generator(identity, 0)).low.cpu())
            if verbose:
                print(f"identity {identity}: {len(out)}/{n_identities} textures, {time.time() - t0:.0f} s", flush=True)
        identity += 1
    return torch.stack(out)


def pca_path(profile: Profile) -> Path:
    return WEIGHTS_DIR / profile.name / PCA_FILE


def load_pca_texture_model(profile: Profile, path: str | Path | None = None) -> PCATextureModel:
    """The stored PCA texture model of ``profile`` on ``profile.device`` (its size must match)."""
    model = PCATextureModel.load(path or pca_path(profile), device=profile.device)
    if model.texture_hw != tuple(profile.texture_hw):
        raise ValueError(f"the PCA texture model is {model.texture_hw} but profile.texture_hw is "
                         f"{tuple(profile.texture_hw)}; build one for this profile")
    return model


def load_texture_model(profile: Profile, kind: str = "gan", path: str | Path | None = None) -> TextureModel:
    """The ``"gan"`` or ``"pca"`` texture model of ``profile`` (from ``path`` or the stored weights)."""
    if kind == "pca":
        return load_pca_texture_model(profile, path)
    if kind != "gan":
        raise ValueError(f"unknown texture model {kind!r}; valid kinds are 'gan' and 'pca'")
    return load_texture_gan(profile, path or WEIGHTS_DIR / profile.name / GAN_FILE)


def default_texture_model(profile: Profile, verbose: bool = True) -> TextureModel:
    """The texture GAN when its weights exist (``data/weights/<profile>/texture_gan.safetensors``),
    else the PCA model, with a printed note."""
    gan = WEIGHTS_DIR / profile.name / GAN_FILE
    if gan.is_file():
        return load_texture_model(profile, "gan", gan)
    if verbose:
        print(f"note: no texture GAN weights at {gan}; using the PCA texture model", file=sys.stderr)
    return load_pca_texture_model(profile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avatarme_edu.fitting.texture_model",
                                     description="Fit the PCA texture model on training identities' wild textures.")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--components", type=int, default=40)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    profile = get_profile(args.profile, device="cpu")
    textures = training_textures(profile, args.identities, verbose=True)
    model = fit_pca(textures, args.components)
    kept = float((model.stddev ** 2).sum() / ((textures - textures.mean(0)) ** 2).sum(0).sum() * (len(textures) - 1))
    meta = {"identities": str(args.identities), "variance_kept": f"{kept:.4f}"}
    path = model.save(args.out or pca_path(profile), meta)
    print(f"wrote {path}: K = {model.latent_dim}, {kept:.1%} of the variance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
