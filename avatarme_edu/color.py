"""Colour conventions: maps hold linear RGB in [0, 1]; sRGB is only for display and PNG export.

The sRGB curve is written here rather than taken from ``kornia.color`` because it is applied to maps of
any channel count (grey maps, single colours), which kornia's ``(..., 3, H, W)`` functions refuse; on RGB
images both agree (tested).

Also the colour science that turns spectra into linear sRGB (skin pigments, black-body lights):
the CIE 1931 colour matching functions and the XYZ -> linear sRGB matrix.
"""

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


def cie_cmf(lam: torch.Tensor) -> torch.Tensor:
    """CIE 1931 2-degree colour matching functions ``(3, L)``: the analytic multi-lobe fit of
    Wyman, Sloan and Shirley (2013)."""

    def g(mu, s1, s2):
        s = torch.where(lam < mu, torch.full_like(lam, s1), torch.full_like(lam, s2))
        return torch.exp(-0.5 * ((lam - mu) / s) ** 2)

    x = 1.056 * g(599.8, 37.9, 31.0) + 0.362 * g(442.0, 16.0, 26.7) - 0.065 * g(501.1, 20.4, 26.2)
    y = 0.821 * g(568.8, 46.9, 40.5) + 0.286 * g(530.9, 16.3, 31.1)
    z = 1.217 * g(437.0, 11.8, 36.0) + 0.681 * g(459.0, 26.0, 13.8)
    return torch.stack([x, y, z])


#: CIE XYZ -> linear sRGB (D65), IEC 61966-2-1.
XYZ_TO_LINEAR_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))
