"""Speed benchmarks of the foundation and the virtual light stage, printed as ratios.

Run: ``.venv/bin/python benchmarks/bench_stages.py [--profile cpu] [--subjects 50]``

Each line measures a stage and sets it side by side, in the same run, against a reference:
either the budget an issue asked for (ratio = budget / measured, > 1 meets it) or a simpler way of
doing the same work (ratio = reference / measured, the speed-up). Timings are the best of a few repeats.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import torch


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def row(name: str, measured: float, reference: float, what: str) -> None:
    print(f"{name:44s} {measured:9.3f} s   {what:28s} {reference:9.3f} s   ratio {reference / measured:7.2f}")


def main() -> None:
    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.geometry.raster import interpolate, rasterize_uv
    from avatarme_edu.geometry.uv_bake import bake_shape_maps
    from avatarme_edu.lightstage.dataset import make_dataset
    from avatarme_edu.lightstage.subjects import make_subject
    from avatarme_edu.profiles import get_profile
    from avatarme_edu.tiling import sliding_window

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--subjects", type=int, default=50)
    args = parser.parse_args()
    profile = get_profile(args.profile)
    print(f"profile {profile.name} on {profile.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, maps {profile.map_hw}")

    head = load_eduhead(profile.device)
    mesh = head.mesh(head.sample_identity(torch.Generator().manual_seed(0)))
    bake_shape_maps(mesh, profile.map_hw)  # warm caches
    row("bake_shape_maps at map size", best_of(lambda: bake_shape_maps(mesh, profile.map_hw)), 1.0,
        "budget (issue 2)")

    # Rasterising once and interpolating all attributes, against re-rasterising per attribute.
    frags = rasterize_uv(mesh, profile.map_hw)
    attrs = [mesh.vertices, mesh.vertex_normals(), torch.cat([mesh.uvs, mesh.uvs[:, :1]], 1)]
    once = best_of(lambda: [interpolate(frags, a, mesh.faces) for a in attrs])
    each = best_of(lambda: [interpolate(rasterize_uv(mesh, profile.map_hw), a, mesh.faces) for a in attrs])
    row("interpolate 3 attributes, one rasterisation", once, each, "re-rasterise per attribute")

    x = torch.rand(3, *profile.map_hw, device=profile.device)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).to(profile.device)
    with torch.no_grad():
        whole = best_of(lambda: conv(x[None])[0])
        tiled = best_of(lambda: sliding_window(lambda t: conv(t), x, profile.window_size, profile.window_stride))
    row("sliding_window of a conv layer", tiled, whole, "one call on the whole map")

    subject_time = best_of(lambda: make_subject(1, profile), repeats=2)
    row("make_subject (one identity, neutral)", subject_time, 120.0 / 50, "budget 2 min / 50 subjects")

    root = tempfile.mkdtemp(prefix="bench_dataset_")
    try:
        t0 = time.perf_counter()
        make_dataset(args.subjects, 0, profile, root, progress=False)
        dataset_time = time.perf_counter() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    row(f"make_dataset({args.subjects} subjects)", dataset_time, 120.0 * args.subjects / 50, "budget (issue 3)")


if __name__ == "__main__":
    main()
