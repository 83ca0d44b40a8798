"""Figures of whole reconstructions: a gallery of one :class:`~avatarme_edu.pipeline.Avatar` (photo,
fit, textures, maps, renders, optionally the truth) and the time each stage took."""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from avatarme_edu.figures.maps import to_display


def _panel(ax, image, title: str) -> None:
    ax.imshow(image)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def _srgb(x: torch.Tensor):
    from avatarme_edu.color import linear_to_srgb

    return linear_to_srgb(x.clamp(0, 1)).permute(1, 2, 0).cpu().numpy()


def avatar_gallery(avatar, truth=None, title: str = "", side: int = 192) -> Figure:
    """Rows: photo crop, the fit's rendering over it, fitted texture T, super-resolved T̂; the face's four
    maps (A_D, A_S, N_D, N_S); the completed head rendered in the photo's pose, from the front and the
    three-quarter view (studio light) and under a side key light; and, with ``truth``
    (:class:`~avatarme_edu.reflectance.ReflectanceMaps`), the true maps under the inferred ones."""
    from avatarme_edu.pipeline import photo_pose_render
    from avatarme_edu.render.lights import studio
    from avatarme_edu.render.views import default_light_sets, relight_strip, turntable

    a, fit = avatar, avatar.fit
    head = (a.head_mesh, a.head_shape, a.head_maps)
    render, crop = photo_pose_render(head, fit)
    views = turntable(*head, studio(), views=("front", "three_quarter"), hw=(side, side))
    side_light = relight_strip(*head, {"key_left": default_light_sets()["key_left"]}, hw=(side, side))
    rows = 4 if truth is not None else 3
    fig = Figure(figsize=(12, 2.9 * rows), layout="constrained")
    axes = fig.subplots(rows, 4)
    _panel(axes[0, 0], _srgb(crop), "photo (face crop)")
    _panel(axes[0, 1], _srgb(fit.overlay), "fit: rendering over the photo")
    _panel(axes[0, 2], _srgb(a.texture), f"fitted texture T {tuple(a.texture.shape[-2:])}")
    _panel(axes[0, 3], _srgb(a.texture_sr), f"super-resolved T̂ {tuple(a.texture_sr.shape[-2:])}")
    mask = a.maps.mask
    maps = [("diffuse_albedo", "color", "A_D"), ("specular_albedo", "gray", "A_S"),
            ("diffuse_normals", "normal", "N_D (object)"), ("specular_normals", "normal", "N_S (tangent)")]
    for k, (name, kind, label) in enumerate(maps):
        _panel(axes[1, k], to_display(getattr(a.maps, name), kind, mask), f"inferred {label}")
        if truth is not None:
            _panel(axes[3, k], to_display(getattr(truth, name), kind, truth.mask), f"true {label}")
    _panel(axes[2, 0], _srgb(render), "head in the photo's pose, new light")
    _panel(axes[2, 1], views["srgb"][0].permute(1, 2, 0).cpu().numpy(), "front, studio light")
    _panel(axes[2, 2], views["srgb"][1].permute(1, 2, 0).cpu().numpy(), "three-quarter, studio light")
    _panel(axes[2, 3], side_light["srgb"][0].permute(1, 2, 0).cpu().numpy(), "front, key light from the left")
    ident = a.report.get("identity", {}).get("distance")
    fig.suptitle(title + (f"  (dlib distance photo vs render {ident:.3f}; same person < 0.6)" if ident else ""))
    return fig


def stage_times_figure(times: dict[str, float], title: str = "time per stage") -> Figure:
    """Horizontal bars: seconds per stage (``report["time_s"]`` without its ``total``)."""
    items = [(k, v) for k, v in times.items() if k not in ("total", "evaluation_total") and v is not None]
    fig = Figure(figsize=(7, 0.35 * len(items) + 1.0), layout="constrained")
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#4a7fb0")
    for y, (_, v) in enumerate(items[::-1]):
        ax.text(v, y, f" {v:.1f} s", va="center", fontsize=8)
    ax.set_xlabel("seconds")
    total = sum(v for _, v in items)
    ax.set_title(f"{title} (total {total:.1f} s)")
    return fig


def cross_photo_figure(fits: dict, table: dict, renders: dict, side: float = 2.4) -> Figure:
    """The cross-photo check as a grid: one row per fitted photo, its face crop first, then its head in the
    pose of every photo (the diagonal: its own pose), each titled with dlib's distance to that photo: green
    where the rendering gets the verdict dlib gives the two photos themselves (same person below 0.6, or
    another person), red where not. ``fits`` {name: FitResult}; ``table`` and ``renders``
    from :func:`~avatarme_edu.fitting.cross_photo.cross_photo_table` (``renders`` {(a, b): image})."""
    from avatarme_edu.fitting.cross_photo import photo_crop
    from avatarme_edu.fitting.identity import SAME_PERSON_DISTANCE

    names = list(fits)
    n = len(names)
    fig = Figure(figsize=(side * (n + 1), side * n + 0.6), layout="constrained")
    axes = fig.subplots(n, n + 1, squeeze=False)
    for i, a in enumerate(names):
        _panel(axes[i, 0], _srgb(photo_crop(fits[a])), f"photo {a}")
        for j, b in enumerate(names):
            ax = axes[i, j + 1]
            if a == b:
                _panel(ax, _srgb(fits[a].overlay), f"fit {a}, own pose")
                continue
            row = table[f"{a} in the pose of {b}"]
            _panel(ax, _srgb(renders[(a, b)]), f"fit {a} in pose of {b}\ndlib {row['distance']:.3f} "
                                              f"(photos {row['photo_distance']:.3f})")
            ax.title.set_color("green" if row["agrees"] else "firebrick")
    fig.suptitle(f"each fit seen from the other photos' cameras: dlib distance to that photo (same person below "
                 f"{SAME_PERSON_DISTANCE}; in brackets, the two photos' own distance). Green: the rendering gets "
                 "the photos' verdict, red: it does not", fontsize=9)
    return fig
