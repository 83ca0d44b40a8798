"""Procedural skin reflectance: the ground-truth maps of one virtual light-stage subject.

AvatarMe's training data are light-stage scans: per-texel diffuse albedo, specular albedo and
normals of real people. We cannot scan people, so we *paint* subjects with procedures that follow
what is known about skin, at any resolution, and then capture them with a virtual light stage.

What this module makes, for one subject (all maps ``(C, H, W)`` float32 in the shared UV layout):

* ``diffuse_albedo``  ``(3, H, W)`` linear RGB in [0, 1]: the colour of skin without shading,
  from two pigments (melanin in the epidermis, haemoglobin in the dermis) plus carotene, with
  regional variation (lips, cheeks, nose, under-eye...), freckles, moles, brows, beard shadow, hair;
* ``specular_albedo`` ``(1, H, W)`` in [0, 1]: strength of the surface (oil/water film) reflection;
  see :data:`SPECULAR_NOTE` for the scale;
* ``height``          ``(1, H, W)`` millimetres above the smooth shape (pores and wrinkles are < 0);
* ``specular_detail_normals`` ``(3, H, W)``: tangent-space normals of ``height``, full detail
  (the specular reflection happens at the surface, so it sees every pore);
* ``diffuse_detail_normals``  ``(3, H, W)``: the same detail blurred by ~1.2 mm, as subsurface
  scattering blurs it (light enters, wanders in the dermis, and leaves elsewhere).

How (each step has its own function below):

* **colour** - a two-pigment absorption model (:func:`skin_spectrum`): Beer-Lambert melanin (and
  carotene) absorption in the epidermis over a Kubelka-Munk dermis whose absorption is blood
  (haemoglobin), evaluated at 400-700 nm, integrated against the CIE 1931 colour matching functions
  and converted to linear sRGB (:func:`pigment_rgb`). Maps of melanin and haemoglobin vary by region
  (read from soft region weights, e.g. baked from EduHead) and by smooth noise; a colour table
  turns them into RGB;
* **hair** - brows always; short scalp hair (``scalp_hair`` 1) or a bald scalp painted as skin
  (``scalp_hair`` 0), chosen per subject; a beard *shadow* (stubble) for some subjects. Hair colour
  comes from ``hair_melanin`` (:func:`hair_rgb`), which the population ties to skin tone;
* **relief** - pores on a jittered grid (denser and larger on the nose and cheeks), skin lines and
  fine crepe at high resolution, and wrinkles that follow landmarks read from the regions (forehead
  lines, frown lines, crow's feet, nasolabial folds, neck lines, lip lines), deeper with age;
* **specular** - a base from ``oiliness``, raised on the T-zone, lips and eyes (wet), lowered in
  pores, wrinkles and hair.

Detail sizes are physical (mm), so a map's texel size in mm matters: it comes from the baked
``position`` map when given, else from an assumed face width (:func:`texel_size_mm`). A coarse map
shows the same subject as a fine one, blurred: noise lattices are fixed in mm, and detail finer than
about two texels is drawn at the finest size the map can hold (pores) or left out (skin lines).
The ``eyes`` region (lids and eyeballs) is painted as wet skin; the eyeballs are not modelled.

Tangent space here (shared with :mod:`avatarme_edu.geometry.uv_bake`): +x along increasing ``u``
(map columns), +y along *decreasing* ``v`` (up the map rows, so x, y, z is right-handed with the
texture seen from outside), +z out of the surface.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from avatarme_edu.lightstage import noise

# ----------------------------------------------------------------------------------------------
# Subject parameters
# ----------------------------------------------------------------------------------------------

#: Valid range of every :class:`SkinParams` field (inclusive).
PARAM_RANGES: dict[str, tuple[float, float]] = {
    "melanin": (0.003, 0.5),
    "haemoglobin": (0.005, 0.08),
    "carotene": (0.0, 1.0),
    "cheek_flush": (0.0, 1.0),
    "freckles": (0.0, 1.0),
    "moles": (0, 20),
    "beard": (0.0, 1.0),
    "hair_melanin": (0.0, 1.0),
    "hair_redness": (0.0, 1.0),
    "scalp_hair": (0.0, 1.0),
    "age": (18.0, 90.0),
    "oiliness": (0.0, 1.0),
    "pore_size": (0.5, 2.0),
    "pore_density": (0.5, 1.5),
}

#: Epidermal melanin volume fraction per Fitzpatrick skin type, within the published ranges (Jacques
#: 1998: light 1.3-6.3 %, moderately pigmented 11-16 %, darkly pigmented 18-43 %) and fitted so that
#: :func:`pigment_rgb` gives typical skin-tone colours (sRGB ~(224, 200, 176) for I to ~(72, 51, 44) for VI).
FITZPATRICK_MELANIN = {1: 0.008, 2: 0.019, 3: 0.05, 4: 0.095, 5: 0.19, 6: 0.36}

SPECULAR_NOTE = """Specular albedo scale: 1.0 is the specular reflection of the light stage's white
calibration reflector; normalised this way, captured skin gives ~0.2-0.6 (AvatarMe's and Ma et al.'s
separated specular maps). We use ~0.25 + 0.2 * oiliness on plain skin, up to ~0.6 on an oily T-zone,
less in pores and wrinkles, much less on hair. It is colourless and independent of skin tone: the
reflection happens at the surface, before light meets any pigment."""


@dataclass(frozen=True)
class SkinParams:
    """Interpretable parameters of one subject's skin. Ranges are in :data:`PARAM_RANGES`.

    Pigments (fractions by volume, as in tissue-optics models):

    * ``melanin``      epidermal melanin, 0.003-0.5: very light (Fitzpatrick I ~0.008) to very dark
      (VI ~0.36); see :data:`FITZPATRICK_MELANIN`;
    * ``haemoglobin``  dermal blood, 0.005-0.08 (typical 0.02): overall redness;
    * ``carotene``     0-1, yellowness (carotene / bilirubin absorb blue light);
    * ``cheek_flush``  0-1, extra blood on cheeks and nose.

    Marks and hair: ``freckles`` density 0-1; ``moles`` count 0-20; ``beard`` shadow density 0-1
    (0 = clean-shaven or no beard growth); ``hair_melanin`` 0 (blond) - 1 (black);
    ``hair_redness`` 0-1 (pheomelanin, red hair); ``scalp_hair`` 0 (bald) - 1 (short hair).

    Surface: ``age`` in years, 18-90 (wrinkle depth); ``oiliness`` 0-1 (specular strength);
    ``pore_size`` 0.5-2 and ``pore_density`` 0.5-1.5 (multipliers of typical pores).
    """

    melanin: float = 0.03
    haemoglobin: float = 0.02
    carotene: float = 0.3
    cheek_flush: float = 0.3
    freckles: float = 0.0
    moles: int = 3
    beard: float = 0.0
    hair_melanin: float = 0.6
    hair_redness: float = 0.1
    scalp_hair: float = 1.0
    age: float = 35.0
    oiliness: float = 0.4
    pore_size: float = 1.0
    pore_density: float = 1.0

    def __post_init__(self):
        for f in fields(self):
            lo, hi = PARAM_RANGES[f.name]
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"SkinParams.{f.name} must be in [{lo}, {hi}], got {value!r}")
        if not isinstance(self.moles, int):
            raise ValueError(f"SkinParams.moles must be an int in [0, 20], got {self.moles!r}")

    def replace(self, **changes) -> "SkinParams":
        return dataclasses.replace(self, **changes)

    @property
    def wrinkles(self) -> float:
        """Wrinkle depth factor 0 (age 20 and younger) - 1 (age ~75), growing faster with age."""
        return min(1.0, max(0.0, (self.age - 20.0) / 55.0)) ** 1.3


def skin_params_for_type(fitzpatrick: int, **changes) -> SkinParams:
    """Typical parameters for a Fitzpatrick skin type 1 (very light) - 6 (very dark).

    Hair is darker for darker skin and freckles are common only on types 1-2, as in most people;
    ``changes`` override any field, e.g. ``skin_params_for_type(6, beard=0.8)``.
    """
    if fitzpatrick not in FITZPATRICK_MELANIN:
        raise ValueError(f"fitzpatrick type must be an int in 1..6, got {fitzpatrick!r}")
    t = (fitzpatrick - 1) / 5
    base = dict(melanin=FITZPATRICK_MELANIN[fitzpatrick], carotene=0.2 + 0.2 * t,
                freckles=0.5 if fitzpatrick == 1 else (0.15 if fitzpatrick == 2 else 0.0),
                hair_melanin=0.35 + 0.65 * t, hair_redness=0.25 * (1 - t))
    base.update(changes)
    return SkinParams(**base)


def sample_skin_params(generator: torch.Generator | int) -> SkinParams:
    """Draw one subject from the population: all six Fitzpatrick types equally often.

    Melanin is the type's value times a log-normal spread (so tones overlap between types); hair is
    darker for darker skin; freckles mostly on light skin; about 45 % of subjects get a beard
    shadow and about 25 % are bald. Same generator state, same subject.
    """
    g = noise.as_generator(generator)
    u = torch.rand(16, generator=g, device=g.device).double().cpu().tolist()
    n = torch.randn(4, generator=g, device=g.device).double().cpu().tolist()
    fitz = 1 + min(5, int(u[0] * 6))
    tone = (fitz - 1) / 5

    def clip(name, x):
        lo, hi = PARAM_RANGES[name]
        return float(min(hi, max(lo, x)))

    light = 1.0 - tone
    return SkinParams(
        melanin=clip("melanin", FITZPATRICK_MELANIN[fitz] * math.exp(0.2 * n[0])),
        haemoglobin=clip("haemoglobin", 0.02 * math.exp(0.35 * n[1])),
        carotene=clip("carotene", 0.1 + 0.5 * u[1] + 0.2 * tone),
        cheek_flush=clip("cheek_flush", u[2] * (0.4 + 0.6 * light)),
        freckles=clip("freckles", (u[3] ** 2) * light**2 if u[4] < 0.5 * light + 0.1 else 0.0),
        moles=int(u[5] * 9),
        beard=clip("beard", 0.25 + 0.75 * u[7] if u[6] < 0.45 else 0.0),
        hair_melanin=clip("hair_melanin", 0.2 + 0.8 * tone + 0.35 * (u[8] - 0.5) * light),
        hair_redness=clip("hair_redness", (u[9] ** 3) * light),
        scalp_hair=clip("scalp_hair", 0.0 if u[10] < 0.25 else 0.6 + 0.4 * u[11]),
        age=clip("age", 18 + 62 * u[12]),
        oiliness=clip("oiliness", u[13]),
        pore_size=clip("pore_size", math.exp(0.25 * n[2])),
        pore_density=clip("pore_density", 1.0 + 0.2 * n[3]),
    )


# ----------------------------------------------------------------------------------------------
# Pigments -> colour: a two-layer absorption model, collapsed to linear RGB
# ----------------------------------------------------------------------------------------------

_LAMBDA_NM = tuple(range(400, 701, 10))
# Molar extinction of oxy- and deoxy-haemoglobin, cm^-1/M, 400..700 nm in 10 nm steps
# (values as compiled by S. Prahl, Oregon Medical Laser Center).
_EPS_HBO2 = (266232, 466840, 480360, 246072, 102580, 62816, 44480, 33209.2, 26629.2, 23684.4, 20932.8,
             20035.2, 24202.4, 39956.8, 53236, 43016, 32613.2, 44496, 50104, 14400.8, 3200, 1506, 942,
             610, 442, 368, 319.6, 294, 277.6, 276, 290)
_EPS_HB = (223296, 303956, 407560, 528600, 413280, 103292, 23388.8, 16156.4, 14550, 16684, 20862,
           25773.6, 31589.6, 39036.4, 46592, 53412, 53788, 45072, 37020, 28324.4, 14677.2, 9443.6,
           6509.6, 5148.8, 4345.2, 3750.12, 3226.56, 2795.12, 2407.92, 2051.96, 1794.28)
_OXYGENATION = 0.75  # fraction of oxy-haemoglobin in skin blood
_HB_MOLAR = 150.0 / 64500.0  # mol/L of haemoglobin in whole blood (150 g/L, 64.5 kg/mol)
_EPIDERMIS_PATH_CM = 0.023  # effective path through the epidermis, in and out, diffuse light
# Melanin: 497 cm^-1 at 550 nm (Jacques' 6.6e11 * lambda^-3.33 there), falling as lambda^-2.5. Inside a
# melanosome the slope is 3.33; packed in granules it acts flatter (the "sieve" effect). The slope,
# the two constants below and FITZPATRICK_MELANIN were fitted to typical skin-tone colours.
_MELANIN_550 = 497.0
_MELANIN_SLOPE = 2.5
_SURFACE_RETURN = 0.026  # light scattered back by the stratum corneum before it meets melanin
_DERMIS_SCATTER = 1.28  # scale of the dermis' reduced scattering, 45.6 cm^-1 at 500 nm (Jacques)
_CAROTENE_PEAK = 10.0  # cm^-1 at carotene = 1, absorption band around 465 nm


def cie_cmf(lam: torch.Tensor) -> torch.Tensor:
    """CIE 1931 2-degree colour matching functions ``(3, L)``: the analytic multi-lobe fit of
    Wyman, Sloan and Shirley (2013)."""

    def g(mu, s1, s2):
        s = torch.where(lam < mu, torch.full_like(lam, s1), torch.full_like(lam, s2))
        return torch.exp(-0.5 * ((lam - mu) / s) ** 2)

    x = 1.056 * g(599.8, 37.9, 31.0) + 0.362 * g(442.0, 16.0, 26.7) - 0.065 * g(501.1, 20.4, 26.2)
    y = 0.821 * g(568.8, 46.9, 40.5) + 0.286 * g(530.9, 16.3, 31.1)
    z = 1.217 * g(437.0, 11.8, 36.0) + 0.681 * g(459.0, 26.0, 13.8)
    return torch.stack([x, y, z])


XYZ_TO_LINEAR_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))


def skin_spectrum(melanin: torch.Tensor, haemoglobin: torch.Tensor, carotene: torch.Tensor,
                  lam_nm: torch.Tensor) -> torch.Tensor:
    """Diffuse reflectance spectrum of skin ``(..., L)`` for pigment fractions ``(...)``.

    Two layers (after Jacques 1998 and Donner & Jensen 2006, much simplified):

    * epidermis: Beer-Lambert transmission ``exp(-mu_a * path)`` with
      ``mu_a = melanin * 497 (lambda / 550)^-2.5 + carotene band + baseline tissue`` (cm^-1);
    * dermis: Kubelka-Munk reflectance of a thick scattering layer,
      ``R = 1 + K/S - sqrt((K/S)^2 + 2 K/S)``, with absorption ``K`` from blood (haemoglobin,
      75 % oxygenated) and scattering ``S`` ~ lambda^-1.5;
    * plus a small colourless part scattered back from the surface layer before any pigment.
    """
    lam = lam_nm.to(torch.float64)
    mel, hb, car = (t.to(torch.float64).unsqueeze(-1) for t in (melanin, haemoglobin, carotene))
    mu_melanin = _MELANIN_550 * (lam / 550.0) ** -_MELANIN_SLOPE
    mu_baseline = 0.244 + 85.3 * torch.exp(-(lam - 154.0) / 66.2)
    mu_carotene = _CAROTENE_PEAK * torch.exp(-0.5 * ((lam - 465.0) / 28.0) ** 2)
    mu_epidermis = mel * mu_melanin + car * mu_carotene + (1 - mel) * mu_baseline
    transmission = torch.exp(-mu_epidermis * _EPIDERMIS_PATH_CM)
    eps = (_OXYGENATION * torch.tensor(_EPS_HBO2, dtype=torch.float64, device=lam.device)
           + (1 - _OXYGENATION) * torch.tensor(_EPS_HB, dtype=torch.float64, device=lam.device))
    mu_blood = 2.303 * eps * _HB_MOLAR
    mu_dermis = hb * mu_blood + (1 - hb) * mu_baseline
    scatter = _DERMIS_SCATTER * 45.6 * (lam / 500.0) ** -1.5
    ks = 2.0 * mu_dermis / scatter
    dermis = 1 + ks - torch.sqrt(ks * ks + 2 * ks)
    return _SURFACE_RETURN + (1 - _SURFACE_RETURN) * transmission * dermis


def pigment_rgb(melanin, haemoglobin, carotene) -> torch.Tensor:
    """Linear RGB ``(..., 3)`` of skin with the given pigment fractions (tensors or floats).

    The spectrum of :func:`skin_spectrum` at 400-700 nm is integrated against the CIE 1931 colour
    matching functions under an equal-energy light, converted XYZ -> linear sRGB, and scaled so a
    perfect white reflector gives (1, 1, 1) - the same normalisation a light stage uses.
    """
    mel, hb, car = torch.broadcast_tensors(*(torch.as_tensor(t, dtype=torch.float64)
                                             for t in (melanin, haemoglobin, carotene)))
    lam = torch.tensor(_LAMBDA_NM, dtype=torch.float64, device=mel.device)
    cmf = cie_cmf(lam)
    m = torch.tensor(XYZ_TO_LINEAR_SRGB, dtype=torch.float64, device=mel.device)
    white = m @ cmf.sum(1)
    rgb = (skin_spectrum(mel, hb, car, lam) @ cmf.T) @ m.T / white
    return rgb.clamp(0, 1).float()


# The maps look colours up in a table over (log melanin, log haemoglobin, carotene): the spectral
# model runs on 64 x 48 x 5 pigment mixtures, not on every texel.
_LUT_MEL = (math.log(0.002), math.log(1.0), 64)
_LUT_HB = (math.log(0.002), math.log(0.4), 48)
_LUT_CAR = (0.0, 1.0, 5)


@functools.lru_cache(maxsize=1)
def _pigment_lut_cpu() -> torch.Tensor:
    mel = torch.linspace(*_LUT_MEL[:2], _LUT_MEL[2], dtype=torch.float64).exp()
    hb = torch.linspace(*_LUT_HB[:2], _LUT_HB[2], dtype=torch.float64).exp()
    car = torch.linspace(*_LUT_CAR[:2], _LUT_CAR[2], dtype=torch.float64)
    cc, hh, mm = torch.meshgrid(car, hb, mel, indexing="ij")
    return pigment_rgb(mm, hh, cc).permute(3, 0, 1, 2).contiguous()  # (3, car, hb, mel)


def _lookup_pigments(mel: torch.Tensor, hb: torch.Tensor, car: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` pigment maps -> ``(3, H, W)`` linear RGB by trilinear lookup in the table."""
    lut = _pigment_lut_cpu().to(mel.device).unsqueeze(0)  # (1, 3, D, H, W) for grid_sample

    def norm(x, lo, hi):
        return ((x - lo) / (hi - lo) * 2 - 1).clamp(-1, 1)

    H, W = mel.shape
    out = torch.empty(3, H, W, device=mel.device)
    rows = max(1, (1 << 21) // W)  # chunks keep the sampling grid small at 6144x4096
    for r0 in range(0, H, rows):
        sl = slice(r0, r0 + rows)
        grid = torch.stack([norm(mel[sl].clamp_min(1e-6).log(), *_LUT_MEL[:2]),
                            norm(hb[sl].clamp_min(1e-6).log(), *_LUT_HB[:2]),
                            norm(car[sl], *_LUT_CAR[:2])], -1)
        out[:, sl] = F.grid_sample(lut, grid[None, None], mode="bilinear", align_corners=True)[0, :, 0]
    return out


def hair_rgb(hair_melanin: float, hair_redness: float) -> tuple[float, float, float]:
    """Linear RGB of short hair: eumelanin and pheomelanin absorption, Beer-Lambert in RGB.

    Absorption per unit concentration from d'Eon et al. (2011): eumelanin (0.419, 0.697, 1.37),
    pheomelanin (0.187, 0.4, 1.05). ``hair_melanin`` 0-1 maps to eumelanin 0.1-8 (blond-black).
    """
    eu = 0.1 * 80.0**hair_melanin
    pheo = 1.5 * hair_redness
    sig_eu, sig_ph = (0.419, 0.697, 1.37), (0.187, 0.4, 1.05)
    # 0.02: light reflected at the hair's surface before it enters (why black hair is not black)
    return tuple(0.02 + 0.55 * math.exp(-2.0 * (eu * a + pheo * b)) for a, b in zip(sig_eu, sig_ph))


# ----------------------------------------------------------------------------------------------
# Physical scale
# ----------------------------------------------------------------------------------------------

#: Used when no position map is given: the 'face' region (weight > 0.5) is taken to be this wide
#: along the surface, temple to temple; without a face region the whole map is this many mm wide.
ASSUMED_FACE_WIDTH_MM = 200.0
ASSUMED_MAP_WIDTH_MM = 560.0


def texel_size_mm(mask: torch.Tensor, position: torch.Tensor | None = None,
                  regions: dict[str, torch.Tensor] | None = None) -> tuple[float, float]:
    """Size of one texel on the surface, ``(down the rows, along the columns)`` in mm.

    From ``position`` ``(3, H, W)`` metres: the median distance between neighbouring texels inside
    the mask (over the face region when there is one, where detail matters most). Without it: an
    assumed face width (:data:`ASSUMED_FACE_WIDTH_MM`) over the face region's width in texels, with
    square texels.
    """
    H, W = mask.shape
    face = regions.get("face") if regions else None
    if position is not None:
        if tuple(position.shape) != (3, H, W):
            raise ValueError(f"position must be (3, {H}, {W}) metres, got {tuple(position.shape)}")
        where = mask & (face > 0.5) if face is not None and bool(((face > 0.5) & mask).any()) else mask
        out = []
        for dim in (1, 2):
            step = (position.narrow(dim, 1, position.shape[dim] - 1)
                    - position.narrow(dim, 0, position.shape[dim] - 1)).norm(dim=0)
            ok = where.narrow(dim - 1, 1, where.shape[dim - 1] - 1) & where.narrow(dim - 1, 0, where.shape[dim - 1] - 1)
            if not bool(ok.any()):
                raise ValueError("position: the mask has no two neighbouring texels; cannot measure texel size")
            out.append(float(step[ok].median()) * 1000.0)
        if min(out) <= 0:
            raise ValueError("position: neighbouring texels share one position; cannot measure texel size")
        return out[0], out[1]
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
# Normals from height, and detail on top of a shape's normals
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Face landmarks read from the region maps
# ----------------------------------------------------------------------------------------------


@dataclass
class _Blob:
    row: float  # weighted centre, texels
    col: float
    top: float  # extent where weight > 0.5, texels
    bottom: float
    left: float
    right: float


def _blob(w: torch.Tensor, col_range: tuple[int, int] | None = None) -> _Blob | None:
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
    return _Blob(r, c, float(rows.min()), float(rows.max()) + 1, float(cols.min()), float(cols.max()) + 1)


def _landmarks(regions: dict[str, torch.Tensor], W: int) -> dict:
    """Centres and extents of the regions that wrinkles follow, in texels; missing ones are None."""
    out = {name: _blob(regions[name]) if name in regions else None for name in ("nose", "lips", "face", "neck")}
    mid = out["nose"].col if out["nose"] else (out["face"].col if out["face"] else W / 2)
    split = int(round(mid))
    for name in ("eyes", "brows", "irises"):
        for side, rng in (("l", (0, split)), ("r", (split, W))):
            out[f"{name}_{side}"] = _blob(regions[name], rng) if name in regions else None
    out["mid_col"] = mid
    return out


# ----------------------------------------------------------------------------------------------
# Small shape helpers (all in mm, on crops of the map)
# ----------------------------------------------------------------------------------------------


def _smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


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


# ----------------------------------------------------------------------------------------------
# The subject
# ----------------------------------------------------------------------------------------------

#: Region names this module reads (missing ones count as zero weight).
REGION_NAMES = ("face", "forehead", "nose", "cheeks", "lips", "chin", "under_eye", "eyes", "brows",
                "beard", "t_zone", "ears", "scalp", "neck", "mouth_interior", "eyeballs", "irises")

#: Depth of a typical pore's dimple, mm (x pore_size; nose pores 1.5x, cheek pores 1.3x). Facial pores
#: are ~0.05-0.1 mm deep (skin-replica profilometry); a map too coarse to hold one draws it shallower.
PORE_DEPTH_MM = 0.06

#: Specular albedo of the wet eyeball (tear film): much stronger than skin's ~0.2-0.6.
EYE_SPECULAR = 0.9

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
        texel_mm = texel_size_mm(mask, position.to(dev) if position is not None else None, regions)
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
    lm = _landmarks(regions, W)

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
    pores, pore_depth = _pores(params, R, (H, W), (ty, tx), g_pores, dev)
    pores = pores * (1 - hair_cover) * (1 - plain)  # hair hides the pores under it; none drawn on the neck
    height = -pore_depth * pores
    height = height + _fine_texture(params, R, (H, W), (ty, tx), g_fine, dev) * (1 - plain)
    wrinkles = _wrinkles(params, R, lm, (H, W), (ty, tx), g_wrinkle, dev)
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
        nose_tip = R("nose") * _smoothstep(nb.top + 0.55 * length, nb.bottom - 0.1 * length, rows)
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
    moles, mole_height = _moles(params, regions, mask, (ty, tx), g_mole)
    log_mel = log_mel + math.log(8.0) * moles
    height = ((height + mole_height) * skin).unsqueeze(0)
    melanin = log_mel.exp().clamp(max=0.95)
    haemoglobin = log_hb.exp().clamp(max=0.35)
    carotene = (params.carotene * (1 + 0.15 * mottle_car)).clamp(0, 1).expand(H, W)
    diffuse = _lookup_pigments(melanin, haemoglobin, carotene)
    # under the eyes the thin skin also shows the darker muscle below: a little less light overall
    diffuse = diffuse * (1 - 0.05 * R("under_eye"))
    # pores and wrinkle floors are partly hidden from the light stage's lights: a little darker
    wrinkle_floor = (wrinkles / (0.1 + 0.6 * age)).clamp(0, 1)
    diffuse = diffuse * (1 - 0.1 * pores - 0.1 * wrinkle_floor)
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
    blurred = noise.gaussian_blur(height, (SUBSURFACE_BLUR_MM / ty, SUBSURFACE_BLUR_MM / tx), mask)
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
        pupil = torch.maximum(pupil, (1 - _smoothstep(0.34, 0.44, r)) * near)
        fibres = 1 + 0.25 * torch.cos(23 * torch.atan2(dy, dx)) * torch.cos(7 * torch.atan2(dy, dx))
        limbal = 1 - 0.5 * _smoothstep(0.7, 1.0, r)
        radial = torch.where(near > 0, fibres * limbal, radial)
    out = out + (iris_rgb * radial.unsqueeze(0) - out) * iris.unsqueeze(0)
    out = out + (0.012 - out) * (pupil * iris).unsqueeze(0)
    return out.clamp(0, 1)


def _pores(params: SkinParams, R, hw, texel, gen, dev):
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


def _fine_texture(params: SkinParams, R, hw, texel, gen, dev):
    """Skin's fine relief (mm, < 0 in furrows): the polygonal network of skin lines and a faint
    crepe of random fine wrinkles, both deeper with age. Finer than ~3 texels they fade out."""
    ty, tx = texel
    t_mm = math.sqrt(ty * tx)
    g1, g2 = noise.split_generator(gen, 2)
    age = params.wrinkles
    out = torch.zeros(hw, device=dev)
    skin_w = (R("face") + R("neck") + R("ears") + R("scalp")).clamp(0, 1) * (1 - R("lips"))
    cell_mm = 0.45
    fade = _smoothstep(2.5, 5.0, torch.tensor(cell_mm / t_mm)).item()
    if fade > 0:
        edges = noise.cell_edges(hw, (cell_mm / ty, cell_mm / tx), g1, dev)
        out = out - fade * (0.006 + 0.01 * age) * torch.exp(-(edges / 0.08) ** 2)
    crepe_mm = 1.8
    fade = _smoothstep(2.0, 4.0, torch.tensor(crepe_mm / t_mm)).item()
    if fade > 0:
        n = noise.fractal_noise(hw, (crepe_mm / ty, 4 * crepe_mm / tx), g2, dev, octaves=2)
        out = out - fade * (0.004 + 0.02 * age) * torch.exp(-(n / 0.15) ** 2)
    return out * skin_w


def _moles(params: SkinParams, regions, mask, texel, gen):
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


def _wrinkles(params: SkinParams, R, lm, hw, texel, gen, dev):
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
            along = (_smoothstep(start, start + 3.0, r) * (1 - _smoothstep(0.6 * length, length, r))
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
                along = 1 - _smoothstep(3.0, 9.0 + 4 * age, (Y - c_row * ty).abs())
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
            env = _smoothstep(0.0, 0.15, along) * (1 - _smoothstep(0.7, 1.0, along))
            fold = (0.03 + 0.6 * age) * _line_profile(d, 1.8 + 1.7 * age, t_mm) * env
            crease = (0.02 + 0.2 * age) * _line_profile(d, 0.45, t_mm) * env  # the sharp line in the fold
            out[rs, cs] = out[rs, cs] + (fold + crease) * (1 - R("lips")[rs, cs])
    return out


# ----------------------------------------------------------------------------------------------
# Teaching helpers: a stand-in face layout and a flat shaded preview
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


def flat_preview(maps: SkinMaps, light: tuple[float, float, float] = (-0.55, 0.5, 0.67),
                 shininess: float = 40.0, ambient: float = 0.1, intensity: float = 1.0) -> torch.Tensor:
    """Shade the maps as if the UV map were a flat sheet seen from +z: linear RGB ``(3, H, W)``.

    Lambert with the diffuse detail normals plus Blinn-Phong (normalised, ``(p + 8) / 8``) with the
    specular detail normals, one white light from the tangent-space direction ``light``. Good for
    checking that pores, wrinkles and the specular map look right before any head is rendered.
    """
    lvec = F.normalize(torch.tensor(light, dtype=torch.float32, device=maps.mask.device), dim=0).view(3, 1, 1)
    view = torch.tensor([0.0, 0.0, 1.0], device=maps.mask.device).view(3, 1, 1)
    half = F.normalize(lvec + view, dim=0)
    nd, ns = maps.diffuse_detail_normals, maps.specular_detail_normals
    lambert = (nd * lvec).sum(0, keepdim=True).clamp_min(0)
    blinn = (ns * half).sum(0, keepdim=True).clamp_min(0) ** shininess * (shininess + 8) / 8
    specular = maps.specular_albedo * blinn * (ns * lvec).sum(0, keepdim=True).clamp_min(0)
    out = intensity * (maps.diffuse_albedo * lambert + specular) + ambient * maps.diffuse_albedo
    return (out * maps.mask).clamp(0, 1)
