"""dlib's face-chip alignment as a differentiable torch crop (landmarks -> similarity -> grid_sample).

dlib's face-recognition network expects a 150x150 *chip*: the face rotated upright, scaled and
centred so that its landmarks sit where dlib's mean face has them (``get_face_chip_details(shape,
150, 0.25)``). dlib finds the chip with a least-squares **similarity transform** (scale, rotation,
translation) from its mean-face template to 33 of the 68 landmarks (eyebrows and lower lip are left
out: they move with expressions), then samples the photo bilinearly. Chips much smaller than the
face are taken from an image pyramid (blur with [1 4 6 4 1]/16 and halve) to avoid aliasing.

Here the same steps are torch operations, so an identity loss on the chip reaches the image (the
rendering) and, through the similarity, the landmarks.

The mean-face template is not copied from dlib's sources: :func:`dlib_face_template` measures it
from the installed dlib. The least-squares similarity is *linear* in the landmark coordinates, so
moving one landmark by one pixel and watching how dlib's chip changes gives that landmark's
template position (see the function).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from avatarme_edu.fitting.dlib_models import import_dlib

# the 68-point landmarks dlib's alignment uses: nose, eyes, upper mouth (17-26 brows and the
# lower lip 55-59, 65-67 are ignored)
ALIGN_POINTS = tuple(i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67))


def _dlib_similarity(points: np.ndarray, size: int, padding: float) -> np.ndarray:
    """dlib's chip for 68 integer landmarks as the similarity ``[a, b, tx, ty]``.

    The similarity maps template (chip) coordinates ``q`` to the image: ``[[a, -b], [b, a]] q + t``.
    """
    dlib = import_dlib()
    pts = dlib.points([dlib.point(int(x), int(y)) for x, y in points])
    det = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), pts)
    cd = dlib.get_face_chip_details(det, size, padding)
    r = cd.rect
    s = (r.right() - r.left() + 1.0) / cd.cols  # centered_drect stores width - 1
    a, b = s * math.cos(cd.angle), s * math.sin(cd.angle)
    cx, cy = (r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0  # = similarity(size/2, size/2)
    return np.array([a, b, cx - (a * cd.cols / 2 - b * cd.rows / 2), cy - (b * cd.cols / 2 + a * cd.rows / 2)])


@functools.lru_cache(maxsize=8)
def dlib_face_template(size: int = 150, padding: float = 0.25) -> np.ndarray:
    """dlib's mean-face positions of :data:`ALIGN_POINTS` in chip pixels, ``(33, 2)`` float64.

    Measured from dlib: with template points ``q_i`` (centred ``q'_i``, ``S = sum |q'_i|^2``) the
    least-squares similarity has ``da/dx_i = q'_ix / S`` and ``db/dx_i = -q'_iy / S``, so nudging
    each landmark's x and reading dlib's ``a, b`` gives the centred template up to ``S``, which
    follows from ``S = sum |q'_i|^2`` itself; the mean comes from the translation.
    """
    rng = np.random.default_rng(0)
    base = np.round(rng.uniform(200, 800, size=(68, 2)))
    p0 = _dlib_similarity(base, size, padding)
    step = 1000.0  # exact: the similarity is linear in the landmarks, and dlib works in doubles
    grads = []
    for i in ALIGN_POINTS:
        moved = base.copy()
        moved[i, 0] += step
        grads.append((_dlib_similarity(moved, size, padding) - p0)[:2] / step)
    g = np.array(grads)                      # (33, 2): da/dx_i, db/dx_i
    s_sum = 1.0 / (g ** 2).sum()             # S
    centred = np.stack([g[:, 0], -g[:, 1]], axis=1) * s_sum
    a, b, tx, ty = p0
    m = np.array([[a, -b], [b, a]])
    mean = np.linalg.solve(m, base[list(ALIGN_POINTS)].mean(0) - np.array([tx, ty]))
    return centred + mean


def similarity_from_landmarks(landmarks: torch.Tensor, size: int = 150, padding: float = 0.25) -> torch.Tensor:
    """Least-squares similarity from dlib's template to the landmarks, differentiably.

    landmarks: ``(68, 2)`` or ``(N, 68, 2)`` image pixels (x, y) -> ``(N, 4)`` = ``a, b, tx, ty``
    (image = ``[[a, -b], [b, a]] q + t`` for template point ``q``).
    """
    lm = landmarks if landmarks.ndim == 3 else landmarks[None]
    if lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (68, 2) or (N, 68, 2) pixel coordinates; got {tuple(landmarks.shape)}")
    q = torch.as_tensor(dlib_face_template(size, padding), dtype=lm.dtype, device=lm.device)
    p = lm[:, list(ALIGN_POINTS)]
    qc, pc = q - q.mean(0), p - p.mean(1, keepdim=True)
    s_sum = (qc ** 2).sum()
    a = (qc[:, 0] * pc[..., 0] + qc[:, 1] * pc[..., 1]).sum(-1) / s_sum
    b = (qc[:, 0] * pc[..., 1] - qc[:, 1] * pc[..., 0]).sum(-1) / s_sum
    qm, pm = q.mean(0), p.mean(1)
    tx = pm[:, 0] - (a * qm[0] - b * qm[1])
    ty = pm[:, 1] - (b * qm[0] + a * qm[1])
    return torch.stack([a, b, tx, ty], dim=-1)


def _pyramid_down(img: torch.Tensor) -> torch.Tensor:
    """dlib's ``pyramid_down<2>``: blur with [1 4 6 4 1]/16 (no padding) and keep every other pixel.

    Output pixel ``j`` sits at input pixel ``2 j + 2``.
    """
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=img.dtype, device=img.device) / 16.0
    c = img.shape[1]
    img = F.conv2d(img, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), stride=(1, 2), groups=c)
    return F.conv2d(img, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), stride=(2, 1), groups=c)


def chip_grid(sim: torch.Tensor, size: int = 150) -> torch.Tensor:
    """Image pixel coordinates of every chip pixel, ``(N, size, size, 2)`` (x, y), as dlib maps them.

    dlib's chip rectangle is ``size * scale - 1`` pixels wide around the centre, so chip pixel
    ``c`` lands on template coordinate ``size/2 + (c/(size-1) - 1/2) (size - 1/scale)``.
    """
    a, b, tx, ty = sim.unbind(-1)
    scale = torch.sqrt(a * a + b * b)
    u = torch.arange(size, dtype=sim.dtype, device=sim.device) / (size - 1) - 0.5
    span = size - 1.0 / scale                                   # (N,)
    qx = size / 2 + u[None, None, :] * span[:, None, None]      # (N, 1, size): columns
    qy = size / 2 + u[None, :, None] * span[:, None, None]      # (N, size, 1): rows
    x = a[:, None, None] * qx - b[:, None, None] * qy + tx[:, None, None]
    y = b[:, None, None] * qx + a[:, None, None] * qy + ty[:, None, None]
    return torch.stack([x, y], dim=-1)


def pyramid_levels(sim: torch.Tensor, size: int = 150) -> int:
    """How many times dlib halves the image before sampling a chip of this similarity (batch max)."""
    scale = float(torch.sqrt(sim[:, 0] ** 2 + sim[:, 1] ** 2).max())
    w, levels = size * scale - 1.0, 0
    while (w / 2 + 1) ** 2 > size * size:
        levels += 1
        w /= 2
    return levels


def face_chip(image: torch.Tensor, landmarks: torch.Tensor, size: int = 150, padding: float = 0.25,
              antialias: bool = True) -> torch.Tensor:
    """The aligned face chip of dlib, differentiable in ``image`` and ``landmarks``.

    image:     ``(3, H, W)`` or ``(N, 3, H, W)`` float32, any colour space (sampling is linear; use
               sRGB to match dlib's chips, which are cut from 8-bit sRGB photos)
    landmarks: ``(68, 2)`` or ``(N, 68, 2)`` pixel coordinates (x, y) in ``image``
    returns:   ``(N, 3, size, size)``; pixels outside the image are 0, as in dlib.

    With ``antialias`` the image is first reduced by dlib's pyramid when the face is more than
    about twice the chip's size (what ``extract_image_chips`` does).
    """
    img = image if image.ndim == 4 else image[None]
    sim = similarity_from_landmarks(landmarks.to(img.dtype), size, padding)
    if sim.shape[0] != img.shape[0]:
        if img.shape[0] != 1:
            raise ValueError(f"{img.shape[0]} images but {sim.shape[0]} landmark sets")
        img = img.expand(sim.shape[0], -1, -1, -1)
    grid = chip_grid(sim, size)
    if antialias:
        # dlib maps coordinates one level down as p/2 - (1.25, 0.75) (its filter centres output j
        # on input 2j+2, a quarter pixel away); we follow dlib's mapping so that the chips agree.
        for _ in range(pyramid_levels(sim.detach(), size)):
            if min(img.shape[-2:]) < 9:
                break
            img = _pyramid_down(img)
            grid = grid / 2.0 - grid.new_tensor([1.25, 0.75])
    h, w = img.shape[-2:]
    norm = torch.stack([grid[..., 0] * (2.0 / max(w - 1, 1)) - 1.0,
                        grid[..., 1] * (2.0 / max(h - 1, 1)) - 1.0], dim=-1)
    return F.grid_sample(img, norm, mode="bilinear", padding_mode="zeros", align_corners=True)
