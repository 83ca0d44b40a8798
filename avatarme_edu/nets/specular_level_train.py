"""``avatarme-edu train-specular-level``: fit ψ's level head (:mod:`.specular_level`) on training identities.

The head reads whole maps, so it learns from identities, not patches: for each training identity
(``id % 5 != 4``; a held-out identity is skipped, never painted) the light stage paints the neutral
reflectance maps (:func:`~avatarme_edu.lightstage.subjects.make_subject_expressions`; about 1.5 s at the
cpu size, no capture or in-the-wild texture needed), and the head's statistics of A_D and the true
face-mean log level of A_S are kept - one line per identity in ``OUT/rows.jsonl``, so a stopped run
picks up where it was. Then the ridge regression is fitted in closed form (:func:`fit_level_head`)
and written to ``OUT/specular_level.safetensors`` with ``OUT/log.json``: the leave-one-out R² of every
ridge strength tried and, as the learning curve (`curve_by_identities`), the leave-one-out R² with the first 40, 80, 160, ...
identities. ``--export`` copies the head into the profile's committed weights and records it in the
manifest.

    avatarme-edu train-specular-level --profile cpu --identities 960 --out runs/specular_level --export
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from avatarme_edu.nets.specular_level import face_log_level, fit_level_head, level_features
from avatarme_edu.profiles import Profile

HEAD_NAME = "specular_level.safetensors"


def training_ids(first_id: int, n: int) -> list[int]:
    """The first ``n`` training identities from ``first_id`` on (held-out ones skipped)."""
    from avatarme_edu.lightstage.dataset import is_held_out

    if first_id < 0 or n < 3:
        raise ValueError(f"need first_id >= 0 and at least 3 identities, got {first_id} and {n}")
    ids, i = [], first_id
    while len(ids) < n:
        if not is_held_out(i):
            ids.append(i)
        i += 1
    return ids


def identity_row(identity: int, profile: Profile, head=None) -> dict:
    """``{"id", "features", "level", "seconds"}`` of one training identity's neutral maps."""
    from avatarme_edu.lightstage.dataset import is_held_out
    from avatarme_edu.lightstage.subjects import make_subject_expressions

    if is_held_out(identity):  # checked here too: this is the only place maps are made
        raise ValueError(f"identity {identity} is held out; the level head trains on training identities only")
    t0 = time.perf_counter()
    subject = make_subject_expressions(identity, profile, ["neutral"], head=head)[0]
    r = subject.reflectance
    mask = r.mask.bool()
    return {"id": identity, "features": level_features(r.diffuse_albedo, mask).tolist(),
            "level": face_log_level(r.specular_albedo, mask), "seconds": round(time.perf_counter() - t0, 3)}


def _read_rows(path: Path) -> dict[int, dict]:
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that identity is made again
                continue
            rows[int(row["id"])] = row
    return rows


def learning_curve(features: torch.Tensor, levels: torch.Tensor, map_hw, ridge: float) -> list[dict]:
    """Leave-one-out R² of the head fitted on the first 40, 80, 160, ... identities (and all of them)."""
    sizes, n = [], 40
    while n < len(levels):
        sizes.append(n)
        n *= 2
    sizes.append(len(levels))
    return [{"identities": k, "loo_r2": round(fit_level_head(features[:k], levels[:k], map_hw, (ridge,))[1][ridge], 4)}
            for k in sizes]


