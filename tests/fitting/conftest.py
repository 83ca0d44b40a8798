"""Shared, session-scoped fixtures of the fitting tests: the ported network and the committed photos."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTOS = Path(__file__).resolve().parents[2] / "data_samples" / "photos"
PHOTO_NAMES = ("astronaut", "obama_2012", "obama_2009", "obama_2010", "biden_2010")


@pytest.fixture(scope="session")
def face_net():
    from avatarme_edu.fitting.identity import load_face_net
    return load_face_net()


@pytest.fixture(scope="session")
def dlib_face_rec():
    import dlib
    from avatarme_edu.fitting.dlib_models import FACE_RECOGNITION, model_path
    return dlib.face_recognition_model_v1(str(model_path(FACE_RECOGNITION)))


@pytest.fixture(scope="session")
def photos() -> dict:
    """name -> (H, W, 3) uint8 sRGB, exactly what dlib reads."""
    return {n: np.array(Image.open(PHOTOS / f"{n}.jpg").convert("RGB")) for n in PHOTO_NAMES}


@pytest.fixture(scope="session")
def faces(photos) -> dict:
    from avatarme_edu.fitting.landmarks import detect_face
    return {n: detect_face(img) for n, img in photos.items()}


@pytest.fixture(scope="session")
def dlib_shape():
    """A function: our Face -> dlib's full_object_detection (landmarks are dlib's integer points)."""
    import dlib

    def convert(face):
        box = dlib.rectangle(*(int(round(v)) for v in face.box))
        pts = dlib.points([dlib.point(int(x), int(y)) for x, y in face.landmarks])
        return dlib.full_object_detection(box, pts)
    return convert
