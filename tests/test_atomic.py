"""The one atomic writer: nothing half-written, no leftovers, a full disk named, user files kept."""

import errno
import os
import subprocess
from pathlib import Path

import pytest

from avatarme_edu import atomic


def test_write_then_interrupt_leaves_only_the_old_file(tmp_path):
    target = tmp_path / "a.bin"
    atomic.write_bytes(target, b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    # Found: a full disk printed "No space left on device: " with no name and left x.obj.part.
    # Simulated here with a write that raises ENOSPC without a file name, as the OS does.
    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as err:
        atomic.write_text(tmp_path / "x.obj", "v 0 0 0\n")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "x.obj")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 64 KiB tmpfs (needs root and mount; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_a_really_full_disk(tiny_disk):
    with pytest.raises(OSError) as err:
        atomic.write_bytes(tiny_disk / "big.bin", b"x" * 200_000)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tiny_disk / "big.bin")
    assert list(tiny_disk.iterdir()) == []


def test_atomic_dir_appears_complete_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(tmp_path / "subject") as tmp:
            (tmp / "a").write_text("1")
            raise RuntimeError("failed half way")
    assert list(tmp_path.iterdir()) == []
    with atomic.atomic_dir(tmp_path / "subject") as tmp:
        (tmp / "a").write_text("1")
    assert (tmp_path / "subject" / "a").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic.atomic_dir(tmp_path / "subject"):
            pass


def test_move_into_keeps_the_users_files(tmp_path):
    dst = tmp_path / "export"
    dst.mkdir()
    (dst / "my_notes.txt").write_text("mine")
    (dst / "avatar.obj").write_text("old")
    src = tmp_path / "new"
    (src / "raw").mkdir(parents=True)
    (src / "avatar.obj").write_text("new")
    (src / "raw" / "mask.png").write_text("m")
    atomic.move_into(src, dst)
    assert (dst / "my_notes.txt").read_text() == "mine" and (dst / "avatar.obj").read_text() == "new"
    assert (dst / "raw" / "mask.png").is_file() and not src.exists()


def test_output_folder_removes_only_what_it_created(tmp_path):
    with pytest.raises(ValueError):
        with atomic.output_folder(tmp_path / "a" / "b"):
            raise ValueError("rejected")
    assert list(tmp_path.iterdir()) == []  # no empty folder left behind
    keep = tmp_path / "keep"
    keep.mkdir()
    with pytest.raises(ValueError):
        with atomic.output_folder(keep):
            raise ValueError("rejected")
    assert keep.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        atomic.check_writable(blocker / "out")


def test_head_onto_a_full_disk_is_one_line_and_leaves_nothing(tiny_disk, capsys):
    # Found: a full disk left x.obj.part and printed "No space left on device: " without a name.
    from avatarme_edu.cli import main

    assert main(["head", "--device", "cpu", "--out", str(tiny_disk / "x.obj")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"No space left on device: {tiny_disk / 'x.obj'}") and len(err.splitlines()) == 1
    assert list(tiny_disk.iterdir()) == []


def test_a_read_only_folder_is_refused_before_work(tiny_disk):
    # Found: a read-only --out was noticed only after 20 s of work.
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    with pytest.raises(OSError, match="cannot write there") as err:
        atomic.check_writable(tiny_disk / "ls")
    assert err.value.filename == str(tiny_disk / "ls")
    from avatarme_edu.lightstage.dataset import make_dataset
    from avatarme_edu.profiles import get_profile

    with pytest.raises(OSError, match="cannot write there"):
        make_dataset(1, 0, get_profile("cpu", "cpu"), tiny_disk / "ls", progress=False)


def test_atomic_dir_creates_missing_parents(tmp_path):
    # `make demo` on a fresh checkout writes outputs/astronaut before outputs/ exists
    with atomic.atomic_dir(tmp_path / "outputs" / "astronaut") as tmp:
        (tmp / "a.txt").write_text("x")
    assert (tmp_path / "outputs" / "astronaut" / "a.txt").read_text() == "x"
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["astronaut"]
