"""How good is the texture GAN as a texture model? Held-out reconstruction against PCA, and a figure.

A texture model is good for fitting when the texture of a NEW face lies in (or near) its range. The
test: for every held-out identity's wild texture (``id % 5 == 4``, never seen in training) find the
model's best latent, decode it and measure the PSNR against the texture (masked, on [0, 1] linear RGB).

* **PCA** (the classic 3DMM texture model, built here from the same training textures): the best
  coefficients of an orthonormal basis are a projection - least squares, exact. Measured with as
  many components as the GAN's ``w`` has dimensions, and with every component the data allows.
* **GAN**: the latent is found by gradient descent (Adam on the masked MSE plus a small
  :meth:`~avatarme_edu.fitting.texture_gan.TextureGAN.latent_prior`), as the fit does it, in ``w``
  (one style for all levels: as many numbers as PCA's first measurement) and in ``w+`` (one style
  per level, ``n_levels`` times more numbers).

``python -m avatarme_edu.fitting.texture_eval DATASET [--figure PATH] [--manifest]`` prints the table,
draws :func:`plot_texture_samples` and (``--manifest``) records the numbers in the weights' manifest.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
from torch import Tensor

from avatarme_edu.fitting.texture_gan import TextureGAN
from avatarme_edu.metrics import psnr


# ----------------------------------------------------------------------------------------------
# PCA, the baseline
# ----------------------------------------------------------------------------------------------


def pca_basis(textures: Tensor, n_components: int) -> tuple[Tensor, Tensor]:
    """PCA of ``(N, 3, H, W)`` textures: the mean ``(3, H, W)`` and ``(k, 3, H, W)`` orthonormal components.

    ``k = min(n_components, N - 1)`` (N textures span at most N - 1 directions around their mean).
    """
    n = textures.shape[0]
    if n < 2:
        raise ValueError(f"PCA needs at least 2 textures, got {n}")
    x = textures.reshape(n, -1).double()
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    k = max(1, min(int(n_components), n - 1))
    shape = textures.shape[1:]
    return mean.float().view(shape), vh[:k].float().view(k, *shape)


def pca_reconstruct(mean: Tensor, basis: Tensor, targets: Tensor) -> Tensor:
    """Least-squares reconstruction of ``(N, 3, H, W)`` targets in the span of ``basis`` around ``mean``."""
    b = basis.reshape(basis.shape[0], -1)
    coeffs = (targets.reshape(targets.shape[0], -1) - mean.reshape(1, -1)) @ b.T
    return (coeffs @ b + mean.reshape(1, -1)).view_as(targets)


# ----------------------------------------------------------------------------------------------
# Fitting the GAN's latent to a texture
# ----------------------------------------------------------------------------------------------


def fit_latent(model: TextureGAN, targets: Tensor, masks: Tensor | None = None, steps: int = 200,
               lr: float = 0.05, prior_weight: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Latents ``(N, latent_dim)`` whose decoded textures best match ``targets`` ``(N, 3, H, W)``.

    Adam from :meth:`~TextureGAN.initial_latent` on the masked MSE + ``prior_weight`` x the latent
    prior, the learning rate falling linearly to 0. Returns the latents and their textures.
    """
    if masks is None:
        masks = torch.ones(targets.shape[0], *targets.shape[2:], dtype=torch.bool, device=targets.device)
    m = masks[:, None].to(targets.dtype)
    latent = model.initial_latent(targets.shape[0]).to(targets.device).requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - i / steps)
    for _ in range(int(steps)):
        pred = model.decode(latent)
        mse = ((pred - targets).square() * m).sum() / (m.sum() * 3).clamp_min(1.0)
        loss = mse + prior_weight * model.latent_prior(latent)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    latent = latent.detach()
    with torch.no_grad():
        return latent, model.decode(latent)


def batch_psnr(pred: Tensor, target: Tensor, masks: Tensor) -> float:
    """PSNR (dB) over the valid texels of a whole batch ``(N, 3, H, W)``, masks ``(N, H, W)``.

    The textures are laid side by side into one ``(3, H, N W)`` map, so :func:`~avatarme_edu.metrics.psnr`
    pools the squared errors of all of them (one number for the set, not a mean of per-texture dB).
    """
    side = lambda x: torch.cat(list(x), dim=-1)  # noqa: E731
    return psnr(side(pred), side(target), side(masks))


