"""Map files on disk (PNG) and user photos.

Each kind of map has one file format (DESIGN.md section 2):

=========  ==========================  ==========================================================
kind       in memory                   on disk
=========  ==========================  ==========================================================
color      (3, H, W) linear RGB [0,1]  8-bit sRGB PNG (the usual way to look at a texture)
normal     (3, H, W) unit vectors      16-bit RGB PNG holding ``n * 0.5 + 0.5`` (8 bits would
                                       quantise directions to ~0.5 degree and show banding)
gray       (1, H, W) in [0, 1]         16-bit single-channel PNG (e.g. specular albedo)
mask       (H, W) bool                 8-bit single-channel PNG, 0 or 255
=========  ==========================  ==========================================================

Pillow cannot write 16-bit RGB PNGs, so maps are encoded and decoded with OpenCV
(``opencv-python-headless``), which handles 8/16-bit and 1/3 channels alike. OpenCV orders colour
channels B, G, R; the flips below keep files standard RGB. Files are written atomically: the PNG
is encoded in memory, written to a temporary file next to the target and renamed over it, so a
crash or a bad map never leaves a half-written file.

User photos (:func:`load_photo`) are read with Pillow instead, which knows JPEG EXIF orientation
and many formats; every problem with a photo raises :class:`PhotoError` naming the file.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from avatarme_edu.color import linear_to_srgb, srgb_to_linear

MAP_KINDS = ("color", "normal", "gray", "mask")
_CHANNELS = {"color": 3, "normal": 3, "gray": 1, "mask": 1}


def _cv2():
    # Imported on first use so that importing the package stays cheap.
    import cv2
    return cv2


def _check_kind(kind: str) -> None:
    if kind not in MAP_KINDS:
        raise ValueError(f"unknown map kind {kind!r}; valid kinds are: {', '.join(MAP_KINDS)}")


def _check_png(path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise ValueError(f"maps are stored as PNG; the file name must end in .png, got {str(path)!r}")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows within one file system
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _as_chw(m: torch.Tensor, kind: str) -> torch.Tensor:
    """Validate a map for ``kind`` and return it as ``(C, H, W)`` on the CPU."""
    if not torch.is_tensor(m):
        raise ValueError(f"a {kind} map must be a torch tensor, got {type(m).__name__}")
    if m.ndim == 2 and kind in ("gray", "mask"):
        m = m.unsqueeze(0)
    want = _CHANNELS[kind]
    if m.ndim != 3 or m.shape[0] != want or m.shape[1] == 0 or m.shape[2] == 0:
        shape = "(H, W) or (1, H, W)" if want == 1 else "(3, H, W)"
        raise ValueError(f"a {kind} map must be {shape}, got shape {tuple(m.shape)}")
    m = m.detach().cpu()
    if kind == "mask":
        return m.bool()
    m = m.float()
    if not torch.isfinite(m).all():
        raise ValueError(f"the {kind} map holds NaN or infinite values; nothing was written")
    return m


def _to_hwc_numpy(m: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W, C)`` numpy in OpenCV's BGR channel order."""
    a = m.permute(1, 2, 0).numpy()
    return np.ascontiguousarray(a[..., ::-1]) if a.shape[2] == 3 else a[..., 0]


def save_map(path: str | os.PathLike, map: torch.Tensor, kind: str) -> Path:
    """Write one map as a PNG (see the module docstring for the format of each kind).

    Colour and grey values outside [0, 1] and normal components outside [-1, 1] are clipped;
    NaN or infinite values raise ``ValueError`` before anything is written. Returns the path.
    """
    _check_kind(kind)
    path = Path(path)
    _check_png(path)
    m = _as_chw(map, kind)
    if kind == "color":
        img = (linear_to_srgb(m) * 255.0).round().to(torch.uint8)
    elif kind == "normal":
        img = ((m * 0.5 + 0.5).clamp(0, 1) * 65535.0).round().to(torch.int32)
    elif kind == "gray":
        img = (m.clamp(0, 1) * 65535.0).round().to(torch.int32)
    else:  # mask
        img = m.to(torch.uint8) * 255
    arr = _to_hwc_numpy(img)
    if kind in ("normal", "gray"):
        arr = arr.astype(np.uint16)
    ok, buf = _cv2().imencode(".png", arr)
    if not ok:
        raise ValueError(f"could not encode the {kind} map for {str(path)!r}")
    _atomic_write(path, buf.tobytes())
    return path


def load_map(path: str | os.PathLike, kind: str) -> torch.Tensor:
    """Read a map written by :func:`save_map`; the inverse of it.

    Returns ``(3, H, W)`` float32 linear RGB for ``color``, ``(3, H, W)`` float32 unit vectors for
    ``normal`` (renormalised after quantisation; a stored zero vector stays zero), ``(1, H, W)``
    float32 for ``gray`` and ``(H, W)`` bool for ``mask`` (the project's mask convention).
    8-bit and 16-bit files are both accepted for every kind.
    """
    _check_kind(kind)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"map file not found: {str(path)!r}")
    cv2 = _cv2()
    arr = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"{str(path)!r} is not a readable image file")
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    else:
        raise ValueError(f"{str(path)!r} has unsupported pixel type {arr.dtype}; expected 8 or 16 bit")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if channels == 4:
        arr, channels = arr[..., :3], 3  # an alpha channel carries nothing for a map
    if channels != _CHANNELS[kind]:
        raise ValueError(f"{str(path)!r} has {channels} channel(s) but a {kind} map needs {_CHANNELS[kind]}")
    if channels == 3:
        arr = arr[..., ::-1]  # BGR -> RGB
    else:
        arr = arr[..., None] if arr.ndim == 2 else arr
    m = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32) / scale).permute(2, 0, 1).contiguous()
    if kind == "color":
        return srgb_to_linear(m)
    if kind == "normal":
        return torch.nn.functional.normalize(m * 2.0 - 1.0, dim=0)
    if kind == "gray":
        return m
    return m[0] >= 0.5


