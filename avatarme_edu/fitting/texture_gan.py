"""The texture GAN: a generator of UV textures whose latent the fit optimises (GANFIT's texture model).

GANFIT (Gecer et al. 2019) replaces the PCA texture model of a 3DMM fit by a GAN trained on UV
textures: the fit searches the GAN's latent space instead of PCA coefficients, so the fitted texture
stays on the generator's manifold of plausible skin. This module is the network and the
:class:`~avatarme_edu.fitting.texture_model.TextureModel` interface the fit uses; the training loop is
:mod:`~avatarme_edu.fitting.texture_gan_train`, the evaluation and figure :mod:`~avatarme_edu.fitting.texture_eval`.

**Architecture (a StyleGAN-lite).** A mapping MLP takes ``z`` ``(N, z_dim)`` (normalised to the
sphere first, so only its direction counts) to a style ``w`` ``(N, w_dim)``. The synthesis network
starts from a learned constant at the base size (6x9 for the cpu profile's 96x144 texture) and doubles
the size per level up to half the texture size (48x72); every level is one 3x3 convolution, instance
normalisation and a per-channel scale and shift computed from that level's ``w`` (AdaIN), then a leaky
ReLU. Every level adds its own 1x1 "to RGB" output to the up-sampled sum of the coarser ones
(StyleGAN2's skip generator: the coarse levels learn colour and shading first); the sum is up-sampled
bilinearly to the texture size (the wild textures are blurred: a 2x down- and up-sampling of them
keeps 36 dB, and a full-size level would cost most of a CPU's training time), added to the logit of the
training textures' mean, and a sigmoid maps it into [0, 1].

**Latent spaces.** ``"w"``: one ``w`` for every level, ``latent_dim = w_dim``. ``"w+"``: one ``w`` per
level, ``latent_dim = n_levels * w_dim`` - more freedom for the fit (Abdal et al. 2019), less
guarantee that the result is a texture the GAN would sample. The fit starts from the mean ``w``
(:meth:`TextureGAN.initial_latent`) and :meth:`TextureGAN.latent_prior` keeps it near the styles the
mapping network produces (squared distance to their mean in units of their spread per dimension).

Weights are one safetensors file per profile, ``avatarme_edu/data/weights/<profile>/texture_gan.safetensors``,
with the configuration in its metadata (:func:`save_texture_gan`, :func:`load_texture_gan`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avatarme_edu.profiles import Profile
from avatarme_edu.resources import data_path

WEIGHTS_DIR = data_path("weights")
WEIGHTS_FILE = "texture_gan.safetensors"
LATENT_SPACES = ("w", "w+")
MIN_BASE_SIDE = 6  # the synthesis network starts at no less than this many texels on the short side


@dataclass(frozen=True)
class GANConfig:
    """The sizes of one texture GAN. ``channels[i]`` is the width of level ``i`` (coarse to fine)."""

    texture_hw: tuple[int, int]
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 3
    channels: tuple[int, ...] = (64, 48, 24, 12)
    d_channels: tuple[int, ...] = (16, 24, 48, 64)
    out_upsample: int = 2  # the finest level runs at texture_hw / out_upsample (see Generator)

    def __post_init__(self):
        h, w = self.texture_hw
        s = 2 ** (len(self.channels) - 1) * self.out_upsample
        if not self.channels or self.out_upsample < 1 or h % s or w % s:
            raise ValueError(f"texture_hw {tuple(self.texture_hw)} is not divisible by {s} "
                             f"(needed by {len(self.channels)} generator levels and out_upsample {self.out_upsample})")

    @property
    def n_levels(self) -> int:
        return len(self.channels)

    @property
    def base_hw(self) -> tuple[int, int]:
        s = 2 ** (self.n_levels - 1) * self.out_upsample
        return self.texture_hw[0] // s, self.texture_hw[1] // s

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GANConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @classmethod
    def for_texture(cls, texture_hw: tuple[int, int], out_upsample: int = 2, **changes) -> "GANConfig":
        """A configuration for ``texture_hw``: as many levels as halve it down to a side of about 6."""
        h, w = (int(x) // out_upsample for x in texture_hw)
        n = 0
        while h % 2 ** (n + 1) == 0 and w % 2 ** (n + 1) == 0 and min(h, w) // 2 ** (n + 1) >= MIN_BASE_SIDE:
            n += 1
        # narrow at the fine levels, where every channel costs most (a CPU must train this in minutes)
        channels = tuple([64, 48] + [max(8, 48 >> i) for i in range(1, n)])[:n + 1]
        d_channels = tuple([16, 24, 48] + [64] * n)[:n + 1]  # one stride-2 layer per level
        return cls(texture_hw=tuple(int(x) for x in texture_hw), channels=channels, d_channels=d_channels,
                   out_upsample=out_upsample, **changes)


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


class MappingNetwork(nn.Module):
    """``z`` ``(N, z_dim)`` -> style ``w`` ``(N, w_dim)``; ``z`` is normalised first (its length is ignored)."""

    def __init__(self, z_dim: int, w_dim: int, n_layers: int):
        super().__init__()
        layers, d = [], z_dim
        for _ in range(n_layers):
            layers += [nn.Linear(d, w_dim), nn.LeakyReLU(0.2)]
            nn.init.kaiming_normal_(layers[-2].weight, a=0.2)  # keeps w at unit scale through the layers
            nn.init.zeros_(layers[-2].bias)
            d = w_dim
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        z = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
        return self.net(z)


class StyleLayer(nn.Module):
    """3x3 convolution, instance norm, AdaIN scale and shift from ``w``, leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.style = nn.Linear(w_dim, 2 * c_out)
        nn.init.zeros_(self.style.weight)  # start as plain instance norm: scale 1, shift 0
        nn.init.zeros_(self.style.bias)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        h = F.instance_norm(self.conv(x))
        scale, shift = self.style(w)[:, :, None, None].chunk(2, 1)
        return F.leaky_relu(h * (1 + scale) + shift, 0.2)


