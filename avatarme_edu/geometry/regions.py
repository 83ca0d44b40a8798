"""Soft face regions on the EduHead template: per-vertex weights in [0, 1].

Later stages paint with them: the virtual light stage gives the lips, brows, stubble (beard) and
T-zone their own reflectance, and the eyeballs (with their irises) a sclera, an iris and a wet shine, and head-model transfer uses the ``face`` region. They are rasterised
into UV by :mod:`avatarme_edu.geometry.raster`.

Regions are computed once on the canonical head, so they are the same for every identity (the
template vertices follow the features). Three kinds of rule are used, all smooth:

* **parts of the sculpture** - a vertex belongs to the nose, lips, eyes or ears when it lies on
  (within a few millimetres of) that part of the signed distance field;
* **directions** - the hairline and the face window are curves in azimuth/elevation seen from the
  head centre, i.e. in the template's own angles;
* **soft spots** - cheeks, chin, under-eye and brows are smooth blobs or bands around points placed
  by the head layout.
"""

from __future__ import annotations

import torch

from avatarme_edu.geometry import template
from avatarme_edu.geometry.sculpt import HeadParams, head_layout, head_sdf, params_to_tensors
from avatarme_edu.geometry.sdf import Points
from avatarme_edu.imaging import interp, smoothstep

REGION_NAMES = ("face", "forehead", "nose", "cheeks", "lips", "chin", "under_eye", "eyes", "brows",
                "beard", "t_zone", "ears", "scalp", "neck", "mouth_interior", "eyeballs", "irises")

# Hairline as elevation (deg) above the head centre for each |azimuth| (deg): high over the forehead,
# down to the sideburns in front of the ears, over the ears, and down to the nape at the back.
_HAIRLINE = [(0, 47), (25, 45), (45, 40), (60, 30), (70, 18), (78, 4), (84, 2), (90, 24), (102, 30),
             (118, 14), (140, -12), (180, -24)]
# Top of the beard as height (m) for each |x| (m): the moustache under the nose, down round the
# mouth, up the cheek to the sideburns.
_BEARD_TOP = [(0.0, -0.048), (0.016, -0.050), (0.028, -0.060), (0.040, -0.050), (0.052, -0.030),
              (0.062, -0.008), (0.075, 0.004)]


def _blob(v: torch.Tensor, centre, radii) -> torch.Tensor:
    """exp(-d^2/2) with d the distance in units of the radii (in x and y; z ignored)."""
    dx = (v[:, 0].abs() - centre[0]) / radii[0]  # |x|: a pair of blobs, one on each side
    dy = (v[:, 1] - centre[1]) / radii[1]
    return torch.exp(-0.5 * (dx * dx + dy * dy))


