"""Small image operations on maps that every stage shares: Gaussian blur, masked blur and resampling,
smoothstep, map checks.

Maps are ``(C, H, W)`` tensors (a batch adds a leading ``N``; single maps may be ``(H, W)``). Widths are
in texels, given as one number or ``(along rows, along columns)`` = ``(sigma_y, sigma_x)``, the order of
the map's axes.

The blur is kornia's :func:`kornia.filters.gaussian_blur2d` (a kept library does the convolution); this
module only chooses the kernel size (3 sigma each side, no wider than the map) and adds the
*normalised convolution* the notebooks teach: blur ``x * mask`` and ``mask``, divide, so texels outside
the UV islands never leak in and the islands' borders do not darken.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

BORDERS = ("reflect", "replicate", "constant")
MIN_SIGMA = 0.3  # texels: a narrower Gaussian is ~(0.004, 0.99, 0.004), i.e. the identity; it is skipped


def smoothstep(edge0: float, edge1: float, x: torch.Tensor) -> torch.Tensor:
    """Hermite ramp: 0 below ``edge0``, 1 above ``edge1``, ``3t^2 - 2t^3`` between (same shape as ``x``)."""
    t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def check_hw(hw) -> tuple[int, int]:
    """``hw`` as a validated ``(H, W)`` pair of positive whole numbers (a map or image size), else one clear error."""
    try:
        h, w = hw
        ok = all(not isinstance(s, bool) and int(s) == s and int(s) > 0 for s in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"hw must be a pair (H, W) of positive integers, got {hw!r}")
    return int(h), int(w)


def check_map(name: str, t, channels: int, hw) -> None:
    """One clear error line unless ``t`` is a floating-point ``(channels, H, W)`` tensor with ``(H, W) == hw``."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != 3 or t.shape[0] != channels or tuple(t.shape[1:]) != tuple(hw):
        raise ValueError(f"{name} must be ({channels}, {hw[0]}, {hw[1]}), got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")


def unit_vectors(x: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Normalise vectors stored along ``dim`` (zero vectors stay zero).

    Written out because ``F.normalize`` over the channel axis of a ``(3, H, W)`` map is ~10x slower
    on a CPU (it reduces over a strided axis).
    """
    return x / (x * x).sum(dim, keepdim=True).sqrt().clamp_min(1e-12)


def channel_dot(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """Dot product of vector fields along ``dim`` (kept, size 1): e.g. ``n . l`` per texel of ``(3, H, W)`` maps."""
    return (a * b).sum(dim=dim, keepdim=True)


def interp(x: torch.Tensor, xp, fp) -> torch.Tensor:
    """Piecewise-linear ``f(x)`` through the points ``(xp, fp)`` (``xp`` increasing), clamped at the ends.

    ``xp``, ``fp``: 1-D tensors or sequences of numbers; computed in float64, returned in ``x``'s dtype.
    """
    xp = torch.as_tensor(xp, dtype=torch.float64, device=x.device)
    fp = torch.as_tensor(fp, dtype=torch.float64, device=x.device)
    xd = x.double().clamp(float(xp[0]), float(xp[-1]))
    i = torch.searchsorted(xp, xd.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return (f0 + (f1 - f0) * (xd - x0) / (x1 - x0)).to(x.dtype)


def _sigmas(sigma) -> tuple[float, float]:
    sy, sx = (float(sigma), float(sigma)) if isinstance(sigma, (int, float)) else (float(s) for s in sigma)
    if not (sy >= 0 and sx >= 0 and math.isfinite(sy) and math.isfinite(sx)):
        raise ValueError(f"sigma must be one or two finite widths >= 0 in texels, got {sigma}")
    return sy, sx


def _blur_nchw(x: torch.Tensor, sy: float, sx: float, border: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    sizes, sigmas = [], []
    for s, n in ((sy, h), (sx, w)):
        if s < MIN_SIGMA:
            sizes.append(1)
            sigmas.append(1.0)
            continue
        radius = max(1, math.ceil(3.0 * s))
        if border != "constant":  # reflect/replicate padding cannot reach past the map: truncate the kernel
            radius = min(radius, n - 1)
        sizes.append(2 * radius + 1)
        sigmas.append(s)
    if sizes == [1, 1]:
        return x
    return gaussian_blur2d(x, tuple(sizes), tuple(sigmas), border_type=border)


def gaussian_blur(x: torch.Tensor, sigma, mask: torch.Tensor | None = None, border: str = "reflect",
                  downsample_wide: bool = False) -> torch.Tensor:
    """Separable Gaussian blur of ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``; same shape and dtype out.

    ``sigma``: texels, one number or ``(sigma_y, sigma_x)``; an axis narrower than :data:`MIN_SIGMA` is
    left alone. The kernel reaches ``ceil(3 sigma)`` texels each side. ``border``: ``"reflect"``,
    ``"replicate"`` (the map's edge texels extended) or ``"constant"`` (zeros beyond the map).

    ``mask`` ``(H, W)`` bool: a normalised convolution - only texels inside the mask contribute and
    the result is divided by the blurred mask; outside the mask the result is 0.
    ``downsample_wide``: blurs wider than 8 texels on both axes run on a 2x area-averaged copy and are
    upsampled back (much cheaper at 6144x4096; the result is smooth anyway).
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    sy, sx = _sigmas(sigma)
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"x must be (H, W), (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    shape = x.shape
    data = x.reshape(-1, 1, *shape[-2:])  # every channel blurred alone
    m = None
    if mask is not None:
        if tuple(mask.shape) != tuple(shape[-2:]):
            raise ValueError(f"mask must be {tuple(shape[-2:])} like the map, got {tuple(mask.shape)}")
        m = mask.to(device=x.device, dtype=x.dtype).view(1, 1, *shape[-2:])
        data = torch.cat([data * m, m])
    if downsample_wide and min(sy, sx) > 8.0:
        small = F.avg_pool2d(data, 2, ceil_mode=True)
        # average-pooling by 2 already blurs by ~0.5 texel of the small map: take it off in quadrature
        out = _blur_nchw(small, math.sqrt(max((sy / 2) ** 2 - 0.25, 0)), math.sqrt(max((sx / 2) ** 2 - 0.25, 0)),
                         border)
        out = F.interpolate(out, size=tuple(shape[-2:]), mode="bilinear", align_corners=False)
    else:
        out = _blur_nchw(data, sy, sx, border)
    if m is not None:
        out = torch.where(m > 0, out[:-1] / out[-1:].clamp_min(1e-6), torch.zeros_like(out[:-1]))
    return out.reshape(shape)


def downsample_masked(x: torch.Tensor, mask: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Area-average ``(C, H, W)`` over the mask's texels to ``hw``; returns (map, mask at ``hw``)."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x * mask, mask
    m = mask.to(x.dtype)[None]
    both = F.interpolate(torch.cat([x * m, m])[None], size=hw, mode="area")[0]
    cover = both[-1:]
    small = both[:-1] / cover.clamp_min(1e-6)
    keep = cover[0] >= 0.5
    return small * keep, keep


def upsample_masked(x: torch.Tensor, mask_small: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling of ``(C, h, w)`` valid on ``mask_small`` to ``mask``'s size, zero outside it."""
    if tuple(x.shape[-2:]) == tuple(mask.shape):
        return x * mask
    m = mask_small.to(x.dtype)[None]
    both = F.interpolate(torch.cat([x * m, m])[None], size=tuple(mask.shape), mode="bilinear",
                         align_corners=False)[0]
    return both[:-1] / both[-1:].clamp_min(1e-6) * mask
