"""Map files on disk (PNG) and user photos.

Each kind of map has one file format (docs/design.md section 2):

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
channels B, G, R; the flips below keep files standard RGB. Files are written atomically
(:mod:`avatarme_edu.atomic`), so a crash or a bad map never leaves a half-written file.

Map readers refuse images above :data:`MAX_MAP_PIXELS` from the file's header, before decoding
anything (a 1 MB PNG can claim 20000x20000 pixels and ask for gigabytes), and every problem with a
map file is one :class:`MapFileError` line naming the file.

Tensors (exact maps, datasets) are stored as safetensors through :func:`save_tensors` /
:func:`load_tensors`: the header is written with sorted keys, so the same tensors give the same bytes
in every process (safetensors itself orders metadata by a per-process hash), and loading names the
file on any problem and refuses NaN or infinite values.

User photos (:func:`load_photo`) are read with Pillow instead, which knows JPEG EXIF orientation
and many formats; every problem with a photo raises :class:`PhotoError` naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from avatarme_edu.atomic import atomic_path, write_bytes
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
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, buf.tobytes())
    return path


class MapFileError(ValueError):
    """A map or tensor file cannot be used; the message names the file and the problem."""


MAX_MAP_PIXELS = 40_000_000  # above the paper's 6144x4096 = 25 Mpx maps; ~1 GB as float32 RGB
MAX_MAP_SIDE = 32_768  # over 5x the paper's widest map; wider "maps" are broken files


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":  # the maps' format: read the header here
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                return img.size
        except Image.DecompressionBombError as e:
            pixels = e.args[0].split("(")[1].split(" ")[0] if "(" in e.args[0] else "too many"
            raise MapFileError(f"{str(path)!r} claims {pixels} pixels ({path.stat().st_size} bytes on disk), "
                               f"far above the limit for a map") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise MapFileError(f"{str(path)!r} is not a readable image file ({type(e).__name__})") from None


def _read_image(path: Path, max_pixels: int) -> np.ndarray:
    """Decode an image file with OpenCV after checking its size; any failure is one MapFileError."""
    if not path.is_file():
        raise FileNotFoundError(f"map file not found: {str(path)!r}")
    size = path.stat().st_size
    if size == 0:
        raise MapFileError(f"{str(path)!r} is empty (0 bytes); was the copy interrupted?")
    w, h = image_size(path)
    if w * h > max_pixels or max(w, h) > MAX_MAP_SIDE:
        raise MapFileError(f"{str(path)!r} is {w}x{h} = {w * h / 1e6:.1f} megapixels ({size} bytes on disk), "
                           f"above the limit of {max_pixels / 1e6:.0f} megapixels or {MAX_MAP_SIDE} pixels a side "
                           "for a map")
    cv2 = _cv2()
    try:
        arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise MapFileError(f"{str(path)!r} cannot be decoded ({str(e).strip().splitlines()[-1]})") from None
    if arr is None:
        raise MapFileError(f"{str(path)!r} is not a readable image file (corrupt or truncated?)")
    return arr


def load_map(path: str | os.PathLike, kind: str, max_pixels: int = MAX_MAP_PIXELS) -> torch.Tensor:
    """Read a map written by :func:`save_map`; the inverse of it.

    Returns ``(3, H, W)`` float32 linear RGB for ``color``, ``(3, H, W)`` float32 unit vectors for
    ``normal`` (renormalised after quantisation; a stored zero vector stays zero), ``(1, H, W)``
    float32 for ``gray`` and ``(H, W)`` bool for ``mask`` (the project's mask convention).
    8-bit and 16-bit files are both accepted for every kind. Files above ``max_pixels`` are refused
    before decoding; every problem raises :class:`MapFileError` (or ``FileNotFoundError``) naming the file.
    """
    _check_kind(kind)
    path = Path(path)
    arr = _read_image(path, max_pixels)
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    else:
        raise MapFileError(f"{str(path)!r} has unsupported pixel type {arr.dtype}; expected 8 or 16 bit")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if channels == 4:
        arr, channels = arr[..., :3], 3  # an alpha channel carries nothing for a map
    if channels != _CHANNELS[kind]:
        raise MapFileError(f"{str(path)!r} has {channels} channel(s) but a {kind} map needs {_CHANNELS[kind]}")
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
# Tensors: safetensors with a fixed header order, loaded with checks
# --------------------------------------------------------------------------------------------

def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> Path:
    """Write ``tensors`` as safetensors, atomically, with a header in sorted-key order.

    safetensors writes its JSON header from a hash map whose order changes from process to process;
    rewriting it sorted (same length, so no tensor moves) makes identical tensors give identical
    bytes. ``metadata``: string values only. Returns the path.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    meta = None if metadata is None else {str(k): str(v) for k, v in metadata.items()}
    with atomic_path(path) as tmp:
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        except SafetensorError as e:  # the Rust writer reports a full disk as its own error type
            code = errno.ENOSPC if "os error 28" in str(e) or "No space" in str(e) else errno.EIO
            raise OSError(code, os.strerror(code), str(path)) from None
        with open(tmp, "r+b") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
            text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            if len(text) > n:  # cannot happen: the same content, reordered
                raise RuntimeError(f"safetensors header of {str(path)!r} grew when sorted")
            f.seek(8)
            f.write(text + b" " * (n - len(text)))
    return path


def load_tensors(path: str | os.PathLike, check_finite: bool = True) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU; any problem is one :class:`MapFileError`.

    ``check_finite``: refuse floating-point tensors holding NaN or infinite values (a corrupted file
    must stop training, not feed it NaN).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tensor file not found: {str(path)!r}")
    try:
        out = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise MapFileError(f"{str(path)!r} is not a readable safetensors file, corrupt or truncated? "
                           f"({str(e).splitlines()[0][:120]})") from None
    if check_finite:
        for k, v in out.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                bad = int((~torch.isfinite(v)).sum())
                raise MapFileError(f"{str(path)!r}: tensor {k!r} holds {bad} NaN or infinite values; the file is corrupt")
    return out


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
        deep_colour = img.format == "PNG" and _png_bit_depth(path) == 16 and img.mode in ("RGB", "RGBA")
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
        if deep_colour:  # Pillow reads 16-bit colour PNGs at 8 bits: say so
            warnings.warn(f"photo {name!r} is a 16-bit colour PNG; it was read at 8 bits per channel "
                          "(enough for a photo to fit)", PhotoWarning, stacklevel=2)
        rgb = _to_rgb(img, name)
        if max(w, h) > max_side:
            scale = max_side / max(w, h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        arr = np.asarray(rgb, dtype=np.float32) / 255.0
    return srgb_to_linear(torch.from_numpy(arr).permute(2, 0, 1).contiguous())


def _png_bit_depth(path: Path) -> int:
    """Bits per channel from a PNG's IHDR chunk (byte 24)."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[24] if len(head) >= 26 and head[12:16] == b"IHDR" else 8


def _to_rgb(img, name: str):
    """Any Pillow mode -> 8-bit ``RGB`` image, warning when information is dropped."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit grey: Pillow's convert("L") would clip instead of scale
        a = np.asarray(img, dtype=np.float64)
        # the mode, not the values, says the scale: a dark 16-bit photo may hold only values < 256
        peak = 1.0 if img.mode == "F" else 65535.0 if img.mode.startswith("I;16") or img.format == "PNG" else \
            (255.0 if a.max() <= 255 else 65535.0)
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
