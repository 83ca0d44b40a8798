"""A stage's answer against the truth: input, prediction, ground truth and error side by side, zoomed crops.

The reflectance notebooks (03-06) show every stage the same way:

* :func:`error_map` - a per-texel error ``(1, H, W)``: the mean absolute difference of colour or grey
  maps, the angle in degrees between normal maps;
* :func:`compare_maps` - one row of panels: the input map(s), the prediction, the ground truth and the
  error as a heat map with its scale;
* :func:`region_box` - a square crop around a face region (eyes, lips, forehead...), where the detail lives;
* :func:`normal_detail` - normals shown as their deviation from a smooth base, amplified, so that pores
  and wrinkles a fraction of a degree deep become visible;
* :func:`zoom_crops` - a grid of crops: one row per region, one column per image.

Everything draws on a plain :class:`matplotlib.figure.Figure`, as in :mod:`avatarme_edu.figures.maps`.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from avatarme_edu.figures.maps import guess_kind, show_maps
from avatarme_edu.metrics import angular_error_map

ERROR_KINDS = ("color", "gray", "normal")


def error_map(pred: torch.Tensor, truth: torch.Tensor, kind: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-texel error ``(1, H, W)`` of ``pred`` against ``truth`` (both ``(C, H, W)``), 0 outside ``mask``.

    ``kind``: ``color`` or ``gray`` - the absolute difference averaged over the channels (map units);
    ``normal`` - the angle between the normals in degrees (:func:`~avatarme_edu.metrics.angular_error_map`).
    """
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; valid kinds are: {', '.join(ERROR_KINDS)}")
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"pred and truth must be (C, H, W) maps of one shape, got {tuple(pred.shape)} "
                         f"and {tuple(truth.shape)}")
    if kind == "normal":
        return angular_error_map(pred, truth, mask)[None]
    err = (pred.float() - truth.float()).abs().mean(0, keepdim=True)
    return err * mask.to(err.device) if mask is not None else err


def compare_maps(inputs: dict[str, torch.Tensor], prediction: torch.Tensor, truth: torch.Tensor, kind: str,
                 mask: torch.Tensor | None = None, kinds: dict[str, str] | None = None,
                 title: str | None = None) -> Figure:
    """One row: ``inputs`` (name -> map), the prediction, the ground truth and the error heat map.

    ``kind``: how prediction and truth are shown and compared (``color``, ``gray``, ``normal``);
    ``kinds`` overrides the display kind of an input by name (default: guessed from its name and
    channels). The error panel's title says its unit; its colour bar gives the scale.
    """
    err = error_map(prediction, truth, kind, mask)
    unit = "angle (deg)" if kind == "normal" else "|error|"
    panels = {**inputs, "prediction": prediction, "ground truth": truth, f"error: {unit}": err}
    shown = {**(kinds or {}), "prediction": kind, "ground truth": kind, f"error: {unit}": "heat"}
    for name, m in inputs.items():
        shown.setdefault(name, guess_kind(name, m))
    return show_maps(panels, kinds=shown, mask=mask, ncols=len(panels), title=title)


