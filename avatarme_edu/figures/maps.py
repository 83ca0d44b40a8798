"""Figures for notebooks and the README: UV maps, rows of images, the sliding-window grid, PSNR bar charts.

Everything draws on a plain :class:`matplotlib.figure.Figure` (not ``pyplot``): it works with the
Agg backend on servers, nothing piles up in pyplot's global figure list, and a returned figure is
shown once by Jupyter. Save with ``fig.savefig("x.png")``.

Display conventions (docs/design.md section 2): colour maps are linear and shown through the sRGB
curve; normals are shown as ``n * 0.5 + 0.5`` (the familiar lilac of tangent-space maps); grey maps
are shown as they are; texels outside a mask become a neutral grey checkerboard, so "no data"
never looks like "black skin".
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from avatarme_edu.color import linear_to_srgb

DISPLAY_KINDS = ("color", "normal", "gray", "mask", "heat")


def guess_kind(name: str, m: torch.Tensor) -> str:
    """Display kind from a map's name and shape: a bool map or "mask" in the name -> mask; one
    channel -> heat if "error" is in the name, else gray; "normal" in the name -> normal; else colour."""
    name = name.lower()
    if m.dtype == torch.bool or "mask" in name:
        return "mask"
    if m.ndim == 2 or m.shape[0] == 1:
        return "heat" if "error" in name else "gray"
    return "normal" if "normal" in name else "color"


def checkerboard(hw: tuple[int, int], square: int = 8) -> np.ndarray:
    """``(H, W, 3)`` two-tone neutral grey checkerboard: the "no data here" background."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    tone = np.where(((yy // square) + (xx // square)) % 2 == 0, 0.42, 0.55)
    return np.repeat(tone[..., None], 3, axis=2)


