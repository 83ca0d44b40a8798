"""Subsurface scattering in texture space: light that enters skin leaves it a few millimetres away.

Following d'Eon & Luebke (GPU Gems 3, 2007, "texture-space diffusion"), the *irradiance* is blurred in
UV space with their sum of six Gaussians fitted to a measured skin diffusion profile, each Gaussian
with its own red/green/blue weight (red light travels furthest: haemoglobin absorbs green and blue).
Kernel widths are millimetres turned into texels through the position map's texel size
(:mod:`avatarme_edu.geometry.texels`, ``(rows, cols)`` order). Used by the renderer
(:func:`~avatarme_edu.render.shading.shade_uv`) and by the light stage's in-the-wild textures.
"""

from __future__ import annotations

import math

import torch

from avatarme_edu.imaging import gaussian_blur

# d'Eon & Luebke's sum-of-Gaussians fit of a three-layer skin diffusion profile (GPU Gems 3, ch. 14):
# (variance in mm^2, (red, green, blue) weight). Each colour's weights sum to 1, so blurring conserves
# energy; red keeps weight in the wide Gaussians, blue almost none - that is the red glow of skin.
SKIN_DIFFUSION_PROFILE = (
    (0.0064, (0.233, 0.455, 0.649)),
    (0.0484, (0.100, 0.336, 0.344)),
    (0.187, (0.118, 0.198, 0.000)),
    (0.567, (0.113, 0.007, 0.007)),
    (1.99, (0.358, 0.004, 0.000)),
    (7.41, (0.078, 0.000, 0.000)),
)


def _blur_1d_varying(x: torch.Tensor, sigma: torch.Tensor, dim: int, radius: int) -> torch.Tensor:
    """Gaussian blur of ``(C, H, W)`` along ``dim`` (1 rows, 2 columns) with a width ``sigma``
    ``(1, H, W)`` (texels) chosen *per output texel*; each texel's kernel is normalised, zero padding."""
    inv = 0.5 / sigma.clamp_min(1e-3) ** 2
    out, total = x.clone(), torch.ones_like(sigma)
    n = x.shape[dim]
    for k in range(1, min(radius, n - 1) + 1):
        w = torch.exp(-(k * k) * inv)
        # out[i] += w[i] * (x[i + k] + x[i - k]); beyond the border x is 0
        out.narrow(dim, 0, n - k).addcmul_(w.narrow(dim, 0, n - k), x.narrow(dim, k, n - k))
        out.narrow(dim, k, n - k).addcmul_(w.narrow(dim, k, n - k), x.narrow(dim, 0, n - k))
        total += 2.0 * w
    return out / total


def subsurface_blur(irradiance: torch.Tensor, mask: torch.Tensor, texel_mm: tuple[float, float],
                    profile=SKIN_DIFFUSION_PROFILE, min_sigma_texels: float = 0.25,
                    texel_map_mm: torch.Tensor | None = None) -> torch.Tensor:
    """Texture-space diffusion: blur ``(3, H, W)`` irradiance per colour with a sum of Gaussians.

    ``texel_mm`` = ``(rows, cols)`` millimetres per texel (see
    :func:`~avatarme_edu.geometry.texels.texel_size_mm`); ``profile`` is a
    sequence of ``(variance_mm2, (wr, wg, wb))``. Gaussians narrower than ``min_sigma_texels`` are
    below the map's resolution and are applied as the identity. Each Gaussian is a normalised
    convolution inside ``mask`` (``(H, W)`` bool): a flat field stays flat right up to the mask's edge,
    and no background leaks in. Returns ``(3, H, W)``, zero outside the mask.

    ``texel_map_mm`` ``(2, H, W)`` (optional, see :func:`~avatarme_edu.geometry.texels.local_texel_size_mm`): every texel's own size,
    d'Eon & Luebke's *stretch map*. Each texel's kernel is then sized in *its* texels, so a millimetre
    of scattering stays a millimetre where the atlas stretches (a neck row ~15 mm tall must not be
    blurred over several rows: that would carry red light ~5 cm into a shadow). Without it, one size
    ``texel_mm`` is used everywhere (exact on evenly spread maps, and faster).
    """
    if irradiance.ndim != 3 or irradiance.shape[0] != 3 or tuple(irradiance.shape[1:]) != tuple(mask.shape):
        raise ValueError(f"irradiance must be (3, H, W) matching mask {tuple(mask.shape)}, "
                         f"got {tuple(irradiance.shape)}")
    rows, cols = (float(t) for t in texel_mm)
    if not (rows > 0 and cols > 0 and math.isfinite(rows) and math.isfinite(cols)):
        raise ValueError(f"texel_mm must be two positive millimetre sizes (rows, cols), got {texel_mm!r}")
    if texel_map_mm is not None:
        if tuple(texel_map_mm.shape) != (2, *mask.shape):
            raise ValueError(f"texel_map_mm must be (2, {mask.shape[0]}, {mask.shape[1]}) millimetres, "
                             f"got {tuple(texel_map_mm.shape)}")
        # Texels finer than the typical one (rows near a pole) would need wider kernels for no visible
        # gain (and more time): size them no finer than 0.8 of the typical texel.
        limit = torch.tensor([rows, cols], dtype=irradiance.dtype, device=irradiance.device).view(2, 1, 1)
        texel_map = texel_map_mm.to(irradiance.device, irradiance.dtype).maximum(0.8 * limit)
        inside = mask.bool()
    m = mask.to(irradiance.dtype)[None]
    masked = irradiance * m
    out = torch.zeros_like(irradiance)
    identity = torch.zeros(3, 1, 1, dtype=irradiance.dtype, device=irradiance.device)
    for variance, weights in profile:
        w = torch.as_tensor(weights, dtype=irradiance.dtype, device=irradiance.device).view(3, 1, 1)
        sigma_mm = math.sqrt(variance)
        if texel_map_mm is None:
            sx, sy = sigma_mm / cols, sigma_mm / rows
            if max(sx, sy) < min_sigma_texels:
                identity = identity + w
                continue
            blurred = gaussian_blur(torch.cat([masked, m]), (sy, sx), border="constant")
            out = out + w * blurred[:3] / blurred[3:].clamp_min(1e-6)
            continue
        sigma = sigma_mm / texel_map  # (2, H, W): this Gaussian's width in each texel's own texels
        sigma = torch.where(sigma < min_sigma_texels, torch.zeros_like(sigma), sigma)  # below resolution
        if not bool((sigma[:, inside] > 0).any()):
            identity = identity + w
            continue
        # only the colours this Gaussian carries (the widest ones are red only), plus the mask
        used = [c for c in range(3) if float(weights[c]) > 0]
        x = torch.cat([masked[used], m])
        for dim, s in ((2, sigma[1:2]), (1, sigma[0:1])):  # along the columns, then down the rows
            radius = int(math.ceil(3.0 * float(s[0][inside].max())))
            if radius > 0:
                x = _blur_1d_varying(x, s, dim, radius)
        out[used] = out[used] + w[used] * x[:-1] / x[-1:].clamp_min(1e-6)
    return (out + identity * masked) * m
