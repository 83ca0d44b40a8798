"""Procedural skin reflectance: the ground-truth maps of one virtual light-stage subject.

AvatarMe's training data are light-stage scans: per-texel diffuse albedo, specular albedo and
normals of real people. We cannot scan people, so we *paint* subjects with procedures that follow
what is known about skin, at any resolution, and then capture them with a virtual light stage.

What this module makes, for one subject (all maps ``(C, H, W)`` float32 in the shared UV layout):

* ``diffuse_albedo``  ``(3, H, W)`` linear RGB in [0, 1]: the colour of skin without shading,
  from two pigments (melanin in the epidermis, haemoglobin in the dermis) plus carotene, with
  regional variation (lips, cheeks, nose, under-eye...), freckles, moles, brows, beard shadow, hair;
* ``specular_albedo`` ``(1, H, W)`` in [0, 1]: strength of the surface (oil/water film) reflection;
  see :data:`~avatarme_edu.lightstage.skin_params.SPECULAR_NOTE` for the scale;
* ``height``          ``(1, H, W)`` millimetres above the smooth shape (pores and wrinkles are < 0);
* ``specular_detail_normals`` ``(3, H, W)``: tangent-space normals of ``height``, full detail
  (the specular reflection happens at the surface, so it sees every pore);
* ``diffuse_detail_normals``  ``(3, H, W)``: the same detail blurred by ~1.2 mm, as subsurface
  scattering blurs it (light enters, wanders in the dermis, and leaves elsewhere).

How (each step has its own function, here or in the modules named):

* **colour** (:mod:`~avatarme_edu.lightstage.pigments`) - a two-pigment absorption model
  (:func:`~avatarme_edu.lightstage.pigments.skin_spectrum`): Beer-Lambert melanin (and
  carotene) absorption in the epidermis over a Kubelka-Munk dermis whose absorption is blood
  (haemoglobin), evaluated at 400-700 nm, integrated against the CIE 1931 colour matching functions
  and converted to linear sRGB (:func:`~avatarme_edu.lightstage.pigments.pigment_rgb`). Maps of
  melanin and haemoglobin vary by region (read from soft region weights, e.g. baked from EduHead)
  and by smooth noise; a colour table turns them into RGB;
* **hair** - brows always; short scalp hair (``scalp_hair`` 1) or a bald scalp painted as skin
  (``scalp_hair`` 0), chosen per subject; a beard *shadow* (stubble) for some subjects. Hair colour
  comes from ``hair_melanin`` (:func:`~avatarme_edu.lightstage.pigments.hair_rgb`), which the population
  ties to skin tone;
* **relief** (:mod:`~avatarme_edu.lightstage.relief`) - pores on a jittered grid (denser and larger
  on the nose and cheeks), skin lines and fine crepe at high resolution, and wrinkles that follow landmarks read from the regions (forehead
  lines, frown lines, crow's feet, nasolabial folds, neck lines, lip lines), deeper with age;
* **specular** - a base from ``oiliness``, raised on the T-zone, lips and eyes (wet), lowered in
  pores, wrinkles and hair.

Detail sizes are physical (mm), so a map's texel size in mm matters: it comes from the baked
``position`` map when given, else from an assumed face width (:func:`skin_texel_mm`). A coarse map
shows the same subject as a fine one, blurred: noise lattices are fixed in mm, and detail finer than
about two texels is drawn at the finest size the map can hold (pores) or left out (skin lines).
The ``eyes`` region (lids and eyeballs) is painted as wet skin; the eyeballs are not modelled.

Tangent space here (shared with :mod:`avatarme_edu.geometry.uv_bake`): +x along increasing ``u``
(map columns), +y along *decreasing* ``v`` (up the map rows, so x, y, z is right-handed with the
texture seen from outside), +z out of the surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from avatarme_edu.geometry.regions import REGION_NAMES
from avatarme_edu.geometry.texels import texel_size_mm
from avatarme_edu.imaging import gaussian_blur, smoothstep
from avatarme_edu.lightstage import noise
from avatarme_edu.lightstage.pigments import hair_rgb, lookup_pigments
from avatarme_edu.lightstage.relief import (PORE_DEPTH_MM, face_landmarks, fine_lines, height_to_normals, mole_spots,
                                            pore_field, wrinkle_depth)
from avatarme_edu.lightstage.skin_params import SkinParams


# ----------------------------------------------------------------------------------------------
# Physical scale
# ----------------------------------------------------------------------------------------------

#: Used when no position map is given: the 'face' region (weight > 0.5) is taken to be this wide
#: along the surface, temple to temple; without a face region the whole map is this many mm wide.
ASSUMED_FACE_WIDTH_MM = 200.0
ASSUMED_MAP_WIDTH_MM = 560.0


def skin_texel_mm(mask: torch.Tensor, position: torch.Tensor | None = None,
                  regions: dict[str, torch.Tensor] | None = None) -> tuple[float, float]:
    """The texel size ``(rows, cols)`` in mm that the skin is painted at.

    From ``position`` ``(3, H, W)`` metres: :func:`~avatarme_edu.geometry.texels.texel_size_mm` over
    the face region when there is one (detail matters most there). Without it: an assumed face width
    (:data:`ASSUMED_FACE_WIDTH_MM`) over the face region's width in texels, with square texels.
    """
    H, W = mask.shape
    face = regions.get("face") if regions else None
    if position is not None:
        return texel_size_mm(position, mask.bool(), where=face > 0.5 if face is not None else None)
    if face is not None and bool((face > 0.5).any()):
        cols = torch.nonzero((face > 0.5).any(0)).flatten()
        t = ASSUMED_FACE_WIDTH_MM / float(cols.max() - cols.min() + 1)
    else:
        t = ASSUMED_MAP_WIDTH_MM / W
    return t, t


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------


@dataclass
class SkinMaps:
    """One subject's ground-truth skin maps (see the module docstring). Zero/neutral off the mask."""

    diffuse_albedo: torch.Tensor  # (3, H, W) linear RGB in [0, 1]
    specular_albedo: torch.Tensor  # (1, H, W) in [0, 1]
    height: torch.Tensor  # (1, H, W) mm above the smooth shape
    specular_detail_normals: torch.Tensor  # (3, H, W) unit, tangent space, full detail
    diffuse_detail_normals: torch.Tensor  # (3, H, W) unit, tangent space, subsurface-blurred
    melanin: torch.Tensor  # (1, H, W) epidermal melanin fraction (for teaching plots)
    haemoglobin: torch.Tensor  # (1, H, W) dermal blood fraction
    mask: torch.Tensor  # (H, W) bool
    texel_mm: tuple[float, float]  # texel size (rows, cols) in mm

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ----------------------------------------------------------------------------------------------
# The subject
# ----------------------------------------------------------------------------------------------