class Generator(nn.Module):
    """Synthesis network: per-level styles ``ws`` ``(N, n_levels, w_dim)`` -> ``(N, 3, H, W)`` in [0, 1]."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        self.const = nn.Parameter(torch.randn(1, cfg.channels[0], *cfg.base_hw))
        c_in = [cfg.channels[0]] + list(cfg.channels[:-1])
        self.layers = nn.ModuleList(StyleLayer(a, b, cfg.w_dim) for a, b in zip(c_in, cfg.channels))
        self.to_rgb = nn.ModuleList(nn.Conv2d(c, 3, 1) for c in cfg.channels)
        with torch.no_grad():
            for conv in self.to_rgb:  # start close to the mean texture
                conv.weight.mul_(0.1)
                conv.bias.zero_()
        # The output is sigmoid(logit(mean texture) + the levels' sum): the network learns how a
        # texture differs from the training mean (like a 3DMM's mean + deviations), not the UV layout.
        self.register_buffer("mean_logit", torch.zeros(1, 3, *cfg.texture_hw))

    def set_mean_texture(self, mean: Tensor) -> None:
        """Set the texture the generator starts from: ``(3, H, W)`` in [0, 1], the training textures' mean."""
        m = mean.detach().to(self.mean_logit).clamp(0.005, 0.995)
        self.mean_logit.copy_(torch.logit(m)[None])

    def forward(self, ws: Tensor) -> Tensor:
        if ws.dim() != 3 or ws.shape[1:] != (self.cfg.n_levels, self.cfg.w_dim):
            raise ValueError(f"styles must be (N, {self.cfg.n_levels}, {self.cfg.w_dim}), got {tuple(ws.shape)}")
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        rgb = None
        for i, (layer, to_rgb) in enumerate(zip(self.layers, self.to_rgb)):
            if i > 0:
                # features: nearest (the 3x3 convolution smooths it, and its gradient is cheap on a
                # CPU); the RGB sum: bilinear, so the coarse levels' colours blend without blocks
                x = F.interpolate(x, scale_factor=2, mode="nearest")
                rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            x = layer(x, ws[:, i])
            rgb = to_rgb(x) if rgb is None else rgb + to_rgb(x)
        if self.cfg.out_upsample > 1:
            rgb = F.interpolate(rgb, scale_factor=self.cfg.out_upsample, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.mean_logit + rgb)


