"""Skin colour from pigments: a two-layer absorption model, collapsed to linear RGB.

* :func:`skin_spectrum`: the diffuse reflectance spectrum of skin with given fractions of melanin
  (epidermis), haemoglobin (dermis) and carotene - Beer-Lambert absorption in the epidermis over a
  Kubelka-Munk dermis (after Jacques 1998 and Donner & Jensen 2006, much simplified);
* :func:`pigment_rgb`: that spectrum integrated against the CIE 1931 colour matching functions
  (:func:`~avatarme_edu.color.cie_cmf`) and turned into linear sRGB, white reflector = (1, 1, 1);
* :func:`lookup_pigments`: the same for whole ``(H, W)`` pigment maps, through a cached colour table;
* :func:`hair_rgb`: the colour of short hair from eumelanin and pheomelanin.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from avatarme_edu.color import XYZ_TO_LINEAR_SRGB, cie_cmf

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


def lookup_pigments(mel: torch.Tensor, hb: torch.Tensor, car: torch.Tensor) -> torch.Tensor:
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
