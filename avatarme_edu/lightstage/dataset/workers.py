"""Worker processes for ``make_dataset``: ``concurrent.futures`` with spawned processes, one torch thread each.

A worker ends when its parent dies, however it dies (on Linux the kernel signals it; elsewhere a
thread notices the parent is gone), and removes the subject it was writing first: a killed run leaves
finished subjects and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import torch

from avatarme_edu.atomic import TMP_PREFIX
from avatarme_edu.lightstage.dataset.subject_files import write_identity
from avatarme_edu.profiles import Profile

_worker: dict = {}  # per worker process: its parent's pid, its head model, the subject in progress


def write_in_processes(jobs: list, workers: int, bar) -> None:
    """Write the identities of ``jobs`` in ``workers`` spawned processes, one torch thread each.

    Why processes: the work is many small tensor operations, which one thread does about as fast as
    several, so N single-threaded processes make N subjects at a time. Spawned (not forked), so no
    torch thread pool is copied in a broken state. On an error or Ctrl-C the workers are stopped and
    remove their unfinished subject; finished subjects stay for a resume.
    """
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx,
                               initializer=_worker_init, initargs=(os.getpid(),))
    try:
        with _main_not_reimported():  # the workers are started by the first submits
            pending = {pool.submit(_worker_job, *job) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()  # re-raises a worker's error here
                bar.update(1)
    except BaseException:
        for p in list(getattr(pool, "_processes", {}).values()):  # stop the others at once
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker removes its unfinished subject and exits
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def _main_not_reimported():
    """Start spawned workers without re-running the caller's script in each of them.

    ``spawn`` normally imports the parent's ``__main__`` in every child, which runs a student's
    script again (or fails) unless it has the ``if __name__ == "__main__":`` guard. The workers need
    nothing from it (the job is a function of this module), so the main module is hidden from
    multiprocessing while they start.
    """
    import sys
    import types

    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _worker_init(parent_pid: int) -> None:
    """Set up one worker: one torch thread, and end (cleanly) when the parent is gone."""
    torch.set_num_threads(1)
    _worker["parent"] = parent_pid
    signal.signal(signal.SIGTERM, _worker_exit)
    signal.signal(signal.SIGINT, _worker_exit)  # Ctrl-C reaches the whole group; the parent reports it
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _worker_exit)
    try:  # Linux: the kernel sends SIGTERM when the parent dies, even by SIGKILL
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        _worker_exit()
    threading.Thread(target=_watch_parent, daemon=True).start()  # elsewhere: poll


def _watch_parent() -> None:
    while os.getppid() == _worker["parent"]:
        time.sleep(0.5)
    _worker_exit()


def _worker_exit(*_) -> None:
    """Remove the subject in progress (its temporary folder) and end this worker now."""
    folder = _worker.get("folder")
    if folder is not None:
        for tmp in folder.parent.glob(f"{TMP_PREFIX}{folder.name}-*"):
            shutil.rmtree(tmp, ignore_errors=True)
    os._exit(1)


def _worker_job(identity_id: int, profile: Profile, expressions, all_expressions, folder: Path, fmt: str) -> int:
    """One identity in a worker process (see :func:`_write_in_processes`)."""
    if "head" not in _worker:
        from avatarme_edu.geometry.head import load_eduhead

        _worker["head"] = load_eduhead(device=profile.torch_device)
    _worker["folder"] = folder
    if not folder.exists():
        write_identity(identity_id, profile, tuple(expressions), all_expressions, folder, fmt, head=_worker["head"])
    _worker["folder"] = None
    return identity_id