# --------------------------------------------------------------------------------------------
# User photos
# --------------------------------------------------------------------------------------------

class PhotoError(ValueError):
    """A user photo cannot be used; the message names the file and the problem."""


class PhotoWarning(UserWarning):
    """A user photo was usable but had to be changed (grey -> RGB, alpha dropped, downscaled)."""


MIN_PHOTO_SIDE = 64
MAX_PHOTO_PIXELS = 40_000_000


def load_photo(path: str | os.PathLike, max_side: int = 1024, max_pixels: int = MAX_PHOTO_PIXELS,
               min_side: int = MIN_PHOTO_SIDE) -> torch.Tensor:
    """Read a photo of a face as ``(3, H, W)`` float32 linear RGB in [0, 1] (on the CPU).

    What happens to unusual photos (decided here, once, for the whole project):

    * the EXIF orientation tag is applied, so phone photos come out upright;
    * grey photos are copied to R, G and B (with a :class:`PhotoWarning`: the albedo will be grey);
    * transparent photos (RGBA, LA, palette with transparency) are composited onto white and the
      alpha dropped (with a :class:`PhotoWarning`);
    * photos larger than ``max_side`` on their longer side are downscaled (Lanczos, in sRGB);
    * photos above ``max_pixels`` (40 megapixels) are refused, unless they are JPEGs that can be
      decoded directly at 1/2, 1/4 or 1/8 size under the limit (cheap, never decodes the full image);
    * photos whose shorter side is below ``min_side`` (64 px) are refused: there is no face to fit;
    * colour profiles are ignored: pixel values are taken as sRGB.

    Raises:
        PhotoError: missing file, a folder, not an image or an unsupported format, a corrupt or
            truncated file, too small, too large. The message names the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not isinstance(max_side, int) or max_side < min_side:
        raise ValueError(f"max_side must be an integer >= min_side={min_side}, got {max_side!r}")
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise PhotoError(f"photo not found: {name!r}")
    if not path.is_file():
        raise PhotoError(f"{name!r} is not a file (a folder?); give the path of one photo")
    if path.stat().st_size == 0:
        raise PhotoError(f"photo {name!r} is empty (0 bytes); was the download or copy interrupted?")

    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        raise PhotoError(f"{name!r} is not an image Pillow can read (is it a photo? JPEG or PNG work)") from None
    except Image.DecompressionBombError:
        raise PhotoError(f"{name!r} is far too large (over {Image.MAX_IMAGE_PIXELS * 2 / 1e6:.0f} megapixels); "
                         f"resize it to under {max_pixels / 1e6:.0f} megapixels") from None
    except OSError as e:
        raise PhotoError(f"cannot open photo {name!r}: {e}") from None

    with img:
        w, h = img.size
        if w * h > max_pixels and img.format == "JPEG":
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly; ask for the smallest scale
            # that still keeps the long side >= max_side.
            img.draft("RGB", (max(max_side, 1), max(max_side, 1)))
            w, h = img.size
        if w * h > max_pixels:
            raise PhotoError(f"{name!r} is {w}x{h} = {w * h / 1e6:.1f} megapixels, above the limit of "
                             f"{max_pixels / 1e6:.0f}; resize it first (a face needs far fewer pixels)")
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
        except (OSError, SyntaxError, ValueError) as e:
            raise PhotoError(f"photo {name!r} is corrupt or truncated ({e})") from None
        w, h = img.size
        if min(w, h) < min_side:
            raise PhotoError(f"photo {name!r} is only {w}x{h} pixels; it needs at least {min_side} px "
                             "on the shorter side to show a face")
        rgb = _to_rgb(img, name)
        if max(w, h) > max_side:
            scale = max_side / max(w, h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        arr = np.asarray(rgb, dtype=np.float32) / 255.0
    return srgb_to_linear(torch.from_numpy(arr).permute(2, 0, 1).contiguous())


def _to_rgb(img, name: str):
    """Any Pillow mode -> 8-bit ``RGB`` image, warning when information is dropped."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit grey: Pillow's convert("L") would clip instead of scale
        a = np.asarray(img, dtype=np.float64)
        peak = 1.0 if img.mode == "F" else (255.0 if a.max() <= 255 else 65535.0)
        a = np.clip(a / peak, 0, 1)
        img = Image.fromarray((a * 255 + 0.5).astype(np.uint8))  # 2-D uint8 -> mode "L"
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or \
        (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        warnings.warn(f"photo {name!r} has transparency; it was composited onto white and the "
                      "alpha channel dropped", PhotoWarning, stacklevel=3)
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("L", "1"):
        warnings.warn(f"photo {name!r} is greyscale; it was copied to R, G and B, so the recovered "
                      "albedo will be grey", PhotoWarning, stacklevel=3)
    return img.convert("RGB")
