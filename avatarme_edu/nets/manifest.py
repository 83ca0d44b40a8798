"""The weights manifest: how each committed network was trained, and what it reached.

``avatarme_edu/data/weights/<profile>/MANIFEST.json`` holds one entry per network file::

    {"<network>": {"file", "command", "reproduce", "data": {"command", "seed", "n_subjects", "expressions",
                   "train_identities"}, "steps", "batch_size", "seed", "precision", "pixel_loss", "wall_s", "machine",
                   "held_out_patches": {...}, "curve": [{"step", "wall_s", "val"}, ...], ...}}

``command`` is the command that was run; ``reproduce`` the same with ``--steps`` the steps it did and
without ``--max-minutes`` / ``--resume`` (a run stopped by its time budget repeats exactly with it).
``curve`` is the held-out numbers of the training log against training time: what a short classroom
run reaches. Entries are added one network at a time and keys written by others (``texture_gan``)
are kept.

Run: ``python -m avatarme_edu.nets.manifest RUN_DIR [RUN_DIR ...] [--weights-dir DIR]`` copies each
run's ``<network>.safetensors`` into the weights folder and records it (and the run's
``training_means.safetensors``, where it trained with the training set's mean map as a prior).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

from avatarme_edu.atomic import write_text
from avatarme_edu.lightstage.dataset.means import MEANS_NAME
from avatarme_edu.nets.weights import WEIGHTS_DIR, read_weights_info

MANIFEST_NAME = "MANIFEST.json"


def reproduce_command(command: str, steps: int) -> str:
    """``command`` with ``--steps steps`` and without ``--max-minutes`` / ``--resume``."""
    args, out, skip = shlex.split(command), [], 0
    for a in args:
        if skip:
            skip -= 1
            continue
        if a in ("--max-minutes", "--steps"):
            skip = 1
            continue
        if a == "--resume" or a.startswith(("--max-minutes=", "--steps=")):
            continue
        out.append(a)
    return shlex.join(out + ["--steps", str(steps)])


def run_record(run_dir: str | os.PathLike, task_name: str | None = None) -> dict:
    """The manifest entry of one training run folder (its ``log.json`` and weights file)."""
    run_dir = Path(run_dir)
    log_path = run_dir / "log.json"
    if not log_path.is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} holds no log.json: not a training run folder")
    log = json.loads(log_path.read_text())
    name = task_name or log["task"]
    weights = run_dir / f"{name}.safetensors"
    info = read_weights_info(weights)["info"]
    steps = int(info["steps"])
    curve = [{"step": e["step"], "wall_s": None, "val": e["val"]} for e in log["entries"] if "val" in e]
    # the training time at each validation: the sum of step times up to it
    elapsed, t = {}, 0.0
    for e in log["entries"]:
        if "patches_per_s" in e:
            t += info.get("batch_size", 1) / e["patches_per_s"]
            elapsed[e["step"]] = t
    for c in curve:
        c["wall_s"] = round(elapsed.get(c["step"], 0.0), 1)
    data = Path(info.get("data", ""))
    dataset = {}
    if (data / "manifest.json").is_file():
        m = json.loads((data / "manifest.json").read_text())
        cmd = (f"avatarme-edu dataset {m['n_subjects']} --seed {m['seed']} --profile {m['profile']} "
               f"--out {data.as_posix()}" + (f" --expressions {','.join(m['expressions'])}"
                                              if m["expressions"] != ["neutral"] else ""))
        dataset = {"command": cmd, "seed": m["seed"], "n_subjects": m["n_subjects"],
                   "expressions": m["expressions"], "train_identities": m["split"]["train"]}
    command = info.get("command", "")
    # ψ trained with --normalise-level: its patch numbers are against targets at this one level
    # and δ trained on RCAN's textures (--texture-input rcan, avatarme_edu/cascade.py): which RCAN made them
    # and RCAN trained on pairs degraded afresh (--fresh-lows, lightstage/fresh_lows.py): what share
    extra = {k: info[k] for k in ("level_normalised_to", "texture_input", "sr_weights_sha256", "fresh_lows")
             if k in info}
    return {**extra, "file": weights.name, "task": name, "profile": log["profile"], "command": command,
            "reproduce": reproduce_command(command, steps) if command else "", "data": dataset,
            "steps": steps, "batch_size": info.get("batch_size"), "seed": log["seed"],
            "precision": log.get("precision", "fp32"), "pixel_loss": log.get("pixel_loss", "l1"),
            "wall_s": round(float(log["wall_s"]), 1),
            "machine": info.get("machine", ""),
            "held_out_patches": curve[-1]["val"] if curve else None, "curve": curve}


def update_manifest(path: str | os.PathLike, entries: dict[str, dict]) -> Path:
    """Add or replace ``entries`` in the manifest at ``path``, keeping every other key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(entries)
    write_text(path, json.dumps(old, indent=1) + "\n")
    return path


