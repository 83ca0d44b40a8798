"""Writing files so that no half-written file, ``.part`` or empty folder is ever left behind.

The one home of atomic writing in the project. Every output is written *beside* its target (a hidden
temporary name in the same folder, so the final rename stays on one file system), flushed to disk,
and renamed over the target in one step: a reader sees the old file or the new one, never half of
one. Any exception on the way, ``KeyboardInterrupt`` included, removes the temporary file.

* :func:`atomic_path` - a context manager yielding the temporary path, for writers that want a file
  name (``safetensors.save_file``, ``Figure.savefig``);
* :func:`write_bytes` / :func:`write_text` - the common case;
* :func:`atomic_dir` - a whole folder that appears at once (a dataset subject);
* :func:`move_into` - move the files of a finished folder into an existing one, file by file, without
  touching files of the user's that are already there;
* :func:`output_folder` - check up front that a folder can be written, create it, and remove what it
  created if the command then fails.

A full disk becomes one :class:`OSError` whose message names the file (``err.filename``), instead
of a library's bare "No space left on device".
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

TMP_PREFIX = ".tmp-"  # every temporary name starts with this; leftovers of a killed run are recognisable


def _temporary_name(path: Path, sep: str = ".") -> Path:
    """A fresh hidden name beside ``path`` (``.tmp-NAME.XXXXXXXX``), not yet created."""
    return path.parent / f"{TMP_PREFIX}{path.name}{sep}{secrets.token_hex(8)}"


def _named(err: OSError, path: Path) -> OSError:
    """``err`` with ``path`` as its file name, so the message can say which file failed."""
    if err.filename:
        return err
    return type(err)(err.errno, err.strerror or os.strerror(err.errno or 0), str(path))


def _fsync_dir(folder: Path) -> None:
    # The rename itself is durable only once the folder's entry is on disk (POSIX only).
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it is synced and renamed to ``path``.

    >>> with atomic_path("out/maps.safetensors") as tmp:   # doctest: +SKIP
    ...     save_file(tensors, str(tmp))

    The parent folder must exist (see :func:`output_folder`). On any exception the temporary file is
    removed and the exception re-raised (an :class:`OSError` then names ``path``).
    """
    path = Path(path)
    tmp = _temporary_name(path)
    try:  # created inside the try: a Ctrl-C at any moment leaves nothing
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes private files; outputs are ordinary ones
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _named(err, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``folder``, renamed to ``folder`` once the block finishes.

    ``folder`` must not exist (a finished folder is never overwritten): it either does not exist or is
    complete. Missing parent folders are created (``--out outputs/astronaut`` on a fresh checkout). On
    any exception the temporary folder is removed.
    """
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(errno.EEXIST, "already exists; a finished folder is never overwritten", str(folder))
    tmp = _temporary_name(folder, "-")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(tmp, 0o700)
        yield tmp
        for f in tmp.rglob("*"):  # mkdtemp is private; the finished folder is ordinary
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
        os.chmod(tmp, 0o755)
        os.replace(tmp, folder)  # atomic: the finished folder appears at once
        _fsync_dir(folder.parent)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _named(err, folder) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_into(src: str | os.PathLike, dst: str | os.PathLike) -> list[Path]:
    """Move every file under ``src`` to the same place under ``dst``, replacing only those files.

    Other files in ``dst`` (a user's own notes beside an export) are left alone; ``src`` is removed
    afterwards. Each file is replaced in one rename. Returns the paths written under ``dst``.
    """
    src, dst = Path(src), Path(dst)
    moved = []
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.rglob("*")):
        if f.is_dir():
            continue
        target = dst / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, target)
        moved.append(target)
    shutil.rmtree(src, ignore_errors=True)
    return moved


def check_writable(folder: str | os.PathLike) -> Path:
    """Make sure ``folder`` can be created and written, without leaving anything behind.

    Walks up to the nearest existing ancestor and creates (and removes) a probe file in it, which
    also catches read-only file systems, where permission bits would say yes. Raises
    :class:`OSError` naming the folder.
    """
    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(probe_dir))
    try:
        fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}probe.", dir=probe_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise type(err)(err.errno, f"cannot write there ({err.strerror})", str(folder)) from None
    return folder


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Check ``folder`` is writable, create it, and yield it; on failure remove what this created.

    Only folders this call created, and only if they are still empty of everything but temporary
    leftovers: nothing of the user's is removed.
    """
    folder = Path(folder)
    check_writable(folder)
    created = []
    p = folder
    while not p.exists():
        created.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for c in created:  # deepest first
            with contextlib.suppress(OSError):
                for leftover in c.glob(f"{TMP_PREFIX}*"):
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
                c.rmdir()  # fails, and is left, when anything else is inside
        raise
