"""The dlib face-recognition port: accuracy against dlib itself and speed, on the committed photos.

Run: ``.venv/bin/python benchmarks/bench_identity.py``

For each photo of ``data_samples/photos``: the 128-D descriptor of dlib's
``compute_face_descriptor`` against the torch port fed (a) dlib's own 150x150 chip and (b) our
differentiable torch chip; then every pair's distance (same person below 0.6), then timings
(best of a few repeats, CPU, the torch threads this process has).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[1] / "data_samples" / "photos"


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    import dlib

    from avatarme_edu.fitting.dlib_models import FACE_RECOGNITION, model_path
    from avatarme_edu.fitting.dlib_serialize import read_file
    from avatarme_edu.fitting.face_align import face_chip
    from avatarme_edu.fitting.identity import DlibFaceNet, face_recognition_layout
    from avatarme_edu.fitting.landmarks import detect_face

    path = model_path(FACE_RECOGNITION)
    t_parse = best_of(lambda: read_file(path, face_recognition_layout()), 3)
    t_build = best_of(lambda: DlibFaceNet(read_file(path, face_recognition_layout())), 3)
    net = DlibFaceNet(read_file(path, face_recognition_layout()))
    rec = dlib.face_recognition_model_v1(str(path))
    desc = {}
    print(f"{'photo':16s} {'|port - dlib|':>14s} {'cosine':>12s} {'|torch chip - dlib|':>20s}")
    for f in sorted(PHOTOS.glob("*.jpg")):
        img = np.array(Image.open(f).convert("RGB"))
        face = detect_face(img)
        shape = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1),
                                           dlib.points([dlib.point(int(x), int(y)) for x, y in face.landmarks]))
        ref = np.array(rec.compute_face_descriptor(img, shape, 0, 0.25))
        chip = torch.from_numpy(dlib.get_face_chip(img, shape, 150, 0.25)).permute(2, 0, 1)[None].float() / 255
        image = torch.from_numpy(img).permute(2, 0, 1).float() / 255
        with torch.no_grad():
            port = net(chip)[0].double().numpy()
            ours = net(face_chip(image, torch.from_numpy(face.landmarks)))[0].double().numpy()
        cos = port @ ref / np.linalg.norm(port) / np.linalg.norm(ref)
        print(f"{f.stem:16s} {np.linalg.norm(port - ref):14.2e} {cos:12.9f} {np.linalg.norm(ours - ref):20.4f}")
        desc[f.stem] = (ref, port)
    print("\npair distances (dlib / port); same person below 0.6")
    for a, b in itertools.combinations(sorted(desc), 2):
        d_ref, d_port = (np.linalg.norm(desc[a][i] - desc[b][i]) for i in (0, 1))
        print(f"  {a:14s} {b:14s} {d_ref:.4f} / {d_port:.4f}  {'same' if d_port < 0.6 else 'different'}")
    x = torch.rand(1, 3, 150, 150)
    x16 = torch.rand(16, 3, 150, 150)
    with torch.no_grad():
        t1 = best_of(lambda: net(x))
        t16 = best_of(lambda: net(x16), 3)
    print(f"\nparse the .dat file: {t_parse:.3f} s, with building the torch module: {t_build:.3f} s; "
          f"forward per 150x150 chip: {1e3 * t1:.1f} ms alone, "
          f"{1e3 * t16 / 16:.1f} ms in a batch of 16 ({torch.get_num_threads()} torch threads)")


if __name__ == "__main__":
    main()
