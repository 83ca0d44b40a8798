"""Reconstruct the committed photos and measure: time per stage, and whether the avatar still looks like
its person to dlib's face descriptor (the head rendered in the photo's pose under a new frontal key light,
against the photo itself and against the other people's photos).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_reconstruct.py [--out results.json] [--weights DIR]`` (about
2 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

PHOTOS = Path(__file__).resolve().parents[1] / "data_samples" / "photos"
NAMES = ("astronaut", "obama_2012", "obama_2009", "obama_2010", "biden_2010")
PERSON = {"astronaut": "collins", "obama_2012": "obama", "obama_2009": "obama", "obama_2010": "obama",
          "biden_2010": "biden"}


def main() -> None:
    import torch

    from avatarme_edu.fitting.fit_report import dlib_distance
    from avatarme_edu.fitting.landmarks import detect_face
    from avatarme_edu.maps_io import load_photo
    from avatarme_edu.pipeline import photo_pose_render, reconstruct
    from avatarme_edu.profiles import get_profile

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--weights", default=None, help="folder of <network>.safetensors (default: the committed)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    profile = get_profile(args.profile)
    photos = {n: load_photo(PHOTOS / f"{n}.jpg") for n in NAMES}
    faces = {n: detect_face(p).landmarks for n, p in photos.items()}
    rows = []
    for name in NAMES:
        avatar = reconstruct(PHOTOS / f"{name}.jpg", profile, weights=args.weights, progress=False)
        render, _ = photo_pose_render((avatar.head_mesh, avatar.head_shape, avatar.head_maps), avatar.fit)
        # the render against every photo (each photo's own landmarks): own person vs other people
        to_photo = {other: round(dlib_distance(photos[other], faces[other], render)[0], 4) for other in NAMES}
        same = [d for o, d in to_photo.items() if PERSON[o] == PERSON[name]]
        different = [d for o, d in to_photo.items() if PERSON[o] != PERSON[name]]
        rows.append({"photo": name, "identity_distance_own_crop": avatar.report["identity"]["distance"],
                     "distance_to_photos": to_photo, "closest_same_person": min(same),
                     "closest_other_person": min(different), "time_s": avatar.report["time_s"],
                     "torch_threads": torch.get_num_threads(), "load_avg": os.getloadavg()[0]})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| photo | dlib distance photo vs render (own crop) | closest photo of the same person | closest other person | reconstruct time |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['photo']} | {r['identity_distance_own_crop']:.3f} | {r['closest_same_person']:.3f} | "
              f"{r['closest_other_person']:.3f} | {r['time_s']['total']:.1f} s (load {r['load_avg']:.1f}) |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
