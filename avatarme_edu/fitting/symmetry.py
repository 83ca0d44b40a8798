"""Symmetric completion: the unseen side of a turned face, from its seen mirror side.

A photo shows a turned face's far cheek at a grazing angle or not at all. Without help, those texels
come from the texture model, which knows no real person's face: a rendering of the fit from another
side then shows one side of the person and one side of somebody blurrier. Faces are nearly symmetric
in their features (brows, lids, the lip line), not in their light: the photo shows albedo x shading,
and the two sides are lit differently. So a far-side texel takes its mirror image's *detail* - the
photo's log colour finer than :data:`DETAIL_SIGMA` texels - on the *light* of the fit's own estimate
there (the texture model with the fitted light, pulled onto the photo's low frequencies), which knows
the far side's brightness from the light the fit found. Where the two sides' light differs by more
than :data:`TRUSTED_GAIN` the mirror is trusted less, and not at all at its square: a side in deep
shadow carries little detail worth copying, and the estimate's light is the weaker guess there too.

Measured (``results/fit.md``, ``README.md``): on the five real photos dlib finds the fit's renderings
from another photo's pose closer to that photo (Obama's cross-photo pairs); on held-out renders the
texture loses 0.4 dB against the truth. The first form of this (the mirror's whole colour, relit by the
ratio of the fitted SH shading of the two sides) lost 2.1 dB there: the synthetic renders bake a strong
side light into the skin, the SH ratio could not undo it (clamped at 2x), and the far side came out in
the near side's shadow.

EduHead's UV layout is mirror-symmetric (the vertex mirrored in x lies at ``(1 - u, v)``), so a texel's
mirror image is simply the texel in the mirrored column: a flip of the map's last axis.
"""

from __future__ import annotations

import math

import torch

from avatarme_edu.imaging import gaussian_blur

#: texels of a map :data:`REFERENCE_WIDTH` wide (the cpu profile's fitted texture), scaled with the
#: map's width (the paper profile's 576-wide map: 16): the mirror gives what is finer (at 96x144 an eye
#: is ~6 texels wide, a brow ~3 tall); the estimate gives what is coarser (the light). At 2 texels the
#: features went with the light and dlib lost the benefit; 8 was no better than 4.
DETAIL_SIGMA = 4.0
REFERENCE_WIDTH = 144
#: the largest local light ratio between the two sides at which the mirror is fully trusted; the trust
#: falls to 0 at its square.
TRUSTED_GAIN = 2.0
_LOG_FLOOR = 1e-3  # linear RGB: keeps the log of black texels finite


def mirror_uv(x: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` map -> the same map mirrored across the face's midline (EduHead's UV layout)."""
    return torch.flip(x, dims=[-1])


def mirror_fill(photo: torch.Tensor, share: torch.Tensor, estimate: torch.Tensor, sigma: float | None = None,
                trusted_gain: float = TRUSTED_GAIN) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo's texels completed with their mirror images' detail where they were not seen.

    ``photo`` ``(3, H, W)`` linear RGB sampled from the photo at every texel; ``share`` ``(H, W)`` in
    [0, 1], how far each texel's photo colour is trusted (0: unseen); ``estimate`` ``(3, H, W)`` linear
    RGB, the texture the fit would give without the mirror (its light is taken). Returns ``(photo,
    share)``: own colour where seen, the mirror's detail on the estimate's light where only the mirror was
    seen, mixed in between. The mirror adds only the trust it has beyond the texel's own (a frontal photo,
    seen alike on both sides, is left as it is), less where the sides' light differs by more than
    ``trusted_gain``. ``sigma`` (texels) None: :data:`DETAIL_SIGMA` scaled to this map's width.
    """
    if photo.ndim != 3 or tuple(share.shape) != tuple(photo.shape[-2:]) or tuple(estimate.shape) != tuple(photo.shape):
        raise ValueError(f"mirror_fill needs photo (3, H, W), share (H, W) and estimate (3, H, W); got "
                         f"{tuple(photo.shape)}, {tuple(share.shape)} and {tuple(estimate.shape)}")
    if sigma is None:
        sigma = DETAIL_SIGMA * photo.shape[-1] / REFERENCE_WIDTH
    if sigma <= 0 or trusted_gain <= 1:
        raise ValueError(f"mirror_fill needs sigma > 0 and trusted_gain > 1; got {sigma} and {trusted_gain}")
    mirrored = mirror_uv(photo)
    mirror_seen = mirror_uv(share) > 0
    if not bool(mirror_seen.any()):
        return photo, share
    log_mirrored = torch.log(mirrored.clamp_min(0) + _LOG_FLOOR)
    # the light each side shows at this texel: the mirror's only where it was seen (normalised blur)
    light_mirrored = gaussian_blur(log_mirrored, sigma, mirror_seen, border="replicate")
    light_here = gaussian_blur(torch.log(estimate.clamp_min(0) + _LOG_FLOOR), sigma, border="replicate")
    log_gain = light_here - light_mirrored
    relit = (mirrored * torch.exp(log_gain)).clamp(0, 1)
    trust = (2 - log_gain.abs().amax(0) / math.log(trusted_gain)).clamp(0, 1) * mirror_seen
    extra = (mirror_uv(share) - share).clamp_min(0) * trust
    total = share + extra
    mixed = (share * photo + extra * relit) / total.clamp_min(1e-6)
    return torch.where(total > 0, mixed, photo), total
