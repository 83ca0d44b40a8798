"""Does a de-lighter keep the brows? δ(T̂) on held-out subjects' sharp textures, brows against the skin around.

On real photos δ's albedo loses the brows (README, "One photo in"), and brows are much of what makes a face
someone's. This measures, per weights file, on held-out virtual subjects, where the truth is known:

* ``face_db``: A_D PSNR over the face (from the sharp texture, as ``evaluate`` scores ``no_shape``);
* ``brows_db``: A_D PSNR over the subject's brows;
* ``contrast``: how much darker the brows are than the skin around them, ``1 - lum(brows) / lum(ring)``,
  for the truth and for δ's answer (the ring: skin within 4 mm of the brows, not the lids);
* ``darkened``: the same texture with its brows darkened three times (a darker-browed person); the
  contrast δ gives them, against the truth's, darkened the same way.

    python benchmarks/delight_brows.py --weights FILE [FILE ...] [--seeds 29 34 ... 99]

Measured on 2026-12-07, 15 decision seeds 29 ... 99 (``results/reflectance_training.md``, "Brows"):

| δ(T̂) | A_D face dB | A_D brows dB | brow contrast (truth 0.233) | darkened brows (truth 0.744) |
|---|---|---|---|---|
| committed | 26.61 | 27.40 | 0.095 | 0.317 |
| L1 alone, same 30 minutes | 25.90 | 25.08 | 0.067 | 0.257 |
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F


def brow_maps(subject) -> tuple[torch.Tensor, torch.Tensor]:
    """``(brows, ring)`` ``(H, W)`` bool: the subject's brows, and the skin within 4 mm around them."""
    r = subject.regions
    ty, tx = subject.texel_mm
    brows = r["brows"]
    reach = int(round(4.0 / min(ty, tx)))
    near = F.max_pool2d(brows[None, None], 2 * reach + 1, 1, reach)[0, 0]
    skin = (r["face"] > 0.5) & (r["eyes"] < 0.1) & (r.get("scalp", torch.zeros_like(brows)) < 0.1)
    return brows > 0.5, (near > 0.5) & (brows < 0.05) & skin


def contrast(albedo: torch.Tensor, brows: torch.Tensor, ring: torch.Tensor) -> float:
    from avatarme_edu.color import luminance

    y = luminance(albedo)[0]
    return 1.0 - float(y[brows].mean() / y[ring].mean().clamp_min(1e-6))


def main() -> None:
    from avatarme_edu import stages
    from avatarme_edu.evaluation import held_out_subject
    from avatarme_edu.metrics import psnr
    from avatarme_edu.profiles import get_profile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", required=True, help="δ(T̂) weights files to compare")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(29, 100, 5)))
    parser.add_argument("--out", default=None, help="JSON of the per-seed numbers")
    args = parser.parse_args()
    profile = get_profile("cpu", device="cpu")
    rows = []
    for seed in args.seeds:
        subject, wild = held_out_subject(seed, profile)
        truth, texture = subject.reflectance.diffuse_albedo, wild.high
        face = (subject.regions["face"] > 0.5) & subject.reflectance.mask.bool()
        brows, ring = brow_maps(subject)
        dark = 1 - (2 / 3) * brows.float()  # the brows three times darker, in the texture and in the truth
        row = {"seed": seed, "truth_contrast": contrast(truth, brows, ring),
               "truth_contrast_darkened": contrast(truth * dark, brows, ring)}
        for w in args.weights:
            a = stages.delight(texture, subject.shape, profile, w, "no_shape")  # the stages run without gradients
            a_dark = stages.delight(texture * dark, subject.shape, profile, w, "no_shape")
            row[w] = {"face_db": psnr(a, truth, face), "brows_db": psnr(a, truth, brows),
                      "contrast": contrast(a, brows, ring), "contrast_darkened": contrast(a_dark, brows, ring)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"\n{len(rows)} held-out subjects; brow contrast of the truth {mean([r['truth_contrast'] for r in rows]):.3f}, "
          f"darkened {mean([r['truth_contrast_darkened'] for r in rows]):.3f}\n")
    print("| weights | A_D face dB | A_D brows dB | brow contrast | darkened brows' contrast |")
    print("|---|---|---|---|---|")
    for w in args.weights:
        m = {k: mean([r[w][k] for r in rows]) for k in ("face_db", "brows_db", "contrast", "contrast_darkened")}
        print(f"| {w} | {m['face_db']:.2f} | {m['brows_db']:.2f} | {m['contrast']:.3f} | {m['contrast_darkened']:.3f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
