"""A real install: build the wheel, install it into a fresh virtual environment outside the checkout,
and load EduHead and the sample subject from there.

Offline on purpose: the wheel is built with ``--no-build-isolation`` (setuptools of the running
environment) and installed with ``--no-deps --no-index``; the fresh environment borrows the running
environment's third-party packages (torch, numpy ...) through one ``.pth`` line, which appends that
folder to ``sys.path`` *after* its own site-packages and does not run the editable-install hook in it.
So ``avatarme_edu`` can only come from the installed wheel, and the test checks that it does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# what setuptools needs to build the wheel: the package, its metadata and the files the metadata names
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "avatarme_edu")

# run by the installed interpreter, from a folder that is not the checkout
PROBE = """
import json, sys
import avatarme_edu
from avatarme_edu.geometry.head import DATA_PATH, load_eduhead
from avatarme_edu.lightstage.dataset import SAMPLE_SUBJECT_DIR, load_sample_subject
assert DATA_PATH.is_file(), f"no EduHead model at {DATA_PATH}"  # else load_eduhead would rebuild it
head = load_eduhead()
subject, wild = load_sample_subject()
print(json.dumps({
    "package": avatarme_edu.__file__, "eduhead": str(DATA_PATH), "subject": str(SAMPLE_SUBJECT_DIR),
    "n_vertices": head.n_vertices, "n_identity": head.n_identity, "mean_sum": float(head.mean.sum()),
    "hw": list(subject.reflectance.diffuse_albedo.shape), "mask": int(subject.mask.sum()),
    "albedo_mean": float(subject.reflectance.diffuse_albedo.mean()), "wild_mean": float(wild.high.mean()),
}))
"""


def _run(args, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{' '.join(map(str, args))[:300]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, the wheel's path, a folder outside the checkout)."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.part*"))
        else:
            shutil.copy2(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", root / "dist", src])
    (wheel,) = (root / "dist").glob("avatarme_edu-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_borrowed_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(borrowed)))
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return python, wheel, elsewhere


@pytest.mark.slow
def test_wheel_ships_the_runtime_data_and_nothing_from_tests(installed):
    _, wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("avatarme_edu/data/eduhead/eduhead.safetensors", "avatarme_edu/data/subject_0000/subject.json",
                   "avatarme_edu/data/subject_0000/neutral/diffuse_albedo.png",
                   "avatarme_edu/render/viewer_template.html", "avatarme_edu/resources.py",
                   "avatarme_edu/data/photos/astronaut.jpg"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "data_samples/"))]


@pytest.mark.slow
def test_installed_wheel_loads_eduhead_and_the_sample_subject_outside_the_checkout(installed):
    python, _, elsewhere = installed
    # -I: no PYTHONPATH, no user site, no current folder on sys.path; only the venv and what it borrows
    out = _run([python, "-I", "-c", PROBE], cwd=elsewhere,
               env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(elsewhere)})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    venv = python.parent.parent
    for key in ("package", "eduhead", "subject"):
        assert Path(got[key]).is_relative_to(venv), (key, got[key])  # not the checkout's copy

    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.lightstage.dataset import load_sample_subject

    head = load_eduhead()
    subject, wild = load_sample_subject()
    assert (got["n_vertices"], got["n_identity"]) == (head.n_vertices, head.n_identity)
    assert got["mean_sum"] == pytest.approx(float(head.mean.sum()), rel=1e-6)
    assert got["hw"] == list(subject.reflectance.diffuse_albedo.shape) and got["mask"] == int(subject.mask.sum())
    assert got["albedo_mean"] == pytest.approx(float(subject.reflectance.diffuse_albedo.mean()), rel=1e-6)
    assert got["wild_mean"] == pytest.approx(float(wild.high.mean()), rel=1e-6)


@pytest.mark.slow
def test_installed_console_script_runs(installed):
    python, _, elsewhere = installed
    out = _run([python.with_name("avatarme-edu"), "profile", "--profile", "cpu", "--device", "cpu"], cwd=elsewhere,
               env={"PATH": f"{python.parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(elsewhere)})
    rows = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    assert rows["name"].strip() == "cpu" and rows["map_hw"].strip() == "(384, 576)"