#: Specular albedo of the wet eyeball (tear film): much stronger than skin's ~0.2-0.6.
EYE_SPECULAR = 0.9

#: How much darker the diffuse albedo is at a pore's floor / a wrinkle's floor (fraction): the trace
#: of the relief in A_D that the normals networks learn from (see the painter below).
PORE_FLOOR_DARKENING = 0.35  # at pore_size 1; it grows as pore_size ** 1.5 (depth x width)
WRINKLE_FLOOR_DARKENING = 0.3  # at WRINKLE_FULL_DARKNESS_MM and deeper
#: Wrinkle depth (mm) whose floor is darkened fully (a forehead line at ~age 55); shallower, less.
WRINKLE_FULL_DARKNESS_MM = 0.4

#: Blur of the diffuse detail normals, mm: light diffuses ~1-2 mm inside skin (Jensen et al. 2001).
SUBSURFACE_BLUR_MM = 1.2


def _check_inputs(regions, mask, position):
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2:
        raise ValueError(f"mask must be an (H, W) tensor, got {getattr(mask, 'shape', type(mask))}")
    H, W = mask.shape
    unknown = set(regions) - set(REGION_NAMES)
    if unknown:
        raise ValueError(f"unknown region names {sorted(unknown)}; valid names are: {', '.join(REGION_NAMES)}")
    out = {}
    for name, w in regions.items():
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (H, W):
            raise ValueError(f"region {name!r} must be an ({H}, {W}) tensor like the mask, got "
                             f"{tuple(getattr(w, 'shape', ()))}")
        out[name] = w.to(device=mask.device, dtype=torch.float32).clamp(0, 1)
    if position is not None and tuple(position.shape) != (3, H, W):
        raise ValueError(f"position must be (3, {H}, {W}) metres, got {tuple(position.shape)}")
    return out


