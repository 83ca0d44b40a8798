"""How well can ANY network predict the specular albedo from the diffuse albedo? An upper bound.

The skin painter draws ``oiliness`` (the specular strength) from pore size, age and beard, which the
diffuse albedo shows, plus a small chance part, which it does not (``lightstage/skin_params.py``,
:func:`oiliness_from_traits`). So ψ(A_D) can at best predict the specular map *averaged over that
chance part*, with every other random choice (regions, pores, wrinkles, hair, the specular noise)
known exactly. This script paints each held-out subject's skin again at 11 values of the chance part
with the same random streams, averages them, and compares that oracle - the training-set ``mean_map``
baseline, and the oracle that knows nothing of oiliness (averaged over its whole range) - with the
true specular albedo.

    python benchmarks/specular_albedo_bound.py --seeds 4 9 14 19 24
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from avatarme_edu.evaluation import load_training_means
from avatarme_edu.geometry.head import load_eduhead
from avatarme_edu.lightstage import subjects as S
from avatarme_edu.lightstage.skin import skin_reflectance, skin_texel_mm
from avatarme_edu.lightstage.skin_params import PARAM_RANGES, oiliness_from_traits, sample_skin_params
from avatarme_edu.metrics import psnr
from avatarme_edu.profiles import get_profile
from avatarme_edu.resources import data_path


def oracle_specular(seed: int, profile, head, n: int = 11):
    """(true A_S, E[A_S | all but oiliness's chance part], E[A_S | all but oiliness], mask) for subject
    ``seed``, ``(1, H, W)`` each."""
    g_identity, g_params, _ = S._streams(seed)
    identity = S._sample_identity(head, g_identity)
    params = sample_skin_params(g_params)
    neutral = head.mesh(identity, "neutral")
    hw = tuple(profile.map_hw)
    fragments = S.uv_fragments_for(neutral, hw)
    regions = S.bake_regions(fragments, neutral.faces, head.vertex_regions())
    position = S.interpolate(fragments, neutral.vertices.detach().float(), neutral.faces)
    texel = skin_texel_mm(fragments.mask, position, regions)

    def paint(p):
        return skin_reflectance(regions, fragments.mask, p, S._streams(seed)[2], texel_mm=texel).specular_albedo

    lo, hi = PARAM_RANGES["oiliness"]

    def oily(chance):
        x = oiliness_from_traits(params.pore_size, params.age, params.beard > 0, chance)
        return dataclasses.replace(params, oiliness=min(hi, max(lo, x)))

    truth = paint(params)
    traits = sum(paint(oily((i + 0.5) / n)) for i in range(n)) / n
    blind = sum(paint(dataclasses.replace(params, oiliness=(i + 0.5) / n)) for i in range(n)) / n
    return truth, traits, blind, fragments.mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[4, 9, 14, 19, 24])
    args = ap.parse_args()
    profile = get_profile("cpu", device="cpu")
    head = load_eduhead()
    means = load_training_means(data_path("weights", "cpu"), profile)
    rows = []
    for seed in args.seeds:
        truth, traits, blind, mask = oracle_specular(seed, profile, head)
        base = means["specular_albedo_map"] * mask
        rows.append((psnr(base, truth, mask), psnr(traits, truth, mask), psnr(blind, truth, mask)))
        print(f"seed {seed}: mean_map {rows[-1][0]:.2f} dB, oracle knowing the traits {rows[-1][1]:.2f} dB, "
              f"oracle blind to oiliness {rows[-1][2]:.2f} dB")
    b, o, z = (sum(r[i] for r in rows) / len(rows) for i in range(3))
    print(f"mean: mean_map {b:.2f} dB, oracle knowing the traits {o:.2f} dB ({o - b:+.2f} dB), "
          f"oracle blind to oiliness {z:.2f} dB ({z - b:+.2f} dB)")


if __name__ == "__main__":
    main()
