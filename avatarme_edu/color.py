"""Colour conventions: maps hold linear RGB in [0, 1]; sRGB is only for display and PNG export."""

from __future__ import annotations

import torch


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear RGB in [0, 1] -> sRGB-encoded values in [0, 1] (IEC 61966-2-1 transfer curve)."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] -> linear RGB in [0, 1]."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luminance of linear RGB ``(3, H, W)`` (or ``(N, 3, H, W)``) -> ``(1, H, W)``.

    AvatarMe feeds the *grey* diffuse albedo to the normal networks; this is that grey.
    """
    w = torch.tensor([0.2126, 0.7152, 0.0722], dtype=rgb.dtype, device=rgb.device)
    return (rgb * w.view(3, 1, 1)).sum(dim=-3, keepdim=True)