def skin_reflectance(regions: dict[str, torch.Tensor], mask: torch.Tensor, params: SkinParams,
                     generator: torch.Generator | int, position: torch.Tensor | None = None,
                     texel_mm: tuple[float, float] | None = None) -> SkinMaps:
    """Paint one subject's skin maps in UV: see the module docstring for what each map holds.

    ``regions``: soft weights ``(H, W)`` in [0, 1] per face region (names in :data:`REGION_NAMES`),
    e.g. baked from EduHead's ``vertex_regions()``; ``mask`` ``(H, W)`` bool; ``params`` the subject;
    ``generator`` a ``torch.Generator`` (or int seed) for every random choice; ``position``
    ``(3, H, W)`` metres (optional) sets the physical scale; ``texel_mm`` overrides it.
    Maps are made on the mask's device. Same generator state, same maps.
    """
    if not isinstance(params, SkinParams):
        raise ValueError(f"params must be a SkinParams, got {type(params).__name__}")
    regions = _check_inputs(regions, mask, position)
    mask = mask.bool()
    dev = mask.device
    H, W = mask.shape
    gen = noise.as_generator(generator)
    if texel_mm is None:
        texel_mm = skin_texel_mm(mask, position.to(dev) if position is not None else None, regions)
    ty, tx = float(texel_mm[0]), float(texel_mm[1])
    if not (ty > 0 and tx > 0):
        raise ValueError(f"texel_mm must be positive (rows, cols) in mm, got {texel_mm}")
    t_mm = math.sqrt(ty * tx)
    zero = torch.zeros(H, W, device=dev)

    def R(name):
        return regions.get(name, zero)

    def per(mm_y, mm_x=None):  # a size in mm -> lattice period in texels (rows, cols)
        return (mm_y / ty, (mm_y if mm_x is None else mm_x) / tx)

    (g_mottle, g_pores, g_fine, g_freckle, g_mole, g_hair, g_wrinkle, g_spec) = noise.split_generator(gen, 8)
    age = params.wrinkles
    skin = mask.float()
    lm = face_landmarks(regions, W)

    # ---- hair cover: brows, scalp, beard (0 = bare skin, 1 = hair hides the skin) -------------
    hg = noise.split_generator(g_hair, 4)
    # hair strands: noise stretched along the hair (~0.8 mm across, or 2 texels when texels are coarser)
    across_y, across_x = max(0.8, 2 * ty), max(0.8, 2 * tx)
    strands_brow = noise.fractal_noise((H, W), (across_y / ty, 5.0 / tx), hg[0], dev, octaves=3)
    strands_scalp = noise.fractal_noise((H, W), (5.0 / ty, across_x / tx), hg[1], dev, octaves=3)
    hairline = noise.fractal_noise((H, W), per(4.0), hg[2], dev, octaves=3)
    brows = (R("brows") * (0.8 + 0.2 * strands_brow)).clamp(0, 1)
    scalp_w = (R("scalp") + 0.2 * hairline * R("scalp") * (1 - R("scalp")) * 4).clamp(0, 1)
    scalp = (params.scalp_hair * scalp_w * (0.8 + 0.3 * strands_scalp)).clamp(0, 1)
    stubble = noise.jittered_spots((H, W), (max(1.0 / ty, 2.0), max(1.0 / tx, 2.0)), max(0.12 / t_mm, 0.5),
                                   hg[3], dev, density=0.9, stretch=1.5)
    # On the neck a texel row is ~20x taller than on the face (the UV layout gives it few rows), so any
    # texel-sized pattern there renders as long vertical streaks: paint the neck plain (its average).
    plain = R("neck")
    stubble = stubble * (1 - plain) + 0.45 * plain
    beard = params.beard * R("beard") * (0.2 + 0.5 * stubble)
    hair_cover = torch.maximum(torch.maximum(brows, scalp), beard).clamp(0, 1)

    # ---- height (mm): pores, fine lines, wrinkles, moles, hair ---------------------------------
    pores, pore_depth = pore_field(params, R, (H, W), (ty, tx), g_pores, dev)
    pores = pores * (1 - hair_cover) * (1 - plain)  # hair hides the pores under it; none drawn on the neck
    height = -pore_depth * pores
    height = height + fine_lines(params, R, (H, W), (ty, tx), g_fine, dev) * (1 - plain)
    wrinkles = wrinkle_depth(params, R, lm, (H, W), (ty, tx), g_wrinkle, dev)
    height = height - wrinkles
    height = height + 0.02 * (hair_cover * (strands_brow * R("brows") + strands_scalp * R("scalp")))
    height = height + 0.015 * beard * stubble

    # ---- pigments: melanin and haemoglobin fractions per texel --------------------------------
    mg = noise.split_generator(g_mottle, 3)
    mottle_mel = noise.fractal_noise((H, W), per(10.0), mg[0], dev, octaves=5)
    mottle_hb = noise.fractal_noise((H, W), per(12.0), mg[1], dev, octaves=5)
    mottle_car = noise.fractal_noise((H, W), per(40.0), mg[2], dev, octaves=2)
    calm = 1 - 0.85 * plain  # the neck keeps only a hint of the mottling (see ``plain``)
    mottle_mel, mottle_hb, mottle_car = mottle_mel * calm, mottle_hb * calm, mottle_car * calm
    flush = params.cheek_flush
    nose_tip = zero
    if lm["nose"] is not None:  # the lower third of the nose: the tip and the wings
        nb = lm["nose"]
        rows = torch.arange(H, device=dev, dtype=torch.float32).unsqueeze(1)
        length = nb.bottom - nb.top
        nose_tip = R("nose") * smoothstep(nb.top + 0.55 * length, nb.bottom - 0.1 * length, rows)
    log_mel = (math.log(params.melanin) + 0.05 * mottle_mel
               + math.log(1.08) * R("forehead") + math.log(1.06) * R("nose")  # sun-exposed
               + math.log(1.2) * R("under_eye") + math.log(1.1) * R("eyes")  # periorbital darkening
               + math.log(0.75) * R("lips") + math.log(0.92) * R("neck") + math.log(0.88) * R("scalp")
               + math.log(0.7) * R("mouth_interior"))
    log_hb = (math.log(params.haemoglobin) + 0.12 * mottle_hb
              + math.log(1 + 1.3 * flush) * R("cheeks") + math.log(1 + 0.5 * flush) * R("nose")
              + math.log(1.7) * nose_tip + math.log(6.0) * R("lips") + math.log(1.6) * R("ears")
              + math.log(1.25) * R("chin") + math.log(1.3) * R("eyes") + math.log(1.15) * R("under_eye")
              + math.log(0.9) * R("forehead") + math.log(0.8) * R("neck") + math.log(2.0) * R("mouth_interior"))
    # freckles: small melanin spots where the sun reaches (cheeks, nose, forehead)
    if params.freckles > 0:
        sun = (R("cheeks") + R("nose") + 0.6 * R("forehead") + 0.3 * R("face")).clamp(0, 1)
        freckles = noise.jittered_spots((H, W), per(3.2), max(0.75 / t_mm, 0.6), g_freckle, dev,
                                        density=(params.freckles * sun).clamp(0, 1), size_spread=0.35,
                                        amp_spread=0.5)
        log_mel = log_mel + math.log(3.5) * freckles
    moles, mole_height = mole_spots(params, regions, mask, (ty, tx), g_mole)
    log_mel = log_mel + math.log(8.0) * moles
    height = ((height + mole_height) * skin).unsqueeze(0)
    melanin = log_mel.exp().clamp(max=0.95)
    haemoglobin = log_hb.exp().clamp(max=0.35)
    carotene = (params.carotene * (1 + 0.15 * mottle_car)).clamp(0, 1).expand(H, W)
    diffuse = lookup_pigments(melanin, haemoglobin, carotene)
    # under the eyes the thin skin also shows the darker muscle below: a little less light overall
    diffuse = diffuse * (1 - 0.05 * R("under_eye"))
    # pores and wrinkle floors are partly hidden from the light stage's lights (and gather sebum and
    # shadowed skin): darker. The normals networks read the relief from gray(A_D) alone, so the trace
    # must stand above the mottle: at 0.1 a linear reader of the albedo cut the specular-normal error
    # by 9-29%; at 0.35 / 0.3 by about half (benchmarks/albedo_detail_trace.py)
    # The darkening follows the depth, as shadowing does: deep (older) wrinkles and large (deeper and
    # wider) pores leave a stronger trace, so the albedo also tells the relief's scale, not only where
    # it lies - and with it the pore size and age that set the skin's sebum (specular albedo).
    wrinkle_floor = (wrinkles / WRINKLE_FULL_DARKNESS_MM).clamp(0, 1)
    pore_floor = (PORE_FLOOR_DARKENING * params.pore_size ** 1.5 * pores).clamp(max=0.7)
    diffuse = diffuse * (1 - pore_floor - WRINKLE_FLOOR_DARKENING * wrinkle_floor)
    hair = torch.tensor(hair_rgb(params.hair_melanin, params.hair_redness), device=dev).view(3, 1, 1)
    # hair covers the skin: brows, short scalp hair, and the beard shadow (cut hairs just under and
    # above the skin, darkest at each follicle)
    diffuse = diffuse + (hair - diffuse) * (0.85 * hair_cover).unsqueeze(0)
    # the eyeballs between the lids are not skin: white sclera, a coloured iris, a black pupil
    eyeball = R("eyeballs")
    if float(eyeball.max()) > 0:
        diffuse = diffuse + (_eye_albedo(params, R, lm, (H, W), (ty, tx), dev) - diffuse) * eyeball.unsqueeze(0)
    diffuse = (diffuse * skin).clamp(0, 1)

    # ---- specular albedo -----------------------------------------------------------------------
    spec_noise = noise.fractal_noise((H, W), per(10.0), g_spec, dev, octaves=4)
    spec = (0.25 + 0.2 * params.oiliness) * (1 + 0.08 * spec_noise * calm)
    spec = spec * (1 + (0.25 + 0.45 * params.oiliness) * R("t_zone")) * (1 + 0.15 * R("cheeks"))
    spec = spec * (1 + 0.25 * R("lips")) * (1 + 0.3 * R("eyes")) * (1 + 0.3 * R("mouth_interior"))  # wet
    # a pore is a dry, rough hole: little mirror-like reflection (less so where a coarse map's
    # dimple only stands for pores smaller than a texel)
    spec = spec * (1 - 0.6 * pores * (pore_depth / (PORE_DEPTH_MM * params.pore_size * 1.5)).clamp(max=1))
    spec = spec * (1 - 0.5 * wrinkle_floor)
    spec = spec * (1 - 0.7 * hair_cover)  # hair scatters light every which way: weak, broad highlights
    # the eye is wet and glassy: the tear film on the cornea and sclera gives a strong, sharp highlight
    spec = spec + (EYE_SPECULAR - spec) * eyeball
    spec = (spec * skin).clamp(0, 1).unsqueeze(0)

    # ---- normals ----------------------------------------------------------------------------------
    height = height * (1 - eyeball)  # the eyeball is smooth: no pores or lines
    specular_detail = height_to_normals(height, (ty, tx), mask)
    blurred = gaussian_blur(height, (SUBSURFACE_BLUR_MM / ty, SUBSURFACE_BLUR_MM / tx), mask,
                            downsample_wide=True)
    diffuse_detail = height_to_normals(blurred, (ty, tx), mask)
    return SkinMaps(diffuse_albedo=diffuse, specular_albedo=spec, height=height,
                    specular_detail_normals=specular_detail, diffuse_detail_normals=diffuse_detail,
                    melanin=(melanin * skin).unsqueeze(0), haemoglobin=(haemoglobin * skin).unsqueeze(0),
                    mask=mask, texel_mm=(ty, tx))


