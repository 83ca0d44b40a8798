"""EduHead, step 2: the fixed-topology mesh placed on a sculpted head (:mod:`~avatarme_edu.geometry.sculpt`).

:func:`sculpt_vertices` casts rays from the head centre (:data:`template.RAY_CENTRE`) along the
template directions, *warped per head* so that each template vertex lands on the same feature of
every head (see :func:`identity_ray_directions`): named feature points (:func:`head_anchors`) pull
the rays with a smooth radial-basis warp, and :func:`raycast` finds where each ray leaves the
signed-distance field. Every head then has the same vertices, triangles and UVs by construction.
"""

from __future__ import annotations

import torch

from avatarme_edu.geometry import template
from avatarme_edu.geometry.sculpt import (EYE_LINE_Y, GLABELLA_Z, LIP_ARCH_RADIUS, NECK_BOTTOM_Y, HeadParams,
                                          head_layout, head_sdf, params_to_tensors)
from avatarme_edu.geometry.sdf import Points

# Anchors: named feature points, used to warp the template rays so vertices follow the features.

def head_anchors(hp: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(N, J, 3)`` feature points of each head, in the order of :data:`ANCHOR_NAMES`.

    Points come in mirror pairs (subject's right at -X first) plus midline points. They lie on or
    near the surface; what matters is their direction seen from the head centre.
    """
    g, L = hp, head_layout(hp)
    ry = 0.38 * g["head_height"]
    zero = 0.0 * g["head_width"]

    def pt(x, y, z):
        return torch.stack(torch.broadcast_tensors(zero + x, zero + y, zero + z), -1)  # (N, 1, 3)

    pairs = [
        ("eye_outer", L["x_eye"] + L["eye_half_width"], 0.001, L["z_eye"] + 0.005),
        ("eye_inner", L["x_eye"] - L["eye_half_width"], -0.001, L["z_eye"] + 0.009),
        ("pupil", L["x_eye"], EYE_LINE_Y, L["z_eye"] + 0.0135),
        ("brow", 0.028, L["y_brow"] + 0.006, 0.086),
        ("alar", 0.5 * g["nose_width"], L["y_subnasale"] + 0.004, L["z_subnasale"]),
        ("mouth_corner", L["x_mouth"], L["y_stomion"], L["z_mouth"] - L["x_mouth"] ** 2 / (2 * LIP_ARCH_RADIUS)),
        ("cheekbone", 0.5 * g["face_width"] - 0.004, -0.010 + g["cheekbone_height"], 0.040),
        ("gonion", L["x_jaw"], L["y_gonion"], -0.004),
        ("chin_side", 0.3 * g["chin_width"] + 0.006, L["y_chin"] + 0.008, L["z_chin"] - 0.012),
        ("ear", L["x_ear"] + 0.012, L["y_ear"], L["z_ear"]),
        ("ear_top", L["x_ear"] + 0.006, L["y_ear"] + 0.45 * g["ear_size"], L["z_ear"] - 0.008),
        ("ear_lobe", L["x_ear"] + 0.004, L["y_ear"] - 0.45 * g["ear_size"], L["z_ear"] + 0.006),
        ("skull_side", 0.5 * g["head_width"], L["y_crown"] - ry, GLABELLA_Z - 0.5 * g["head_depth"]),
        ("neck_side", 0.5 * g["neck_width"], NECK_BOTTOM_Y + 0.03, -0.02),
    ]
    mids = [
        ("crown", 0.0, L["y_crown"], GLABELLA_Z - 0.5 * g["head_depth"]),
        ("back", 0.0, L["y_crown"] - ry, L["z_back"]),
        ("glabella", 0.0, L["y_brow"], GLABELLA_Z),
        ("nasion", 0.0, L["y_nasion"], 0.086),
        ("nose_tip", 0.0, L["y_tip"], L["z_tip"]),
        ("subnasale", 0.0, L["y_subnasale"], L["z_subnasale"]),
        ("upper_lip", 0.0, L["y_stomion"] + 0.006, L["z_mouth"] + 0.003),
        ("lower_lip", 0.0, L["y_stomion"] - 0.007, L["z_mouth"] + 0.003),
        ("chin", 0.0, L["y_chin"] + 0.012, L["z_chin"]),
        ("menton", 0.0, L["y_chin"], L["z_chin"] - 0.012),
        ("throat", 0.0, L["y_chin"] - 0.03, 0.02),
    ]
    pts = []
    for _, x, y, z in pairs:
        pts += [pt(-x, y, z), pt(x, y, z)]
    pts += [pt(x, y, z) for _, x, y, z in mids]
    return torch.cat(pts, dim=1)


ANCHOR_NAMES: tuple[str, ...] = (
    "eye_outer_r", "eye_outer_l", "eye_inner_r", "eye_inner_l", "pupil_r", "pupil_l", "brow_r", "brow_l",
    "alar_r", "alar_l", "mouth_corner_r", "mouth_corner_l", "cheekbone_r", "cheekbone_l",
    "gonion_r", "gonion_l", "chin_side_r", "chin_side_l", "ear_r", "ear_l", "ear_top_r", "ear_top_l",
    "ear_lobe_r", "ear_lobe_l", "skull_side_r", "skull_side_l", "neck_side_r", "neck_side_l",
    "crown", "back", "glabella", "nasion", "nose_tip", "subnasale", "upper_lip", "lower_lip",
    "chin", "menton", "throat",
)


WARP_RADIUS = 0.03  # m: reach of each anchor's pull in the identity warp


def _rbf_warp(points: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Move ``points`` ``(N, V, 3)`` by the smooth field that takes anchors ``src`` to ``dst`` ``(N, J, 3)``.

    Gaussian radial basis functions plus an affine part, solved so every anchor lands exactly on its
    target. Far from all anchors the field is the affine part (the head's overall scaling).
    """
    n, j, _ = src.shape
    dtype = torch.float64  # small, possibly ill-conditioned system: solve it in double
    s, t = src.to(dtype), dst.to(dtype)
    k = torch.exp(-torch.cdist(s, s).square() / WARP_RADIUS ** 2)
    ones = torch.ones(n, j, 1, dtype=dtype, device=src.device)
    poly = torch.cat([ones, s], -1)  # (N, J, 4)
    top = torch.cat([k + 1e-9 * torch.eye(j, dtype=dtype, device=src.device), poly], -1)
    bottom = torch.cat([poly.transpose(1, 2), torch.zeros(n, 4, 4, dtype=dtype, device=src.device)], -1)
    system = torch.cat([top, bottom], 1)
    rhs = torch.cat([t - s, torch.zeros(n, 4, 3, dtype=dtype, device=src.device)], 1)
    sol = torch.linalg.solve(system, rhs)
    w, affine = sol[:, :j], sol[:, j:]
    pts = points.to(dtype)
    kp = torch.exp(-torch.cdist(pts, s).square() / WARP_RADIUS ** 2)  # (N, V, J)
    disp = kp @ w + torch.cat([torch.ones_like(pts[..., :1]), pts], -1) @ affine
    return (pts + disp).to(points.dtype)


def identity_ray_directions(hp: dict[str, torch.Tensor], canonical_vertices: torch.Tensor):
    """Per-head ray directions ``(N, V, 3)`` and safe start distances ``(N, V)``.

    Fixed ray directions would keep the topology but not the *correspondence*: with wider-set eyes
    the eye would slide across the template, and every map painted in UV would slide with it.
    So the canonical head's vertices are carried along a smooth warp that takes the canonical
    anchors to this head's anchors, and each ray aims at its warped vertex. Vertex ``i`` is then
    the same feature point on every head (within a fraction of a millimetre at the anchors).
    """
    n = next(iter(hp.values())).shape[0]
    device = canonical_vertices.device
    canon = {k: torch.full_like(v, getattr(HeadParams(), k)) for k, v in hp.items()}
    src, dst = head_anchors(canon), head_anchors(hp)
    warped = _rbf_warp(canonical_vertices.expand(n, -1, -1), src.to(device), dst.to(device))
    rel = warped - torch.tensor(template.RAY_CENTRE, dtype=warped.dtype, device=device)
    dist = rel.norm(dim=-1, keepdim=True)
    dirs = rel / dist
    weld = template.template_weld(device)
    dirs = dirs[:, weld]  # duplicates (seam, poles) get bit-identical rays
    return dirs, (dist[..., 0] + 0.03)[:, weld]


def raycast(hp: dict[str, torch.Tensor], directions: torch.Tensor, t_start=None,
            max_steps: int = 400, refinements: int = 6) -> torch.Tensor:
    """Distance along each ray to the OUTERMOST zero crossing of the head SDF.

    ``hp``: parameters as ``(N, 1)`` tensors; ``directions``: ``(N, V, 3)`` unit vectors from
    :data:`template.RAY_CENTRE`; ``t_start``: ``(N, V)`` distances outside the head (default
    0.35 m; moved further out where a start point is still inside). Returns ``(N, V)`` distances.

    The march starts outside and moves inward by sphere tracing - steps of 0.8x the SDF value, at
    least 0.2 mm - so it stops at the first surface met from outside and never skips a thin part
    (an ear) to find the skull behind it. The last outside and first inside points are then refined
    by false position (Illinois rule; the SDF is almost linear over such a short bracket). Rays
    that have crossed drop out of the work list, so the slow grazing rays cost little.
    """
    cx, cy, cz = template.RAY_CENTRE
    n, v = directions.shape[:2]
    dev, dt = directions.device, directions.dtype
    dx, dy, dz = (c.reshape(-1) for c in directions.unbind(-1))
    per_ray = {k: val.reshape(n, 1).expand(n, v).reshape(-1) for k, val in hp.items()}

    def sdf_at(idx, tt):
        pts = Points(cx + tt * dx[idx], cy + tt * dy[idx], cz + tt * dz[idx])
        return head_sdf(pts, {k: val[idx] for k, val in per_ray.items()})

    everything = torch.arange(n * v, device=dev)
    t = (torch.full((n * v,), 0.35, dtype=dt, device=dev) if t_start is None
         else t_start.reshape(-1).to(dt).clone())
    for _ in range(8):  # a start point inside the head: step out until all are outside
        d = sdf_at(everything, t)
        if bool((d > 0).all()):
            break
        t = torch.where(d > 0, t, t + 0.05)
    else:
        raise RuntimeError("ray casting: could not find start points outside the head")

    t_out, d_out = t.clone(), d.clone()
    t_in, d_in = torch.zeros_like(t), torch.zeros_like(t)
    active, tt = everything, t.clone()
    for _ in range(max_steps):
        # here d > 0 for every active ray: remember the outside point, then step inward
        t_out[active], d_out[active] = tt, d
        tt = tt - (0.8 * d).clamp_min(2e-4)
        d = sdf_at(active, tt)
        crossed = d <= 0
        if bool(crossed.any()):
            done = active[crossed]
            t_in[done], d_in[done] = tt[crossed], d[crossed]
            keep = ~crossed
            active, tt, d = active[keep], tt[keep], d[keep]
        if active.numel() == 0 or bool((tt < 0.0).any()):
            break
    if active.numel() > 0:
        raise RuntimeError(f"ray casting failed: {active.numel()} rays found no head surface")

    # Illinois false position: halve the stored value at an end that survives twice, so the
    # bracket closes from both sides instead of creeping in from one
    last_inside = torch.zeros_like(t, dtype=torch.bool)
    for i in range(refinements):
        t_mid = t_out - d_out / (d_out - d_in).clamp_min(1e-12) * (t_out - t_in)
        d_mid = sdf_at(everything, t_mid)
        inside = d_mid <= 0
        if i > 0:
            d_out = torch.where(inside & last_inside, 0.5 * d_out, d_out)
            d_in = torch.where(~inside & ~last_inside, 0.5 * d_in, d_in)
        t_in, d_in = torch.where(inside, t_mid, t_in), torch.where(inside, d_mid, d_in)
        t_out, d_out = torch.where(inside, t_out, t_mid), torch.where(inside, d_out, d_mid)
        last_inside = inside
    t_hit = t_out - d_out / (d_out - d_in).clamp_min(1e-12) * (t_out - t_in)
    return t_hit.reshape(n, v)


def canonical_vertices(device=None) -> torch.Tensor:
    """``(V, 3)`` the template placed on the population-mean head (default :class:`HeadParams`).

    This head defines where every template vertex sits semantically (landmarks, regions); other
    heads are sampled at the same feature points through :func:`identity_ray_directions`.
    """
    hp = params_to_tensors(HeadParams(), device)
    dirs = template.template_directions(device)[None]
    t = raycast(hp, dirs)
    centre = torch.tensor(template.RAY_CENTRE, device=device)
    return (centre + t[..., None] * dirs)[0]


def sculpt_vertices(params, canonical: torch.Tensor | None = None, device=None, chunk: int = 8) -> torch.Tensor:
    """Vertices ``(N, V, 3)`` of heads given as HeadParams (one or a list), on the fixed template.

    ``canonical``: the :func:`canonical_vertices` (computed when not given). Heads are ray cast
    ``chunk`` at a time to bound memory. Same parameters, same vertices.
    """
    if isinstance(params, HeadParams):
        params = [params]
    if canonical is None:
        canonical = canonical_vertices(device)
    device = canonical.device
    centre = torch.tensor(template.RAY_CENTRE, device=device)
    out = []
    for i in range(0, len(params), chunk):
        hp = params_to_tensors(params[i:i + chunk], device)
        dirs, t0 = identity_ray_directions(hp, canonical)
        t = raycast(hp, dirs, t0)
        out.append(centre + t[..., None] * dirs)
    return torch.cat(out)
