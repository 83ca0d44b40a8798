"""Looking at what the browser drew: screenshots of one element, and simple statistics of them."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np


def element_pixels(element) -> np.ndarray:
    """Screenshot of one element as ``(H, W, 3)`` uint8 RGB."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB"))


def save_png(pixels: np.ndarray, name: str) -> Path:
    """Keep a screenshot under /tmp/viewer/ for a human to look at."""
    from PIL import Image

    out = Path(tempfile.gettempdir()) / "viewer"
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(out / name)
    return out / name


def object_stats(pixels: np.ndarray, background) -> dict:
    """How much of a picture is object (not background), and how colourful the object is.

    ``coverage``: fraction of pixels further than 12 (of 255) from the uniform ``background``;
    ``saturated``: fraction of object pixels that are clearly coloured, not grey: chroma
    (max - min channel) above 30 % of the brightest channel (the checker colours, lit or in shade);
    ``hues``: how many of 6 hue sectors hold at least 2 % of the saturated pixels.
    """
    px = pixels.astype(np.int32)
    obj = np.abs(px - np.asarray(background)).max(-1) > 12
    mx, mn = px.max(-1), px.min(-1)
    sat = obj & (mx > 30) & (mx - mn > 0.3 * mx)
    r, g, b = (px[..., k][sat].astype(float) for k in range(3))
    hue = np.degrees(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)) % 360
    counts = np.histogram(hue, bins=6, range=(0, 360))[0]
    return {"coverage": float(obj.mean()), "saturated": float(sat.sum() / max(obj.sum(), 1)),
            "hues": int((counts > 0.02 * max(sat.sum(), 1)).sum())}