class Discriminator(nn.Module):
    """``(N, 3, H, W)`` textures -> ``(N,)`` realness logits: strided convolutions, minibatch std, linear.

    The minibatch standard deviation (one extra feature map: how much the batch varies) lets the
    discriminator see a generator that always makes the same texture (mode collapse).
    """

    def __init__(self, cfg: GANConfig):
        super().__init__()
        layers, c = [], 3
        for c_out in cfg.d_channels:  # strided from the first layer on: no convolution at full size
            layers += [nn.Conv2d(c, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c = c_out
        self.features = nn.Sequential(*layers)
        s = 2 ** len(cfg.d_channels)
        h, w = -(-cfg.texture_hw[0] // s), -(-cfg.texture_hw[1] // s)
        self.head = nn.Sequential(nn.Conv2d(c + 1, c, 3, padding=1), nn.LeakyReLU(0.2), nn.Flatten(),
                                  nn.Linear(c * h * w, 1))

    def forward(self, x: Tensor) -> Tensor:
        f = self.features(x * 2 - 1)
        # sqrt(var + eps): a batch of identical textures (an untrained generator) has std 0, where
        # the square root's gradient is infinite
        std = (f.var(0, unbiased=False) + 1e-8).sqrt().mean() if f.shape[0] > 1 else f.new_zeros(())
        f = torch.cat([f, std.expand(f.shape[0], 1, *f.shape[2:])], 1)
        return self.head(f)[:, 0]


# ----------------------------------------------------------------------------------------------
# The texture model the fit uses
# ----------------------------------------------------------------------------------------------


class TextureGAN(nn.Module):
    """Mapping + generator, as a :class:`~avatarme_edu.fitting.texture_model.TextureModel`.

    ``latent_space``: ``"w"`` (``latent_dim = w_dim``) or ``"w+"`` (one style per level,
    ``latent_dim = n_levels * w_dim``); see the module docstring. ``w_mean`` / ``w_std`` ``(w_dim,)``:
    statistics of the mapping network's styles, set by :meth:`update_w_stats` after training.
    """

    def __init__(self, cfg: GANConfig, latent_space: str = "w"):
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers)
        self.generator = Generator(cfg)
        self.register_buffer("w_mean", torch.zeros(cfg.w_dim))
        self.register_buffer("w_std", torch.ones(cfg.w_dim))
        self.latent_space = latent_space

    @property
    def latent_space(self) -> str:
        return self._latent_space

    @latent_space.setter
    def latent_space(self, value: str) -> None:
        if value not in LATENT_SPACES:
            raise ValueError(f"unknown latent space {value!r}; valid ones are: {', '.join(LATENT_SPACES)}")
        self._latent_space = value

    @property
    def texture_hw(self) -> tuple[int, int]:
        return tuple(self.cfg.texture_hw)

    @property
    def latent_dim(self) -> int:
        return self.cfg.w_dim * (self.cfg.n_levels if self.latent_space == "w+" else 1)

    def _styles(self, latent: Tensor) -> Tensor:
        """``(N, latent_dim)`` -> per-level styles ``(N, n_levels, w_dim)``."""
        if latent.dim() != 2 or latent.shape[1] != self.latent_dim:
            raise ValueError(f"latent must be (N, {self.latent_dim}) in latent space {self.latent_space!r}, "
                             f"got {tuple(latent.shape)}")
        if self.latent_space == "w":
            return latent[:, None].expand(-1, self.cfg.n_levels, -1)
        return latent.view(latent.shape[0], self.cfg.n_levels, self.cfg.w_dim)

    def decode(self, latent: Tensor) -> Tensor:
        """``(N, latent_dim)`` -> ``(N, 3, H, W)`` float32 linear RGB in [0, 1]; differentiable."""
        return self.generator(self._styles(latent))

    def initial_latent(self, n: int = 1) -> Tensor:
        """``(n, latent_dim)``: the mean style (on every level in ``"w+"``), where the fit starts."""
        reps = self.cfg.n_levels if self.latent_space == "w+" else 1
        return self.w_mean.repeat(n, reps).clone()

    def latent_prior(self, latent: Tensor) -> Tensor:
        """Scalar: mean squared distance of the styles to ``w_mean`` in units of ``w_std`` (about 1 for samples)."""
        ws = self._styles(latent)
        return ((ws - self.w_mean) / self.w_std).square().mean()

    def z_to_latent(self, z: Tensor) -> Tensor:
        """``(N, z_dim)`` -> ``(N, latent_dim)`` in this model's latent space."""
        w = self.mapping(z)
        return w.repeat(1, self.cfg.n_levels) if self.latent_space == "w+" else w

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` random textures ``(n, 3, H, W)`` from ``z ~ N(0, I)``."""
        z = torch.randn(n, self.cfg.z_dim, generator=generator, device=self.w_mean.device)
        return self.generator(self.mapping(z)[:, None].expand(-1, self.cfg.n_levels, -1))

    @torch.no_grad()
    def update_w_stats(self, n: int = 4096, seed: int = 0) -> None:
        """Set ``w_mean`` / ``w_std`` from ``n`` styles of random ``z`` (a fixed seed: the same every time)."""
        z = torch.randn(n, self.cfg.z_dim, generator=torch.Generator().manual_seed(seed)).to(self.w_mean.device)
        w = self.mapping(z)
        self.w_mean.copy_(w.mean(0))
        self.w_std.copy_(w.std(0).clamp_min(1e-4))


# ----------------------------------------------------------------------------------------------
# Weights on disk
# ----------------------------------------------------------------------------------------------


def default_weights_path(profile: Profile) -> Path:
    """``avatarme_edu/data/weights/<profile.name>/texture_gan.safetensors``."""
    return WEIGHTS_DIR / profile.name / WEIGHTS_FILE


def save_texture_gan(model: TextureGAN, path: str | os.PathLike, info: dict | None = None) -> Path:
    """Write the model's weights (float32) and configuration to ``path`` atomically.

    ``info``: JSON-able facts about how it was made (stored in the file's metadata under ``"info"``).
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "avatarme_edu.texture_gan/1", "config": json.dumps(model.cfg.as_dict()),
            "info": json.dumps(info or {})}
    tmp = path.with_name(f".tmp-{path.name}")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def read_texture_gan_info(path: str | os.PathLike) -> dict:
    """The ``info`` a weights file was saved with (see :func:`save_texture_gan`)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("info", "{}"))


def load_texture_gan(profile: Profile, path: str | os.PathLike | None = None, latent_space: str = "w") -> TextureGAN:
    """The trained texture GAN of ``profile`` (eval mode, on ``profile.device``).

    ``path``: a weights file (default :func:`default_weights_path`). Raises ``FileNotFoundError`` when
    it is missing and ``ValueError`` when it was trained for another texture size.
    """
    from safetensors import safe_open

    path = Path(path) if path is not None else default_weights_path(profile)
    if not path.is_file():
        raise FileNotFoundError(f"no texture GAN weights at {str(path)!r}; train them with "
                                f"`avatarme-edu train-gan DATASET --profile {profile.name}` (see texture_gan_train)")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != "avatarme_edu.texture_gan/1":
            raise ValueError(f"{str(path)!r} is not a texture GAN weights file (format {meta.get('format')!r})")
        state = {k: f.get_tensor(k) for k in f.keys()}
    cfg = GANConfig.from_dict(json.loads(meta["config"]))
    if tuple(cfg.texture_hw) != tuple(profile.texture_hw):
        raise ValueError(f"{str(path)!r} makes {tuple(cfg.texture_hw)} textures but profile {profile.name!r} "
                         f"fits {tuple(profile.texture_hw)}; train a GAN for this profile")
    model = TextureGAN(cfg, latent_space)
    model.load_state_dict(state)
    return model.to(profile.torch_device).eval().requires_grad_(False)


def update_manifest(profile: Profile, key: str, fields: dict, weights_dir: str | os.PathLike | None = None,
                    replace: bool = False) -> Path:
    """Merge ``fields`` into entry ``key`` of ``<weights_dir>/<profile>/MANIFEST.json`` (``replace``: make
    them the whole entry), keeping every other entry. ``weights_dir`` defaults to the profile's weights."""
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR / profile.name
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "MANIFEST.json"
    manifest = json.loads(f.read_text()) if f.is_file() else {}
    manifest[key] = {**({} if replace else manifest.get(key, {})), **fields}
    tmp = f.with_name(".tmp-MANIFEST.json")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, f)
    return f
