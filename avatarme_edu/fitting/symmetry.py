"""Symmetric completion: the unseen side of a turned face, from its seen mirror side.

A photo shows a turned face's far cheek at a grazing angle or not at all. Without help, those texels
come from the texture model, which knows no real person's face: a rendering of the fit from another
side then shows one side of the person and one side of somebody blurrier. Faces are nearly symmetric
in colour, so the far side's texels are taken from the near side's mirror image - in colour, not in
light: the photo shows albedo x shading, and the two sides are lit differently. So a mirrored texel is
relit from its own side's shading to this side's, with the light that the fit found (the albedo is
what is taken as symmetric).

Measured (``results/fit.md``, ``README.md``): on real photos dlib finds the fit's renderings closer to
the photo, and the same person's other photos too; on held-out renders the texture loses about 2 dB
against the truth, and the end-to-end albedo 0.6 dB (the fitted SH light cannot relight the far side
exactly), so it is off by default (``FitConfig.mirror_fill``). Taking only the mirror's
detail (photo over its local mean) on the model's colour lost less there (0.4 dB on seed 79) but helped
dlib less (4 of 6 Obama pairs below 0.6 instead of 5).

EduHead's UV layout is mirror-symmetric (the vertex mirrored in x lies at ``(1 - u, v)``), so a texel's
mirror image is simply the texel in the mirrored column: a flip of the map's last axis.
"""

from __future__ import annotations

import torch

#: The most a mirrored texel is brightened or darkened by relighting (the fitted light's shading ratio
#: blows up where one side is in deep shadow).
MAX_RELIGHT = 2.0


def mirror_uv(x: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` map -> the same map mirrored across the face's midline (EduHead's UV layout)."""
    return torch.flip(x, dims=[-1])


def mirror_fill(photo: torch.Tensor, share: torch.Tensor, shading: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo's texels completed with their relit mirror images where they were not seen.

    ``photo`` ``(3, H, W)`` linear RGB sampled from the photo at every texel; ``share`` ``(H, W)`` in
    [0, 1], how far each texel's photo colour is trusted (0: unseen); ``shading`` ``(3, H, W)`` the
    fitted light's Lambert shading at each texel. Returns ``(photo, share)``: own colour where seen,
    the mirror's where only the mirror was seen, mixed in between; the share becomes
    ``max(share, mirror(share))`` - the mirror adds only the trust it has beyond the texel's own (a
    frontal photo, seen alike on both sides, is left as it is).
    """
    if photo.ndim != 3 or tuple(share.shape) != tuple(photo.shape[-2:]) or tuple(shading.shape) != tuple(photo.shape):
        raise ValueError(f"mirror_fill needs photo (3, H, W), share (H, W) and shading (3, H, W); got "
                         f"{tuple(photo.shape)}, {tuple(share.shape)} and {tuple(shading.shape)}")
    relight = (shading / mirror_uv(shading).clamp_min(1e-4)).clamp(1 / MAX_RELIGHT, MAX_RELIGHT)
    mirrored = (mirror_uv(photo) * relight).clamp(0, 1)
    extra = (mirror_uv(share) - share).clamp_min(0)
    total = share + extra
    mixed = (share * photo + extra * mirrored) / total.clamp_min(1e-6)
    return torch.where(total > 0, mixed, photo), total