def train_level_head(out: str | os.PathLike, profile: Profile, identities: int = 960, first_id: int = 0,
                     progress: bool = True, command: str = "") -> dict:
    """Paint the training identities, fit the head, write ``OUT/specular_level.safetensors`` and ``OUT/log.json``."""
    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.lightstage.dataset.subject_files import one_torch_thread
    from avatarme_edu.nets.train_command import machine_description

    ids = training_ids(first_id, identities)  # bad numbers fail here, before any folder is made
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows = _read_rows(rows_path)
    todo = [i for i in ids if i not in rows]
    if todo:
        from tqdm.auto import tqdm

        head_model = load_eduhead()
        with rows_path.open("a") as f, one_torch_thread():
            for i in tqdm(todo, desc="paint training identities", unit="id", disable=not progress):
                row = identity_row(i, profile, head_model)
                f.write(json.dumps(row) + "\n")
                f.flush()
                rows[i] = row
    t_fit = time.perf_counter()
    features = torch.tensor([rows[i]["features"] for i in ids], dtype=torch.float64)
    levels = torch.tensor([rows[i]["level"] for i in ids], dtype=torch.float64)
    head, r2 = fit_level_head(features, levels, profile.map_hw)
    log = {"task": "specular_level", "profile": profile.name, "command": command, "first_id": first_id,
           "identities": len(ids), "train_identities": [ids[0], ids[-1]], "held_out_rule": "id % 5 == 4 never painted",
           "ridge": head.ridge, "loo_r2": {str(k): round(v, 4) for k, v in r2.items()},
           "level_std": round(float(levels.std()), 4), "curve_by_identities": learning_curve(features, levels, profile.map_hw, head.ridge),
           # painting time summed over the rows (a resumed run counts its earlier part), plus this run's fit
           "wall_s": round(sum(rows[i]["seconds"] for i in ids) + time.perf_counter() - t_fit, 1),
           "machine": machine_description(profile)}
    head.save(out / HEAD_NAME, {k: log[k] for k in ("command", "identities", "first_id", "ridge", "loo_r2")})
    (out / "log.json").write_text(json.dumps(log, indent=1) + "\n")
    return log


def export_level_head(out: str | os.PathLike, profile: Profile, extra: dict | None = None) -> Path:
    """Copy ``OUT/specular_level.safetensors`` into the profile's committed weights and record it."""
    from avatarme_edu.nets.manifest import MANIFEST_NAME, update_manifest
    from avatarme_edu.nets.weights import WEIGHTS_DIR

    out = Path(out)
    log = json.loads((out / "log.json").read_text())
    dest = WEIGHTS_DIR / profile.name / HEAD_NAME
    shutil.copyfile(out / HEAD_NAME, dest)
    update_manifest(WEIGHTS_DIR / profile.name / MANIFEST_NAME, {"specular_level": {"file": HEAD_NAME, **log,
                                                                                    **(extra or {})}})
    return dest


def add_train_level_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``train-specular-level`` to an argparse sub-parser set (used by ``avatarme-edu``)."""
    from avatarme_edu.profiles import PROFILE_NAMES

    p = subparsers.add_parser("train-specular-level", help="fit ψ's level head on training identities' whole maps")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None, help="'cpu' or 'paper' (default: automatic)")
    p.add_argument("--device", default=None, help="torch device (default: automatic)")
    p.add_argument("--identities", type=int, default=960, help="training identities to paint (default 960)")
    p.add_argument("--first-id", type=int, default=0, help="the first identity (default 0); held-out ones skipped")
    p.add_argument("--out", required=True, help="run folder: rows.jsonl (kept for a resume), log.json, the head")
    p.add_argument("--export", action="store_true", help="also copy the head into the committed weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train_level)
    return p


def run_train_level(args: argparse.Namespace) -> int:
    from avatarme_edu.profiles import get_profile

    profile = get_profile(args.profile, args.device)
    command = getattr(args, "command_line", None) or "avatarme-edu " + " ".join(sys.argv[1:])
    log = train_level_head(args.out, profile, args.identities, args.first_id, not args.no_progress, command)
    print(f"level head from {log['identities']} training identities: leave-one-out R² "
          f"{log['loo_r2'][str(log['ridge'])]:.3f} at ridge {log['ridge']} -> {Path(args.out) / HEAD_NAME}")
    if args.export:
        print(f"exported to {export_level_head(args.out, profile)}")
    return 0


__all__ = ["training_ids", "identity_row", "train_level_head", "export_level_head", "learning_curve"]
