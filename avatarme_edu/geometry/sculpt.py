"""EduHead, step 1: a head sculpted as a signed distance field from interpretable parameters.

A head here is a union of simple shapes - ellipsoids, capsules and spheres - blended with smooth
unions (fillets) and smooth subtractions (hollows). Reading :func:`head_sdf` top to bottom is a
sculpting lesson: skull, mid face, cheekbones, cheeks, jaw and chin, brow ridge and eye sockets,
eyeballs and lids, nose, lips with a mouth line, ears, neck.

Every size and position comes from a :class:`HeadParams` (26 measurements with documented ranges)
through :func:`head_layout`, which places the features. :func:`sample_head_params` draws a
plausible adult population: an overall size factor and a "robustness" factor (jaw, brow, neck) are
shared, the rest varies per person.

Coordinates follow ``mesh.py``: metres, +Y up, the face looks towards +Z, the subject's left is +X.
The eye centres lie on ``y = 0``; the brow between the eyes is at ``z = GLABELLA_Z``.

Turning the field into the fixed-topology mesh is step 2, :mod:`avatarme_edu.geometry.template_fit`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

from avatarme_edu.geometry import template
from avatarme_edu.geometry.sdf import (
    Points,
    capsule,
    ellipsoid,
    mirror_x,
    rotate_x,
    rotate_y,
    rotate_z,
    smooth_intersection,
    smooth_subtraction,
    smooth_union,
    sphere,
)

# The face is anchored here; the identity parameters move everything else around these planes.
EYE_LINE_Y = 0.0  # the eye centres lie on y = 0
GLABELLA_Z = 0.094  # the brow between the eyes is the front-most point of the skull
NECK_BOTTOM_Y = -0.20  # the neck stump is cut flat here (the mesh is closed)


@dataclass(frozen=True)
class HeadParams:
    """Interpretable head measurements (metres unless stated); defaults are the population mean.

    The valid range of every field is in :data:`PARAM_RANGES` (and in the comment after it).
    Unitless fields run from 0 to 1 (or -1 to 1) between the two extremes named in the comment.
    """

    head_width: float = 0.150  # 0.138-0.164: greatest breadth of the skull, above the ears
    head_height: float = 0.230  # 0.212-0.250: chin (menton) to crown (vertex)
    head_depth: float = 0.195  # 0.180-0.212: brow (glabella) to the back of the head
    face_width: float = 0.136  # 0.124-0.148: cheekbone to cheekbone (bizygomatic)
    jaw_width: float = 0.108  # 0.094-0.124: jaw angle to jaw angle (bigonial)
    chin_length: float = 0.046  # 0.038-0.054: mouth line (stomion) down to the chin (menton)
    chin_width: float = 0.034  # 0.026-0.042: width of the chin pad
    chin_projection: float = 0.0  # -0.006-0.006: chin forward (+) or back (-)
    nose_length: float = 0.050  # 0.043-0.058: bridge top (nasion) to nose base (subnasale)
    nose_width: float = 0.034  # 0.029-0.040: across the nostril wings (alar width)
    nose_projection: float = 0.020  # 0.015-0.026: nose tip in front of the nose base
    nose_bridge: float = 0.5  # 0-1: bridge low and flat (0) .. high and narrow (1)
    brow_height: float = 0.0  # -0.004-0.004: brow ridge up (+) or down (-)
    brow_projection: float = 0.005  # 0.002-0.009: how far the brow ridge stands out
    eye_spacing: float = 0.063  # 0.057-0.069: between the eye centres (interpupillary)
    eye_width: float = 0.029  # 0.026-0.032: eye opening, corner to corner
    eye_depth: float = 0.0  # -0.003-0.003: eyes prominent (+) or deep-set (-)
    cheek_fullness: float = 0.5  # 0-1: soft tissue of the cheeks, gaunt (0) .. full (1)
    cheekbone_height: float = 0.0  # -0.004-0.004: cheekbones up (+) or down (-)
    upper_lip_height: float = 0.021  # 0.017-0.025: nose base to the mouth line
    lip_fullness: float = 0.5  # 0-1: lip (vermilion) thickness, thin (0) .. full (1)
    mouth_width: float = 0.050  # 0.044-0.056: mouth corner to mouth corner
    ear_size: float = 0.062  # 0.054-0.070: ear length, top of the rim to the lobe
    ear_protrusion: float = 0.5  # 0-1: ears flat against the head (0) .. standing out (1)
    neck_width: float = 0.106  # 0.096-0.118: neck breadth
    forehead_slope: float = 0.0  # -1-1: forehead upright (-1) .. sloping back (+1)

    def __post_init__(self):
        for name, (low, high) in PARAM_RANGES.items():
            value = getattr(self, name)
            if not (low - 1e-9 <= value <= high + 1e-9):
                raise ValueError(f"HeadParams.{name} = {value} is outside its valid range [{low}, {high}]")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


PARAM_RANGES: dict[str, tuple[float, float]] = {
    "head_width": (0.138, 0.164), "head_height": (0.212, 0.250), "head_depth": (0.180, 0.212),
    "face_width": (0.124, 0.148), "jaw_width": (0.094, 0.124), "chin_length": (0.038, 0.054),
    "chin_width": (0.026, 0.042), "chin_projection": (-0.006, 0.006), "nose_length": (0.043, 0.058),
    "nose_width": (0.029, 0.040), "nose_projection": (0.015, 0.026), "nose_bridge": (0.0, 1.0),
    "brow_height": (-0.004, 0.004), "brow_projection": (0.002, 0.009), "eye_spacing": (0.057, 0.069),
    "eye_width": (0.026, 0.032), "eye_depth": (-0.003, 0.003), "cheek_fullness": (0.0, 1.0),
    "cheekbone_height": (-0.004, 0.004), "upper_lip_height": (0.017, 0.025), "lip_fullness": (0.0, 1.0),
    "mouth_width": (0.044, 0.056), "ear_size": (0.054, 0.070), "ear_protrusion": (0.0, 1.0),
    "neck_width": (0.096, 0.118), "forehead_slope": (-1.0, 1.0),
}
PARAM_NAMES: tuple[str, ...] = tuple(f.name for f in fields(HeadParams))

# Loadings of each parameter on two shared population factors: overall SIZE, and ROBUSTNESS
# (heavier jaw, brow and neck; commonly larger in men). The rest of each parameter's variance is
# its own. Parameters not listed vary independently.
_FACTOR_LOADINGS: dict[str, tuple[float, float]] = {
    "head_width": (0.7, 0.2), "head_height": (0.7, 0.3), "head_depth": (0.7, 0.2),
    "face_width": (0.6, 0.4), "jaw_width": (0.4, 0.6), "chin_length": (0.4, 0.3),
    "chin_width": (0.2, 0.5), "nose_length": (0.4, 0.3), "nose_width": (0.3, 0.3),
    "brow_projection": (0.1, 0.7), "ear_size": (0.5, 0.2), "neck_width": (0.4, 0.6),
    "eye_depth": (0.0, -0.3), "lip_fullness": (0.0, -0.3), "cheek_fullness": (0.0, -0.2),
}


def sample_head_params(generator: torch.Generator, n: int | None = None):
    """Draw plausible adult heads: one :class:`HeadParams` (``n=None``) or a list of ``n``.

    Each parameter is normal around its default with a standard deviation of a sixth of its range
    (so +-3 sigma spans the range), correlated through the shared size and robustness factors, and
    clamped to the range. Same generator state, same heads.
    """
    if n is not None and n < 1:
        raise ValueError(f"n must be a positive number of heads, got {n}")
    count = 1 if n is None else n
    factors = torch.randn(count, 2, generator=generator, dtype=torch.float64)
    own = torch.randn(count, len(PARAM_NAMES), generator=generator, dtype=torch.float64)
    defaults = HeadParams()
    rows = [dict() for _ in range(count)]
    for j, name in enumerate(PARAM_NAMES):
        low, high = PARAM_RANGES[name]
        a, b = _FACTOR_LOADINGS.get(name, (0.0, 0.0))
        z = a * factors[:, 0] + b * factors[:, 1] + math.sqrt(max(1.0 - a * a - b * b, 0.0)) * own[:, j]
        value = (getattr(defaults, name) + (high - low) / 6.0 * z).clamp(low, high)
        for i in range(count):
            rows[i][name] = float(value[i])
    heads = [HeadParams(**r) for r in rows]
    return heads[0] if n is None else heads


def params_to_tensors(params, device=None) -> dict[str, torch.Tensor]:
    """HeadParams (one or a list) -> dict of ``(N, 1)`` float32 tensors, the form the SDF takes."""
    if isinstance(params, HeadParams):
        params = [params]
    return {name: torch.tensor([[getattr(p, name)] for p in params], dtype=torch.float32, device=device)
            for name in PARAM_NAMES}


def head_layout(hp: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Where the features sit: heights, depths and half-widths derived from the parameters.

    Heights are stacked from the eye line down (nasion, nose base, mouth line, chin); the crown is
    ``head_height`` above the chin. All values keep the parameters' ``(N, 1)`` shape.
    """
    g = hp
    L = {}
    L["y_nasion"] = EYE_LINE_Y + 0.004 + 0 * g["nose_length"]
    L["y_subnasale"] = L["y_nasion"] - g["nose_length"]
    L["y_stomion"] = L["y_subnasale"] - g["upper_lip_height"]
    L["y_chin"] = L["y_stomion"] - g["chin_length"]
    L["y_crown"] = L["y_chin"] + g["head_height"]
    L["z_back"] = GLABELLA_Z - g["head_depth"]
    L["y_brow"] = 0.016 + g["brow_height"]
    L["z_eye"] = 0.071 + g["eye_depth"]  # eyeball centre; the cornea is 13.5 mm in front of it
    L["x_eye"] = 0.5 * g["eye_spacing"]
    L["eye_half_width"] = 0.40 * g["eye_width"]
    L["z_subnasale"] = 0.094 + 0 * g["nose_length"]
    L["y_tip"] = L["y_subnasale"] + 0.012
    L["z_tip"] = L["z_subnasale"] + g["nose_projection"]
    L["x_mouth"] = 0.5 * g["mouth_width"]
    L["z_mouth"] = 0.093 + 0 * g["mouth_width"]
    L["x_jaw"] = 0.5 * g["jaw_width"]
    L["y_gonion"] = L["y_stomion"] - 0.010
    L["z_chin"] = 0.093 + g["chin_projection"]  # front of the chin pad
    L["x_ear"] = 0.46 * g["head_width"]
    L["y_ear"] = EYE_LINE_Y - 0.010 + 0 * g["ear_size"]
    L["z_ear"] = -0.014 + 0 * g["ear_size"]
    return L


