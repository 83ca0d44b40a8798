"""The main job on the bundled sample: what ``make demo`` / ``avatarme-edu demo`` runs.

It builds the sample subject of the virtual light stage (EduHead identity ``seed`` with its ground-truth
skin) and writes, under ``out/``:

* ``head.obj``: the subject's mesh with UVs (opens in Blender, MeshLab, any OBJ viewer);
* ``shape_maps/``: the baked UV shape maps (position, N_O and N_T as 16-bit normal maps, D_O, mask),
  exact in ``shape_maps.safetensors``;
* ``reflectance/``: the four ground-truth reflectance maps (diffuse and specular albedo, diffuse and
  specular normals) and the subject's in-the-wild texture, low and high resolution;
* ``uv_maps.png``, ``reflectance.png``: the maps in figures; ``head_views.png``: the bare mesh;
* ``window_grid.png``: how the profile's inference windows and training patches tile the UV map;
* ``renders/``: the head rendered with separate diffuse and specular normals, from three views and
  under four lights;
* ``export/``: OBJ + MTL + PNG maps, a binary glTF ``avatar.glb`` and a standalone ``avatar.html``
  viewer (open it in any browser; it needs no network).

Every file is written beside and renamed (:mod:`avatarme_edu.atomic`), so an interrupted run leaves nothing
half-written, and only the files listed above are (re)written: a user's own files under ``out/`` stay.
The renders follow the map size (``--map-size``): their side is the map's height, at most 384 pixels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from avatarme_edu.atomic import atomic_path
from avatarme_edu.profiles import Profile


def _save_figure(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def _save_shape_maps(shape, maps_dir: Path, metadata: dict) -> list[Path]:
    from avatarme_edu.maps_io import save_map, save_tensors

    position = shape.position
    lo, hi = position.amin(dim=(1, 2), keepdim=True), position.amax(dim=(1, 2), keepdim=True)
    position_display = torch.where(shape.mask, (position - lo) / (hi - lo), torch.zeros((), device=position.device))
    written = [
        save_map(maps_dir / "position.png", position_display, "color"),
        save_map(maps_dir / "normals_object.png", shape.normals_object, "normal"),
        save_map(maps_dir / "normals_tangent.png", shape.normals_tangent, "normal"),
        save_map(maps_dir / "depth.png", shape.depth, "gray"),
        save_map(maps_dir / "mask.png", shape.mask, "mask"),
    ]
    tensors = {name: getattr(shape, name).float().cpu().contiguous() for name in
               ("position", "normals_object", "tangent", "bitangent", "base_normal", "normals_tangent", "depth")}
    tensors["mask"] = shape.mask.to(torch.uint8).cpu().contiguous()
    return written + [save_tensors(maps_dir / "shape_maps.safetensors", tensors, metadata)]


def render_side(map_hw: tuple[int, int]) -> int:
    """Side of the demo's square renders: the map's height, between 64 and 384 pixels."""
    return max(64, min(384, int(map_hw[0])))


def run_demo(out: Path, profile: Profile, seed: int = 0, map_hw: tuple[int, int] | None = None,
             progress: bool = True) -> list[Path]:
    """Build the sample subject of ``seed`` and write the files listed in the module docstring.

    ``map_hw`` overrides ``profile.map_hw`` (e.g. a smaller map for a quick look). Returns the paths.
    """
    from matplotlib.figure import Figure

    from avatarme_edu.geometry.mesh import write_obj
    from avatarme_edu.figures.meshes import plot_head
    from avatarme_edu.lightstage.subjects import make_subject
    from avatarme_edu.lightstage.wild import wild_texture
    from avatarme_edu.maps_io import save_map
    from avatarme_edu.reflectance import MAP_KINDS, MAP_NAMES
    from avatarme_edu.render.export import export_glb, export_obj
    from avatarme_edu.figures.maps import draw_window_grid, show_maps, to_display
    from avatarme_edu.render.html_viewer import write_html_viewer
    from avatarme_edu.render.lights import studio
    from avatarme_edu.render.views import relight_strip, save_views, turntable
    from avatarme_edu.tiling import sample_patches, window_grid

    if map_hw is not None:
        # keep the fitted texture's share of the map: x4 below the maps on cpu, x16 on paper
        factor = profile.map_hw[0] // profile.texture_hw[0]
        profile = profile.replace(map_hw=tuple(map_hw), texture_hw=(max(8, map_hw[0] // factor), max(12, map_hw[1] // factor)))
    hw = profile.map_hw
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    steps = tqdm(total=7, desc="demo", disable=not progress)

    def step(name: str) -> None:
        steps.set_postfix_str(name)
        steps.update(1)

    subject = make_subject(seed, profile)
    mesh, shape, maps = subject.mesh, subject.shape, subject.reflectance
    written.append(write_obj(out / "head.obj", mesh))
    step("subject")

    written += _save_shape_maps(shape, out / "shape_maps",
                                {"seed": str(seed), "profile": profile.name, "hw": f"{hw[0]}x{hw[1]}"})
    for name in MAP_NAMES:
        written.append(save_map(out / "reflectance" / f"{name}.png", getattr(maps, name), MAP_KINDS[name]))
    wild = wild_texture(subject, profile, torch.Generator().manual_seed(seed))
    written.append(save_map(out / "reflectance" / "wild_texture_low.png", wild.low, "color"))
    written.append(save_map(out / "reflectance" / "wild_texture_high.png", wild.high, "color"))
    step("maps")

    fig = show_maps({"normals_object N_O": shape.normals_object, "normals_tangent N_T": shape.normals_tangent,
                     "depth D_O": shape.depth, "position": shape.position},
                    kinds={"position": "normal"}, mask=shape.mask, ncols=2,
                    title=f"EduHead subject {seed}: baked UV shape maps ({hw[1]}x{hw[0]})")
    written.append(_save_figure(fig, out / "uv_maps.png"))
    fig = show_maps({"in-the-wild texture (fitted)": wild.low, **{n: getattr(maps, n) for n in MAP_NAMES}},
                    mask=None, ncols=3, title=f"subject {seed}: ground-truth reflectance and its in-the-wild texture")
    written.append(_save_figure(fig, out / "reflectance.png"))
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    for k, view in enumerate(("front", "three_quarter", "side")):
        plot_head(mesh, ax=fig.add_subplot(1, 3, k + 1, projection="3d"), view=view)
    written.append(_save_figure(fig, out / "head_views.png"))
    step("figures")

    # Tiling at the profile's sizes (scaled with --map-size).
    scale = hw[1] / (576 if profile.name == "cpu" else 6144)
    window, stride = max(8, round(profile.window_size * scale)), max(4, round(profile.window_stride * scale))
    patch = max(4, round(profile.patch_size * scale))
    windows = window_grid(hw, window, stride)
    _, corners = sample_patches({"n": shape.normals_object}, shape.mask, patch, 12, torch.Generator().manual_seed(seed))
    fig = Figure(figsize=(9, 6.6), layout="constrained")
    draw_window_grid(to_display(shape.normals_object, "normal", shape.mask), windows, window,
                     ax=fig.add_subplot(), patches=corners, patch_size=patch)
    written.append(_save_figure(fig, out / "window_grid.png"))
    step("tiling")

    side = render_side(hw)
    written += save_views(out / "renders" / "turntable", turntable(mesh, shape, maps, studio(), hw=(side, side)))
    written += save_views(out / "renders" / "relight", relight_strip(mesh, shape, maps, hw=(side, side)))
    step("renders")

    exported = export_obj(out / "export", mesh, maps, name="avatar", shape=shape)
    written += [Path(p) for p in exported.values() if Path(p).is_file()]
    written.append(export_glb(out / "export" / "avatar.glb", mesh, maps, shape=shape))
    step("glTF")
    written.append(write_html_viewer(out / "export" / "avatar.html", mesh, maps, shape=shape,
                                     title=f"avatarme-edu subject {seed}"))
    step("viewer")
    steps.close()
    return written
