"""dlib's CNN face detector (MMOD), the second opinion of :mod:`.landmarks` when HOG finds no face.

**Why HOG misses the synthetic renders** (:mod:`.synthetic`, 384x384; measured on 48 renders, 32 of
training identities and the 16 held-out ones): HOG found a face (plausibility >= 0.65) in 31 and
missed 17. Not for the size: the faces are 150-170 px wide (eyes 65-80 px apart), found and missed
alike, and dlib's up-sampling does not help (mean score of the true face at 0, 1, 2 up-samplings:
found 0.65 / 0.90 / 0.64, missed -0.23 / -0.24 / -0.39). Hardly for the pose: |yaw| 13 vs 15 degrees
on average, the score barely correlated with it (r = -0.10), and 5 missed renders are within 10
degrees of frontal. It is what the faces look like to a detector trained on photos: bald painted
heads on a cylinder neck (no hair outline, no ears to speak of, no shoulders), faint eyebrows, eyes
with white all round, and the in-the-wild light's low contrast (the missed renders are darker:
mean grey 134 vs 148). HOG's score on the true face is below 1 in most renders (median 0.65), where
a real portrait scores 1.5 or more.

dlib's CNN detector (``mmod_human_face_detector.dat``, ships with ``face-recognition-models``: a
small convolutional network trained with max-margin object detection, King 2015) boxes all 48 faces
(confidence above 0.9 in 45, 0.03-0.76 in three; 1.0-1.1 on the real photos), but costs ~10 us per pixel at one
CPU thread (0.9-1.4 s at 384x384, 2.4 s at 512x512; HOG with its checks: 0.12 s). So it runs only
when HOG finds no face at all, on the working image down-sampled to :data:`CNN_MAX_SIDE`.

Its boxes are framed differently from HOG's (smaller, a little higher), and the 68-point shape
predictor (and the landmark embedding learned from its points, :mod:`.landmark_embedding`) expects
HOG's framing, so each CNN box is mapped to the HOG box of the same face (:func:`hog_like_box`,
:data:`HOG_FROM_CNN`: the median over the 31 training renders where both found the face). Inner
landmarks (brows, eyes, nose, mouth) vs the true ones on training renders, in eye distances: HOG's
box 0.096 mean / 0.081 median, the CNN's raw box 0.118 / 0.104, the mapped box 0.098 / 0.070.

A CNN box counts as a face like a HOG box does (:mod:`.landmarks`): its landmarks are placed, the
face is cut out aligned on them and the CNN must find it again there, centred
(:meth:`CnnDetector.chip_confidence`); ``plausibility`` = confidence + that confidence. On the
training renders faces score 1.5-2.1 (two renders with a poor CNN box: 0.35 and 1.0), the real
photos (also blurred, darkened, halved) 1.9-2.2; the non-faces tried give no CNN box at all
(scikit-image's rocket and the astronaut's mission patch, grey, noise, matplotlib's gift-pack photo,
a terrain map, a logo, backs of rendered heads), except UV texture maps of faces (a face unwrapped
flat): 0.3-1.35. :data:`~avatarme_edu.fitting.landmarks.CNN_MIN_PLAUSIBILITY` is 1.4.
"""

from __future__ import annotations

import math

import numpy as np

from avatarme_edu.fitting.dlib_models import CNN_FACE_DETECTOR, import_dlib, model_path

CNN_MAX_SIDE = 384  # px: larger working images are down-sampled to this long side for the CNN (faces >= ~45 px there)
# HOG box of the same face = CNN box moved by (dx, dy) box widths and scaled by s about its centre
HOG_FROM_CNN = (0.015, 0.026, 1.13)
CHIP = 128  # px: the landmark-aligned chip the CNN checks a face on (the face fills its middle half)


class CnnDetector:
    """dlib's CNN face detector, loaded once."""
    _instance = None

    def __init__(self):
        dlib = import_dlib()
        self.net = dlib.cnn_face_detection_model_v1(str(model_path(CNN_FACE_DETECTOR)))

    @classmethod
    def get(cls) -> "CnnDetector":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def boxes(self, rgb: np.ndarray, max_side: int = CNN_MAX_SIDE) -> list[tuple[tuple[float, float, float, float], float]]:
        """Faces in ``rgb`` ``(H, W, 3)`` uint8: ``[((left, top, right, bottom), confidence)]`` in ``rgb``'s
        pixels, most confident first; the image is down-sampled to ``max_side`` on its long side first."""
        import cv2

        h, w = rgb.shape[:2]
        f = min(1.0, max_side / max(h, w))
        small = rgb if f == 1.0 else cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))),
                                                interpolation=cv2.INTER_AREA)
        out = []
        for m in self.net(np.ascontiguousarray(small), 0):
            r = m.rect
            out.append(((r.left() / f, r.top() / f, (r.right() + 1) / f, (r.bottom() + 1) / f), float(m.confidence)))
        out.sort(key=lambda b: b[1], reverse=True)
        return out

    def chip_confidence(self, image: np.ndarray, shape) -> float:
        """The CNN's confidence that the face chip of ``image`` aligned on the 68 landmarks ``shape`` (a
        dlib ``full_object_detection``) holds a face where a face must be (centred, filling about half
        of the chip); ``-inf`` when it finds none there. Landmarks placed on a real face give an upright,
        centred chip; on a false alarm they do not."""
        dlib = import_dlib()
        chip = dlib.get_face_chip(image, shape, CHIP, 0.5)
        best = -math.inf
        for m in self.net(chip, 0):
            r = m.rect
            cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
            if max(abs(cx - CHIP / 2), abs(cy - CHIP / 2)) < 0.15 * CHIP and 0.3 < r.width() / CHIP < 0.9:
                best = max(best, float(m.confidence))
        return best


def hog_like_box(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The box dlib's HOG detector would draw around the face the CNN boxed as ``box`` (see the module
    docstring; :data:`HOG_FROM_CNN`)."""
    dx, dy, s = HOG_FROM_CNN
    w = box[2] - box[0]
    cx, cy = (box[0] + box[2]) / 2 + dx * w, (box[1] + box[3]) / 2 + dy * w
    half = s * w / 2
    return (cx - half, cy - half, cx + half, cy + half)
