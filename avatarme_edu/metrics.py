"""Image metrics over the valid texels of UV maps: PSNR, SSIM and angular error of normals.

AvatarMe reports PSNR of each inferred map against the light-stage ground truth; we add SSIM and,
for normals, the angle between inferred and true normals in degrees, which is easier to read
than a PSNR of vector components. Every function takes an optional ``(H, W)`` bool ``mask``:
texels outside it (background, holes in the UV layout) never count (docs/design.md section 2).

Inputs are ``(C, H, W)`` or ``(N, C, H, W)``; the mask is shared by all images of a batch.
Sums are taken in float64 so that the numbers do not depend on the map size.

SSIM is written here, not taken from kornia, because it must skip invalid texels (a normalised
convolution); its Gaussian window is kornia's, and where a whole window is valid it equals
``kornia.metrics.ssim`` (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d


def _check_pair(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Validate shapes; return the mask as ``(H, W)`` bool on the inputs' device."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    if pred.ndim not in (3, 4):
        raise ValueError(f"maps must be (C, H, W) or (N, C, H, W), got shape {tuple(pred.shape)}")
    hw = tuple(pred.shape[-2:])
    if mask is None:
        return torch.ones(hw, dtype=torch.bool, device=pred.device)
    if mask.dtype != torch.bool or tuple(mask.shape) != hw:
        raise ValueError(f"mask must be an {hw} bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    if not mask.any():
        raise ValueError("mask has no valid texels; a metric over nothing is undefined")
    return mask.to(pred.device)


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
         data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over valid texels: ``10 log10(data_range^2 / MSE)``.

    The MSE averages all channels (and images) of the valid texels. Identical maps give ``inf``.
    A constant error of 0.1 on [0, 1] data gives exactly 20 dB.
    """
    mask = _check_pair(pred, target, mask)
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    err = (pred.double() - target.double()).square()
    mse = err[..., mask].mean().item()  # [..., mask] keeps (N, C) and picks the valid texels
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range ** 2 / mse)


def ssim_map(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
             data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-texel SSIM ``(N, C, H, W)`` float64 (``(C, H, W)`` for unbatched input).

    The local means, variances and covariance are Gaussian-weighted averages over the *valid*
    texels of the window only (a normalised convolution: blur(mask * x) / blur(mask)). So texels
    next to the mask border, or the map border, are compared on the part of their neighbourhood
    that exists, and background never leaks in. Where the whole window is valid this is exactly
    the standard SSIM with constants ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.
    """
    mask = _check_pair(pred, target, mask)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive integer, got {window}")
    unbatched = pred.ndim == 3
    n, c, h, w = (1, *pred.shape) if unbatched else pred.shape
    x = pred.double().reshape(n * c, 1, h, w)
    y = target.double().reshape(n * c, 1, h, w)
    m = mask.double().view(1, 1, h, w)

    def blur(v):  # the Gaussian window, zeros beyond the map (kornia's convolution)
        return gaussian_blur2d(v, (window, window), (sigma, sigma), border_type="constant")

    norm = blur(m).clamp_min(1e-12)

    def local_mean(v):
        return blur(v * m) / norm

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = (local_mean(x * x) - mu_x ** 2).clamp_min(0)
    var_y = (local_mean(y * y) - mu_y ** 2).clamp_min(0)
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    s = s.reshape(n, c, h, w)
    return s[0] if unbatched else s


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
         data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004): mean of :func:`ssim_map` over valid texels.

    1 for identical maps, lower as structure differs. Gaussian window 11, sigma 1.5, K1 = 0.01,
    K2 = 0.03; channels are compared separately and averaged.
    """
    mask = _check_pair(pred, target, mask)
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    return ssim_map(pred, target, mask, data_range)[..., mask].mean().item()


def angular_error_map(pred_normals: torch.Tensor, true_normals: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """Angle between two normal maps in degrees: ``(H, W)`` (``(N, H, W)`` for batches), float32.

    Inputs are ``(3, H, W)`` or ``(N, 3, H, W)`` and need not be exactly unit: only directions
    count. The angle is ``atan2(|a x b|, a . b)``, which stays accurate for tiny angles where
    ``acos`` loses precision. Texels outside the mask are set to 0.
    """
    mask = _check_pair(pred_normals, true_normals, mask)
    if pred_normals.shape[-3] != 3:
        raise ValueError(f"normal maps need 3 channels, got shape {tuple(pred_normals.shape)}")
    a = F.normalize(pred_normals.double(), dim=-3)
    b = F.normalize(true_normals.double(), dim=-3)
    cross = torch.linalg.cross(a, b, dim=-3).norm(dim=-3)
    dot = (a * b).sum(dim=-3)
    deg = torch.rad2deg(torch.atan2(cross, dot))
    return torch.where(mask, deg, torch.zeros_like(deg)).float()


def angular_error(pred_normals: torch.Tensor, true_normals: torch.Tensor,
                  mask: torch.Tensor | None = None) -> dict[str, float]:
    """Summary of :func:`angular_error_map` over valid texels: ``{"mean", "median", "rmse"}`` in degrees."""
    mask = _check_pair(pred_normals, true_normals, mask)
    deg = angular_error_map(pred_normals, true_normals, mask).double()[..., mask].flatten()
    # median by sorting: torch.quantile refuses inputs above 16M values (a paper-size map has 25M)
    s = deg.sort().values
    k = s.numel()
    median = s[k // 2] if k % 2 else 0.5 * (s[k // 2 - 1] + s[k // 2])
    return {"mean": deg.mean().item(), "median": float(median), "rmse": deg.square().mean().sqrt().item()}
