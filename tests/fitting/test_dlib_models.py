import importlib.util
import sys

import pytest

from avatarme_edu.fitting import dlib_models
from avatarme_edu.fitting.dlib_models import FACE_RECOGNITION, LANDMARKS_68, DlibModelError, model_path


def test_model_files_are_found_by_path_without_importing_the_package():
    sys.modules.pop("face_recognition_models", None)
    rec, lm = model_path(FACE_RECOGNITION), model_path(LANDMARKS_68)
    assert rec.stat().st_size == 22_466_066 and lm.stat().st_size > 90_000_000
    assert rec.parent.name == "models" and "face_recognition_models" in str(rec)
    assert "face_recognition_models" not in sys.modules  # its __init__ needs pkg_resources


def test_missing_package_or_file_names_what_to_install(monkeypatch):
    with pytest.raises(DlibModelError, match="model file 'nope.dat' is missing.*pip install --force-reinstall"):
        model_path("nope.dat")
    real = importlib.util.find_spec
    monkeypatch.setattr(dlib_models.importlib.util, "find_spec",
                        lambda name, *a: None if name == dlib_models.PACKAGE else real(name, *a))
    with pytest.raises(DlibModelError, match="pip install face-recognition-models"):
        model_path(LANDMARKS_68)
