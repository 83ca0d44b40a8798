"""RCAN: residual channel-attention network for super-resolution (Zhang et al., ECCV 2018).

AvatarMe super-resolves the fitted UV texture T (576x384) by x8 with RCAN before de-lighting. The
network, from the inside out:

* **channel attention (CA)**: squeeze each channel to its mean (global average pool), pass the
  ``C``-vector through a bottleneck ``C -> C / reduction -> C`` with a sigmoid, and rescale the
  channels by it - the network learns which feature maps matter for this image;
* **RCAB** (residual channel-attention block): conv - ReLU - conv - CA, plus the block's input
  (a *short skip*);
* **residual group**: ``n_blocks`` RCABs and a conv, plus the group's input;
* **body**: ``n_groups`` residual groups and a conv, plus the head's output (the *long skip*), so
  the deep body only learns the high-frequency residual;
* **up-sampler**: ``log2(scale)`` stages of conv ``C -> 4C`` + pixel shuffle (x2 each), then a conv
  to RGB (``upsampler="staged"``, the published one). ``upsampler="one_shot"`` (cpu profile) is the
  sub-pixel convolution of ESPCN (Shi et al. 2016), where pixel shuffle comes from: one conv
  ``C -> 3 * scale**2`` at the input size and a single shuffle by ``scale``. At x4 with 32 channels the
  staged convs at 2x and 4x size cost about 60 % of a training step; one shot gives the body's
  restoration (de-noise, de-blur, de-JPEG), which is where the measurable gain lives, ~2.5x the steps.

**Global skip** (cpu profile only): the output is the bicubic up-sampling of the input plus what
the network adds (as VDSR does), with the last conv initialised to zero - so an untrained network
already gives bicubic quality and training only learns the missing detail. A 30-minute CPU run
cannot afford to learn colour and layout from scratch; the paper profile keeps the published RCAN.

Paper profile: 10 groups x 20 blocks, 64 channels, reduction 16, x8: 15,740,067 parameters (the
published "about 15.7M"; the count is worked out in ``tests/nets/test_rcan.py``). The original code
also subtracts the DIV2K mean colour before the head and adds it back at the end; those are fixed
(non-learned) constants of a photo data set, left out here: our textures are linear RGB of skin.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from avatarme_edu.profiles import Profile


def _conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2)


class ChannelAttention(nn.Module):
    """``(N, C, H, W) -> (N, C, H, W)``: the input with each channel scaled by a learned weight in (0, 1)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        if channels % reduction:
            raise ValueError(f"channels ({channels}) must be a multiple of reduction ({reduction})")
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Sequential(nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
                                    nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excite(self.squeeze(x))


class RCAB(nn.Module):
    """Residual channel-attention block: ``x + CA(conv(relu(conv(x))))``."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.ReLU(inplace=True), _conv(channels, channels),
                                  ChannelAttention(channels, reduction))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """``n_blocks`` RCABs and a conv, with a short skip over the whole group."""

    def __init__(self, channels: int, reduction: int, n_blocks: int):
        super().__init__()
        self.body = nn.Sequential(*[RCAB(channels, reduction) for _ in range(n_blocks)], _conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class RCAN(nn.Module):
    """``(N, in_channels, h, w) -> (N, out_channels, h * scale, w * scale)``, any ``h, w``.

    ``scale`` must be a power of two (x2 pixel-shuffle stages). The output is not clamped: training
    compares it to the target with L1, and :func:`avatarme_edu.stages.super_resolve` clamps to [0, 1].
    """

    def __init__(self, scale: int, n_groups: int, n_blocks: int, channels: int, reduction: int,
                 in_channels: int = 3, out_channels: int = 3, global_skip: bool = False,
                 upsampler: str = "staged"):
        super().__init__()
        if scale < 1 or scale & (scale - 1):
            raise ValueError(f"RCAN scale must be a power of two (2, 4, 8...), got {scale}")
        if global_skip and in_channels != out_channels:
            raise ValueError(f"the global skip needs as many output as input channels, got {in_channels} -> "
                             f"{out_channels}")
        if upsampler not in ("staged", "one_shot"):
            raise ValueError(f"RCAN upsampler must be 'staged' or 'one_shot', got {upsampler!r}")
        self.scale, self.global_skip = scale, global_skip
        self.config = dict(scale=scale, n_groups=n_groups, n_blocks=n_blocks, channels=channels,
                           reduction=reduction, in_channels=in_channels, out_channels=out_channels,
                           global_skip=global_skip, upsampler=upsampler)
        self.head = _conv(in_channels, channels)
        self.body = nn.Sequential(*[ResidualGroup(channels, reduction, n_blocks) for _ in range(n_groups)],
                                  _conv(channels, channels))
        up: list[nn.Module] = []
        if upsampler == "staged":
            for _ in range(int(math.log2(scale))):
                up += [_conv(channels, 4 * channels), nn.PixelShuffle(2)]
            self.tail = _conv(channels, out_channels)
        else:  # one conv to every sub-pixel of every output channel, then one shuffle
            self.tail = nn.Sequential(_conv(channels, out_channels * scale * scale), nn.PixelShuffle(scale))
        self.upsample = nn.Sequential(*up)
        if global_skip:  # start exactly at bicubic
            last = self.tail if isinstance(self.tail, nn.Conv2d) else self.tail[0]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        h = h + self.body(h)  # the long skip
        y = self.tail(self.upsample(h))
        if self.global_skip:
            y = y + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return y


def rcan_from_profile(profile: Profile, in_channels: int = 3, out_channels: int = 3) -> RCAN:
    """The profile's RCAN (``rcan_*`` fields, ``sr_scale``); the global skip on all but the paper profile."""
    return RCAN(profile.sr_scale, profile.rcan_groups, profile.rcan_blocks, profile.rcan_channels,
                profile.rcan_reduction, in_channels, out_channels,
                global_skip=profile.name != "paper" and in_channels == out_channels,
                upsampler=profile.rcan_upsampler)
