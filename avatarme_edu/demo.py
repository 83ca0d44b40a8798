"""The main job on the bundled sample: what ``make demo`` / ``avatarme-edu demo`` runs.

Today it builds a sample EduHead subject and writes, under ``out/``:

* ``head.obj``: the subject's mesh with UVs (opens in Blender, MeshLab, any OBJ viewer);
* ``shape_maps/``: its baked UV shape maps as PNG (N_O and N_T as 16-bit normal maps, D_O, mask)
  and all of them, exact, in ``shape_maps.safetensors``;
* ``uv_maps.png``: the maps in one figure; ``head_views.png``: the mesh from three sides;
* ``window_grid.png``: how the profile's inference windows and training patches tile the UV map.

Every file is written to a temporary name and renamed, so an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from avatarme_edu.profiles import Profile


def _save_figure(fig, path: Path) -> Path:
    tmp = path.with_name(path.stem + ".part.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def run_demo(out: Path, profile: Profile, seed: int = 0, map_hw: tuple[int, int] | None = None) -> list[Path]:
    """Build the sample subject of ``seed`` and write the files listed in the module docstring.

    ``map_hw`` overrides ``profile.map_hw`` (e.g. a smaller map for a quick look). Returns the paths.
    """
    from matplotlib.figure import Figure

    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.geometry.mesh import write_obj
    from avatarme_edu.geometry.plot import plot_head
    from avatarme_edu.geometry.uv_bake import bake_shape_maps
    from avatarme_edu.maps_io import save_map
    from avatarme_edu.render.figures import draw_window_grid, show_maps, to_display
    from avatarme_edu.tiling import sample_patches, window_grid

    hw = tuple(map_hw or profile.map_hw)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    head = load_eduhead(profile.device)
    identity = head.sample_identity(torch.Generator().manual_seed(seed))
    mesh = head.mesh(identity)
    written.append(write_obj(out / "head.obj", mesh))

    shape = bake_shape_maps(mesh, hw)
    maps_dir = out / "shape_maps"
    position = shape.position
    lo, hi = position.amin(dim=(1, 2), keepdim=True), position.amax(dim=(1, 2), keepdim=True)
    position_display = torch.where(shape.mask, (position - lo) / (hi - lo), torch.zeros(()))
    written += [
        save_map(maps_dir / "position.png", position_display, "color"),
        save_map(maps_dir / "normals_object.png", shape.normals_object, "normal"),
        save_map(maps_dir / "normals_tangent.png", shape.normals_tangent, "normal"),
        save_map(maps_dir / "depth.png", shape.depth, "gray"),
        save_map(maps_dir / "mask.png", shape.mask, "mask"),
    ]
    tensors = {name: getattr(shape, name).float().cpu().contiguous() for name in
               ("position", "normals_object", "tangent", "bitangent", "base_normal", "normals_tangent", "depth")}
    tensors["mask"] = shape.mask.to(torch.uint8).cpu().contiguous()
    tmp = maps_dir / "shape_maps.part.safetensors"
    save_file(tensors, str(tmp), metadata={"seed": str(seed), "profile": profile.name, "hw": f"{hw[0]}x{hw[1]}"})
    os.replace(tmp, maps_dir / "shape_maps.safetensors")
    written.append(maps_dir / "shape_maps.safetensors")

    fig = show_maps({"position (scaled)": position_display, "normals_object N_O": shape.normals_object,
                     "normals_tangent N_T": shape.normals_tangent, "depth D_O": shape.depth},
                    mask=shape.mask, ncols=2, title=f"EduHead subject {seed}: baked UV shape maps ({hw[1]}x{hw[0]})")
    written.append(_save_figure(fig, out / "uv_maps.png"))

    fig = Figure(figsize=(12, 4.4), layout="constrained")
    for k, view in enumerate(("front", "three_quarter", "side")):
        plot_head(mesh, ax=fig.add_subplot(1, 3, k + 1, projection="3d"), view=view)
    written.append(_save_figure(fig, out / "head_views.png"))

    # Tiling at the profile's sizes, scaled to this map if --map-size changed it.
    scale = hw[1] / profile.map_hw[1]
    window = max(8, round(profile.window_size * scale))
    stride = max(4, round(profile.window_stride * scale))
    patch = max(4, round(profile.patch_size * scale))
    windows = window_grid(hw, window, stride)
    _, corners = sample_patches({"n": shape.normals_object}, shape.mask, patch, 12,
                                torch.Generator().manual_seed(seed))
    fig = Figure(figsize=(9, 6.6), layout="constrained")
    draw_window_grid(to_display(shape.normals_object, "normal", shape.mask), windows, window, ax=fig.add_subplot(), patches=corners, patch_size=patch)
    written.append(_save_figure(fig, out / "window_grid.png"))
    return written
