"""Writing: resumes re-verify, nothing is shrunk or half-written, killed runs leave no workers."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from avatarme_edu.lightstage import dataset as ds


@pytest.mark.slow
def test_resume_rewrites_what_fails_its_checksum(small_data, tiny, tmp_path):
    # Found: a resume reported success over a truncated file.
    path = tmp_path / "copy"
    shutil.copytree(small_data, path)
    good = (small_data / "subject_0002" / "neutral.safetensors").read_bytes()
    f = path / "subject_0002" / "neutral.safetensors"
    f.write_bytes(good[:5000])
    (path / "subject_0003" / "subject.json").write_text("")
    ds.make_dataset(6, 0, tiny, path, progress=False, workers=0)
    assert f.read_bytes() == good  # written again, byte for byte
    man = ds.read_manifest(path)
    assert man["rewritten_this_run"] == [2, 3] and man["written_this_run"] == 2
    assert ds.verify_dataset(path) == [] and (path / "manifest.json").read_bytes() != b""


@pytest.mark.slow
def test_resume_with_a_smaller_n_is_refused(small_data, tiny, tmp_path):
    # Found: `dataset 3` on a 6-subject folder shrank the manifest and orphaned subjects 3-5.
    path = tmp_path / "copy"
    shutil.copytree(small_data, path)
    before = (path / "manifest.json").read_bytes()
    with pytest.raises(ValueError, match="would drop 3 of them"):
        ds.make_dataset(3, 0, tiny, path, progress=False, workers=0)
    assert (path / "manifest.json").read_bytes() == before


@pytest.mark.slow
def test_same_dataset_same_bytes(small_data, tiny, tmp_path):
    ds.make_dataset(6, 0, tiny, tmp_path / "again", progress=False, workers=0)
    for f in sorted(small_data.rglob("*.*")):
        assert (tmp_path / "again" / f.relative_to(small_data)).read_bytes() == f.read_bytes(), f.name


def test_a_full_disk_is_one_error_naming_the_file(tiny, tmp_path, monkeypatch):
    # Simulated: the safetensors writer fails as it does on a full disk (its own error type).
    import safetensors.torch
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                              "message: \"No space left on device (os error 28)\" })")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError) as err:
        ds.make_dataset(1, 0, tiny, tmp_path / "ds", progress=False, workers=0)
    assert err.value.errno == errno.ENOSPC and "neutral.safetensors" in err.value.filename
    assert not [p for p in (tmp_path / "ds").iterdir()]  # no subject, no .tmp- folder


def test_impossible_sizes_are_refused_before_any_work(tiny, tmp_path):
    # Found: `dataset 1000000000` raised MemoryError building a list.
    t = time.perf_counter()
    with pytest.raises(OSError, match="on disk"):
        ds.make_dataset(1_000_000_000, 0, tiny, tmp_path / "huge", progress=False)
    assert time.perf_counter() - t < 2 and not (tmp_path / "huge").exists()


SCRIPT = """
import sys
from avatarme_edu.lightstage.dataset import make_dataset
from avatarme_edu.profiles import get_profile
p = get_profile("cpu", "cpu").replace(map_hw=(96, 144), texture_hw=(24, 36))
make_dataset(40, 0, p, sys.argv[1], progress=False, workers=2)
"""


def _workers_of(proc: subprocess.Popen, n: int, timeout: float) -> list:
    parent = psutil.Process(proc.pid)
    end = time.time() + timeout
    while time.time() < end:
        kids = [k for k in parent.children() if "resource_tracker" not in " ".join(k.cmdline())]
        if len(kids) >= n:
            return kids
        time.sleep(0.2)
    raise AssertionError("the worker processes did not start")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_parent_leaves_no_workers_and_no_partial_files(tmp_path, sig):
    # Found: after SIGKILL of the parent, dataset workers kept running and wrote more subjects.
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    workers = _workers_of(proc, 2, 60)
    deadline = time.time() + 60
    while not list(out.glob(".tmp-subject_*")) and time.time() < deadline:
        time.sleep(0.05)  # kill while a subject is half-written
    proc.send_signal(sig)
    proc.wait(30)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "workers outlived their parent"
    n_after = len(list(out.glob("subject_*")))
    time.sleep(1)
    assert len(list(out.glob("subject_*"))) == n_after  # nothing more is written
    assert not list(out.glob(".tmp-*")) and not list(out.rglob("*.part*"))
    for folder in out.glob("subject_*"):
        assert ds.verify_subject(folder) == []  # what is there is complete


def test_paper_sizes_on_this_cpu_are_refused_before_any_work(tmp_path):
    # Found: `dataset 1 --profile paper` on a CPU ran for minutes, then died in the allocator.
    from avatarme_edu import memory
    from avatarme_edu.profiles import get_profile

    paper = get_profile("paper", "cpu")
    if memory.subject_memory(paper.map_hw) <= memory.USABLE_FRACTION * memory.available_memory("cpu"):
        pytest.skip("this machine has the memory for a paper-size subject")
    with pytest.raises(MemoryError, match="--map-size .* or --profile cpu"):
        ds.make_dataset(1, 0, paper, tmp_path / "paper", progress=False)
    assert not (tmp_path / "paper").exists()
