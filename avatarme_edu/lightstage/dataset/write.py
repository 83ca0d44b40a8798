"""Writing the dataset: one identity atomically (:func:`write_subject`), many resumably (:func:`make_dataset`).

**Same inputs, same bytes.** Every subject has its own seed, subjects are always made with ONE torch
thread (in this process as in the workers), and safetensors headers are written in sorted order
(:func:`avatarme_edu.maps_io.save_tensors`): the files are byte-identical whatever ``workers`` and
the caller's thread count are. Across machines they are identical when the CPU and the torch build
are (float rounding of vectorised kernels may differ between CPU families or torch versions); the
recorded ``versions`` say which torch wrote them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import torch

from avatarme_edu.atomic import TMP_PREFIX, atomic_dir, check_writable, write_text
from avatarme_edu.lightstage.dataset.records import (
    DEFAULT_EXPRESSIONS, FORMAT_VERSION, HELD_OUT_EVERY, MAP_KEYS, PNG_KINDS, TEXTURE_KEYS, file_list,
    is_held_out, read_json, read_subject_record, sha256_file, split_of, verify_subject, wild_generator,
)
from avatarme_edu.lightstage.subjects import Subject, make_subject_expressions, subject_dir_name
from avatarme_edu.lightstage.wild import WildTexture, wild_texture
from avatarme_edu.profiles import Profile
from avatarme_edu.seeds import check_seed


def _maps_of(subject: Subject, wild: WildTexture) -> dict[str, torch.Tensor]:
    r, s = subject.reflectance, subject.shape
    return {"texture": wild.high, "diffuse_albedo": r.diffuse_albedo, "specular_albedo": r.specular_albedo,
            "diffuse_normals": r.diffuse_normals, "specular_normals": r.specular_normals,
            "position": s.position, "normals_object": s.normals_object, "normals_tangent": s.normals_tangent,
            "depth": s.depth, "height": subject.height, "mask": r.mask, "texture_low": wild.low,
            "mask_low": wild.mask_low}


def _versions() -> dict:
    import avatarme_edu

    return {"format": FORMAT_VERSION, "avatarme_edu": avatarme_edu.__version__, "torch": torch.__version__}


def mesh_checksum(vertices: torch.Tensor) -> list[float]:
    """Two numbers that change when a mesh's vertices change: their sum and their absolute sum (m)."""
    v = vertices.detach().double().cpu()
    return [float(v.sum()), float(v.abs().sum())]


def subject_bytes(profile: Profile, n_expressions: int = 1) -> int:
    """Bytes one identity takes on disk as safetensors (float16 maps, uint8 masks, float32 vertices)."""
    h, w = profile.map_hw
    th, tw = profile.texture_hw
    per_expression = h * w * (2 * (sum(MAP_KEYS.values()) - 1) + 1) + th * tw * (2 * 3 + 1) + 29_025 * 3 * 4
    return n_expressions * per_expression + 4096


def _subject_record(subjects: list[Subject], wilds: list[WildTexture], profile: Profile, fmt: str,
                    checksums: dict) -> dict:
    s0 = subjects[0]
    return {
        "id": s0.id, "seed": s0.seed, "split": split_of(s0.id), "format": fmt,
        "profile": profile.name, "map_hw": list(s0.hw), "texture_hw": list(wilds[0].mask_low.shape),
        "expressions": [s.expression for s in subjects],
        "identity": [float(x) for x in s0.identity.detach().cpu().tolist()],
        "skin": dataclasses.asdict(s0.skin),
        "texel_mm": list(s0.texel_mm),
        "mesh_checksum": {s.expression: mesh_checksum(s.mesh.vertices) for s in subjects},
        "wild": {s.expression: {"params": w.params.as_dict(), "exposure": w.exposure,
                                "white_balance": list(w.white_balance)} for s, w in zip(subjects, wilds)},
        "files": ["subject.json"] + file_list(fmt, [s.expression for s in subjects]),
        "checksums": checksums,
        "versions": _versions(),
    }


