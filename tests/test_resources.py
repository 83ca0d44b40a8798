"""Bundled data: one function finds it, inside the package, for every loader."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import avatarme_edu
from avatarme_edu.resources import data_path

PACKAGE = Path(avatarme_edu.__file__).parent


def test_data_lives_inside_the_package():
    assert data_path() == PACKAGE / "data"
    assert data_path("eduhead", "eduhead.safetensors").is_file()
    assert (data_path("subject_0000") / "subject.json").is_file()
    assert not data_path("no_such_thing").exists()  # a path to write to, not a check


def test_every_loader_takes_its_path_from_data_path():
    from avatarme_edu.geometry.head import DATA_PATH
    from avatarme_edu.lightstage.dataset import SAMPLE_SUBJECT_DIR

    assert DATA_PATH == data_path("eduhead", "eduhead.safetensors")
    assert SAMPLE_SUBJECT_DIR == data_path("subject_0000")


@pytest.mark.slow
def test_a_zipped_package_is_refused_with_one_clear_line(tmp_path):
    # a real zip import of the package: its data cannot be opened by path, and the error says so
    archive = tmp_path / "avatarme_edu.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in PACKAGE.rglob("*.py"):
            z.write(f, f.relative_to(PACKAGE.parent))
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from avatarme_edu.resources import data_path; "
             "data_path('eduhead')")
    result = subprocess.run([sys.executable, "-I", "-c", probe, str(archive)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode != 0
    assert "RuntimeError: avatarme_edu's data must be plain files" in result.stderr.splitlines()[-1]
