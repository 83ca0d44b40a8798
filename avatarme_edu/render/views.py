"""Static pictures of a shaded head: turntable views, relighting strips, side-by-side comparisons.

Everything here is a thin loop around :func:`avatarme_edu.render.shading.render_view`:

* :func:`turntable` - the same head from several named views (front, three-quarter, profile). By
  default the light rig turns with the camera, as if the head sat on a turntable in front of a fixed
  camera and fixed lamps, so every view is lit the same way relative to the viewer.
* :func:`relight_strip` - one view under several lightings (a light sweeping around the head, the
  presets of :mod:`avatarme_edu.render.lights`): the test of "render-ready" maps is that they look
  right under light they were not captured in.
* :func:`compare_renders` - two sets of maps (e.g. inferred vs. ground truth) rendered identically,
  side by side with their difference, and the PSNR of the renders over the rendered pixels; the
  AvatarMe paper also compares its results as renderings, not only as maps.
* :func:`save_views` - PNG files (sRGB, 8 bit) of any of the above.

Views are named by azimuth around the vertical axis through the head's centre: ``"front"`` looks at
the face from +Z, ``"three_quarter"`` from 40 degrees towards the subject's left (+X),
``"profile"`` from 90 degrees; a number is an azimuth in degrees.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from avatarme_edu.geometry.camera import Camera
from avatarme_edu.metrics import psnr
from avatarme_edu.render.lights import (
    DirectionalLight, PRESETS, SHEnvironment, as_light_list, direction_from_angles, rotate_lights, rotation_y,
)
from avatarme_edu.render.shading import render_view, to_srgb_image

VIEW_AZIMUTHS = {"front": 0.0, "three_quarter": 40.0, "profile": 90.0, "left_three_quarter": -40.0,
                 "left_profile": -90.0, "back": 180.0}


def _azimuth(view) -> float:
    if isinstance(view, str):
        if view not in VIEW_AZIMUTHS:
            raise ValueError(f"unknown view {view!r}; use one of {sorted(VIEW_AZIMUTHS)} or an azimuth in degrees")
        return VIEW_AZIMUTHS[view]
    value = float(view)
    if not math.isfinite(value):
        raise ValueError(f"view azimuth must be a finite number of degrees, got {view!r}")
    return value


def _view_name(view) -> str:
    return view if isinstance(view, str) else f"az{float(view):+.0f}"


def framing(mesh) -> tuple[torch.Tensor, float]:
    """``(centre (3,), radius)`` of the mesh's bounding box centre and the farthest vertex from it."""
    v = mesh.vertices.detach()
    center = (v.min(0).values + v.max(0).values) / 2
    return center, float((v - center).norm(dim=-1).max())


def view_camera(mesh, view="front", hw=(512, 512), fov_deg: float = 20.0, elevation_deg: float = 0.0,
                margin: float = 1.08) -> Camera:
    """A camera that frames the whole ``mesh`` from a named view (or an azimuth in degrees).

    The camera stands on a sphere around the mesh's centre, far enough that the bounding sphere
    (times ``margin``) fits the smaller image side; ``fov_deg`` is the vertical field of view.
    """
    if not 0.0 < fov_deg < 120.0:
        raise ValueError(f"fov_deg must be in (0, 120), got {fov_deg}")
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    center, radius = framing(mesh)
    h, w = int(hw[0]), int(hw[1])
    half = math.radians(fov_deg) / 2
    if w < h:  # the horizontal field of view is the narrower one
        half = math.atan(math.tan(half) * w / h)
    dist = radius * margin / math.sin(half)
    eye = center + dist * torch.tensor(direction_from_angles(_azimuth(view), elevation_deg),
                                       dtype=center.dtype, device=center.device)
    return Camera.look_at(eye, center, up=(0.0, 1.0, 0.0), fov_deg=fov_deg, hw=(h, w), device=center.device)


def _stack(results: list[dict], names: list[str]) -> dict:
    return {"images": torch.stack([r["image"] for r in results]),
            "srgb": torch.stack([r["srgb"] for r in results]),
            "masks": torch.stack([r["mask"] for r in results]),
            "names": names}