def write_subject(folder: str | os.PathLike, subjects: list[Subject], wilds: list[WildTexture],
                  profile: Profile, fmt: str = "safetensors") -> Path:
    """Write one identity (its expressions and wild textures) atomically to ``folder``.

    The files go into a temporary folder next to ``folder``, which is renamed to ``folder`` once
    everything is written: ``folder`` either does not exist or is complete. ``fmt``:
    ``"safetensors"`` (float16, every map, and the mesh vertices) or ``"png"`` (maps_io PNGs of the
    reflectance maps, textures and masks only, for small committed samples: the mesh is rebuilt from
    the recorded identity coefficients with EduHead, checked against a recorded checksum, and the
    shape maps are baked again on loading). ``subject.json`` records each file's SHA-256.
    """
    from avatarme_edu.maps_io import save_map, save_tensors

    if fmt not in ("safetensors", "png"):
        raise ValueError(f"fmt must be 'safetensors' or 'png', got {fmt!r}")
    if not subjects or len(subjects) != len(wilds):
        raise ValueError(f"need one wild texture per subject, got {len(subjects)} subjects and {len(wilds)} textures")
    if len({s.id for s in subjects}) != 1:
        raise ValueError("write_subject writes one identity: all subjects must share one id")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(folder) as tmp:
        for s, w in zip(subjects, wilds):
            maps = _maps_of(s, w)
            if fmt == "safetensors":
                tensors = {k: (v.to(torch.uint8) if v.dtype == torch.bool else v.to(torch.float16))
                           for k, v in maps.items()}
                tensors["vertices"] = s.mesh.vertices.detach().float()
                save_tensors(tmp / f"{s.expression}.safetensors", tensors,
                             metadata={"id": str(s.id), "expression": s.expression, "format": str(FORMAT_VERSION)})
            else:
                for k, kind in PNG_KINDS.items():
                    _recompress_png(save_map(tmp / s.expression / f"{k}.png", maps[k], kind))
        names = file_list(fmt, [s.expression for s in subjects])
        checksums = {rel: sha256_file(tmp / rel) for rel in names}
        write_text(tmp / "subject.json", json.dumps(_subject_record(subjects, wilds, profile, fmt, checksums),
                                                    indent=1))
    return folder


def _recompress_png(path: Path) -> None:
    """Re-encode a PNG losslessly at zlib's highest level (maps_io favours speed; samples favour size)."""
    import cv2
    import numpy as np

    from avatarme_edu.atomic import write_bytes

    img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if ok and len(buf) < path.stat().st_size:
        write_bytes(path, buf.tobytes())


