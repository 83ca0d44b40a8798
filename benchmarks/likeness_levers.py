"""Where does the reconstructed head lose its likeness? One thing swapped at a time, on the committed photos.

``bench_reconstruct.py`` asks dlib how far each photo is from its head, rendered in the photo's pose under
a new soft light. This reconstructs each photo once and measures the same distance (the report's
``identity``: photo crop against the rendering, both at twice the fit's crop size) with one part of the
chain swapped; same person below 0.6:

* ``as_is``: the pipeline's head (what ``report.json`` says);
* ``sr_bicubic``: T̂ bicubically enlarged from the fitted texture instead of RCAN's answer;
* ``sr_detail``: T̂ from the fit's 2x unwrap (``FitResult.texture_detail``), bicubic to the maps' size:
  the photo's own detail where RCAN would invent it;
* ``lit_texture``: the super-resolved *lit* texture T̂ itself as the diffuse albedo (no de-lighting: the
  likeness the photo's pixels carry, light and all - an upper reference, not an albedo);
* ``delight_gain_smoothed``: δ's light gain ``T̂ / A_D`` blurred over ``--sigma`` map texels, so the albedo
  keeps the texture's mid-scale detail (brows, lids, lip line - and the photo's fine shading);
* ``uniform_light``: the head under a uniform white environment instead of the key and fill (no shading
  from EduHead's geometry);
* ``specular_off``: no specular reflection (A_S = 0);
* ``mean_head``: the photo reconstructed again with the fit's shape left at EduHead's mean
  (``FitConfig(fit_shape=False)``: identity and expression not fitted): what the fitted shape is worth.

The albedo variants go through ψ, ρ, σ and the head transfer like the pipeline's own.

A second table says why δ takes so much: the **mid-scale contrast** per face region (the standard deviation of
the log luminance band-passed between Gaussian widths 1 and 8 map texels, about 0.5-4 mm), of each photo's
super-resolved texture T̂ and δ's albedo A_D, beside the virtual light stage's held-out subjects' true albedo
and lit texture (``--seeds``). The regions are EduHead's, in the UV layout every head shares. Run::

    OMP_NUM_THREADS=1 python benchmarks/likeness_levers.py [--out results.json] [--photos a.jpg b.jpg ...]

(about 4 minutes for the five committed photos; numbers in ``benchmarks/results/likeness_levers_cpu.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from pathlib import Path

PHOTOS = Path(__file__).resolve().parents[1] / "data_samples" / "photos"
NAMES = ("astronaut", "obama_2012", "obama_2009", "obama_2010", "biden_2010")
REGIONS = ("brows", "eyes", "under_eye", "nose", "cheeks", "forehead", "lips", "chin")
LEVERS = ("as_is", "sr_bicubic", "sr_detail", "lit_texture", "delight_gain_smoothed", "uniform_light",
          "specular_off", "mean_head")


def head_from_albedo(avatar, albedo, profile):
    """``(mesh, shape, maps)`` of the completed head when the pipeline's stages after de-lighting start from
    ``albedo`` ``(3, H, W)`` instead of δ's answer."""
    from avatarme_edu import stages
    from avatarme_edu.completion.transfer import transfer_to_head
    from avatarme_edu.reflectance import ReflectanceMaps

    shape = avatar.shape
    albedo = albedo * shape.mask
    maps = ReflectanceMaps(
        diffuse_albedo=albedo,
        specular_albedo=stages.specular_albedo(albedo, profile, mask=shape.mask, level_head=False),
        specular_normals=stages.specular_normals(albedo, shape, profile),
        diffuse_normals=stages.diffuse_normals(albedo, shape, profile), mask=shape.mask)
    head_mesh, head_maps, info = transfer_to_head(avatar.mesh, maps, profile=profile, face_shape=shape)
    return head_mesh, info.shape, head_maps


def distance(head, fitted, lights=None) -> float | None:
    """The report's identity distance (:func:`~avatarme_edu.pipeline.identity_check`) of ``head``."""
    from avatarme_edu.pipeline import identity_check

    return identity_check(head, fitted, lights=lights)["distance"]


def levers(avatar, profile, sigma: float) -> dict:
    """``{lever: distance}`` for one reconstructed photo (module docstring)."""
    import torch.nn.functional as F

    from avatarme_edu import stages
    from avatarme_edu.imaging import gaussian_blur
    from avatarme_edu.render.lights import SHEnvironment

    fitted, hw = avatar.fit, tuple(profile.map_hw)
    head = (avatar.head_mesh, avatar.head_shape, avatar.head_maps)
    up = lambda t: F.interpolate(t[None].float(), size=hw, mode="bicubic", align_corners=False)[0].clamp(0, 1)  # noqa: E731

    def delit(texture):
        return stages.delight(texture, avatar.shape, profile)

    mask = avatar.shape.mask.bool()
    gain = (avatar.texture_sr + 0.01) / (avatar.maps.diffuse_albedo + 0.01)  # the light δ took out, per texel
    smooth_gain = gaussian_blur(gain, sigma, mask=mask)
    kept = ((avatar.texture_sr + 0.01) / smooth_gain.clamp_min(1e-3) - 0.01).clamp(0, 1)
    out = {"as_is": distance(head, fitted)}
    out["sr_bicubic"] = distance(head_from_albedo(avatar, delit(up(avatar.texture)), profile), fitted)
    out["sr_detail"] = distance(head_from_albedo(avatar, delit(up(fitted.detailed_texture)), profile), fitted)
    out["lit_texture"] = distance(head_from_albedo(avatar, avatar.texture_sr, profile), fitted)
    out["delight_gain_smoothed"] = distance(head_from_albedo(avatar, kept, profile), fitted)
    out["uniform_light"] = distance(head, fitted, lights=[SHEnvironment.uniform(intensity=1.0)])
    no_spec = dataclasses.replace(avatar.head_maps, specular_albedo=avatar.head_maps.specular_albedo * 0)
    out["specular_off"] = distance((avatar.head_mesh, avatar.head_shape, no_spec), fitted)
    return out


