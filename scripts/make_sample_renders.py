"""Render the synthetic sample photos of data_samples/photos (subjects of the virtual light stage).

Run: ``.venv/bin/python scripts/make_sample_renders.py``  (about 30 s on a laptop CPU)

Each subject of the virtual light stage (EduHead identity ``seed`` with its ground-truth skin) is
rendered under the studio lights on a grey background, 384x384, and saved as
``synthetic_{seed:04d}_{view}.jpg``: stand-ins for photos whose true shape and reflectance are known,
for the fitting stage's synthetic check.
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data_samples" / "photos"
RENDERS = {0: ("front", "three_quarter"), 1: ("front",), 2: ("front",)}


def main() -> None:
    from PIL import Image

    from avatarme_edu.lightstage.subjects import make_subject
    from avatarme_edu.profiles import get_profile
    from avatarme_edu.render.lights import studio
    from avatarme_edu.render.views import turntable

    profile = get_profile("cpu")
    for seed, views in RENDERS.items():
        s = make_subject(seed, profile)
        v = turntable(s.mesh, s.shape, s.reflectance, studio(), views=views, hw=(384, 384),
                      background=(0.55, 0.55, 0.55))
        srgb = (v["srgb"].clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for image, name in zip(srgb, v["names"]):
            path = OUT / f"synthetic_{seed:04d}_{name}.jpg"
            Image.fromarray(image).save(path, quality=92)
            print(path)


if __name__ == "__main__":
    main()