def to_display(m: torch.Tensor, kind: str, mask: torch.Tensor | None = None,
               vmax: float | None = None) -> np.ndarray:
    """A map as an ``(H, W, 3)`` float numpy image in [0, 1], ready for ``imshow``.

    Args:
        m: ``(C, H, W)`` or ``(H, W)`` tensor on any device.
        kind: ``color`` (linear RGB, shown via sRGB), ``normal`` (shown as ``n * 0.5 + 0.5``),
            ``gray`` (shown as is, clipped to [0, 1]), ``mask`` (white where True) or ``heat``
            (a one-channel error map through the magma colour map, 0 .. ``vmax``; default the
            99th percentile of the valid values).
        mask: optional ``(H, W)`` bool; texels outside it are drawn as a grey checkerboard.
    """
    if kind not in DISPLAY_KINDS:
        raise ValueError(f"unknown display kind {kind!r}; valid kinds are: {', '.join(DISPLAY_KINDS)}")
    m = m.detach().cpu()
    if m.ndim == 2:
        m = m.unsqueeze(0)
    if m.ndim != 3:
        raise ValueError(f"a map must be (C, H, W) or (H, W), got shape {tuple(m.shape)}")
    h, w = m.shape[1:]
    if mask is not None:
        mask = mask.detach().cpu()
        if mask.dtype != torch.bool or tuple(mask.shape) != (h, w):
            raise ValueError(f"mask must be an ({h}, {w}) bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    m = m.float().nan_to_num(0.0)
    if kind == "color":
        if m.shape[0] != 3:
            raise ValueError(f"a color map needs 3 channels, got {m.shape[0]}")
        img = linear_to_srgb(m)
    elif kind == "normal":
        if m.shape[0] != 3:
            raise ValueError(f"a normal map needs 3 channels, got {m.shape[0]}")
        img = (m * 0.5 + 0.5).clamp(0, 1)
    elif kind in ("gray", "mask"):
        if m.shape[0] != 1:
            raise ValueError(f"a {kind} map needs 1 channel, got {m.shape[0]}")
        img = m.clamp(0, 1).expand(3, h, w)
    else:  # heat
        if m.shape[0] != 1:
            raise ValueError(f"a heat map needs 1 channel, got {m.shape[0]}")
        top = vmax if vmax is not None else _heat_top(m, mask)
        scaled = (m[0] / max(top, 1e-12)).clamp(0, 1).numpy()
        img = torch.from_numpy(colormaps["magma"](scaled)[..., :3]).permute(2, 0, 1).float()
    out = img.permute(1, 2, 0).numpy().astype(np.float64)
    if mask is not None:
        out = np.where(mask.numpy()[..., None], out, checkerboard((h, w)))
    return np.clip(out, 0.0, 1.0)


def _heat_top(m: torch.Tensor, mask: torch.Tensor | None) -> float:
    """Upper end of a heat map's colour scale: the 99th percentile of the valid values."""
    values = m.detach().cpu().float().reshape(m.shape[-2:])
    if mask is not None:
        values = values[mask.cpu()]
    values = values.flatten()[: 1 << 24]  # torch.quantile's size limit
    return float(torch.quantile(values, 0.99)) if values.numel() else 1.0


def _clean_axes(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def show_maps(maps: dict[str, torch.Tensor], kinds: dict[str, str] | None = None,
              mask: torch.Tensor | None = None, ncols: int = 3, title: str | None = None) -> Figure:
    """A labelled grid of UV maps, ``ncols`` per row.

    ``kinds`` overrides the guess of :func:`guess_kind` per name; ``mask`` (``(H, W)`` bool) greys
    out the texels outside the surface in every panel of that size.
    """
    if not maps:
        raise ValueError("maps is empty; give at least one map to show")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    kinds = kinds or {}
    ncols = min(ncols, len(maps))
    nrows = math.ceil(len(maps) / ncols)
    first = next(iter(maps.values()))
    h, w = first.shape[-2:]
    panel_w = 3.6
    fig = Figure(figsize=(panel_w * ncols, panel_w * h / w * nrows + 0.45 * nrows + (0.4 if title else 0)),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, m) in zip(axes.flat, maps.items()):
        kind = kinds.get(name) or guess_kind(name, m)
        use_mask = mask if mask is not None and tuple(mask.shape) == tuple(m.shape[-2:]) else None
        ax.imshow(to_display(m, kind, use_mask), interpolation="antialiased")
        if kind == "heat":  # a heat map needs its scale to be read
            fig.colorbar(ScalarMappable(Normalize(0, _heat_top(m, use_mask)), cmap="magma"), ax=ax,
                         shrink=0.8, pad=0.02)
        ax.set_title(f"{name}\n{tuple(m.shape[-2:])[1]}x{tuple(m.shape[-2:])[0]} {kind}", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def show_images(images, titles, width: float = 3.2) -> Figure:
    """A row of display-ready ``(3, H, W)`` sRGB images in [0, 1] (e.g. renders), each with its title."""
    if len(images) == 0 or len(images) != len(titles):
        raise ValueError(f"give one title per image and at least one image, got {len(images)} images "
                         f"and {len(titles)} titles")
    fig = Figure(figsize=(width * len(images), width + 0.4), layout="constrained")
    axes = fig.subplots(1, len(images), squeeze=False)
    for ax, img, title in zip(axes[0], images, titles):
        ax.imshow(img.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    return fig


def draw_window_grid(image_map, windows: list[tuple[int, int]], window: int, ax=None,
                     patches=None, patch_size: int | None = None):
    """Draw a UV map with the sliding-window grid on top; returns the ``Axes``.

    Each window is a coloured, numbered rectangle; texels covered by more than one window are
    shaded lighter (the more windows, the lighter) - that is where the blend weights cross-fade.
    ``patches`` (``(n, 2)`` top-left corners, e.g. from :func:`avatarme_edu.tiling.sample_patches`)
    adds the training patches as small yellow boxes of side ``patch_size``.

    Args:
        image_map: ``(C, H, W)`` / ``(H, W)`` tensor (kind guessed from the channel count) or an
            ``(H, W, 3)`` numpy image already in display form.
        windows: top-left corners from :func:`avatarme_edu.tiling.window_grid`.
        window: window side in texels.
    """
    if torch.is_tensor(image_map):
        img = to_display(image_map, guess_kind("", image_map))
    else:
        img = np.asarray(image_map, dtype=np.float64)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"a numpy image_map must be (H, W, 3), got {img.shape}")
    if patches is not None and patch_size is None:
        raise ValueError("patch_size is needed to draw patches")
    h, w = img.shape[:2]
    if ax is None:
        fig = Figure(figsize=(8, 8 * h / w + 0.5), layout="constrained")
        ax = fig.add_subplot()

    # extent covers windows that reach past a map smaller than the window (the padded region)
    full_h = max([h] + [t + window for t, _ in windows])
    full_w = max([w] + [l + window for _, l in windows])
    cover = np.zeros((full_h, full_w))
    for t, l in windows:
        cover[t:t + window, l:l + window] += 1
    ax.imshow(img, interpolation="antialiased", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    overlay = np.zeros((full_h, full_w, 4))
    overlay[..., :3] = 1.0
    overlay[..., 3] = np.clip((cover - 1) * 0.28, 0, 0.7)
    ax.imshow(overlay, interpolation="nearest", extent=(-0.5, full_w - 0.5, full_h - 0.5, -0.5))

    colours = colormaps["tab10"].colors
    inset = max(1.0, window * 0.006)  # nudge each outline inward so coinciding edges stay visible
    for k, (t, l) in enumerate(windows):
        c = colours[k % len(colours)]
        d = inset * (1 + k % 3)
        ax.add_patch(Rectangle((l - 0.5 + d, t - 0.5 + d), window - 2 * d, window - 2 * d,
                               fill=False, edgecolor=c, linewidth=2.0))
        ax.text(l + 4 * d, t + 4 * d, str(k), color="white", fontsize=9, fontweight="bold",
                va="top", ha="left", bbox=dict(boxstyle="round,pad=0.2", facecolor=c, edgecolor="none"))
    n_patches = 0
    if patches is not None:
        corners = patches.detach().cpu().tolist() if torch.is_tensor(patches) else list(patches)
        n_patches = len(corners)
        for t, l in corners:
            ax.add_patch(Rectangle((l - 0.5, t - 0.5), patch_size, patch_size, fill=False,
                                   edgecolor="#ffd400", linewidth=0.9, alpha=0.9))
    ax.set_xlim(-0.5, full_w - 0.5)
    ax.set_ylim(full_h - 0.5, -0.5)
    _clean_axes(ax)
    label = f"{len(windows)} windows of {window}x{window} over a {w}x{h} map (lighter = overlap)"
    if n_patches:
        label += f"\n{n_patches} training patches of {patch_size}x{patch_size} (yellow)"
    ax.set_title(label, fontsize=10)
    return ax


def psnr_bar_chart(table: dict[str, dict[str, float]], ylabel: str = "PSNR (dB)",
                   title: str | None = None) -> Figure:
    """Grouped bars: one group per map, one bar per method, value written on each bar.

    ``table[method][map] = value``; a missing entry leaves a gap and ``inf`` (identical maps)
    is drawn as a bar taller than the rest, labelled "inf".
    """
    if not table:
        raise ValueError("table is empty; expected {method: {map: value}}")
    methods = list(table)
    map_names: list[str] = []
    for row in table.values():
        map_names += [name for name in row if name not in map_names]
    finite = [v for row in table.values() for v in row.values() if math.isfinite(v)]
    top = max(finite) if finite else 1.0
    fig = Figure(figsize=(max(5.0, 1.3 * len(map_names) * max(1, len(methods)) ** 0.5 + 2), 4),
                 layout="constrained")
    ax = fig.add_subplot()
    colours = colormaps["tab10"].colors
    width = 0.8 / len(methods)
    x = np.arange(len(map_names))
    for k, method in enumerate(methods):
        vals = [table[method].get(name, math.nan) for name in map_names]
        shown = [top * 1.15 if v == math.inf else v for v in vals]
        pos = x - 0.4 + width * (k + 0.5)
        bars = ax.bar(pos, shown, width * 0.92, label=method, color=colours[k % len(colours)])
        for bar, v in zip(bars, vals):
            if math.isnan(v):
                continue
            text = "inf" if v == math.inf else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, map_names)
    ax.set_ylabel(ylabel)
    bottom = min([0.0] + finite)
    ax.set_ylim(bottom * 1.1, top * 1.28 if top > 0 else 1.0)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, ncols=min(len(methods), 4), loc="upper center")
    if title:
        ax.set_title(title)
    return fig


def transfer_figure(face_maps, maps, info, head_maps_before=None) -> Figure:
    """Head-model transfer before and after, as one :func:`show_maps` grid.

    ``face_maps``, ``maps`` and ``head_maps_before``: :class:`~avatarme_edu.reflectance.ReflectanceMaps`;
    ``info``: the :class:`~avatarme_edu.completion.transfer.HeadTransferInfo` of the transfer.

    Panels: the face's albedo (input), the head model's albedo before (if given) and after tone
    matching, the blend weight alpha, the ring where tones were compared, and the result's four maps.
    """
    panels = {"face: diffuse_albedo (input)": face_maps.diffuse_albedo}
    kinds = {}
    if head_maps_before is not None:
        panels["head model: diffuse_albedo"] = head_maps_before.diffuse_albedo
    panels["head model: tone matched"] = info.head_maps.diffuse_albedo
    panels["blend weight alpha (1 = face)"] = info.alpha[None]
    panels["tone ring"] = info.ring
    panels["result: diffuse_albedo"] = maps.diffuse_albedo
    panels["result: specular_albedo"] = maps.specular_albedo
    panels["result: specular_normals"] = maps.specular_normals
    panels["result: diffuse_normals"] = maps.diffuse_normals
    kinds["blend weight alpha (1 = face)"] = "gray"
    return show_maps(panels, kinds=kinds, ncols=3, title="Head model transfer")
