"""Does δ(T̂, D_O) read the subject's depth, or only where a texel is? D_O swapped at inference.

The issue asks for the paper's finding that shape helps de-lighting; here δ(T̂) beats δ(T̂, D_O) on
held-out maps (``results/reflectance.md``). This asks the committed δ(T̂, D_O) what it takes from D_O: the
held-out subject's texture with, as the depth input,

* ``own``: the subject's own D_O (what ``evaluate`` scores);
* ``mean``: the mean D_O of the seeds given (the same map for everyone);
* ``other``: the next seed's D_O (another head);
* ``constant``: one value, the subject's mean depth (no position left in it);

and δ(T̂) (``no_shape``) beside them. If ``own``, ``mean`` and ``other`` agree while ``constant`` drops,
the network uses D_O as a code for the UV position, not as the subject's shape.

    python benchmarks/delight_depth_use.py [--seeds 29 34 ... 99]

Measured with the committed weights of 2026-12-07 (mean PSNR of A_D, dB):

| seeds | own | mean | other | constant | no_shape |
|---|---|---|---|---|---|
| 29 ... 99 (15 decision seeds) | 23.76 | 23.72 | 23.70 | 21.82 | 26.52 |
| 4 9 14 19 24 (fixed) | 23.00 | 23.03 | 23.05 | 23.78 | 27.83 |
| 104 ... 149 (10 fresh) | 25.45 | 25.47 | 25.48 | 24.50 | 27.34 |

The subject's own depth is worth nothing (within 0.05 dB of anyone's); D_O differs from the mean map by
0.006-0.009 (rms) against a spread of 0.24 within one map.
"""

from __future__ import annotations

import argparse
import types

import torch


def main() -> None:
    from avatarme_edu import stages
    from avatarme_edu.evaluation import held_out_subject
    from avatarme_edu.metrics import psnr
    from avatarme_edu.profiles import get_profile

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(29, 100, 5)),
                    help="held-out seeds (default: the 15 decision seeds 29 ... 99)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    profile = get_profile("cpu", "cpu")
    try:
        subjects = {s: held_out_subject(s, profile) for s in args.seeds}
    except ValueError as err:  # a training identity
        raise SystemExit(f"delight_depth_use: error: {err}") from None
    depths = torch.stack([subjects[s][0].shape.depth for s in args.seeds])
    mean_depth = depths.mean(0)
    rows: dict[str, list[float]] = {k: [] for k in ("own", "mean", "other", "constant", "no_shape")}
    for i, seed in enumerate(args.seeds):
        subject, wild = subjects[seed]
        shape, mask = subject.shape, subject.reflectance.mask.bool()
        albedo = subject.reflectance.diffuse_albedo

        def score(depth: torch.Tensor | None) -> float:
            if depth is None:
                return psnr(stages.delight(wild.high, shape, profile, variant="no_shape").clamp(0, 1), albedo, mask)
            swapped = types.SimpleNamespace(depth=depth, normals_object=shape.normals_object, mask=shape.mask,
                                            hw=shape.hw)
            return psnr(stages.delight(wild.high, swapped, profile, variant="depth").clamp(0, 1), albedo, mask)

        other = subjects[args.seeds[(i + 1) % len(args.seeds)]][0].shape.depth
        constant = torch.full_like(shape.depth, float(shape.depth[:, mask].mean()))
        for name, depth in (("own", shape.depth), ("mean", mean_depth), ("other", other), ("constant", constant),
                            ("no_shape", None)):
            rows[name].append(score(depth))
        print(seed, {k: round(v[-1], 2) for k, v in rows.items()}, flush=True)
    print("| D_O input | " + " | ".join(rows) + " |\n" + "|---" * (len(rows) + 1) + "|")
    print("| mean PSNR (dB) | " + " | ".join(f"{sum(v) / len(v):.2f}" for v in rows.values()) + " |")
    deviation = float((depths - mean_depth).square().mean().sqrt())
    spread = float(depths.std(dim=(-2, -1)).mean())
    print(f"D_O across subjects: {deviation:.4f} rms from the mean map; spread within one map {spread:.4f}")


if __name__ == "__main__":
    main()
