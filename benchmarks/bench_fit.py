"""Fit the committed photos and measure: landmark error, photometric error, dlib identity distances,
time per stage; the cross-photo check (Obama fitted on one photo, rendered in the pose of another:
does dlib still say "same person"? Biden's photo as the negative control;
``avatarme_edu.fitting.cross_photo``, what ``avatarme-edu same-person`` runs); free-form offset on/off.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_fit.py [--out results.json]`` (a few minutes; options: the
identity loss, ``--set FIELD=VALUE`` for other ``FitConfig`` fields).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

PHOTOS = Path(__file__).resolve().parents[1] / "data_samples" / "photos"
NAMES = ("astronaut", "obama_2012", "obama_2009", "obama_2010", "biden_2010")


def main() -> None:
    import torch

    from avatarme_edu.fitting.cross_photo import cross_photo_distance
    from avatarme_edu.fitting.fit import fit
    from avatarme_edu.fitting.fit_stages import FitConfig
    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.profiles import get_profile

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--names", nargs="+", default=list(NAMES))
    parser.add_argument("--no-offset-compare", action="store_true")
    parser.add_argument("--w-identity", type=float, default=None, help="identity-loss weight (default the fit's)")
    parser.add_argument("--identity-every", type=int, default=None, help="identity loss every N steps")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="other FitConfig fields, e.g. --set w_landmark=0.3 mirror_fill=1")
    args = parser.parse_args()
    profile = get_profile("cpu", device="cpu")
    head = load_eduhead()
    out = {"load_average_at_start": os.getloadavg(), "threads": torch.get_num_threads(),
           "config": {"w_identity": args.w_identity, "identity_every": args.identity_every, "set": args.set},
           "photos": {}}
    fits = {}
    for name in args.names:
        for free_form in ((False, True) if not args.no_offset_compare and name != "biden_2010" else (False,)):
            t0 = time.perf_counter()
            config = FitConfig(free_form=free_form)
            if args.w_identity is not None:
                config.w_identity = args.w_identity
            if args.identity_every is not None:
                config.identity_every = args.identity_every
            for item in args.set:
                key, value = item.split("=", 1)
                setattr(config, key, type(getattr(config, key))(float(value)))
            res = fit(PHOTOS / f"{name}.jpg", profile, config=config, progress=False, head=head)
            key = f"{name} (offset)" if free_form else name
            out["photos"][key] = {**res.report, "wall_s": round(time.perf_counter() - t0, 1),
                                  "load_average": os.getloadavg()[0]}
            print(key, json.dumps(out["photos"][key]), flush=True)
            if not free_form:
                fits[name] = res
    cross = {}
    for a in ("obama_2012", "obama_2009", "obama_2010"):
        for b in ("obama_2012", "obama_2009", "obama_2010", "biden_2010"):
            if a == b or a not in fits or b not in fits:
                continue
            row = cross_photo_distance(fits[a], fits[b], head)
            cross[f"{a} rendered in the pose of {b}"] = {"dlib_distance_to_photo": row["distance"],
                                                         "same_person": row["same_person"],
                                                         "photo_distance": row["photo_distance"],
                                                         "found_by": row["found_by"]}
            print(a, "->", b, cross[f"{a} rendered in the pose of {b}"], flush=True)
    out["cross_photo"] = cross
    same = [v["dlib_distance_to_photo"] for k, v in cross.items() if "biden" not in k]
    out["cross_photo_summary"] = {"obama_pairs_below_0.6": sum(d < 0.6 for d in same), "obama_pairs": len(same),
                                  "mean_distance": round(sum(same) / max(1, len(same)), 4)}
    print(out["cross_photo_summary"])
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