#: Where each network's whole-map held-out numbers are in an evaluation results file.
RESULTS_PLACE = {"sr": ("super_resolution", "network"), "delight": ("delighting", "network"),
                 "delight_no_shape": ("delighting", "no_shape"), "specular_albedo": ("specular_albedo", "network"),
                 "specular_normals": ("specular_normals", "network"), "diffuse_normals": ("diffuse_normals", "network")}


def add_results(manifest_path: str | os.PathLike, results_path: str | os.PathLike, seeds: list[int]) -> Path:
    """Copy each recorded network's whole-map numbers from an evaluation results file into the manifest
    (``held_out_maps``: ``{"seeds", "command", <metrics>}``), keeping everything else."""
    manifest = json.loads(Path(manifest_path).read_text())
    results = json.loads(Path(results_path).read_text())
    entries = {}
    for name, (stage, method) in RESULTS_PLACE.items():
        if name == "specular_albedo" and "no_level_head" in results.get(stage, {}):
            method = "no_level_head"  # ψ's own numbers; with its level head they are the head's entry's
        if isinstance(manifest.get(name), dict) and stage in results:
            entries[name] = {**manifest[name], "held_out_maps": {"seeds": list(seeds), "results": str(results_path),
                                                                 **results[stage][method]}}
    return update_manifest(manifest_path, entries)


def _val_text(val: dict) -> str:
    if "psnr" in val:
        return f"{val['psnr']:.2f} dB"
    return f"{val['angular_error_deg']['mean']:.3f} deg"


def curves_table(manifest: dict) -> str:
    """Markdown: each network's held-out patch numbers against minutes of training."""
    lines = ["| network | steps | minutes | held-out patches |", "|---|---|---|---|"]
    for name, rec in manifest.items():
        for c in rec.get("curve", []) if isinstance(rec, dict) else []:
            lines.append(f"| {name} | {c['step']} | {c['wall_s'] / 60:.1f} | {_val_text(c['val'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m avatarme_edu.nets.manifest",
                                description="copy trained weights into the weights folder and record them")
    p.add_argument("runs", nargs="+", help="training run folders (each with log.json and <network>.safetensors)")
    p.add_argument("--weights-dir", default=str(WEIGHTS_DIR / "cpu"), help="default: the committed cpu weights")
    p.add_argument("--curves", action="store_true", help="print the manifest's training curves as markdown after")
    args = p.parse_args(argv)
    try:
        wdir = Path(args.weights_dir)
        entries = {}
        for run in args.runs:
            rec = run_record(run)
            wdir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(run) / rec["file"], wdir / rec["file"])
            if (Path(run) / MEANS_NAME).is_file():  # a UV prior the network was trained with goes along
                shutil.copyfile(Path(run) / MEANS_NAME, wdir / MEANS_NAME)
                rec["training_means"] = MEANS_NAME
            entries[rec["task"]] = rec
        update_manifest(wdir / MANIFEST_NAME, entries)
    except (ValueError, OSError, KeyError) as err:
        print(f"manifest: error: {err}", file=sys.stderr)
        return 2
    print(f"recorded {', '.join(entries)} in {wdir / MANIFEST_NAME}")
    if args.curves:
        print(curves_table(json.loads((wdir / MANIFEST_NAME).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