def evaluate_held_out(model: TextureGAN, train: dict, held_out: dict, steps: int = 600,
                      lr: float = 0.05) -> dict:
    """Held-out reconstruction PSNR (dB) of PCA and of the GAN (in ``w`` and ``w+``) on the same textures.

    ``train`` / ``held_out``: what :func:`~avatarme_edu.fitting.texture_data.load_textures` returns
    for the two splits. Returns ``{"psnr": {name: dB}, "dims": {name: latent numbers}, ...}``.
    """
    targets, masks = held_out["textures"], held_out["masks"]
    if set(train["ids"]) & set(held_out["ids"]):
        raise ValueError("the training and held-out textures share identities")
    w_dim = model.cfg.w_dim
    out = {"psnr": {}, "dims": {}, "n_train": len(train["ids"]), "n_held_out": len(held_out["ids"]),
           "fit_steps": int(steps), "fit_lr": lr}
    mean, basis = pca_basis(train["textures"], train["textures"].shape[0])
    out["psnr"]["mean texture"], out["dims"]["mean texture"] = batch_psnr(mean.expand_as(targets), targets, masks), 0
    for k in sorted({min(w_dim, basis.shape[0]), basis.shape[0]}):
        name = f"PCA {k}"
        out["psnr"][name] = batch_psnr(pca_reconstruct(mean, basis[:k], targets).clamp(0, 1), targets, masks)
        out["dims"][name] = k
    space = model.latent_space
    try:
        for s in ("w", "w+"):
            model.latent_space = s
            _, rec = fit_latent(model, targets, masks, steps=steps, lr=lr)
            out["psnr"][f"GAN {s}"], out["dims"][f"GAN {s}"] = batch_psnr(rec, targets, masks), model.latent_dim
    finally:
        model.latent_space = space
    out["psnr"] = {k: round(v, 2) for k, v in out["psnr"].items()}
    return out


# ----------------------------------------------------------------------------------------------
# The figure
# ----------------------------------------------------------------------------------------------


def plot_texture_samples(model: TextureGAN, n_samples: int = 6, n_interp: int = 6, seed: int = 0):
    """Random textures of the GAN (top row) and two walks between random styles in ``w`` (rows below).

    Linear interpolation in ``w``: a good GAN changes the texture smoothly (skin tone, light, shading)
    with no texture along the way that is not a face. Returns a matplotlib ``Figure`` (sRGB display).
    """
    from matplotlib.figure import Figure

    from avatarme_edu.color import linear_to_srgb

    if n_samples < 1 or n_interp < 2:
        raise ValueError(f"need n_samples >= 1 and n_interp >= 2, got {n_samples} and {n_interp}")
    g = torch.Generator().manual_seed(seed)
    dev = model.w_mean.device
    with torch.no_grad():
        samples = model.sample(n_samples, g)
        z = torch.randn(4, model.cfg.z_dim, generator=g).to(dev)
        w = model.mapping(z)
        t = torch.linspace(0, 1, n_interp, device=dev)[:, None]
        walks = [model.generator(((1 - t) * w[a] + t * w[b])[:, None].expand(-1, model.cfg.n_levels, -1))
                 for a, b in ((0, 1), (2, 3))]
    cols = max(n_samples, n_interp)
    h, wd = model.texture_hw
    fig = Figure(figsize=(1.9 * cols, 1.9 * 3 * h / wd + 0.6), layout="constrained")
    axes = fig.subplots(3, cols, squeeze=False)
    rows = [(samples, "samples"), (walks[0], "w walk 1"), (walks[1], "w walk 2")]
    for r, (images, label) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_axis_off()
            if c < images.shape[0]:
                ax.imshow(linear_to_srgb(images[c].clamp(0, 1)).permute(1, 2, 0).cpu().numpy())
        axes[r, 0].set_title(label, fontsize=9, loc="left")
    fig.suptitle(f"texture GAN: {h}x{wd} UV textures (linear RGB shown as sRGB)", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from avatarme_edu.fitting.texture_gan import load_texture_gan, update_manifest
    from avatarme_edu.fitting.texture_data import load_textures
    from avatarme_edu.profiles import get_profile

    p = argparse.ArgumentParser(prog="python -m avatarme_edu.fitting.texture_eval",
                                description="Held-out reconstruction PSNR of the texture GAN against PCA.")
    p.add_argument("data", help="the dataset the GAN was trained on (its held-out identities are tested)")
    p.add_argument("--weights", default=None, help="weights file (default: the profile's committed weights)")
    p.add_argument("--steps", type=int, default=600, help="Adam steps of the latent fit")
    p.add_argument("--figure", default=None, help="write the samples + interpolation figure here (PNG)")
    p.add_argument("--manifest", action="store_true", help="record the numbers in the weights' MANIFEST.json")
    p.add_argument("--profile", default=None)
    args = p.parse_args(argv)
    try:
        profile = get_profile(args.profile, "cpu")
        model = load_texture_gan(profile, args.weights)
        train, held_out = load_textures(args.data, "train", profile), load_textures(args.data, "held_out", profile)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = evaluate_held_out(model, train, held_out, steps=args.steps)
    print(f"held-out reconstruction, {result['n_held_out']} textures (PCA from {result['n_train']} training ones):")
    for name, db in result["psnr"].items():
        print(f"  {name:<14} {result['dims'][name]:>4} numbers  {db:6.2f} dB")
    if args.figure:
        plot_texture_samples(model).savefig(args.figure, dpi=110)
        print(f"figure: {args.figure}")
    if args.manifest:
        command = "python -m avatarme_edu.fitting.texture_eval " + " ".join(sys.argv[1:] if argv is None else argv)
        f = update_manifest(profile, "texture_gan", {"held_out_eval": {**result, "command": command}})
        print(f"recorded in {f}")
    return 0 if all(math.isfinite(v) for v in result["psnr"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