def mid_scale_contrast(albedo_or_texture, regions: dict, mask) -> dict:
    """``{region: std}`` of ``log(luminance)`` band-passed between Gaussian widths 1 and 8 texels, per region
    (texels inside ``mask`` where the region's weight is over 0.5)."""
    import torch

    from avatarme_edu.color import luminance
    from avatarme_edu.imaging import gaussian_blur

    y = torch.log(luminance(albedo_or_texture.float()).clamp_min(1e-3))
    band = (gaussian_blur(y, 1.0) - gaussian_blur(y, 8.0))[0]
    return {r: round(float(band[(regions[r] > 0.5) & mask.bool()].std()), 3) for r in REGIONS}


def virtual_contrast(seeds, profile) -> tuple[list[dict], dict]:
    """:func:`mid_scale_contrast` of held-out virtual subjects' true albedo and lit (wild) texture, and the
    first subject's regions (EduHead's, in the UV layout every head shares: the photos are scored on them)."""
    from avatarme_edu.evaluation import held_out_subject

    rows, regions = [], None
    for seed in seeds:
        subject, wild = held_out_subject(int(seed), profile)
        regions = subject.regions if regions is None else regions
        mask = subject.reflectance.mask
        rows.append({"seed": int(seed), "true_albedo": mid_scale_contrast(subject.reflectance.diffuse_albedo,
                                                                          subject.regions, mask),
                     "lit_texture": mid_scale_contrast(wild.high, subject.regions, mask), "light": wild.params.kind})
    return rows, regions


def _contrast_table(photo_rows: list[dict], virtual: list[dict]) -> str:
    lines = ["| map | " + " | ".join(REGIONS) + " |", "|---|" + "---|" * len(REGIONS)]

    def line(name, values):
        lines.append(f"| {name} | " + " | ".join(f"{values[r]:.3f}" for r in REGIONS) + " |")

    for r in photo_rows:
        line(f"{r['photo']} T̂", r["contrast"]["texture_sr"])
        line(f"{r['photo']} A_D", r["contrast"]["diffuse_albedo"])
    for key in ("true_albedo", "lit_texture"):
        line(f"virtual {key}, mean of {len(virtual)}", {g: sum(v[key][g] for v in virtual) / len(virtual) for g in REGIONS})
    return "\n".join(lines)


def main() -> None:
    import torch

    from avatarme_edu.fitting.fit_stages import FitConfig
    from avatarme_edu.pipeline import reconstruct
    from avatarme_edu.profiles import get_profile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", nargs="+", default=[str(PHOTOS / f"{n}.jpg") for n in NAMES])
    parser.add_argument("--sigma", type=float, default=12.0, help="map texels of the smoothed δ gain (default 12)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 9, 14, 19, 24],
                        help="held-out virtual subjects for the contrast table (default 4 9 14 19 24)")
    parser.add_argument("--out", default=None, help="JSON of the per-photo numbers")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    profile = get_profile("cpu", device="cpu")
    virtual, regions = virtual_contrast(args.seeds, profile)
    rows, contrast = [], []
    for photo in args.photos:
        avatar = reconstruct(photo, profile, progress=False, identity=False)
        mean_head = reconstruct(photo, profile, fit_config=FitConfig(fit_shape=False), progress=False, identity=False)
        rows.append({"photo": Path(photo).stem, **levers(avatar, profile, args.sigma),
                     "mean_head": distance((mean_head.head_mesh, mean_head.head_shape, mean_head.head_maps), mean_head.fit)})
        print(json.dumps(rows[-1]), flush=True)
        contrast.append({"photo": rows[-1]["photo"], "contrast": {
            "texture_sr": mid_scale_contrast(avatar.texture_sr, regions, avatar.shape.mask),
            "diffuse_albedo": mid_scale_contrast(avatar.maps.diffuse_albedo, regions, avatar.shape.mask)}})
    mean = {k: round(sum(r[k] for r in rows if r[k] is not None) / max(1, sum(r[k] is not None for r in rows)), 4)
            for k in LEVERS}
    print("\n| photo | " + " | ".join(LEVERS) + " |")
    print("|---|" + "---|" * len(LEVERS))
    for r in [*rows, {"photo": "**mean**", **mean}]:
        print(f"| {r['photo']} | " + " | ".join("-" if r[k] is None else f"{r[k]:.3f}" for k in LEVERS) + " |")
    print("\nMid-scale contrast per region (std of band-passed log luminance):\n")
    print(_contrast_table(contrast, virtual))
    if args.out:
        Path(args.out).write_text(json.dumps({"command": "OMP_NUM_THREADS=1 python benchmarks/likeness_levers.py",
                                              "sigma": args.sigma, "torch_threads": torch.get_num_threads(),
                                              "rows": rows, "mean": mean, "contrast": contrast,
                                              "virtual_contrast": virtual}, indent=1) + "\n")


if __name__ == "__main__":
    main()
