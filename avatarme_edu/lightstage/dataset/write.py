"""Writing a dataset: many identities, resumably (:func:`make_dataset`), and the committed sample.

One identity is written by :mod:`.subject_files` (which says what is byte-identical, and where);
many at a time by :mod:`.workers`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from avatarme_edu.atomic import TMP_PREFIX, check_writable, write_text
from avatarme_edu.lightstage.dataset.records import (
    DEFAULT_EXPRESSIONS, HELD_OUT_EVERY, MAP_KEYS, TEXTURE_KEYS, file_list, is_held_out, read_json,
    read_subject_record, seal, sha256_file, split_of, verify_subject,
)
from avatarme_edu.lightstage.dataset.subject_files import subject_bytes, versions, write_identity
from avatarme_edu.lightstage.dataset.workers import write_in_processes
from avatarme_edu.lightstage.subjects import subject_dir_name
from avatarme_edu.profiles import Profile
from avatarme_edu.seeds import check_seed




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
    profile with 16 or more subjects to write, else 0. The files do not depend on it
    (:mod:`.subject_files`); workers end when this process dies, and remove their unfinished subject.
    Automatic workers are capped to what fits in memory; sizes that do not fit even in one process,
    and datasets larger than the free disk, are refused before any work (:mod:`avatarme_edu.memory`).
    ``head``: the head model (default EduHead; another model is used in this process only).
    ``fmt``: ``"safetensors"`` or ``"png"``.
    """
    from tqdm.auto import tqdm

    from avatarme_edu.memory import USABLE_FRACTION, available_memory, check_disk, check_memory, subject_memory

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
    check_memory(subject_memory, profile, f"making subjects at {profile.map_hw[0]}x{profile.map_hw[1]} "
                 f"({profile.name} profile)", processes=max(1, workers or 1))
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
    if workers is None:  # automatic: processes pay off for many subjects on a CPU, as many as fit
        workers = min(os.cpu_count() or 1, 4) if profile.torch_device.type == "cpu" and len(todo) >= 16 else 0
        fit = int(USABLE_FRACTION * available_memory(profile.torch_device) // subject_memory(profile.map_hw))
        workers = min(workers, fit) if fit >= 2 else 0
    jobs = [(i, profile, expressions, all_expressions, path / subject_dir_name(i), fmt) for i in todo]
    bar = tqdm(total=n_subjects, initial=n_subjects - len(todo), desc="virtual light stage", unit="subject",
               disable=not progress)
    try:
        if workers <= 1 or len(jobs) <= 1 or not default_head:
            for job in jobs:
                write_identity(*job, head=head)
                bar.update(1)
        else:
            write_in_processes(jobs, workers, bar)
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
        "versions": versions(),
        "written_this_run": len(todo),  # no timings: the same dataset is the same bytes
        "rewritten_this_run": rewritten,
    }
    write_text(manifest_file, json.dumps(seal(manifest), indent=1))
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
