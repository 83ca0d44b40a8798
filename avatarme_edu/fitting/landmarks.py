"""Face detection and the 68 iBUG landmarks with dlib, with a robust choice of *the* face.

dlib's HOG detector (Dalal-Triggs features, five sliding-window filters) is fast but also fires on
things that are not faces: on scikit-image's astronaut photo it finds the face and the round mission
patch (a box as large as the face's), and with a lower threshold the name badge too. So every box
is checked before it counts:

1. its 68 landmarks are placed by dlib's shape predictor (Kazemi and Sullivan 2014, trained on
   iBUG 300-W: **research use only**, 300-W's terms exclude commercial use);
2. the face is cut out *aligned on those landmarks* (dlib's face chip) and the detector is run
   again on that chip. Landmarks that sit on a real face give an upright, centred, frontal face
   chip which the detector finds again with a high score; a patch or a badge does not.

``plausibility`` = first score + re-detection score; boxes below :data:`MIN_PLAUSIBILITY` are
dropped (measured on the committed photos rotated, blurred, darkened, shrunk and JPEG-compressed:
faces 0.73 to 5.6, the lowest a strongly blurred face; non-faces, in those and in 17 of
scikit-image's sample pictures, below 0.6). Of the faces left, the largest is taken (the subject of
a portrait), and the result says so when there were several. A lone weak candidate above
:data:`LOW_PLAUSIBILITY` is taken with a warning rather than refused.

When HOG has no box even at :data:`LOW_PLAUSIBILITY` (on the project's synthetic renders - bald,
painted heads - that is a third of the faces), dlib's CNN detector is asked (:mod:`.face_cnn`:
slower, ~1 s a photo at one thread, and more robust to unusual faces). Its boxes are re-framed as
HOG frames faces and checked the same way (landmarks, aligned chip, the CNN again on the chip);
those reaching :data:`CNN_MIN_PLAUSIBILITY` are faces, the largest taken. ``Face.detector`` says
which detector found the face.

Photo sizes: the detector finds faces from about 40 px wide (one 2x up-sampling), so photos are
resampled to a working size first: large ones down to :data:`MAX_WORK_SIDE` on the long side,
small ones (a 150x150 face chip) up to :data:`MIN_WORK_SIDE` on the short side, with a mirrored
border so that a face touching the edge is still seen. Landmarks of down-sampled photos are
placed on the full-resolution photo.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from avatarme_edu.color import linear_to_srgb
from avatarme_edu.fitting.dlib_models import FACE_RECOGNITION, LANDMARKS_68, import_dlib, model_path

MAX_WORK_SIDE = 1024    # px: larger photos are down-sampled for detection
MIN_WORK_SIDE = 320     # px: smaller photos are up-sampled for detection
BORDER = 0.15           # mirrored border around the working image, as a fraction of its size ...
MAX_BORDER = 48         # ... up to this many pixels (it only matters for tight crops; it costs time)
DETECT_THRESHOLD = -0.5  # low on purpose: the landmark check below removes the false alarms
MIN_PLAUSIBILITY = 1.2  # first + re-detection score: clear faces here 1.6 to 5.6, non-faces below 0.6
LOW_PLAUSIBILITY = 0.65  # taken, with a warning, when nothing clearer is found (a blurred face: 0.73)
CNN_MIN_PLAUSIBILITY = 1.4  # CNN confidence + its confidence on the chip: faces 1.5 to 2.1, non-faces below 1.4
_CHIP, _CHIP_PADDING = 200, 0.5  # the chip used for re-detection: the face fills its middle half


class FaceNotFoundError(ValueError):
    """No plausible face in the photo; the message says what was tried."""


class FaceWarning(UserWarning):
    """Something about the face found that the user should know; the message says what."""


class SeveralFacesWarning(FaceWarning):
    """The photo holds more than one face; the largest was taken."""


class UncertainFaceWarning(FaceWarning):
    """The only face candidate is a weak one (blurred, dark, turned away)."""


@dataclass
class Face:
    """One face found in a photo; coordinates in the photo's pixels (x right, y down).

    box:           ``(left, top, right, bottom)`` float, the detector's box
    landmarks:     ``(68, 2)`` float32, the iBUG 68 points (x, y); 0-16 jaw, 17-26 brows,
                   27-35 nose, 36-47 eyes, 48-67 mouth
    score:         the detector's score for the box (higher is more confident)
    plausibility:  score + re-detection score on the landmark-aligned chip (see module docstring); for
                   the CNN detector its confidence + its confidence on that chip
    note:          empty, or a sentence such as "3 faces found; the largest was taken"
    detector:      ``"hog"`` (dlib's HOG detector) or ``"cnn"`` (its CNN detector, :mod:`.face_cnn`,
                   used when HOG finds no plausible face)
    """
    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    plausibility: float
    note: str = ""
    detector: str = "hog"

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def as_uint8_rgb(image) -> np.ndarray:
    """A photo in any common form -> ``(H, W, 3)`` uint8 sRGB, what dlib reads.

    * torch tensors ``(3, H, W)`` or ``(1, H, W)`` float: the project's convention, **linear** RGB in
      [0, 1] (what :func:`avatarme_edu.maps_io.load_photo` returns);
    * numpy arrays ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` as images are stored:
      **sRGB**, uint8 (0-255), uint16 (0-65535) or float (0-1). Grey is copied to R, G and B;
      RGBA is composited onto white (as ``load_photo`` does).
    """
    if isinstance(image, torch.Tensor):
        t = image.detach().to("cpu", torch.float32)
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"a photo tensor must be (3, H, W) linear RGB in [0, 1]; got shape {tuple(t.shape)}")
        srgb = linear_to_srgb(t.clamp(0, 1)).expand(3, -1, -1).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(np.round(srgb * 255.0).astype(np.uint8))
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"a photo array must be (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}")
    if a.dtype == np.uint8 and a.shape[2] != 4:  # the common case: no float copy of a large photo
        return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a)
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError("the photo holds NaN or infinite values")
        f = np.clip(a.astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"photo arrays must be uint8, uint16 or float in [0, 1]; got dtype {a.dtype}")
    if f.shape[2] == 4:  # RGBA: composite onto white
        alpha = f[:, :, 3:]
        f = f[:, :, :3] * alpha + (1.0 - alpha)
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    return np.ascontiguousarray(np.round(f * 255.0).astype(np.uint8))


class _Dlib:
    """dlib's detector and shape predictor, loaded once (and its face-recognition network, on first use)."""
    _instance = None

    def __init__(self):
        dlib = import_dlib()
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(model_path(LANDMARKS_68)))
        self._recognition = None

    @property
    def recognition(self):
        """dlib's ``face_recognition_model_v1`` (the 128-D descriptor), loaded on first use."""
        if self._recognition is None:
            self._recognition = self.dlib.face_recognition_model_v1(str(model_path(FACE_RECOGNITION)))
        return self._recognition

    @classmethod
    def get(cls) -> "_Dlib":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance


def face_recognition_net():
    """dlib's own face-recognition network (``compute_face_descriptor``), loaded once per process."""
    return _Dlib.get().recognition


def _working_image(rgb: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Resample for detection; returns (image, scale photo->work, border in working pixels)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = 1.0
    if max(h, w) > MAX_WORK_SIDE:
        scale = MAX_WORK_SIDE / max(h, w)
    elif min(h, w) < MIN_WORK_SIDE:
        scale = min(MIN_WORK_SIDE / min(h, w), 2 * MAX_WORK_SIDE / max(h, w))
    work = rgb
    if scale != 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        work = cv2.resize(rgb, size, interpolation=interp)
    border = min(int(round(BORDER * min(work.shape[:2]))), MAX_BORDER)
    work = cv2.copyMakeBorder(work, border, border, border, border, cv2.BORDER_REFLECT_101)
    return np.ascontiguousarray(work), scale, border


def _redetection_score(d: _Dlib, img: np.ndarray, shape) -> float:
    """Best detector score on the landmark-aligned chip for a box centred where a face must be."""
    chip = d.dlib.get_face_chip(img, shape, _CHIP, _CHIP_PADDING)
    rects, scores, _ = d.detector.run(chip, 0, -2.0)
    best = -math.inf
    for r, s in zip(rects, scores):
        cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
        size = r.width() / _CHIP
        # an aligned real face is re-found centred, filling about 60 % of the chip
        if abs(cx - _CHIP / 2) < 0.15 * _CHIP and abs(cy - _CHIP / 2) < 0.15 * _CHIP and 0.4 < size < 0.9:
            best = max(best, s)
    return best


def _iou(a: tuple, b: tuple) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _hog_candidates(d: _Dlib, work: np.ndarray, scale: float, border: int) -> list[tuple]:
    """Every box of the HOG detector: ``[(plausibility, score, box in photo pixels, dlib shape on the
    working image, "hog")]``."""
    rects, scores, _ = d.detector.run(work, 1, DETECT_THRESHOLD)
    candidates = []
    for r, s in zip(rects, scores):
        shape = d.predictor(work, r)
        box = tuple(float((v - border) / scale) for v in (r.left(), r.top(), r.right() + 1, r.bottom() + 1))
        candidates.append((s + _redetection_score(d, work, shape), s, box, shape, "hog"))
    return candidates


def _cnn_candidates(d: _Dlib, work: np.ndarray, scale: float, border: int) -> list[tuple]:
    """Every box of the CNN detector (:mod:`.face_cnn`), framed as HOG frames faces, checked like HOG's:
    ``[(confidence + confidence on the landmark-aligned chip, confidence, box in photo pixels, dlib shape
    on the working image, "cnn")]``."""
    from avatarme_edu.fitting.face_cnn import CnnDetector, hog_like_box

    cnn = CnnDetector.get()
    candidates = []
    for raw, conf in cnn.boxes(work):
        hb = hog_like_box(raw)
        shape = d.predictor(work, d.dlib.rectangle(*(int(round(v)) for v in hb)))
        box = tuple(float((v - border) / scale) for v in hb)
        candidates.append((conf + cnn.chip_confidence(work, shape), conf, box, shape, "cnn"))
    return candidates


def _candidates(rgb: np.ndarray, cnn: bool = True):
    """The HOG detector's boxes, and the CNN detector's when no HOG box is even a weak face (``cnn``):
    ``[(plausibility, score, box in photo pixels, dlib shape on the working image, detector)]``, HOG's
    first, each most plausible first; and the working image's scale and border."""
    h, w = rgb.shape[:2]
    if min(h, w) < 16:
        raise FaceNotFoundError(f"the photo is only {w}x{h} pixels; a face needs at least ~40x40")
    d = _Dlib.get()
    work, scale, border = _working_image(rgb)
    candidates = sorted(_hog_candidates(d, work, scale, border), key=lambda c: c[0], reverse=True)
    if cnn and not any(c[0] >= LOW_PLAUSIBILITY for c in candidates):
        candidates += sorted(_cnn_candidates(d, work, scale, border), key=lambda c: c[0], reverse=True)
    return candidates, scale, border


def _is_face(c: tuple) -> bool:
    return c[0] >= (MIN_PLAUSIBILITY if c[4] == "hog" else CNN_MIN_PLAUSIBILITY)


def face_candidates(image, cnn: bool = True) -> list[dict]:
    """Every box dlib's detectors return, false alarms included: the HOG detector's (threshold
    :data:`DETECT_THRESHOLD`) and, when none of them reaches :data:`LOW_PLAUSIBILITY`, the CNN detector's:
    ``[{"box", "score", "plausibility", "face", "detector"}]``, most plausible first per detector - what
    :func:`detect_faces` chooses from, for showing the choice."""
    candidates, _, _ = _candidates(as_uint8_rgb(image), cnn)
    return [{"box": c[2], "score": float(c[1]), "plausibility": float(c[0]), "face": _is_face(c), "detector": c[4]}
            for c in candidates]


def detect_faces(image, cnn: bool = True) -> list[Face]:
    """Every plausible face in the photo, largest first (see the module docstring for the checks).

    ``image``: see :func:`as_uint8_rgb`. The HOG detector's faces that reach :data:`MIN_PLAUSIBILITY`;
    when there is none but a HOG box reaches :data:`LOW_PLAUSIBILITY` (a blurred or dark face), that
    one alone, with a "low confidence" note; when HOG has not even that, the CNN detector's faces
    (``cnn``, :mod:`.face_cnn`) that reach :data:`CNN_MIN_PLAUSIBILITY`. Returns an empty list when
    there is no plausible face.
    """
    rgb = as_uint8_rgb(image)
    d = _Dlib.get()
    candidates, scale, border = _candidates(rgb, cnn)
    kept = []
    for c in candidates:  # a face can be boxed twice (HOG's sub-filters, the CNN): keep the more plausible
        if _is_face(c) and all(_iou(c[2], k[2]) < 0.5 for k in kept):
            kept.append(c)
    note = ""
    hog = [c for c in candidates if c[4] == "hog"]
    if not kept and hog and hog[0][0] >= LOW_PLAUSIBILITY:
        kept = hog[:1]
        note = (f"low confidence: the face's plausibility is {kept[0][0]:.2f} (a clear face scores above "
                f"{MIN_PLAUSIBILITY}); is it blurred, dark or turned away?")
    faces = []
    for plaus, s, box, shape, detector in kept:
        if scale < 1.0:  # landmarks on the full-resolution photo: finer than on the down-sampled one
            full = d.dlib.rectangle(*(int(round(v)) for v in box))
            pts = np.array([[p.x, p.y] for p in d.predictor(rgb, full).parts()], np.float32)
        else:
            pts = (np.array([[p.x, p.y] for p in shape.parts()], np.float32) - border) / scale
        faces.append(Face(box=box, landmarks=pts, score=float(s), plausibility=float(plaus), note=note,
                          detector=detector))
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


def face_near(image, box: tuple, threshold: float = -1.0) -> Face | None:
    """The detector's box (at a low ``threshold``, no plausibility check) overlapping ``box`` (x0, y0,
    x1, y1) best, with its landmarks; None when no box overlaps it (IoU 0.3). For photos whose face is
    known (renders of virtual subjects, :mod:`~avatarme_edu.fitting.landmark_embedding`): there the
    check against false alarms is the known box, and dlib's marginal detections still count."""
    rgb = as_uint8_rgb(image)
    d = _Dlib.get()
    work, scale, border = _working_image(rgb)
    rects, scores, _ = d.detector.run(work, 1, threshold)
    best = None
    for r, sc in zip(rects, scores):
        b = tuple(float((v - border) / scale) for v in (r.left(), r.top(), r.right() + 1, r.bottom() + 1))
        if _iou(b, box) >= 0.3 and (best is None or sc > best[1]):
            best = (r, sc, b)
    if best is None:
        return None
    pts = (np.array([[p.x, p.y] for p in d.predictor(work, best[0]).parts()], np.float32) - border) / scale
    return Face(box=best[2], landmarks=pts, score=float(best[1]), plausibility=float("nan"), note="")


def detect_face(image) -> Face:
    """The face to fit: the largest plausible face of the photo.

    Raises :class:`FaceNotFoundError` when there is none; when there are several, or the only one
    is uncertain, warns with :class:`FaceWarning` and says so in ``Face.note``.
    """
    faces = detect_faces(image)
    if not faces:
        rgb_shape = as_uint8_rgb(image).shape
        raise FaceNotFoundError(
            f"no face found in the {rgb_shape[1]}x{rgb_shape[0]} photo: dlib's detector needs a "
            "roughly frontal, upright face at least ~40 px wide, not covered, reasonably lit")
    face = faces[0]
    if len(faces) > 1:
        face.note = (f"{len(faces)} faces found; the largest (box {tuple(round(v) for v in face.box)}) "
                     "was taken")
        warnings.warn(face.note, SeveralFacesWarning, stacklevel=2)
    elif face.note:
        warnings.warn(face.note, UncertainFaceWarning, stacklevel=2)
    return face