def turntable(mesh, shape, maps, lights, views=("front", "three_quarter", "profile"), hw=(512, 512),
              fov_deg: float = 20.0, lights_follow_camera: bool = True, background=(0.0, 0.0, 0.0),
              exposure: float = 0.0, **shade_kwargs) -> dict:
    """Render the head from several ``views``.

    ``lights_follow_camera=True`` turns the light rig with the camera (a turntable: each view lit alike
    relative to the viewer); ``False`` keeps the lights fixed in the head's frame (walking around a
    lit head). ``**shade_kwargs`` go to :func:`~avatarme_edu.render.shading.shade_uv`.

    Returns ``{"images": (N, 3, H, W) linear, "srgb": (N, 3, H, W), "masks": (N, H, W) bool,
    "names": [view names]}``.
    """
    lights = as_light_list(lights)
    center, _ = framing(mesh)
    results, names = [], []
    for view in views:
        camera = view_camera(mesh, view, hw, fov_deg)
        rig = rotate_lights(lights, rotation_y(_azimuth(view)), center.tolist()) if lights_follow_camera else lights
        results.append(render_view(mesh, shape, maps, rig, camera, background=background, exposure=exposure,
                                   **shade_kwargs))
        names.append(_view_name(view))
    return _stack(results, names)


def default_light_sets() -> dict[str, list]:
    """A key light sweeping around the head (left, front, right, from above; with a dim ambient so the
    shadows are not pure black) and the three presets."""
    sets = {f"key_{name}": [DirectionalLight(direction_from_angles(az, el), intensity=1.0),
                            SHEnvironment.uniform(intensity=0.04)]
            for name, az, el in (("left", -70.0, 15.0), ("front", 0.0, 15.0), ("right", 70.0, 15.0),
                                 ("above", 0.0, 75.0))}
    sets.update({name: make() for name, make in PRESETS.items()})
    return sets


def soft_front_lights() -> list:
    """A soft portrait light, the identity check's (:func:`avatarme_edu.pipeline.photo_pose_render`): a
    white key from the front, 15 degrees above, and a uniform white fill of equal strength - a 2:1
    lighting ratio (lit side : shadow side), the usual one for portraits. ``key_front``'s ratio is
    about 26:1: its hard shadows make a face less like the same face in an ordinary photo (dlib's
    distance on the five real photos: 0.03-0.12 higher)."""
    return [DirectionalLight(direction_from_angles(0.0, 15.0), intensity=0.5), SHEnvironment.uniform(intensity=0.5)]


def relight_strip(mesh, shape, maps, light_sets=None, view="front", hw=(384, 384), fov_deg: float = 20.0,
                  background=(0.0, 0.0, 0.0), exposure: float = 0.0, **shade_kwargs) -> dict:
    """One view of the head under several lightings.

    ``light_sets``: a dict ``name -> lights`` or a list of light lists (default
    :func:`default_light_sets`). Returns the same dict as :func:`turntable`, one image per set.
    """
    if light_sets is None:
        light_sets = default_light_sets()
    if not isinstance(light_sets, dict):
        light_sets = {f"light_{i}": s for i, s in enumerate(light_sets)}
    if not light_sets:
        raise ValueError("light_sets is empty; give at least one set of lights")
    camera = view_camera(mesh, view, hw, fov_deg)
    results = [render_view(mesh, shape, maps, as_light_list(lights), camera, background=background,
                           exposure=exposure, **shade_kwargs) for lights in light_sets.values()]
    return _stack(results, list(light_sets))


