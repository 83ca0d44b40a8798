"""Photos as a new user brings them, made from the committed ones, through ``reconstruct``: does each give an
avatar, how long does it take, and how far is the head (photo pose, new light) from its photo by dlib?

The variants: two people side by side (a group photo: the larger face is taken, with a note), a 150x150 face
chip, the astronaut upscaled to 4096x4096, rotated by 20 degrees, cut off at the photo's left edge, a dark
underexposed photo, and a mirrored one. Each is written to a temporary folder as a JPEG and read back as a
user's file would be.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_new_user_photos.py [--out results.json]`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

PHOTOS = Path(__file__).resolve().parents[1] / "data_samples" / "photos"


def variants() -> dict[str, Image.Image]:
    """Name -> RGB image: the photos a new user might bring, made from the committed ones."""
    def load(name):
        return Image.open(PHOTOS / f"{name}.jpg").convert("RGB")

    obama, biden, astronaut, obama9 = load("obama_2012"), load("biden_2010"), load("astronaut"), load("obama_2009")
    group = Image.new("RGB", (obama.width + biden.width // 2, max(obama.height, biden.height)), (90, 90, 90))
    group.paste(obama, (0, 0))
    group.paste(biden.resize((biden.width // 2, biden.height // 2)), (obama.width, 40))
    w, h = obama9.size
    chip = obama9.crop((w // 4, int(h * 0.15), 3 * w // 4, int(h * 0.15) + w // 2)).resize((150, 150), Image.LANCZOS)
    dark = Image.fromarray((255 * 0.6 * (np.asarray(obama, np.float32) / 255) ** 1.8).astype(np.uint8))
    return {"group of two": group, "150x150 face chip": chip,
            "4096x4096": astronaut.resize((4096, 4096), Image.BICUBIC),
            "rotated 20 degrees": astronaut.rotate(20, resample=Image.BICUBIC, fillcolor=(128, 128, 128)),
            "cut at the edge": astronaut.crop((astronaut.width // 5, 0, astronaut.width, astronaut.height)),
            "dark, underexposed": dark, "mirrored": ImageOps.mirror(obama9)}


def main() -> None:
    import torch

    from avatarme_edu.pipeline import reconstruct
    from avatarme_edu.profiles import get_profile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="JSON of the rows")
    args = parser.parse_args()
    profile = get_profile("cpu", device="cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, image in variants().items():
            path = Path(tmp) / f"{name.replace(' ', '_').replace(',', '')}.jpg"
            image.save(path, quality=92)
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    avatar = reconstruct(path, profile, progress=False)
                row = {"photo": name, "size": list(image.size), "ok": True,
                       "distance": avatar.report["identity"]["distance"], "notes": avatar.report["notes"]}
            except ValueError as error:  # what a user would read: one line
                row = {"photo": name, "size": list(image.size), "ok": False, "error": str(error)}
            row["time_s"] = round(time.perf_counter() - t0, 1)
            row["torch_threads"] = torch.get_num_threads()
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| photo | size | avatar | dlib distance to its photo (same person below 0.6) | time | notes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        what = "yes" if r["ok"] else f"no: {r['error']}"
        dist = "" if not r["ok"] or r["distance"] is None else f"{r['distance']:.3f}"
        print(f"| {r['photo']} | {r['size'][0]}x{r['size'][1]} | {what} | {dist} | {r['time_s']} s | "
              f"{'; '.join(r.get('notes', []))} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