@contextlib.contextmanager
def one_torch_thread():
    """Run the block with one torch thread: the same float rounding as the worker processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _write_identity(identity_id: int, profile: Profile, expressions, all_expressions, folder: Path, fmt: str,
                    head=None) -> int:
    """Make one identity in its expressions, with a wild texture each, and write it atomically."""
    with one_torch_thread():
        subjects = make_subject_expressions(identity_id, profile, expressions, head=head)
        wilds = [wild_texture(s, profile, wild_generator(identity_id, all_expressions.index(s.expression)))
                 for s in subjects]
    write_subject(folder, subjects, wilds, profile, fmt)
    return identity_id


# ----------------------------------------------------------------------------------------------
# Writing a dataset
# ----------------------------------------------------------------------------------------------


def make_dataset(n_subjects: int, seed: int, profile: Profile, path: str | os.PathLike,
                 expressions=DEFAULT_EXPRESSIONS, progress: bool = True, fmt: str = "safetensors",
                 head=None, workers: int | None = None) -> Path:
    """Write identities ``seed .. seed + n_subjects - 1`` to ``path``; returns the manifest's path.

    ``expressions``: the EduHead expressions per identity (default only ``"neutral"``; pass
    :data:`avatarme_edu.geometry.head.EXPRESSIONS` for the paper's seven). Each gets its own random
    in-the-wild texture. ``progress`` shows a tqdm bar. Finished subjects already in ``path`` are
    kept after checking their settings and every file's checksum; those that fail are written again
    (listed in the manifest's ``rewritten_this_run``). A smaller ``n_subjects`` than the folder holds
    is refused (it would drop identities from the manifest). Writes ``manifest.json`` last.

    ``workers``: processes making subjects side by side (``concurrent.futures``, spawned, one torch
    thread each; 0: all in this process). ``None`` chooses: one per CPU core (at most 4) for a CPU
    profile with 16 or more subjects to write, else 0. The files do not depend on it (module
    docstring); workers end when this process dies, and remove their unfinished subject.
    ``head``: the head model (default EduHead; another model is used in this process only).
    ``fmt``: ``"safetensors"`` or ``"png"``.
    """
    from tqdm.auto import tqdm

    from avatarme_edu.memory import check_disk

    if not isinstance(n_subjects, int) or isinstance(n_subjects, bool) or n_subjects < 1:
        raise ValueError(f"n_subjects must be an int >= 1, got {n_subjects!r}")
    check_seed(seed)
    check_seed(seed + n_subjects - 1, "seed + n_subjects - 1")
    if not isinstance(profile, Profile):
        raise ValueError(f"profile must be an avatarme_edu.profiles.Profile, got {type(profile).__name__}")
    if fmt not in ("safetensors", "png"):
        raise ValueError(f"fmt must be 'safetensors' or 'png', got {fmt!r}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise ValueError(f"workers must be an int >= 0 (0 = make subjects in this process), got {workers!r}")
    expressions = tuple(expressions)
    if not expressions or len(set(expressions)) != len(expressions):
        raise ValueError(f"expressions must be a non-empty list without repeats, got {expressions}")
    path = Path(path)
    check_writable(path)
    manifest_file = path / "manifest.json"
    old = read_json(manifest_file, "manifest") if manifest_file.exists() else None
    if old is not None:
        for key, want in (("map_hw", list(profile.map_hw)), ("texture_hw", list(profile.texture_hw)),
                          ("expressions", list(expressions)), ("format", fmt)):
            if old.get(key) != want:
                raise ValueError(f"{str(path)!r} holds a dataset with {key}={old.get(key)}, not {want}; "
                                 "write to another folder or delete it")
        kept = [s.get("id") for s in old.get("subjects", [])]
        dropped = [i for i in kept if not (isinstance(i, int) and seed <= i < seed + n_subjects)]
        if dropped:
            raise ValueError(f"{str(path)!r} holds identities {min(kept)}..{max(kept)}; writing {n_subjects} from "
                             f"seed {seed} would drop {len(dropped)} of them from the manifest; ask for "
                             f"identities covering them, or write to another folder")
    check_disk(path, n_subjects * subject_bytes(profile, len(expressions)) if fmt == "safetensors" else 0,
               f"{n_subjects} subjects of {profile.map_hw[0]}x{profile.map_hw[1]} maps")
    default_head = head is None  # worker processes can load EduHead themselves, not another model
    if head is None:
        from avatarme_edu.geometry.head import load_eduhead

        head = load_eduhead(device=profile.torch_device)
    all_expressions = tuple(getattr(head, "expressions", None) or _eduhead_expressions())
    for e in expressions:
        if e not in all_expressions:
            raise ValueError(f"unknown expression {e!r}; valid expressions are: {', '.join(all_expressions)}")
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob(f"{TMP_PREFIX}*"):  # from an interrupted or killed run
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()

    ids = range(seed, seed + n_subjects)
    todo, rewritten = [], []
    old_sums = {s.get("id"): s.get("record_sha256") for s in (old or {}).get("subjects", [])}
    for identity_id in ids:
        folder = path / subject_dir_name(identity_id)
        if folder.exists():
            if not _keep_existing(folder, identity_id, profile, expressions, fmt, old_sums.get(identity_id)):
                rewritten.append(identity_id)
                todo.append(identity_id)
        else:
            todo.append(identity_id)
    if workers is None:  # automatic: processes pay off for many subjects on a CPU
        workers = min(os.cpu_count() or 1, 4) if profile.torch_device.type == "cpu" and len(todo) >= 16 else 0
    jobs = [(i, profile, expressions, all_expressions, path / subject_dir_name(i), fmt) for i in todo]
    bar = tqdm(total=n_subjects, initial=n_subjects - len(todo), desc="virtual light stage", unit="subject",
               disable=not progress)
    try:
        if workers <= 1 or len(jobs) <= 1 or not default_head:
            for job in jobs:
                _write_identity(*job, head=head)
                bar.update(1)
        else:
            _write_in_processes(jobs, workers, bar)
    except BaseException:
        # A signal can land between a temporary folder's creation and the block that would remove it;
        # every writer has stopped by now, so whatever temporary folder is left is ours to remove.
        for leftover in path.glob(f"{TMP_PREFIX}subject_*"):
            shutil.rmtree(leftover, ignore_errors=True)
        raise
    finally:
        bar.close()

    subjects = [{"id": i, "split": split_of(i), "dir": subject_dir_name(i),
                 "files": ["subject.json"] + file_list(fmt, expressions),
                 "record_sha256": sha256_file(path / subject_dir_name(i) / "subject.json")} for i in ids]
    manifest = {
        "description": "avatarme-edu virtual light stage dataset",
        "seed": seed, "n_subjects": n_subjects, "expressions": list(expressions), "format": fmt,
        "dtype": "float16" if fmt == "safetensors" else "png",
        "profile": profile.name, "map_hw": list(profile.map_hw), "texture_hw": list(profile.texture_hw),
        "split": {"rule": f"identity id % {HELD_OUT_EVERY} == {HELD_OUT_EVERY - 1} is held out",
                  "train": [i for i in ids if not is_held_out(i)],
                  "held_out": [i for i in ids if is_held_out(i)]},
        "keys": {**{k: {"channels": c, "hw": "map_hw"} for k, c in MAP_KEYS.items()},
                 **{k: {"channels": c, "hw": "texture_hw"} for k, c in TEXTURE_KEYS.items()}},
        "subjects": subjects,
        "versions": _versions(),
        "written_this_run": len(todo),  # no timings: the same dataset is the same bytes
        "rewritten_this_run": rewritten,
    }
    write_text(manifest_file, json.dumps(manifest, indent=1))
    return manifest_file


def _keep_existing(folder: Path, identity_id: int, profile: Profile, expressions, fmt: str,
                   record_sha256: str | None) -> bool:
    """True if a finished subject can stay; False (and it is removed) if it is corrupt.

    Different settings are an error (the user must choose); damaged files are not (they are ours).
    """
    problems = verify_subject(folder, record_sha256)
    if problems:
        aside = folder.with_name(f"{TMP_PREFIX}bad-{folder.name}")
        os.replace(folder, aside)  # out of the way at once; removed below
        shutil.rmtree(aside)
        return False
    rec = read_subject_record(folder)
    found = []
    if rec.get("id") != identity_id:
        found.append(f"id {rec.get('id')} (expected {identity_id})")
    if rec.get("map_hw") != list(profile.map_hw) or rec.get("texture_hw") != list(profile.texture_hw):
        found.append(f"sizes {rec.get('map_hw')}/{rec.get('texture_hw')}")
    if rec.get("expressions") != list(expressions):
        found.append(f"expressions {rec.get('expressions')}")
    if rec.get("format") != fmt:
        found.append(f"format {rec.get('format')}")
    if found:
        raise ValueError(f"{str(folder)!r} was written with different settings ({'; '.join(found)}); "
                         "write to another folder or delete it")
    return True


def _eduhead_expressions() -> tuple[str, ...]:
    from avatarme_edu.geometry.head import EXPRESSIONS

    return tuple(EXPRESSIONS)


# ----------------------------------------------------------------------------------------------
# Worker processes
# ----------------------------------------------------------------------------------------------

_worker: dict = {}  # per worker process: its parent's pid, its head model, the subject in progress


def _write_in_processes(jobs: list, workers: int, bar) -> None:
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
        _write_identity(identity_id, profile, tuple(expressions), all_expressions, folder, fmt, head=_worker["head"])
    _worker["folder"] = None
    return identity_id


def write_sample_subject(folder: str | os.PathLike | None = None) -> Path:
    """(Re)write the sample subject: identity 0, neutral, cpu profile, PNG maps (~2.8 MB).

    Run it (``python -m avatarme_edu.lightstage.dataset --sample``) after changing the head model or the
    skin painter, so the committed sample matches them again. The new subject is written into a
    temporary folder beside the old one; only its files are moved over the old ones.
    """
    import tempfile

    from avatarme_edu.atomic import move_into
    from avatarme_edu.lightstage.dataset.read import SAMPLE_SUBJECT_DIR
    from avatarme_edu.profiles import get_profile

    folder = Path(SAMPLE_SUBJECT_DIR if folder is None else folder)
    profile = get_profile("cpu", device="cpu")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=folder.parent))
    try:
        make_dataset(1, 0, profile, staging, fmt="png", progress=False, workers=0)
        move_into(staging / subject_dir_name(0), folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