# Eyelid opening: an almond made of two circular arcs through the eye corners.
EYE_OPEN_UP = 0.0060  # opening above the corner line at the middle (m)
EYE_OPEN_DOWN = 0.0045  # opening below it
LID_RADIUS = 0.0142  # the lids are a shell around the 12 mm eyeball: 2.2 mm step at their margin
EYE_TILT = 0.07  # rad: outer corners a little higher than inner ones
LIP_ARCH_RADIUS = 0.05  # the lips wrap around the teeth: corners sit further back


def eyelid_arcs(x, half_width):
    """Heights ``(upper, lower)`` of the lid margins at ``x`` from the eye centre (eye frame)."""
    r_up = (half_width ** 2 + EYE_OPEN_UP ** 2) / (2 * EYE_OPEN_UP)
    r_lo = (half_width ** 2 + EYE_OPEN_DOWN ** 2) / (2 * EYE_OPEN_DOWN)
    up = (EYE_OPEN_UP - r_up) + (r_up ** 2 - x ** 2).clamp_min(0).sqrt()
    lo = (r_lo - EYE_OPEN_DOWN) - (r_lo ** 2 - x ** 2).clamp_min(0).sqrt()
    return up, lo


def head_sdf(p: Points, hp: dict[str, torch.Tensor], parts: bool = False):
    """Signed distance (m) from points to the head of parameters ``hp``; negative inside.

    ``p`` coordinates are ``(N, P)`` and every parameter ``(N, 1)`` (one head per row), or any
    shapes that broadcast. The field is a fair distance bound near the surface, enough for sphere
    tracing with a safety factor. With ``parts=True`` also returns a dict of the distances to named
    parts (nose, lips, eyes, ears, neck, brows ...), which later paints the region maps.
    """
    g, L = hp, head_layout(hp)
    m = mirror_x(p)  # features placed at x > 0 also appear mirrored at x < 0

    # --- skull: an egg, and a second one behind it for the back of the head ---------------------
    ry = 0.38 * g["head_height"]
    rz = 0.5 * g["head_depth"]
    cz = GLABELLA_Z - rz + 0.001 - 0.004 * g["forehead_slope"]
    cranium = ellipsoid(p, (0.0, L["y_crown"] - ry, cz), (0.5 * g["head_width"], ry, rz))
    occiput = ellipsoid(p, (0.0, L["y_crown"] - ry - 0.015, cz - 0.02), (0.49 * g["head_width"], 0.85 * ry, 0.8 * rz))
    skull = smooth_union(cranium, occiput, 0.03)

    # --- mid face: upper jaw, cheekbones, the soft cheeks ---------------------------------------
    fw = g["face_width"]
    midface = ellipsoid(p, (0.0, -0.032, 0.028), (0.42 * fw, 0.048, 0.064))
    d = smooth_union(skull, midface, 0.03)
    cheekbone = ellipsoid(m, (0.5 * fw - 0.013, -0.010 + g["cheekbone_height"], 0.036), (0.015, 0.012, 0.030))
    d = smooth_union(d, cheekbone, 0.018)
    cf = 0.85 + 0.3 * g["cheek_fullness"]
    cheek = ellipsoid(m, (0.034, -0.040, 0.058), (0.026 * cf, 0.026 * cf, 0.028 * cf))
    d = smooth_union(d, cheek, 0.02)

    # --- jaw (ramus and body as capsules), chin pad, the mound around the mouth -------------------
    jw = L["x_jaw"]
    gonion = (jw - 0.010, L["y_gonion"], -0.008)
    chin_side = (0.35 * g["chin_width"], L["y_chin"] + 0.012, 0.068 + g["chin_projection"])
    body = capsule(m, gonion, chin_side, 0.012)
    ramus = capsule(m, (jw - 0.012, -0.022, -0.012), gonion, 0.010)
    jaw = smooth_union(body, ramus, 0.01)
    d = smooth_union(d, jaw, 0.02)
    chin = ellipsoid(p, (0.0, L["y_chin"] + 0.015, L["z_chin"] - 0.013), (0.55 * g["chin_width"], 0.016, 0.013))
    d = smooth_union(d, chin, 0.015)
    masseter = ellipsoid(m, (jw - 0.012, 0.5 * (L["y_stomion"] - 0.02), 0.012), (0.014, 0.035, 0.030))
    d = smooth_union(d, masseter, 0.02)
    mouth_mound = ellipsoid(p, (0.0, L["y_stomion"] + 0.001, 0.058), (0.028, 0.022, 0.034))
    d = smooth_union(d, mouth_mound, 0.02)

    # --- brow ridge, eye sockets -------------------------------------------------------------------
    ex, z_eye = L["x_eye"], L["z_eye"]
    brow = ellipsoid(m, (0.026, L["y_brow"], 0.074 + g["brow_projection"]), (0.024, 0.009, 0.010))
    d = smooth_union(d, brow, 0.02)
    socket = ellipsoid(m, (ex, EYE_LINE_Y, z_eye + 0.020), (0.017, 0.011, 0.012))
    d = smooth_subtraction(d, socket, 0.010)

    # --- eyes: eyeball with a corneal bulge; lids = a shell around it with an almond opening ----------
    eye_c = (ex, EYE_LINE_Y, z_eye)
    eyeball = torch.minimum(sphere(m, eye_c, 0.012), sphere(m, (ex, EYE_LINE_Y, z_eye + 0.0055), 0.008))
    q = rotate_z(m - eye_c, -EYE_TILT)  # eye frame: x along the eye towards its outer corner
    up, lo = eyelid_arcs(q.x, L["eye_half_width"])
    # inside the opening when below the upper arc and above the lower arc (and between the corners)
    opening = torch.maximum(torch.maximum(q.y - up, lo - q.y), q.x.abs() - L["eye_half_width"])
    lids = smooth_subtraction(sphere(m, eye_c, LID_RADIUS), opening, 0.0015)
    d = smooth_union(d, lids, 0.006)
    d = torch.minimum(d, eyeball)  # a hard union keeps the lid margin crisp

    # --- nose: bridge, tip, wings (alae), columella, nostrils ---------------------------------------
    z_subn, y_subn, tip_y, tip_z = L["z_subnasale"], L["y_subnasale"], L["y_tip"], L["z_tip"]
    br = 0.0045 + 0.0015 * g["nose_bridge"]
    bridge_top = (0.0, L["y_nasion"] - 0.004, 0.085 + 0.003 * g["nose_bridge"])
    bridge = capsule(p, bridge_top, (0.0, tip_y + 0.004, tip_z - 0.006), br)
    nw = g["nose_width"]
    sides = ellipsoid(p, (0.0, 0.5 * (L["y_nasion"] + y_subn) - 0.004, 0.092), (0.28 * nw, 0.5 * g["nose_length"], 0.011))
    nose = smooth_union(bridge, sides, 0.006)
    nose = smooth_union(nose, ellipsoid(p, (0.0, tip_y, tip_z - 0.0075), (0.0085, 0.0075, 0.0080)), 0.005)
    ala = ellipsoid(m, (0.5 * nw - 0.0065, y_subn + 0.0045, z_subn + 0.002), (0.0065, 0.0052, 0.0075))
    nose = smooth_union(nose, ala, 0.005)
    columella = capsule(p, (0.0, tip_y - 0.004, tip_z - 0.006), (0.0, y_subn + 0.001, z_subn + 0.002), 0.0033)
    nose = smooth_union(nose, columella, 0.003)
    nostril = ellipsoid(m, (0.0058, y_subn + 0.0008, z_subn + 0.0075), (0.0032, 0.0022, 0.0052))
    nose = smooth_subtraction(nose, nostril, 0.0015)
    d = smooth_union(d, nose, 0.006)

    # --- lips: two ellipsoids bent around the dental arch, meeting at the mouth line ----------------
    mw = L["x_mouth"]
    lq = p - (0.0, L["y_stomion"], L["z_mouth"])
    lq = Points(lq.x, lq.y, lq.z + lq.x * lq.x / (2 * LIP_ARCH_RADIUS))
    lf = 0.8 + 0.4 * g["lip_fullness"]
    upper = ellipsoid(lq, (0.0, 0.0045, -0.003), (mw, 0.0055 * lf, 0.0065 * lf))
    lower = ellipsoid(lq, (0.0, -0.0050, -0.0038), (0.92 * mw, 0.0060 * lf, 0.0072 * lf))
    lips = smooth_union(upper, lower, 0.001)
    # the philtrum: two soft ridges from the nose base down to the peaks of the upper lip
    philtrum = capsule(m, (0.0042, y_subn - 0.005, z_subn - 0.0005),
                       (0.0055, L["y_stomion"] + 0.009, L["z_mouth"] + 0.0005), 0.0016)
    d = smooth_union(d, philtrum, 0.005)
    d = smooth_union(d, lips, 0.004)
    # the mouth line is the crease where the two lips meet; ``slot`` marks it for the regions
    # (a carved slot would be finer than the template: rays 1-2 mm apart dive into it unevenly)
    slot = ellipsoid(lq, (0.0, 0.0, 0.003), (mw + 0.001, 0.0012, 0.0075))

    # --- ears: a tilted plate with a bowl (concha), on a pad that fills in behind it ------------------
    es = g["ear_size"]
    # ear frame: x out of the ear's face, y up along it, z towards its front edge
    eq = rotate_y(m - (L["x_ear"], L["y_ear"], L["z_ear"]), 0.3 + 0.3 * g["ear_protrusion"])  # back rim out
    eq = rotate_x(eq, 0.2)  # the ear leans back
    auricle = ellipsoid(eq, (0.010, 0.0, -0.002), (0.0045, 0.5 * es, 0.29 * es))
    concha = ellipsoid(eq, (0.015, -0.003, 0.003), (0.005, 0.17 * es, 0.12 * es))
    auricle = smooth_subtraction(auricle, concha, 0.003)
    pad = ellipsoid(eq, (0.002, 0.0, -0.004), (0.008, 0.38 * es, 0.22 * es))
    ears = smooth_union(auricle, pad, 0.006)
    d = smooth_union(d, ears, 0.006)

    # --- neck: a slanted capsule with a flat bottom -------------------------------------------------------
    neck = capsule(p, (0.0, -0.05, -0.030), (0.0, -0.30, -0.012), 0.5 * g["neck_width"])
    neck = smooth_intersection(neck, NECK_BOTTOM_Y - p.y, 0.01)
    head = d
    d = smooth_union(d, neck, 0.02)
    if not parts:
        return d
    return d, {"skull": skull, "nose": nose, "lips": lips, "eyeballs": eyeball, "lids": lids,
               "ears": ears, "neck": neck, "head_without_neck": head, "brow": brow, "chin": chin,
               "cheeks": cheek, "slot": slot}