def region_box(region: torch.Tensor, size: int, side: str | None = None) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a ``size`` x ``size`` crop centred on ``region``'s centroid.

    ``region``: ``(H, W)`` weights or bool (e.g. ``subject.regions["eyes"]``). The box is moved
    inside the map when the centroid is near a border and shrunk to the map when ``size`` is larger.
    ``side``: ``"left"`` or ``"right"`` keeps only that half of the map as shown (columns left or right
    of the centre; the UV layout is symmetric about it), for regions that come in pairs - the two
    eyes' centroid is the bridge of the nose.
    """
    if region.ndim != 2:
        raise ValueError(f"region must be an (H, W) map, got shape {tuple(region.shape)}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if side not in (None, "left", "right"):
        raise ValueError(f"side must be None, 'left' or 'right', got {side!r}")
    w8 = region.detach().cpu().double().clamp_min(0)
    if side is not None:
        half = w8.shape[1] // 2
        w8 = w8.clone()
        if side == "left":
            w8[:, half:] = 0
        else:
            w8[:, :half] = 0
    total = float(w8.sum())
    if total <= 0:
        raise ValueError("the region is empty: no texel has a positive weight")
    h, w = w8.shape
    cy = float((w8.sum(1) * torch.arange(h, dtype=torch.float64)).sum()) / total
    cx = float((w8.sum(0) * torch.arange(w, dtype=torch.float64)).sum()) / total
    bh, bw = min(size, h), min(size, w)
    top = int(round(cy - bh / 2))
    left = int(round(cx - bw / 2))
    return min(max(top, 0), h - bh), min(max(left, 0), w - bw), bh, bw


def normal_detail(normals: torch.Tensor, base: torch.Tensor, gain: float) -> torch.Tensor:
    """``(3, H, W)`` display image in [0, 1]: ``0.5 + gain * (normals - base)``, clipped.

    The deviation of unit normals ``(3, H, W)`` from a smooth ``base`` (e.g. the shape normals N_T or
    N_O) is what pores and wrinkles add: a fraction of a degree, invisible as ``n * 0.5 + 0.5``.
    Use one ``gain`` for the maps that are compared (see :func:`detail_gain`); flat grey means no detail.
    """
    if normals.shape != base.shape or normals.ndim != 3 or normals.shape[0] != 3:
        raise ValueError(f"normals and base must be (3, H, W) maps of one shape, got {tuple(normals.shape)} "
                         f"and {tuple(base.shape)}")
    return (0.5 + gain * (normals.float() - base.float())).clamp(0, 1)


def detail_gain(normals: torch.Tensor, base: torch.Tensor, mask: torch.Tensor | None = None,
                reach: float = 0.45) -> float:
    """The gain that maps the 99th percentile of ``|normals - base|`` (per component, in ``mask``) to
    ``reach`` in :func:`normal_detail`."""
    d = (normals.float() - base.float()).abs()
    d = d[:, mask.to(d.device)] if mask is not None else d.flatten(1)
    d = d.flatten()[: 1 << 24]
    top = float(torch.quantile(d, 0.99)) if d.numel() else 0.0
    return reach / max(top, 1e-9)


def zoom_crops(images: dict[str, np.ndarray | torch.Tensor], boxes: dict[str, tuple[int, int, int, int]],
               width: float = 2.6, title: str | None = None) -> Figure:
    """A grid of crops: one row per entry of ``boxes`` (name -> ``(top, left, h, w)``, e.g. from
    :func:`region_box`), one column per entry of ``images``.

    ``images``: name -> a display-ready image, ``(H, W, 3)`` numpy (e.g. from
    :func:`~avatarme_edu.figures.maps.to_display`) or ``(3, H, W)`` tensor in [0, 1] (e.g. from
    :func:`normal_detail`); all of one size. Crops are drawn with nearest-neighbour sampling, so
    every texel shows as a square.
    """
    if not images or not boxes:
        raise ValueError("give at least one image and one box")
    shown = {k: _hwc(v, k) for k, v in images.items()}
    sizes = {v.shape[:2] for v in shown.values()}
    if len(sizes) != 1:
        raise ValueError(f"all images must have one size, got {sorted(sizes)}")
    (h, w), = sizes
    for name, (t, l, bh, bw) in boxes.items():
        if t < 0 or l < 0 or bh < 1 or bw < 1 or t + bh > h or l + bw > w:
            raise ValueError(f"box {name!r} = {(t, l, bh, bw)} is not inside the {w}x{h} images")
    rows, cols = len(boxes), len(shown)
    fig = Figure(figsize=(width * cols, width * rows + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, (region, (t, l, bh, bw)) in enumerate(boxes.items()):
        for j, (name, img) in enumerate(shown.items()):
            ax = axes[i, j]
            ax.imshow(img[t:t + bh, l:l + bw], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{region}\n{bw}x{bh} at ({l}, {t})", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def _hwc(img, name: str) -> np.ndarray:
    if torch.is_tensor(img):
        if img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(f"image {name!r}: a tensor must be (3, H, W), got {tuple(img.shape)}")
        img = img.detach().cpu().float().permute(1, 2, 0).numpy()
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image {name!r} must be (H, W, 3), got {img.shape}")
    return np.clip(img, 0.0, 1.0)