def _eye_albedo(params: SkinParams, R, lm, hw, texel, dev) -> torch.Tensor:
    """Diffuse albedo ``(3, H, W)`` of the eyeballs (used where the ``eyeballs`` region is on).

    The sclera is a warm white (~0.6 linear: it is wet tissue, not paper) with a little blood near the
    corners; the iris (``irises`` region) is brown for dark-haired subjects and grey-blue for the
    lightest, darker at its rim (the limbal ring) and with radial fibres; the pupil, ~40 % of the iris
    radius, is nearly black. Iris centres and sizes are read from the ``irises`` region, per eye.
    """
    H, W = hw
    ty, tx = texel
    sclera = torch.tensor([0.62, 0.57, 0.52], device=dev).view(3, 1, 1)
    corner_red = torch.tensor([0.55, 0.38, 0.36], device=dev).view(3, 1, 1)
    # more blood where the eyeball meets the lids (its region's soft edge)
    out = sclera + (corner_red - sclera) * (1 - R("eyeballs")).clamp(0, 1).unsqueeze(0) * 0.5
    t = params.hair_melanin ** 0.7  # eye colour follows hair colour in most people
    light_iris = torch.tensor([0.16, 0.22, 0.28], device=dev)
    dark_iris = torch.tensor([0.10, 0.045, 0.02], device=dev)
    iris_rgb = (light_iris + (dark_iris - light_iris) * t).view(3, 1, 1)
    iris = R("irises")
    rows = (torch.arange(H, device=dev, dtype=torch.float32) + 0.5).unsqueeze(1)
    cols = (torch.arange(W, device=dev, dtype=torch.float32) + 0.5).unsqueeze(0)
    pupil = torch.zeros(H, W, device=dev)
    radial = torch.ones(H, W, device=dev)
    for side in ("l", "r"):
        b = lm.get(f"irises_{side}")
        if b is None:
            continue
        radius_mm = 0.25 * ((b.right - b.left) * tx + (b.bottom - b.top) * ty)  # half the mean diameter
        dy, dx = (rows - b.row) * ty, (cols - b.col) * tx
        r = torch.hypot(dy, dx) / max(radius_mm, 1e-6)  # 0 at the centre, 1 at the iris rim
        near = (r < 1.6).float()
        pupil = torch.maximum(pupil, (1 - smoothstep(0.34, 0.44, r)) * near)
        fibres = 1 + 0.25 * torch.cos(23 * torch.atan2(dy, dx)) * torch.cos(7 * torch.atan2(dy, dx))
        limbal = 1 - 0.5 * smoothstep(0.7, 1.0, r)
        radial = torch.where(near > 0, fibres * limbal, radial)
    out = out + (iris_rgb * radial.unsqueeze(0) - out) * iris.unsqueeze(0)
    out = out + (0.012 - out) * (pupil * iris).unsqueeze(0)
    return out.clamp(0, 1)