def vertex_regions(canonical: torch.Tensor) -> dict[str, torch.Tensor]:
    """Soft region weights ``{name: (V,) float32 in [0, 1]}`` from the canonical head ``(V, 3)``."""
    v = canonical.detach().float()
    dev = v.device
    hp = params_to_tensors(HeadParams(), dev)
    L = {k: float(t) for k, t in head_layout(hp).items()}
    _, part = head_sdf(Points(v[:, 0], v[:, 1], v[:, 2]), {k: t[0] for k, t in hp.items()}, parts=True)
    x, y, z = v.unbind(-1)
    dirs = template.template_directions(dev)
    az = torch.rad2deg(torch.atan2(dirs[:, 0], dirs[:, 2])).abs()
    el = torch.rad2deg(torch.asin(dirs[:, 1].clamp(-1, 1)))

    def near(d, inner, outer):  # 1 on the part, 0 beyond ``outer`` metres from it
        return 1.0 - smoothstep(inner, outer, d)

    front = smoothstep(0.02, 0.045, z)
    r = {}
    r["ears"] = near(part["ears"], 0.001, 0.004) * smoothstep(45.0, 60.0, az)
    r["eyes"] = near(torch.minimum(part["eyeballs"], part["lids"]), 0.0005, 0.0025) * front
    # the eyeball seen between the lids: on the eyeball's surface and nearer to it than to the lids
    # (the lid shell stands 2.2 mm off the eyeball), so the painter can give it sclera, iris and a wet shine
    r["eyeballs"] = (near(part["eyeballs"], 0.0003, 0.0012) * smoothstep(0.0002, 0.0008, part["lids"] - part["eyeballs"])
                     * r["eyes"])
    # the iris: a disc round each eye's line of sight (+z), on the corneal bulge (the cornea's rim is
    # ~6.6 mm from the axis; a human iris is ~11.5 mm across)
    r_axis = torch.hypot(x.abs() - L["x_eye"], y - 0.0)
    r["irises"] = ((1.0 - smoothstep(0.0052, 0.0060, r_axis)) * smoothstep(L["z_eye"] + 0.008, L["z_eye"] + 0.010, z)
                   * r["eyeballs"])
    r["nose"] = near(part["nose"], 0.0005, 0.004) * front
    r["mouth_interior"] = near(part["slot"], 0.0001, 0.0009) * front
    r["lips"] = torch.maximum(near(part["lips"], 0.0003, 0.0015) * front, r["mouth_interior"])
    hair = interp(az, *zip(*_HAIRLINE))
    r["scalp"] = smoothstep(hair - 3.0, hair + 3.0, el) * (1.0 - r["ears"])
    neck_side = smoothstep(-0.004, 0.004, part["head_without_neck"] - part["neck"])
    r["neck"] = neck_side * (1.0 - smoothstep(L["y_chin"] - 0.004, L["y_chin"] + 0.01, y)) * (1.0 - r["scalp"])
    window = 1.0 - smoothstep(62.0, 78.0, az)
    r["face"] = window * (1.0 - r["scalp"]) * (1.0 - r["neck"]) * (1.0 - r["ears"])
    r["forehead"] = (smoothstep(L["y_brow"] + 0.008, L["y_brow"] + 0.016, y) * (1.0 - smoothstep(0.045, 0.058, x.abs()))
                     * (1.0 - r["scalp"]) * front)
    # eyebrows: a band along the brow landmarks' curve, wider at the inner end
    bx = x.abs()
    brow_mid = L["y_brow"] + interp(bx, (0.012, 0.025, 0.036, 0.048, 0.056), (0.004, 0.008, 0.009, 0.005, 0.0))
    half = interp(bx, (0.012, 0.030, 0.056), (0.0045, 0.004, 0.0025))
    inside_x = smoothstep(0.010, 0.014, bx) * (1.0 - smoothstep(0.052, 0.058, bx))
    r["brows"] = (1.0 - smoothstep(half, half + 0.0025, (y - brow_mid).abs())) * inside_x * front * (1.0 - r["eyes"])
    not_features = (1.0 - r["eyes"]) * (1.0 - r["nose"]) * (1.0 - r["lips"])
    r["cheeks"] = _blob(v, (0.040, -0.030), (0.014, 0.016)) * front * not_features
    r["under_eye"] = _blob(v, (L["x_eye"], -0.015), (0.012, 0.005)) * front * (1.0 - r["eyes"]) * (1.0 - r["nose"])
    r["chin"] = (torch.exp(-0.5 * ((x / 0.016) ** 2 + ((y - (L["y_chin"] + 0.014)) / 0.012) ** 2))
                 * front * (1.0 - r["lips"]))
    top = interp(bx, *zip(*_BEARD_TOP)) + 0.0 * y
    upper_neck = smoothstep(L["y_chin"] - 0.045, L["y_chin"] - 0.025, y)
    r["beard"] = ((1.0 - smoothstep(top - 0.003, top + 0.003, y)) * upper_neck * (1.0 - smoothstep(95.0, 110.0, az))
                  * not_features * (1.0 - r["ears"]) * (1.0 - r["scalp"]))
    centre_band = 1.0 - smoothstep(0.018, 0.03, bx)
    r["t_zone"] = torch.maximum(torch.maximum(r["forehead"] * centre_band, r["nose"]), r["chin"] * centre_band)
    return {k: r[k].clamp(0.0, 1.0).float().contiguous() for k in REGION_NAMES}


def display_colors(regions: dict[str, torch.Tensor], canonical: torch.Tensor, hair: bool = True) -> torch.Tensor:
    """``(V, 3)`` display colours (sRGB in [0, 1]) for quick looks at a head, e.g. with
    :func:`~avatarme_edu.figures.meshes.plot_head`: skin, redder lips, dark brows, white eyes with a
    dark iris, a dark mouth opening and (``hair=True``) dark short hair on the scalp.

    Not a reflectance map - the virtual light stage makes those.
    """
    v = canonical.detach().float()
    L = {k: float(t) for k, t in head_layout(params_to_tensors(HeadParams(), v.device)).items()}

    def rgb(r, g, b):
        return torch.tensor([r, g, b], dtype=torch.float32, device=v.device)

    def paint(base, weight, colour):
        return base + weight[:, None] * (colour - base)

    c = rgb(0.87, 0.70, 0.60).expand(v.shape[0], 3).clone()
    c = paint(c, regions["lips"], rgb(0.72, 0.42, 0.40))
    c = paint(c, 0.85 * regions["brows"], rgb(0.25, 0.17, 0.12))
    if hair:
        c = paint(c, regions["scalp"], rgb(0.22, 0.16, 0.12))
    # eyes: sclera, and an iris disc round the line of sight of each eye
    c = paint(c, regions["eyes"], rgb(0.93, 0.91, 0.88))
    r_iris = ((v[:, 0].abs() - L["x_eye"]) ** 2 + (v[:, 1] - 0.0) ** 2).sqrt()
    in_front = smoothstep(L["z_eye"] + 0.009, L["z_eye"] + 0.011, v[:, 2])
    iris = (1.0 - smoothstep(0.0050, 0.0060, r_iris)) * regions["eyes"] * in_front
    c = paint(c, iris, rgb(0.30, 0.20, 0.12))
    pupil = (1.0 - smoothstep(0.0018, 0.0025, r_iris)) * iris
    c = paint(c, pupil, rgb(0.05, 0.04, 0.04))
    c = paint(c, regions["mouth_interior"], rgb(0.35, 0.12, 0.12))
    return c.clamp(0.0, 1.0)
