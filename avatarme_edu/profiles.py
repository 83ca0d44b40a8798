"""Profiles: the one configuration object passed down through every stage.

Two profiles exist (docs/design.md section 3):

* ``cpu``   - reduced sizes that run in minutes on a 2-core teaching laptop;
* ``paper`` - the published AvatarMe sizes (6144x4096 maps, RCAN x8, pix2pixHD), for a GPU.

Selection order for the profile: explicit argument, else ``AVATARME_PROFILE``, else ``paper`` when
CUDA is present and ``cpu`` otherwise. The device is chosen the same way (``AVATARME_DEVICE``).
All sizes are written ``(H, W)`` like tensor shapes; the UV layout has W:H = 3:2.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

PROFILE_NAMES = ("cpu", "paper")


@dataclass(frozen=True)
class Profile:
    """Sizes and network configurations of one run of the pipeline."""

    name: str
    device: str
    texture_hw: tuple[int, int]  # fitted UV texture T
    sr_scale: int  # RCAN up-sampling factor
    map_hw: tuple[int, int]  # reflectance maps (diffuse/specular albedo and normals)
    patch_size: int  # training patch side
    window_size: int  # inference window side
    window_stride: int  # sliding-window stride (window - overlap)
    rcan_groups: int
    rcan_blocks: int
    rcan_channels: int
    rcan_reduction: int
    rcan_upsampler: str  # "staged" (x2 pixel shuffles, published) or "one_shot" (ESPCN's single shuffle)
    gen_ngf: int  # translation generator base width
    gen_downsample: int
    gen_blocks: int
    n_discriminators: int
    # which de-lighter the pipeline runs (stages.DELIGHT_VARIANTS): the paper's δ(T̂, D_O) is "depth";
    # the cpu profile takes δ(T̂) ("no_shape"), which beat it on held-out maps by 1.9-4.8 dB with equal
    # training (results/reflectance_training.md, "De-lighting retrained alone in bf16")
    delight_variant: str = "depth"
    seed: int = 0

    @property
    def sr_hw(self) -> tuple[int, int]:
        """Size of the super-resolved texture, before any resampling to ``map_hw``."""
        return (self.texture_hw[0] * self.sr_scale, self.texture_hw[1] * self.sr_scale)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def replace(self, **changes) -> "Profile":
        """A copy with some fields changed, e.g. ``profile.replace(map_hw=(96, 144))`` in tests."""
        return dataclasses.replace(self, **changes)


def _cpu(device: str) -> Profile:
    return Profile(
        name="cpu", device=device, texture_hw=(96, 144), sr_scale=4, map_hw=(384, 576),
        patch_size=128, window_size=384, window_stride=256,
        rcan_groups=4, rcan_blocks=4, rcan_channels=32, rcan_reduction=8, rcan_upsampler="one_shot",
        gen_ngf=24, gen_downsample=3, gen_blocks=4, n_discriminators=2, delight_variant="no_shape",
    )


def _paper(device: str) -> Profile:
    # RCAN x8 of the 576x384 texture gives 4608x3072, resampled to the 6144x4096 maps.
    return Profile(
        name="paper", device=device, texture_hw=(384, 576), sr_scale=8, map_hw=(4096, 6144),
        patch_size=512, window_size=1536, window_stride=1024,
        rcan_groups=10, rcan_blocks=20, rcan_channels=64, rcan_reduction=16, rcan_upsampler="staged",
        gen_ngf=64, gen_downsample=4, gen_blocks=9, n_discriminators=2,
    )


_BUILDERS = {"cpu": _cpu, "paper": _paper}


def choose_device(device: str | None = None) -> str:
    """Device by argument, else ``AVATARME_DEVICE``, else ``cuda`` when present, else ``cpu``."""
    requested = device or os.environ.get("AVATARME_DEVICE")
    if not requested:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(requested)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"unknown device {requested!r}; valid devices are 'cpu', 'cuda', 'cuda:N' and 'mps'"
        ) from None
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {requested!r}; valid devices are 'cpu', 'cuda', 'cuda:N' and 'mps'")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} was asked for but this machine has no CUDA GPU; use 'cpu'")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {requested!r} was asked for but MPS is not available here; use 'cpu'")
    return str(parsed)


def get_profile(name: str | None = None, device: str | None = None) -> Profile:
    """The profile by argument, else ``AVATARME_PROFILE``, else ``paper`` with CUDA and ``cpu`` without.

    >>> get_profile("cpu", device="cpu").map_hw
    (384, 576)
    """
    chosen = name or os.environ.get("AVATARME_PROFILE")
    if not chosen:
        chosen = "paper" if torch.cuda.is_available() else "cpu"
    if chosen not in _BUILDERS:
        raise ValueError(f"unknown profile {chosen!r}; valid profiles are: {', '.join(PROFILE_NAMES)}")
    return _BUILDERS[chosen](choose_device(device))
