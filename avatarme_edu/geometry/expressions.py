"""Expression blendshapes for EduHead: per-vertex offsets ``(V, 3)`` in metres.

A face with expression weights ``w`` is ``identity_vertices + sum_b w_b * offsets_b`` - the linear
blendshape model of most 3D morphable models (e.g. FaceWarehouse, FLAME's expression space). The
offsets are *defined procedurally* on the canonical head from its landmarks and regions: a smile
pulls the mouth corners up and out and lifts the cheeks; opening the mouth turns the jaw about a
hinge axis below the ears; and so on. Each offset field fades smoothly to zero, so the back of the
head never moves.

AvatarMe's capture has seven expressions per identity; :data:`EXPRESSIONS` are ours, as weights.
"""

from __future__ import annotations

import math

import torch

from avatarme_edu.geometry import template
from avatarme_edu.geometry.landmarks import mouth_line_rows
from avatarme_edu.geometry.sculpt import HeadParams, head_layout, params_to_tensors
from avatarme_edu.imaging import smoothstep

BLENDSHAPE_NAMES = ("smile", "mouth_open", "brow_raise", "brow_lower", "pucker", "cheek_puff", "jaw_left")
EXPRESSIONS = ("neutral", "smile", "mouth_open", "brow_raise", "frown", "pucker", "cheek_puff")
EXPRESSION_WEIGHTS: dict[str, dict[str, float]] = {
    "neutral": {},
    "smile": {"smile": 1.0},
    "mouth_open": {"mouth_open": 1.0},
    "brow_raise": {"brow_raise": 1.0},
    "frown": {"brow_lower": 1.0, "pucker": 0.15},
    "pucker": {"pucker": 1.0},
    "cheek_puff": {"cheek_puff": 1.0, "pucker": 0.2},
}

JAW_HINGE = (-0.024, -0.010)  # (y, z) of the jaw's rotation axis, just in front of the ears (m)
JAW_OPEN_ANGLE = 0.24  # rad (about 14 deg) at mouth_open = 1


def jaw_weight(canonical: torch.Tensor) -> torch.Tensor:
    """``(V,)`` in [0, 1]: how much each vertex moves with the lower jaw.

    Across the mouth the split follows the mouth line exactly (row by row), so the lips part;
    elsewhere it is a smooth surface rising from the mouth corners to the jaw hinge. The neck
    below the chin follows half-way, the back of the head not at all.
    """
    v = canonical.detach().float()
    x, y, z = v.unbind(-1)
    L = {k: float(t) for k, t in head_layout(params_to_tensors(HeadParams(), v.device)).items()}
    ys, zm = L["y_stomion"], L["z_mouth"]
    hinge_y, hinge_z = JAW_HINGE
    # split height: the mouth line at the front, rising to the hinge towards the ears
    f = ((zm - z) / (zm - hinge_z)).clamp(0.0, 1.0)
    split = ys + f * (hinge_y - ys)
    # a wide blend (3 cm): the cheeks beside the mouth stretch instead of tearing or folding
    w = 1.0 - smoothstep(-0.018, 0.012, y - split)
    # exact parting across the mouth: rows below the mouth line go with the jaw
    cols = template.GRID_COLS + 1
    rows = torch.arange(v.shape[0], device=v.device) // cols
    col = torch.arange(v.shape[0], device=v.device) % cols
    line = mouth_line_rows(canonical.cpu())
    in_mouth = torch.zeros_like(w, dtype=torch.bool)
    lower = torch.zeros_like(w)
    for c, r in line.items():
        sel = (col == c) & ((y - ys).abs() < 0.012) & (z > 0.06)
        in_mouth |= sel
        lower = torch.where(sel, (rows > r).float(), lower)
    # the lips part fully in the middle of the mouth and not at all at the corners, which stay joined
    middle = 1.0 - smoothstep(0.55 * L["x_mouth"], 1.0 * L["x_mouth"], x.abs())
    w = torch.where(in_mouth, w + middle * (lower - w), w)
    w = w * smoothstep(L["y_chin"] - 0.075, L["y_chin"] + 0.005, y)  # the neck stretches, its base stays
    w = w * smoothstep(-0.04, 0.0, z)
    return w