# ----------------------------------------------------------------------------------------------
# Teaching helper: a stand-in face layout
# ----------------------------------------------------------------------------------------------


def toy_face_regions(hw: tuple[int, int] = (384, 576), device=None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Soft region maps placed like a face in the UV layout, and a mask: a stand-in for the regions
    baked from EduHead, for tests and for trying this module alone.

    The layout follows EduHead's template: u runs around the head (the face centred at u = 0.5 and
    given most of the map, ears near u = 0.14 and 0.86, the seam at the back), v from the crown
    (top) down to the neck; eyes near v = 0.39, mouth near v = 0.67. Returns ``(regions, mask)``.
    """
    H, W = int(hw[0]), int(hw[1])
    if H < 8 or W < 12:
        raise ValueError(f"hw must be at least (8, 12), got {hw}")
    v = (torch.arange(H, device=device, dtype=torch.float32) + 0.5).unsqueeze(1) / H
    u = (torch.arange(W, device=device, dtype=torch.float32) + 0.5).unsqueeze(0) / W

    def ell(cu, cv, ru, rv, soft=0.25):  # soft ellipse: 1 inside, 0.5 on the border
        d = torch.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2)
        return torch.sigmoid((1 - d) / soft * 4)

    def pair(cu, cv, ru, rv, soft=0.25):
        return torch.maximum(ell(0.5 - cu, cv, ru, rv, soft), ell(0.5 + cu, cv, ru, rv, soft))

    side = (u - 0.5).abs()
    face = ell(0.5, 0.5, 0.27, 0.37, 0.1) * torch.sigmoid((v - 0.13) * 150)
    forehead = ell(0.5, 0.22, 0.2, 0.09) * face
    eyes = pair(0.09, 0.385, 0.04, 0.02, 0.3)
    brows = pair(0.088, 0.322, 0.055, 0.013, 0.35)
    under_eye = pair(0.09, 0.435, 0.05, 0.02) * (1 - eyes)
    nose = torch.maximum(ell(0.5, 0.44, 0.022, 0.1), ell(0.5, 0.525, 0.05, 0.035))
    cheeks = pair(0.165, 0.55, 0.075, 0.08) * (1 - nose)
    lips = ell(0.5, 0.665, 0.072, 0.028, 0.3)
    chin = ell(0.5, 0.78, 0.08, 0.05) * (1 - lips)
    beard = ell(0.5, 0.72, 0.25, 0.17, 0.15) * torch.sigmoid((v - 0.6) * 50) + ell(0.5, 0.615, 0.075, 0.022)
    beard = (beard.clamp(0, 1) * (1 - lips) * (1 - nose)).clamp(0, 1)
    t_zone = torch.maximum(forehead * torch.sigmoid((0.08 - side) * 60), nose)
    ears = pair(0.364, 0.47, 0.035, 0.1)
    scalp = torch.maximum(torch.sigmoid((0.13 - v) * 150),
                          torch.sigmoid((0.6 - v) * 40) * torch.sigmoid((side - 0.29) * 80)) * (1 - ears)
    neck = torch.maximum(torch.sigmoid((v - 0.87) * 60),
                         torch.sigmoid((v - 0.6) * 40) * torch.sigmoid((side - 0.29) * 80)) * (1 - face)
    mask = torch.ones(H, W, dtype=torch.bool, device=device)  # the template covers the whole map
    regions = dict(face=face, forehead=forehead, nose=nose, cheeks=cheeks, lips=lips, chin=chin,
                   under_eye=under_eye, eyes=eyes, brows=brows, beard=beard, t_zone=t_zone, ears=ears,
                   scalp=scalp, neck=neck)
    return {k: r.clamp(0, 1) for k, r in regions.items()}, mask


