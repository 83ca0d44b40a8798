"""How big a texel is on the surface: texel sizes in millimetres, read from a baked position map.

Physical sizes (a pore, a millimetre of subsurface scattering, a shadow's penumbra) become sizes in
texels through these functions. **One order everywhere**: a texel size is ``(rows, cols)`` - the step
to the next row (down the map, along ``v``) first, the step to the next column (along ``u``) second -
the order of the map's axes ``(H, W)``. A stretch map ``(2, H, W)`` has the row step in ``[0]`` and the
column step in ``[1]``.

All functions take ``position`` ``(3, H, W)`` in metres (:class:`~avatarme_edu.geometry.uv_bake.ShapeMaps`)
and ``mask`` ``(H, W)`` bool; only pairs of neighbouring texels that are both in the mask count.
"""

from __future__ import annotations

import math

import torch


def _check(position: torch.Tensor, mask: torch.Tensor) -> None:
    if mask.ndim != 2 or tuple(position.shape) != (3, *mask.shape):
        raise ValueError(f"position must be (3, H, W) metres matching the (H, W) mask, got "
                         f"{tuple(position.shape)} and {tuple(mask.shape)}")


def texel_steps_mm(position: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(2, 2, H, W)`` mm: each texel's distance to its neighbours, ``[axis][before, after]``.

    ``axis`` 0 is the rows (the texel above, the texel below), 1 the columns (left, right); ``inf``
    where that neighbour is missing or outside the mask.
    """
    _check(position, mask)
    m = mask.bool()
    out = []
    for dim in (1, 2):
        n = position.shape[dim]
        step = (position.narrow(dim, 1, n - 1) - position.narrow(dim, 0, n - 1)).norm(dim=0) * 1000.0
        ok = m.narrow(dim - 1, 1, n - 1) & m.narrow(dim - 1, 0, n - 1)
        step = torch.where(ok, step, torch.full_like(step, math.inf))
        inf = torch.full_like(step.narrow(dim - 1, 0, 1), math.inf)
        out.append(torch.stack([torch.cat([inf, step], dim - 1), torch.cat([step, inf], dim - 1)]))
    return torch.stack(out)


def texel_size_mm(position: torch.Tensor, mask: torch.Tensor,
                  where: torch.Tensor | None = None) -> tuple[float, float]:
    """The typical texel ``(rows, cols)`` in mm: the median distance between neighbouring valid texels.

    ``where`` ``(H, W)`` bool (optional): measure only there (e.g. the face, where detail matters
    most), if it holds any texel of the mask. One clear error when the mask has no neighbours to measure.
    """
    _check(position, mask)
    m = mask.bool()
    if where is not None and bool((where & m).any()):
        m = m & where
    out = []
    for dim in (1, 2):
        n = position.shape[dim]
        step = (position.narrow(dim, 1, n - 1) - position.narrow(dim, 0, n - 1)).norm(dim=0)
        ok = m.narrow(dim - 1, 1, n - 1) & m.narrow(dim - 1, 0, n - 1)
        if not bool(ok.any()):
            raise ValueError("texel size: the mask has no two neighbouring texels along "
                             f"{'a column' if dim == 1 else 'a row'}; cannot measure the texel size")
        out.append(float(step[ok].median()) * 1000.0)
    if min(out) <= 0:
        raise ValueError("texel size: neighbouring texels share one position; cannot measure the texel size")
    return out[0], out[1]


def local_texel_size_mm(position: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The *stretch map*: each texel's own size ``(2, H, W)`` mm, ``[0]`` the row step, ``[1]`` the column step.

    A UV atlas is never uniform: EduHead's face gets ~0.5 mm texels, its neck rows are ~15 mm tall. Per
    texel we take the *smaller* of the steps to its two valid neighbours (a chart border or a fold on
    one side then does not count), and fall back to :func:`texel_size_mm` where it has none.
    """
    typical = texel_size_mm(position, mask)
    steps = texel_steps_mm(position, mask)
    local = steps.amin(dim=1)  # (2, H, W)
    fallback = torch.tensor(typical, dtype=local.dtype, device=local.device).view(2, 1, 1).expand_as(local)
    return torch.where(torch.isfinite(local) & (local > 0), local, fallback)


def largest_step_m(position: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` metres: the largest distance from each valid texel to a valid 4-neighbour (0 if none)."""
    steps = texel_steps_mm(position, mask).flatten(0, 1)
    steps = torch.where(torch.isfinite(steps), steps, torch.zeros_like(steps))
    return steps.amax(dim=0) / 1000.0 * mask
