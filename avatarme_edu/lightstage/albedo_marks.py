"""De-lighting patches with dark marks painted into the skin: teaching δ that pigment is not light.

The de-lighting network δ learns what is light and what is albedo from the virtual subjects, whose
mid-scale dark detail (a few mm: cast shadows under the brows and nose, the relief's shading) is mostly
light. On real photos the same scale holds the brows, lids, lash lines and lip line - pigment and hair,
albedo - and δ takes those out too: painted into a held-out subject's albedo, dark blobs of 3 mm keep only
~40 % of their contrast in δ's answer, blobs of 1 mm ~70-85 % (README, "Known limits").

Diffuse reflection is albedo times irradiance, so a mark ``F`` in the albedo darkens the lit texture by
the same factor: ``T = (A F) E`` when ``A E = T``. :func:`albedo_marks` paints random marks ``F`` into both
the texture and the target albedo of a ``share`` of the training patches. The light ``E = T / A`` that δ
must find is unchanged, so the only way to fit these patches is to keep every mark, whatever its size.
The marks are sparse blobs and strokes (mostly horizontal, like brows, lids and lips in UV), 0.5-4 mm
across, 20-80 % dark, a little darker in blue than in red (melanin and hair absorb blue most). Specular
reflection is not multiplied by the albedo, so on a shiny mark the texture is a little too dark: the
approximation is small where marks are dark and the skin is not oily.

Which patches, and their marks, follow from the patch itself (identity, expression, corner; as
:mod:`~avatarme_edu.lightstage.fresh_lows`): a resumed run draws the same.
"""

from __future__ import annotations

import math

import torch

from avatarme_edu.imaging import gaussian_blur, smoothstep
from avatarme_edu.lightstage.fresh_lows import patch_key

#: Mark sizes: the noise's Gaussian width across a mark, in texels of the cpu profile's 576-wide maps
#: (~0.55 mm each); scaled with the map's width (:func:`albedo_marks`'s ``map_width``).
SIGMA_RANGE = (1.0, 6.0)
REFERENCE_WIDTH = 576
ASPECT_RANGE = (1.0, 4.0)  # a mark's width over its height: strokes along the UV rows, like brows and lids
DEPTH_RANGE = (0.2, 0.8)  # how much light a mark's centre takes away
COVER_RANGE = (0.03, 0.15)  # share of a patch under marks
TINT = (0.85, 1.0, 1.2)  # exponents per channel: the mark absorbs blue most


def draw_marks(hw: tuple[int, int], generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """``(3, H, W)`` multiplicative marks in (0, 1]: sparse dark blobs and strokes (module docstring),
    their widths times ``scale``; every draw comes from ``generator``."""
    u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    sigma = scale * math.exp(math.log(SIGMA_RANGE[0]) + u[0] * math.log(SIGMA_RANGE[1] / SIGMA_RANGE[0]))
    aspect = math.exp(u[1] * math.log(ASPECT_RANGE[1] / ASPECT_RANGE[0])) * ASPECT_RANGE[0]
    depth = DEPTH_RANGE[0] + u[2] * (DEPTH_RANGE[1] - DEPTH_RANGE[0])
    cover = COVER_RANGE[0] + u[3] * (COVER_RANGE[1] - COVER_RANGE[0])
    noise = gaussian_blur(torch.randn(*hw, generator=generator), (sigma, sigma * aspect))
    noise = (noise - noise.mean()) / noise.std().clamp_min(1e-8)
    level = float(torch.quantile(noise.flatten(), 1 - cover))
    shape = smoothstep(level - 0.5, level + 0.5, noise)  # soft edges: a mark fades over about a sigma
    tint = torch.tensor(TINT).view(3, 1, 1)
    return (1 - depth * shape[None]) ** tint


def albedo_marks(share: float, texture_key: str = "texture", albedo_key: str = "diffuse_albedo",
                 map_width: int = REFERENCE_WIDTH):
    """A ``batch -> batch`` function for de-lighting batches: a ``share`` of the patches get the same
    random marks (:func:`draw_marks`) multiplied into ``batch[texture_key]`` and ``batch[albedo_key]``
    ``(N, 3, P, P)``. ``map_width``: the profile's map width (the marks' size scales with it). The batch
    must carry ``subject_id``, ``expression`` and ``corner`` (the patch loader's)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the share of patches with albedo marks must be in [0, 1], got {share}")
    scale = map_width / REFERENCE_WIDTH

    def transform(batch: dict) -> dict:
        texture, albedo = batch[texture_key].clone(), batch[albedo_key].clone()
        for n in range(texture.shape[0]):
            key = patch_key(batch["subject_id"][n], batch["expression"][n], batch["corner"][n])
            if ((key >> 10) % 1000) / 1000 >= share:  # other bits than fresh_lows' choice
                continue
            marks = draw_marks(tuple(texture.shape[-2:]), torch.Generator().manual_seed(key), scale)
            texture[n] = texture[n] * marks.to(texture)
            albedo[n] = albedo[n] * marks.to(albedo)
        return {**batch, texture_key: texture, albedo_key: albedo}

    transform.training_only = True  # an augmentation: validation sees the patches as they are
    return transform
