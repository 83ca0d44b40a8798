"""The 68 iBUG facial landmarks as fixed vertices of the EduHead template.

The iBUG 300-W scheme (Sagonas et al. 2013), in its standard order:

====== ===========================================================================
0-16   jaw contour, from the subject's right (image left) round the chin (8) to the left
17-21  right eyebrow, outer end to inner end
22-26  left eyebrow, inner end to outer end
27-30  nose bridge, from between the eyes (27) down to the tip (30)
31-35  nose base, right wing (31) through the middle (33) to the left wing (35)
36-41  right eye: outer corner 36, upper lid 37-38, inner corner 39, lower lid 40-41
42-47  left eye: inner corner 42, upper lid 43-44, outer corner 45, lower lid 46-47
48-59  outer lips: right corner 48, upper lip 49-53 (51 middle), left corner 54, lower 55-59 (57)
60-67  inner lips: right corner 60, upper 61-63, left corner 64, lower 65-67 (66 middle)
====== ===========================================================================

"Right" is the subject's right, at -X in mesh coordinates, so it appears on the image's LEFT for a
camera looking at the face (clockwise order round each eye and the mouth, as seen in the image).

Because every EduHead shares one topology, and the template vertices follow the features from head
to head (see :func:`template_fit.identity_ray_directions`), a landmark is simply a vertex index, chosen
once on the canonical (population-mean) head: the vertex seen from the head centre in the direction
of the landmark's design point. The left side is the mirror image of the right (column ``c`` ->
``GRID_COLS - c``), so the landmarks are exactly symmetric.
"""

from __future__ import annotations

import torch

from avatarme_edu.geometry import template
from avatarme_edu.geometry.sculpt import (
    EYE_TILT,
    LID_RADIUS,
    LIP_ARCH_RADIUS,
    HeadParams,
    eyelid_arcs,
    head_layout,
    params_to_tensors,
)

N_LANDMARKS = 68
JAW, RIGHT_BROW, LEFT_BROW = range(0, 17), range(17, 22), range(22, 27)
NOSE_BRIDGE, NOSE_BASE = range(27, 31), range(31, 36)
RIGHT_EYE, LEFT_EYE = range(36, 42), range(42, 48)
OUTER_LIPS, INNER_LIPS = range(48, 60), range(60, 68)

