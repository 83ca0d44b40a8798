"""Where dlib's model files live on this machine.

dlib's face models are not downloaded at run time: they come with the PyPI package
``face-recognition-models`` (an sdist holding the ``.dat`` files). Importing that package needs
``pkg_resources``, which current setuptools no longer ships, so the files are located *by path*:
:func:`importlib.util.find_spec` finds the package folder without running its ``__init__``.

=========================================  =========================================================
file                                       what it is
=========================================  =========================================================
``shape_predictor_68_face_landmarks.dat``  the 68 iBUG landmarks (regression trees, Kazemi and
                                           Sullivan 2014), trained on iBUG 300-W: **not for
                                           commercial use** (300-W's terms)
``dlib_face_recognition_resnet_model_v1``  the face-recognition ResNet (128-D descriptors, 99.38 %
                                           on LFW), ported to torch in :mod:`.identity`
``mmod_human_face_detector.dat``           the CNN face detector (MMOD; ~1 s a photo on a CPU),
                                           asked when HOG finds no face (:mod:`.face_cnn`)
=========================================  =========================================================
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = "face_recognition_models"
PIP_NAME = "face-recognition-models"

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
FACE_RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"
CNN_FACE_DETECTOR = "mmod_human_face_detector.dat"


class DlibModelError(RuntimeError):
    """A dlib model file or dlib itself is missing; the message says what to install."""


def models_dir() -> Path:
    """The folder holding the installed ``.dat`` files, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DlibModelError(f"dlib's model files are missing: install them with "
                             f"`pip install {PIP_NAME}` (the package {PACKAGE!r} was not found)")
    for root in spec.submodule_search_locations:
        folder = Path(root) / "models"
        if folder.is_dir():
            return folder
    raise DlibModelError(f"the package {PACKAGE!r} has no models/ folder; reinstall it with "
                         f"`pip install --force-reinstall {PIP_NAME}`")


def model_path(name: str) -> Path:
    """Path of one model file, e.g. ``model_path(LANDMARKS_68)``."""
    path = models_dir() / name
    if not path.is_file():
        raise DlibModelError(f"dlib model file {name!r} is missing from {path.parent}; reinstall it with "
                             f"`pip install --force-reinstall {PIP_NAME}`")
    return path


def import_dlib():
    """``import dlib`` with an error that names the wheel to install."""
    try:
        import dlib
    except ImportError as e:
        raise DlibModelError(f"dlib is not installed: `pip install dlib-bin` (a prebuilt wheel) ({e})") from None
    return dlib
