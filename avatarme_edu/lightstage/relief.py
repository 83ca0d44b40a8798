"""Skin relief: the height field of pores, skin lines, moles and wrinkles, and normals from it.

Everything is in millimetres on the UV map, with a texel size ``(rows, cols)`` in mm
(:mod:`avatarme_edu.geometry.texels`), so a pore is a pore at any resolution:

* :func:`height_to_normals` - tangent-space normals of a height field;
* :func:`perturb_normals` - detail normals on top of a shape's normals (reoriented normal mapping);
* :func:`face_landmarks` - centres and extents of the face regions that wrinkles follow;
* pores, fine lines, moles and wrinkles (:func:`pore_field`, :func:`fine_lines`, :func:`mole_spots`,
  :func:`wrinkle_depth`), used by
  :func:`~avatarme_edu.lightstage.skin.skin_reflectance`.

Tangent space (shared with :mod:`avatarme_edu.geometry.uv_bake`): +x along increasing ``u`` (map
columns), +y along *decreasing* ``v`` (up the map rows), +z out of the surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatarme_edu.imaging import smoothstep
from avatarme_edu.lightstage import noise
from avatarme_edu.lightstage.skin_params import SkinParams

def height_to_normals(height: torch.Tensor, texel_mm: tuple[float, float],
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """Tangent-space unit normals ``(3, H, W)`` of a height field ``(1, H, W)`` or ``(H, W)`` in mm.

    ``n = normalize(-dh/dx, -dh/dy, 1)`` with central differences over ``texel_mm`` (rows, cols);
    +y points up the map (decreasing rows). Next to the mask's edge a one-sided difference is used
    and texels outside the mask are never read, so the empty UV space adds no fake slopes.
    Outside the mask the normal is (0, 0, 1).
    """
    h = height[0] if height.ndim == 3 else height
    H, W = h.shape
    ty, tx = texel_mm
    if not (ty > 0 and tx > 0):
        raise ValueError(f"texel_mm must be positive (rows, cols) sizes in mm, got {texel_mm}")
    m = mask if mask is not None else torch.ones(H, W, dtype=torch.bool, device=h.device)

    def slope(dim: int, step: float) -> torch.Tensor:
        # neighbours before/after along dim, and whether they are inside the mask
        hp = torch.cat([h.narrow(dim, 1, h.shape[dim] - 1), h.narrow(dim, h.shape[dim] - 1, 1)], dim)
        hm = torch.cat([h.narrow(dim, 0, 1), h.narrow(dim, 0, h.shape[dim] - 1)], dim)
        mp = torch.cat([m.narrow(dim, 1, m.shape[dim] - 1), torch.zeros_like(m.narrow(dim, 0, 1))], dim)
        mm = torch.cat([torch.zeros_like(m.narrow(dim, 0, 1)), m.narrow(dim, 0, m.shape[dim] - 1)], dim)
        central = (hp - hm) / (2 * step)
        forward = (hp - h) / step
        backward = (h - hm) / step
        s = torch.where(mp & mm, central, torch.where(mp, forward, torch.where(mm, backward, torch.zeros_like(h))))
        return s

    dh_dcol = slope(1, tx)
    dh_drow = slope(0, ty)
    # x along columns; y up the map = -rows, so dh/dy = -dh/drow
    n = torch.stack([-dh_dcol, dh_drow, torch.ones_like(h)])
    n = F.normalize(n, dim=0)
    flat = torch.zeros_like(n)
    flat[2] = 1.0
    return torch.where(m.unsqueeze(0), n, flat)


def perturb_normals(base_normals_tangent: torch.Tensor, detail_normals: torch.Tensor) -> torch.Tensor:
    """Put detail normals on top of a shape's tangent-space normals: reoriented normal mapping.

    Both ``(3, H, W)`` (or ``(N, 3, H, W)``) unit tangent-space normals. The detail map is rotated
    by the rotation that takes +z to the base normal (Barre-Brisebois and Hill 2012), so a pore on
    a tilted cheek stays a pore: a flat detail (0, 0, 1) returns the base, a flat base (0, 0, 1)
    returns the detail. The result is unit length.
    """
    if base_normals_tangent.shape != detail_normals.shape or base_normals_tangent.shape[-3] != 3:
        raise ValueError(f"base and detail normals must both be (3, H, W) or (N, 3, H, W), got "
                         f"{tuple(base_normals_tangent.shape)} and {tuple(detail_normals.shape)}")
    t = base_normals_tangent.clone()
    t.narrow(-3, 2, 1).add_(1.0)  # t = base + (0, 0, 1)
    u = detail_normals * torch.tensor([-1.0, -1.0, 1.0], device=detail_normals.device,
                                      dtype=detail_normals.dtype).view(3, 1, 1)
    tz = t.narrow(-3, 2, 1)
    r = t * (t * u).sum(-3, keepdim=True) - u * tz
    # a base normal pointing straight into the surface (t_z = 0) has no defined rotation: keep it
    degenerate = tz < 1e-6
    r = torch.where(degenerate, base_normals_tangent, r)
    return F.normalize(r, dim=-3)


@dataclass
class Blob:
    row: float  # weighted centre, texels
    col: float
    top: float  # extent where weight > 0.5, texels
    bottom: float
    left: float
    right: float


def _region_blob(w: torch.Tensor, col_range: tuple[int, int] | None = None) -> Blob | None:
    if col_range is not None:
        w = w.clone()
        w[:, :col_range[0]] = 0
        w[:, col_range[1]:] = 0
    inside = w > 0.5
    if int(inside.sum()) < 2:
        return None
    rows = torch.nonzero(inside.any(1)).flatten()
    cols = torch.nonzero(inside.any(0)).flatten()
    wt = w * inside
    total = wt.sum()
    r = float((wt.sum(1) * torch.arange(w.shape[0], device=w.device)).sum() / total) + 0.5
    c = float((wt.sum(0) * torch.arange(w.shape[1], device=w.device)).sum() / total) + 0.5
    return Blob(r, c, float(rows.min()), float(rows.max()) + 1, float(cols.min()), float(cols.max()) + 1)


def face_landmarks(regions: dict[str, torch.Tensor], W: int) -> dict:
    """Centres and extents of the regions that wrinkles follow, in texels; missing ones are None."""
    out = {name: _region_blob(regions[name]) if name in regions else None for name in ("nose", "lips", "face", "neck")}
    mid = out["nose"].col if out["nose"] else (out["face"].col if out["face"] else W / 2)
    split = int(round(mid))
    for name in ("eyes", "brows", "irises"):
        for side, rng in (("l", (0, split)), ("r", (split, W))):
            out[f"{name}_{side}"] = _region_blob(regions[name], rng) if name in regions else None
    out["mid_col"] = mid
    return out


def _crop_grid(H, W, texel, row_c, col_c, half_mm, device):
    """Slices of a box ``half_mm`` around a point (texels) and its mm coordinates ``(Y, X)``."""
    ty, tx = texel
    r0, r1 = max(0, int(row_c - half_mm / ty)), min(H, int(row_c + half_mm / ty) + 1)
    c0, c1 = max(0, int(col_c - half_mm / tx)), min(W, int(col_c + half_mm / tx) + 1)
    if r1 <= r0 or c1 <= c0:
        return None
    y = (torch.arange(r0, r1, device=device, dtype=torch.float32) + 0.5) * ty
    x = (torch.arange(c0, c1, device=device, dtype=torch.float32) + 0.5) * tx
    Y, X = torch.meshgrid(y, x, indexing="ij")
    return (slice(r0, r1), slice(c0, c1)), Y, X


def _segment_distance(Y, X, pts: list[tuple[float, float]]):
    """Distance (mm) from every ``(Y, X)`` to a polyline, and the position along it in [0, 1]."""
    best = torch.full_like(Y, 1e9)
    along = torch.zeros_like(Y)
    n = len(pts) - 1
    for i in range(n):
        (ya, xa), (yb, xb) = pts[i], pts[i + 1]
        dy, dx = yb - ya, xb - xa
        L2 = max(dy * dy + dx * dx, 1e-9)
        t = (((Y - ya) * dy + (X - xa) * dx) / L2).clamp(0, 1)
        d = torch.hypot(Y - (ya + t * dy), X - (xa + t * dx))
        closer = d < best
        best = torch.where(closer, d, best)
        along = torch.where(closer, (i + t) / n, along)
    return best, along


def _line_profile(d_mm: torch.Tensor, width_mm: float, t_mm: float) -> torch.Tensor:
    """Cross-section of a furrow: a Gaussian no narrower than ~0.6 texel (the map must hold it)."""
    w = max(width_mm, 0.6 * t_mm)
    return torch.exp(-(d_mm / w) ** 2) * min(1.0, width_mm / w) ** 0.5


#: Depth of a typical pore's dimple, mm (x pore_size; nose pores 1.5x, cheek pores 1.3x). Facial pores
#: are ~0.05-0.1 mm deep (skin-replica profilometry); a map too coarse to hold one draws it shallower.
PORE_DEPTH_MM = 0.06


def pore_field(params: SkinParams, R, hw, texel, gen, dev):
    """Pore field (H, W) in [0, 1] and its depth map (mm).

    Pores sit on a jittered grid at the nose's density (~0.5 mm apart); other regions keep fewer
    of them. A map too coarse to hold real pores draws them at the finest spacing it can hold
    (~2 texels): each drawn dimple then stands for all the real pores under it, so nearly every
    site gets one, and regions with fewer real pores get shallower dimples instead of fewer.
    """
    ty, tx = texel
    spacing = 0.5 / math.sqrt(params.pore_density)  # mm between pores on the nose
    period = (max(spacing / ty, 2.5), max(spacing / tx, 2.5))
    coarsening = math.sqrt(period[0] * period[1] * ty * tx) / spacing  # 1 when the map holds real pores
    radius_mm = 0.08 * params.pore_size
    radius = min(max(radius_mm / math.sqrt(ty * tx), 0.8), 0.33 * min(period))
    # a pore narrower than the drawn dimple is averaged over it: shallower (as in _line_profile)
    shrink = min(1.0, radius_mm / (radius * math.sqrt(ty * tx))) ** 0.5
    keep = (0.4 * R("face") + 0.55 * R("forehead") + 0.65 * R("cheeks") + 0.6 * R("chin") + 1.0 * R("nose")
            + 0.25 * R("neck") + 0.2 * R("ears") + 0.2 * R("scalp"))
    keep = keep.clamp(0.2, 1) * (1 - R("lips")) * (1 - 0.8 * R("eyes")) * (1 - 0.5 * R("under_eye"))
    size = 1 + 0.5 * R("nose") + 0.3 * R("cheeks")
    depth = PORE_DEPTH_MM * params.pore_size * size * shrink
    if coarsening > 1:
        # chance that a site of the coarse grid holds at least one real pore, and a depth that
        # fades with the real density (fully so once a site spans two real spacings)
        blend = min(1.0, coarsening - 1.0)
        keep_coarse = 1 - (1 - keep) ** (coarsening**2)
        depth = depth * (1 - blend * 0.6 * (1 - keep))
        keep = keep_coarse
    pores = noise.jittered_spots(hw, period, radius, gen, dev, density=keep, size=size, size_spread=0.3)
    return pores, depth


def fine_lines(params: SkinParams, R, hw, texel, gen, dev):
    """Skin's fine relief (mm, < 0 in furrows): the polygonal network of skin lines and a faint
    crepe of random fine wrinkles, both deeper with age. Finer than ~3 texels they fade out."""
    ty, tx = texel
    t_mm = math.sqrt(ty * tx)
    g1, g2 = noise.split_generator(gen, 2)
    age = params.wrinkles
    out = torch.zeros(hw, device=dev)
    skin_w = (R("face") + R("neck") + R("ears") + R("scalp")).clamp(0, 1) * (1 - R("lips"))
    cell_mm = 0.45
    fade = smoothstep(2.5, 5.0, torch.tensor(cell_mm / t_mm)).item()
    if fade > 0:
        edges = noise.cell_edges(hw, (cell_mm / ty, cell_mm / tx), g1, dev)
        out = out - fade * (0.006 + 0.01 * age) * torch.exp(-(edges / 0.08) ** 2)
    crepe_mm = 1.8
    fade = smoothstep(2.0, 4.0, torch.tensor(crepe_mm / t_mm)).item()
    if fade > 0:
        n = noise.fractal_noise(hw, (crepe_mm / ty, 4 * crepe_mm / tx), g2, dev, octaves=2)
        out = out - fade * (0.004 + 0.02 * age) * torch.exp(-(n / 0.15) ** 2)
    return out * skin_w


def mole_spots(params: SkinParams, regions, mask, texel, gen):
    """Moles: melanin spots (H, W) in [0, 1] and their raise (mm). Positions are drawn on a coarse
    grid of the skin (mostly face and neck), so they land in the same place at every resolution."""
    H, W = mask.shape
    dev = mask.device
    spots = torch.zeros(H, W, device=dev)
    raise_mm = torch.zeros(H, W, device=dev)
    if params.moles == 0:
        return spots, raise_mm
    ty, tx = texel
    zero = torch.zeros(H, W, device=dev)
    weight = (regions.get("face", zero) + 0.6 * regions.get("neck", zero) + 0.2 * regions.get("ears", zero)
              + 0.05) * mask * (1 - regions.get("eyes", zero)) * (1 - regions.get("lips", zero))
    coarse = F.adaptive_avg_pool2d(weight[None, None], (48, 72))[0, 0].flatten()
    if float(coarse.sum()) <= 0:
        return spots, raise_mm
    count = min(params.moles, int((coarse > 0).sum()))
    cells = torch.multinomial(coarse.to(gen.device), count, replacement=False, generator=gen).cpu()
    table = torch.rand(count, 5, generator=gen, device=gen.device).cpu().tolist()
    for cell, (ju, jv, size_u, dark_u, raised_u) in zip(cells.tolist(), table):
        row = (cell // 72 + jv) / 48 * H
        col = (cell % 72 + ju) / 72 * W
        radius = 0.6 + 1.4 * size_u**2  # mm
        crop = _crop_grid(H, W, texel, row, col, 2.5 * radius, dev)
        if crop is None:
            continue
        (rs, cs), Y, X = crop
        d = torch.hypot(Y - row * ty, X - col * tx)
        r_eff = max(radius, 0.7 * math.sqrt(ty * tx))
        disc = torch.exp(-(d / r_eff) ** 4)  # flat-topped, soft-edged
        strength = 0.6 + 0.4 * dark_u
        spots[rs, cs] = torch.maximum(spots[rs, cs], strength * disc)
        if raised_u < 0.4:  # some moles are raised papules
            raise_mm[rs, cs] = torch.maximum(raise_mm[rs, cs], 0.25 * radius * disc)
    return spots * mask, raise_mm * mask


def wrinkle_depth(params: SkinParams, R, lm, hw, texel, gen, dev):
    """Wrinkle depth (H, W) in mm, >= 0 (subtracted from height): forehead lines, frown lines,
    crow's feet, nasolabial folds, neck lines, lip lines. Depths grow with age; the lines follow
    landmarks read from the region maps, and any whose regions are missing are left out."""
    ty, tx = texel
    t_mm = math.sqrt(ty * tx)
    H, W = hw
    age = params.wrinkles
    g = noise.split_generator(gen, 6)
    out = torch.zeros(H, W, device=dev)
    rows_mm = (torch.arange(H, device=dev, dtype=torch.float32) + 0.5).unsqueeze(1) * ty
    cols_mm = (torch.arange(W, device=dev, dtype=torch.float32) + 0.5).unsqueeze(0) * tx
    rnd = torch.rand(128, generator=g[5], device=g[5].device).cpu().tolist()

    def horizontal_lines(weight, spacing, width, depth, gen_):
        # periodic furrows along the rows, wavy, broken into segments of random strength
        a, b = noise.split_generator(gen_, 2)
        wave = noise.smooth_noise((H, W), (4 * spacing / ty, 30.0 / tx), a, dev)
        phase = (rows_mm + 1.5 * wave) / spacing
        d = (phase - torch.round(phase)) * spacing
        strength = (0.55 + 0.6 * noise.smooth_noise((H, W), (spacing / ty, 22.0 / tx), b, dev)).clamp(0, 1)
        return depth * _line_profile(d, width, t_mm) * strength * weight

    # Depths and widths (Gaussian half-widths) follow published magnitudes: adult expression lines
    # are ~0.1-0.5 mm deep and ~0.5-1.5 mm wide (slopes of ~10-30 deg), deeper with age: here the
    # forehead lines go from 0.06 mm (age 20) to ~0.26 mm (45) and 0.6 mm (75+), crow's feet and frown
    # lines a little shallower; the nasolabial fold is a broad fold with a sharp crease in it.
    forehead = R("forehead") * (1 - R("brows"))
    if float(forehead.max()) > 0:
        out = out + horizontal_lines(forehead, 9.0 + 3.0 * rnd[0], 0.5 + 0.35 * age, 0.06 + 0.55 * age, g[0])
    neck = R("neck")
    if float(neck.max()) > 0:
        out = out + horizontal_lines(neck, 14.0 + 4 * rnd[1], 0.8 + 0.6 * age, 0.01 + 0.3 * age, g[1])
    lips = R("lips")
    if float(lips.max()) > 0:  # vertical lip lines, present at every age
        wave = noise.smooth_noise((H, W), (3.0 / ty, 5.0 / tx), g[2], dev)
        spacing = max(1.0, 3.0 * tx)
        phase = (cols_mm + 0.6 * wave) / spacing
        d = (phase - torch.round(phase)) * spacing
        out = out + (0.006 + 0.015 * age) * _line_profile(d, 0.2, t_mm) * lips

    # crow's feet: lines fanning out from the outer corner of each eye
    for side, sign in (("l", -1.0), ("r", 1.0)):
        eye = lm.get(f"eyes_{side}")
        if eye is None:
            continue
        corner_col = eye.right if sign > 0 else eye.left
        c_row, c_col = eye.row, corner_col + sign * 2.0 / tx
        crop = _crop_grid(H, W, texel, c_row, c_col, 22.0, dev)
        if crop is None:
            continue
        (rs, cs), Y, X = crop
        dy, dx = Y - c_row * ty, (X - c_col * tx) * sign  # dx > 0 away from the eye
        r = torch.hypot(dy, dx)
        theta = torch.atan2(dy, dx)
        fan = torch.zeros_like(r)
        n_lines = 3 + int(rnd[2 + (sign > 0)] * 4)
        for k in range(n_lines):
            j = 4 + 8 * (sign > 0) + k  # this line's random numbers
            ang = math.radians(-45 + 95 * (k + 0.5) / n_lines + 10 * (rnd[j] - 0.5))
            bend = math.radians(16 * (rnd[j + 20] - 0.5))  # lines curve a little as they run out
            start = 2.5 + 4.0 * rnd[j + 40]
            length = start + 6 + 8 * rnd[j + 30] * (0.5 + age)
            a = ang + bend * (r / 10.0)
            perp = r * torch.sin(theta - a)
            along = (smoothstep(start, start + 3.0, r) * (1 - smoothstep(0.6 * length, length, r))
                     * (torch.cos(theta - a) > 0))
            strength = 0.5 + 0.5 * rnd[j + 50]
            fan = torch.maximum(fan, strength * _line_profile(perp, 0.4 + 0.3 * age, t_mm) * along)
        keep = (1 - R("eyes")[rs, cs]) * (1 - R("brows")[rs, cs])
        out[rs, cs] = out[rs, cs] + (0.04 + 0.35 * age) * fan * keep

    # frown lines: two short vertical furrows between the brows
    bl, br = lm.get("brows_l"), lm.get("brows_r")
    if bl is not None and br is not None:
        c_row, c_col = (bl.row + br.row) / 2, (bl.right + br.left) / 2
        crop = _crop_grid(H, W, texel, c_row, c_col, 14.0, dev)
        if crop is not None:
            (rs, cs), Y, X = crop
            for s in (-1.0, 1.0):
                d = X - (c_col * tx + s * (3.0 + 1.5 * rnd[20]))
                along = 1 - smoothstep(3.0, 9.0 + 4 * age, (Y - c_row * ty).abs())
                out[rs, cs] = out[rs, cs] + (0.03 + 0.4 * age) * _line_profile(d, 0.4 + 0.3 * age, t_mm) * along

    # nasolabial folds: from the wing of the nose to beside the mouth corner
    nose, lip = lm.get("nose"), lm.get("lips")
    if nose is not None and lip is not None:
        for s in (-1.0, 1.0):
            half_n = (nose.right - nose.left) / 2
            half_l = (lip.right - lip.left) / 2
            # from above the nose wing (a quarter of the nose's height up from its base) to below and
            # beside the mouth corner
            start = (nose.bottom - 0.25 * (nose.bottom - nose.top), nose.col + s * 1.0 * half_n)
            end = (lip.bottom + 4.0 / ty, lip.col + s * 1.25 * half_l)
            mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + s * 0.18 * abs(end[0] - start[0]) * ty / tx)
            pts = [((1 - t) ** 2 * start[0] + 2 * (1 - t) * t * mid[0] + t * t * end[0],
                    (1 - t) ** 2 * start[1] + 2 * (1 - t) * t * mid[1] + t * t * end[1]) for t in
                   (i / 10 for i in range(11))]
            pts_mm = [(p[0] * ty, p[1] * tx) for p in pts]
            c = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
            half = 0.5 * math.hypot((end[0] - start[0]) * ty, (end[1] - start[1]) * tx) + 10.0
            crop = _crop_grid(H, W, texel, c[0], c[1], half, dev)
            if crop is None:
                continue
            (rs, cs), Y, X = crop
            d, along = _segment_distance(Y, X, pts_mm)
            env = smoothstep(0.0, 0.15, along) * (1 - smoothstep(0.7, 1.0, along))
            fold = (0.03 + 0.6 * age) * _line_profile(d, 1.8 + 1.7 * age, t_mm) * env
            crease = (0.02 + 0.2 * age) * _line_profile(d, 0.45, t_mm) * env  # the sharp line in the fold
            out[rs, cs] = out[rs, cs] + (fold + crease) * (1 - R("lips")[rs, cs])
    return out
