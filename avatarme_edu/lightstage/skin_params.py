"""The parameters of one virtual light-stage subject's skin, and the population they are drawn from."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

import torch

from avatarme_edu.lightstage import noise

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
#: :func:`~avatarme_edu.lightstage.pigments.pigment_rgb` gives typical skin-tone colours (sRGB ~(224, 200, 176) for I to ~(72, 51, 44) for VI).
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


def oiliness_from_traits(pore_size: float, age: float, bearded: bool, chance: float) -> float:
    """Oiliness (before clipping to its range) from the traits that set sebum output: + pore size
    (its log, standardised), - age (-1 at 18 .. +1 at 80), + men (a beard shadow), + ``chance`` in [0, 1]
    (about 5 % of the variance). See :func:`sample_skin_params`."""
    pore_z = math.log(pore_size) / 0.25
    return 0.5 + 0.2 * pore_z - 0.2 * (age - 49) / 31 + (0.1 if bearded else -0.1) + 0.2 * (chance - 0.5)


def sample_skin_params(generator: torch.Generator | int) -> SkinParams:
    """Draw one subject from the population: all six Fitzpatrick types equally often.

    Melanin is the type's value times a log-normal spread (so tones overlap between types); hair is
    darker for darker skin; freckles mostly on light skin; about 45 % of subjects get a beard
    shadow and about 25 % are bald. Same generator state, same subject.

    Oiliness (the specular strength) follows what the diffuse albedo shows, as sebum output does on
    real skin: it rises with pore size (Roh et al. 2006, sebum output and facial pore size), falls
    with age (Pochi et al. 1979) and is higher on men (here: subjects with a beard shadow); a small
    part (about 5 % of its variance) is left to chance. Drawn independently of everything else, it
    could not be inferred from A_D at all, and AvatarMe's specular-albedo network ψ(A_D) would
    have nothing to learn but the mean map.
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
    age, bearded = 18 + 62 * u[12], u[6] < 0.45
    oiliness = oiliness_from_traits(math.exp(0.25 * n[2]), age, bearded, u[13])  # n[2]: log pore size
    return SkinParams(
        melanin=clip("melanin", FITZPATRICK_MELANIN[fitz] * math.exp(0.2 * n[0])),
        haemoglobin=clip("haemoglobin", 0.02 * math.exp(0.35 * n[1])),
        carotene=clip("carotene", 0.1 + 0.5 * u[1] + 0.2 * tone),
        cheek_flush=clip("cheek_flush", u[2] * (0.4 + 0.6 * light)),
        freckles=clip("freckles", (u[3] ** 2) * light**2 if u[4] < 0.5 * light + 0.1 else 0.0),
        moles=int(u[5] * 9),
        beard=clip("beard", 0.25 + 0.75 * u[7] if bearded else 0.0),
        hair_melanin=clip("hair_melanin", 0.2 + 0.8 * tone + 0.35 * (u[8] - 0.5) * light),
        hair_redness=clip("hair_redness", (u[9] ** 3) * light),
        scalp_hair=clip("scalp_hair", 0.0 if u[10] < 0.25 else 0.6 + 0.4 * u[11]),
        age=clip("age", age),
        oiliness=clip("oiliness", oiliness),
        pore_size=clip("pore_size", math.exp(0.25 * n[2])),
        pore_density=clip("pore_density", 1.0 + 0.2 * n[3]),
    )