def compare_renders(maps_a, maps_b, mesh, shape, lights=None, views=("front", "three_quarter", "profile"),
                    hw=(256, 256), fov_deg: float = 20.0, space: str = "srgb", difference_gain: float = 4.0,
                    exposure: float = 0.0, **shade_kwargs) -> dict:
    """Render two sets of maps of one head identically and measure how different the pictures are.

    ``lights`` default to the studio preset. ``space`` is where PSNR is measured: ``"srgb"`` (what a
    viewer sees, the default) or ``"linear"`` (radiance clipped to [0, 1]); only pixels covered by the
    head count. Returns ``{"a", "b": (N, 3, H, W) in that space, "difference": |a - b| *
    difference_gain, "side_by_side": (3, N H, 3 W) with rows = views and columns a | b | difference,
    "psnr": [dB per view], "psnr_mean": dB over all views' pixels together, "names", "masks"}``.
    Identical maps give ``inf``.
    """
    if space not in ("srgb", "linear"):
        raise ValueError(f"space must be 'srgb' or 'linear', got {space!r}")
    if tuple(maps_a.hw) != tuple(maps_b.hw):
        raise ValueError(f"maps_a {tuple(maps_a.hw)} and maps_b {tuple(maps_b.hw)} must have the same size")
    if lights is None:
        lights = PRESETS["studio"]()
    key = "srgb" if space == "srgb" else "images"
    ra = turntable(mesh, shape, maps_a, lights, views, hw, fov_deg, exposure=exposure, **shade_kwargs)
    rb = turntable(mesh, shape, maps_b, lights, views, hw, fov_deg, exposure=exposure, **shade_kwargs)
    a, b = ra[key].clamp(0, 1), rb[key].clamp(0, 1)
    masks = ra["masks"] & rb["masks"]  # one mesh, so the same pixels; & keeps it safe
    scores = [psnr(a[i], b[i], mask=masks[i]) for i in range(a.shape[0])]
    # All views at once: the MSE over every covered pixel of every view.
    sq = ((a.double() - b.double()) ** 2).mean(1)[masks]
    mse = float(sq.mean()) if sq.numel() else float("nan")
    mean = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
    difference = ((a - b).abs() * difference_gain).clamp(0, 1)
    rows = [torch.cat([a[i], b[i], difference[i]], dim=-1) for i in range(a.shape[0])]
    return {"a": a, "b": b, "difference": difference, "side_by_side": torch.cat(rows, dim=-2),
            "psnr": scores, "psnr_mean": mean, "names": ra["names"], "masks": masks}


def save_views(path_prefix, views, names=None, exposure: float = 0.0, strip: bool = True) -> list[Path]:
    """Write PNGs ``{path_prefix}_{name}.png`` (and ``{path_prefix}_strip.png``, all side by side).

    ``views``: the dict returned by :func:`turntable` / :func:`relight_strip` (its ``"srgb"`` images
    are written), by :func:`compare_renders` (its ``"side_by_side"`` image, named ``compare``), or a
    tensor of LINEAR images ``(N, 3, H, W)`` / ``(3, H, W)`` (encoded to sRGB with
    ``exposure`` stops here). Returns the paths written.
    """
    if isinstance(views, dict) and "side_by_side" in views:
        srgb, names = views["side_by_side"][None], names or ["compare"]
    elif isinstance(views, dict):
        srgb = views["srgb"]
        names = names or views.get("names")
    else:
        images = views[None] if views.ndim == 3 else views
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"views must be (N, 3, H, W) or (3, H, W) linear images, got {tuple(views.shape)}")
        srgb = to_srgb_image(images, exposure)
    if srgb.ndim == 3:
        srgb = srgb[None]
    names = list(names) if names is not None else [str(i) for i in range(srgb.shape[0])]
    if len(names) != srgb.shape[0]:
        raise ValueError(f"got {srgb.shape[0]} images but {len(names)} names")
    prefix = Path(path_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)

    def write(img: torch.Tensor, path: Path) -> Path:
        pixels = (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        from avatarme_edu.atomic import atomic_path  # the one atomic writer

        with atomic_path(path) as tmp:
            Image.fromarray(pixels).save(tmp, format="PNG")
        return path

    paths = [write(img, prefix.with_name(f"{prefix.name}_{name}.png")) for img, name in zip(srgb, names)]
    if strip and srgb.shape[0] > 1:
        paths.append(write(torch.cat(list(srgb), dim=-1), prefix.with_name(f"{prefix.name}_strip.png")))
    return paths