# each landmark on the right side (or midline) -> its mirror partner
_MIRROR_PAIRS = (
    [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
)
MIRROR: tuple[int, ...] = tuple(
    dict([(a, b) for a, b in _MIRROR_PAIRS] + [(b, a) for a, b in _MIRROR_PAIRS]).get(i, i) for i in range(68)
)


def mirror_vertex(index: torch.Tensor) -> torch.Tensor:
    """The template vertex at the mirror position (x -> -x) of each vertex id."""
    cols = template.GRID_COLS + 1
    row, col = index // cols, index % cols
    return row * cols + (template.GRID_COLS - col)


def _toward(canonical: torch.Tensor, point: torch.Tensor) -> int:
    """Vertex seen from the head centre in the direction of ``point`` (3,)."""
    centre = torch.tensor(template.RAY_CENTRE, dtype=canonical.dtype, device=canonical.device)
    dirs = torch.nn.functional.normalize(canonical - centre, dim=-1)
    target = torch.nn.functional.normalize(point.to(canonical) - centre, dim=0)
    return int((dirs @ target).argmax())


def _rc(index: int) -> tuple[int, int]:
    return divmod(index, template.GRID_COLS + 1)


def mouth_line_rows(canonical: torch.Tensor) -> dict[int, int]:
    """For each template column across the mouth, the last row above the mouth line (the stomion
    height). Rows below it belong to the lower lip: this is where the mouth opens."""
    L = {k: float(v) for k, v in head_layout(params_to_tensors(HeadParams())).items()}
    cols = template.GRID_COLS + 1
    grid = canonical.detach().cpu().reshape(template.GRID_ROWS + 1, cols, 3)
    rows = {}
    for c in range(cols):
        column = grid[:, c]
        near = ((column[:, 1] - L["y_stomion"]).abs() < 0.004) & (column[:, 2] > 0.05)
        if not bool(near.any()) or float(column[near][:, 0].abs().min()) > L["x_mouth"] + 0.001:
            continue
        above = torch.nonzero(near & (column[:, 1] > L["y_stomion"]))[:, 0]
        if above.numel():
            rows[c] = int(above.max())
    return rows


def landmark_indices(canonical: torch.Tensor) -> torch.Tensor:
    """``(68,)`` int64 vertex ids of the iBUG landmarks, chosen on the canonical head ``(V, 3)``."""
    canonical = canonical.detach().cpu().float()
    L = {k: float(v) for k, v in head_layout(params_to_tensors(HeadParams())).items()}
    hp = HeadParams()
    cols = template.GRID_COLS + 1
    mid_col = template.GRID_COLS // 2
    idx = [-1] * N_LANDMARKS

    def P(x, y, z):
        return torch.tensor([x, y, z], dtype=torch.float32)

    # jaw contour: 9 points by arc length along a polyline ear -> jaw angle -> chin (right side)
    path = torch.stack([
        P(-0.067, -0.004, 0.014), P(-0.065, -0.035, 0.012),
        P(-(L["x_jaw"] - 0.002), L["y_gonion"] - 0.006, 0.012),
        P(-0.036, L["y_chin"] + 0.010, 0.058), P(-0.016, L["y_chin"] + 0.002, 0.080),
        P(0.0, L["y_chin"] - 0.001, 0.083),
    ])
    seg = (path[1:] - path[:-1]).norm(dim=-1)
    cum = torch.cat([torch.zeros(1), seg.cumsum(0)])
    for i, s in enumerate(torch.linspace(0, float(cum[-1]), 9)):
        k = min(int(torch.searchsorted(cum, s, right=True)) - 1, len(seg) - 1)
        f = (s - cum[k]) / seg[k]
        idx[i] = _toward(canonical, path[k] + f * (path[k + 1] - path[k]))

    # right brow, outer -> inner, along the top of the brow ridge
    for i, (x, dy) in enumerate([(0.052, 0.002), (0.043, 0.007), (0.034, 0.009), (0.025, 0.008), (0.016, 0.006)]):
        idx[17 + i] = _toward(canonical, P(-x, L["y_brow"] + dy, 0.085))

    # nose bridge on the midline column: 27 deepest point between the brows, 30 the tip
    column = canonical.reshape(template.GRID_ROWS + 1, cols, 3)[:, mid_col]
    rows = torch.arange(template.GRID_ROWS + 1)
    upper = (column[:, 1] < L["y_brow"]) & (column[:, 1] > L["y_nasion"] - 0.008) & (column[:, 2] > 0.05)
    r27 = int(rows[upper][column[upper, 2].argmin()])
    front = (column[:, 1] < L["y_nasion"]) & (column[:, 1] > L["y_stomion"]) & (column[:, 2] > 0.05)
    r30 = int(rows[front][column[front, 2].argmax()])
    idx[27], idx[30] = r27 * cols + mid_col, r30 * cols + mid_col
    for i, f in ((28, 1 / 3), (29, 2 / 3)):
        y = float(column[r27, 1] + f * (column[r30, 1] - column[r27, 1]))
        idx[i] = int((column[:, 1] - y).abs().masked_fill(~front & ~upper, 1.0).argmin()) * cols + mid_col
    # nose base: 33 the deepest point between the tip and the upper lip
    base = (column[:, 1] < column[r30, 1]) & (column[:, 1] > L["y_subnasale"] - 0.004) & (column[:, 2] > 0.05)
    idx[33] = int(rows[base][column[base, 2].argmin()]) * cols + mid_col
    idx[31] = _toward(canonical, P(-(0.5 * hp.nose_width - 0.003), L["y_subnasale"] + 0.002, L["z_subnasale"] + 0.004))
    idx[32] = _toward(canonical, P(-0.0065, L["y_subnasale"] + 0.001, L["z_subnasale"] + 0.008))

    # right eye: corners and lid margins from the almond-shaped opening of the sculpture
    w, ex, ze = L["eye_half_width"], L["x_eye"], L["z_eye"]
    c, s = torch.cos(torch.tensor(EYE_TILT)), torch.sin(torch.tensor(EYE_TILT))

    def eye_point(xl, upper_lid):
        # xl runs along the eye, + towards its outer corner (the sculpture's eye frame, tilted by
        # EYE_TILT); the point is built for the left eye, then mirrored to the subject's right
        up, lo = eyelid_arcs(torch.tensor(xl), torch.tensor(w))
        yl = float(up if upper_lid else lo)
        x, y = float(c * xl - s * yl), float(s * xl + c * yl)
        r2 = LID_RADIUS ** 2 - xl ** 2 - yl ** 2
        return P(-(ex + x), y, ze + max(r2, 0.0) ** 0.5)

    for lm, xl, upper_lid in ((36, w, True), (37, w / 3, True), (38, -w / 3, True), (39, -w, True),
                              (40, -w / 3, False), (41, w / 3, False)):
        idx[lm] = _toward(canonical, eye_point(xl, upper_lid))

    # lips: corners, vermilion borders (from the lip ellipsoids), and the mouth line
    mw, ys, zm = L["x_mouth"], L["y_stomion"], L["z_mouth"]

    def lip_z(x):
        return zm - x * x / (2 * LIP_ARCH_RADIUS) + 0.003

    idx[48] = _toward(canonical, P(-mw, ys, lip_z(mw) - 0.003))
    lf = 0.8 + 0.4 * hp.lip_fullness
    for lm, f in ((49, 0.62), (50, 0.25), (51, 0.0)):
        x = f * mw
        top = 0.0045 + 0.0055 * lf * (1 - f * f) ** 0.5
        idx[lm] = _toward(canonical, P(-x, ys + top, lip_z(x)))
    for lm, f in ((59, 0.6), (58, 0.25), (57, 0.0)):
        x = f * mw
        bottom = 0.0050 + 0.0060 * lf * max(1 - (f / 0.92) ** 2, 0.0) ** 0.5
        idx[lm] = _toward(canonical, P(-x, ys - bottom, lip_z(x)))
    line = mouth_line_rows(canonical)
    for lm_up, lm_lo, f in ((61, 67, 0.4), (62, 66, 0.0)):
        col = _rc(_toward(canonical, P(-f * mw, ys, lip_z(f * mw))))[1]
        r = line[col]
        idx[lm_up], idx[lm_lo] = r * cols + col, (r + 1) * cols + col
    col60 = _rc(_toward(canonical, P(-0.85 * mw, ys, lip_z(0.85 * mw))))[1]
    idx[60] = line.get(col60, _rc(idx[48])[0]) * cols + col60

    # left side: mirror images; midline points stay
    out = torch.tensor(idx, dtype=torch.int64)
    for a, b in _MIRROR_PAIRS:
        out[b] = mirror_vertex(out[a])
    if bool((out < 0).any()):
        raise RuntimeError("landmark placement failed")
    return out