def blendshapes(canonical: torch.Tensor, landmarks: torch.Tensor, regions: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B, V, 3)`` float32 offsets in the order of :data:`BLENDSHAPE_NAMES`, at weight 1."""
    v = canonical.detach().float()
    x, y, z = v.unbind(-1)
    dev = v.device
    L = {k: float(t) for k, t in head_layout(params_to_tensors(HeadParams(), dev)).items()}
    ys, mw = L["y_stomion"], L["x_mouth"]
    zero = torch.zeros_like(v)
    front = smoothstep(0.02, 0.05, z)

    def gauss(cx, cy, cz, sigma):
        d2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        return torch.exp(-0.5 * d2 / sigma ** 2)

    out = {}
    # smile: mouth corners up, out and back; lips stretch; cheeks and lower lids rise.
    # Only smooth fields (Gaussians), so neighbouring vertices move alike and nothing folds.
    s = zero.clone()
    for lm, side in ((48, -1.0), (54, 1.0)):
        cx, cy, cz = v[landmarks[lm]].tolist()
        g = gauss(cx, cy, cz, 0.011)
        s += g[:, None] * torch.tensor([0.0045 * side, 0.0045, -0.0025], device=dev)
    around_mouth = torch.exp(-0.5 * ((x / 0.03) ** 2 + ((y - ys) / 0.012) ** 2)) * front
    s[:, 0] += 0.10 * x * around_mouth
    s[:, 1] += 0.003 * (x / mw).clamp(-1.2, 1.2) ** 2 * around_mouth
    cheek = _blob_xy(x, y, 0.040, -0.032, 0.016, 0.016) * front
    under_eye = _blob_xy(x, y, L["x_eye"], -0.017, 0.013, 0.006) * front
    s[:, 1] += 0.0035 * cheek + 0.0012 * under_eye
    s[:, 2] += 0.0025 * cheek
    out["smile"] = s

    # mouth_open: rotate the lower jaw about the hinge axis (along X)
    wj = jaw_weight(v)
    hy, hz = JAW_HINGE
    c, sn = math.cos(JAW_OPEN_ANGLE), math.sin(JAW_OPEN_ANGLE)
    ry, rz = y - hy, z - hz
    rot_y, rot_z = c * ry - sn * rz, sn * ry + c * rz  # +angle: the front swings down
    mo = zero.clone()
    mo[:, 1] = (rot_y - ry) * wj
    mo[:, 2] = (rot_z - rz) * wj
    # the lips roll in a little where they part, so the opening reads as a cavity
    mo[:, 2] -= 0.004 * regions["mouth_interior"]
    out["mouth_open"] = mo

    # brow_raise: brows and the lower forehead move up, fading over a few centimetres up the
    # forehead and over the upper lid below (gentle slopes: the skin stretches, never folds)
    y_brow = L["y_brow"] + 0.004
    along = 1.0 - smoothstep(0.045, 0.068, x.abs())
    rise = torch.where(y < y_brow, smoothstep(0.008, y_brow, y), 1.0 - smoothstep(y_brow + 0.006, y_brow + 0.05, y))
    br = zero.clone()
    br[:, 1] = 0.0065 * rise * along * front
    out["brow_raise"] = br

    # brow_lower (frown): inner brows down and together, the skin between them bunches forward
    inner = _blob_xy(x, y, 0.014, L["y_brow"] + 0.002, 0.014, 0.010) * front
    fr = zero.clone()
    fr[:, 0] = -0.003 * torch.tanh(x / 0.006) * inner
    fr[:, 1] = -0.0045 * inner
    fr[:, 2] = 0.0015 * inner
    out["brow_lower"] = fr

    # pucker: lips pushed forward and gathered towards the middle
    pw = torch.exp(-0.5 * ((x / 0.022) ** 2 + ((y - ys) / 0.013) ** 2)) * front
    pu = zero.clone()
    pu[:, 0] = -0.3 * x * pw
    pu[:, 2] = 0.008 * pw ** 2  # squared: the lips move most, the skin around them less
    out["pucker"] = pu

    # cheek_puff: cheeks pushed outwards
    # (a fixed outward-forward direction per side: vertex normals are too busy near the lips)
    away_from_mouth = 1.0 - torch.exp(-0.5 * ((x / 0.024) ** 2 + ((y - ys) / 0.012) ** 2))
    cw = _blob_xy(x, y, 0.040, ys + 0.004, 0.017, 0.019) * front * away_from_mouth
    cp = zero.clone()
    cp[:, 0] = 0.008 * torch.sign(x) * cw
    cp[:, 2] = 0.004 * cw
    out["cheek_puff"] = cp

    # jaw_left: the lower jaw slides towards the subject's left (+X)
    jl = zero.clone()
    jl[:, 0] = 0.006 * wj
    out["jaw_left"] = jl
    return torch.stack([out[n] for n in BLENDSHAPE_NAMES]).float()


def _blob_xy(x, y, cx, cy, sx, sy):
    """A pair of soft blobs at (+-cx, cy) with radii (sx, sy)."""
    return torch.exp(-0.5 * (((x.abs() - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def expression_weights(expression) -> dict[str, float]:
    """Weights of a named expression (one of :data:`EXPRESSIONS`) or a dict, checked."""
    if isinstance(expression, str):
        if expression not in EXPRESSION_WEIGHTS:
            raise ValueError(f"unknown expression {expression!r}; choose one of {', '.join(EXPRESSIONS)}")
        return dict(EXPRESSION_WEIGHTS[expression])
    if isinstance(expression, dict):
        unknown = set(expression) - set(BLENDSHAPE_NAMES)
        if unknown:
            raise ValueError(f"unknown blendshapes {sorted(unknown)}; valid: {', '.join(BLENDSHAPE_NAMES)}")
        return dict(expression)
    raise ValueError(f"expression must be a name, a dict of blendshape weights or a tensor, got {type(expression)}")
