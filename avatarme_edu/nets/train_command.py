"""``avatarme-edu train``: a network trained on a light-stage dataset, from the command line.

* :func:`train_from_dataset` - the training loop (:func:`~avatarme_edu.nets.train.train`) fed with patches
  of a dataset's training identities and validated on a fixed batch of its held-out ones;
* :func:`add_train_parser` / :func:`run_train` - the command's options, and the command itself (it writes
  the dataset first when ``--data`` holds none);
* :func:`machine_description` - where a run happened, for the weights manifest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from avatarme_edu.nets.tasks import Task, add_priors
from avatarme_edu.nets.train import LR_SCHEDULES, PIXEL_LOSSES, PRECISIONS, train
from avatarme_edu.profiles import Profile

#: What ``--texture-input`` may name: the light stage's sharp texture, or RCAN's (:mod:`avatarme_edu.cascade`).
TEXTURE_INPUTS = ("sharp", "rcan")


def machine_description(profile: Profile) -> str:
    """Where a run happened, for the weights manifest: CPU model and threads, or the GPU's name."""
    import platform

    if profile.torch_device.type == "cuda":
        return f"{torch.cuda.get_device_name(profile.torch_device)}, torch {torch.__version__}"
    cpu, bf16 = platform.processor() or platform.machine(), ""
    try:  # Linux names the model, and whether bfloat16 has hardware support (--precision bf16's speed)
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
        flags = next(line for line in lines if line.startswith("flags")).split()
        bf16 = " (AVX-512 BF16)" if "avx512_bf16" in flags else " (no AVX-512 BF16)"
    except (OSError, StopIteration, IndexError):
        pass
    return (f"{cpu}{bf16}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}")


def add_train_parser(subparsers) -> "argparse.ArgumentParser":  # noqa: F821
    """Add ``train`` to an argparse sub-parser set; the parsed args go to :func:`run_train`."""
    from avatarme_edu.nets.tasks import DELIGHT_VARIANTS, TRAIN_NAMES
    from avatarme_edu.profiles import PROFILE_NAMES

    p = subparsers.add_parser("train", help="train one reflectance network on a virtual light-stage dataset")
    p.add_argument("network", choices=TRAIN_NAMES, help="which network")
    p.add_argument("--variant", choices=tuple(DELIGHT_VARIANTS), default="depth",
                   help="delight only: the shape input - depth D_O (the paper), no_shape (the ablation), "
                        "normals_input (N_O)")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                   help="'cpu' or 'paper'; default: $AVATARME_PROFILE, else 'paper' with CUDA and 'cpu' without")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:N, mps); default: automatic")
    p.add_argument("--data", default=None, help="light-stage dataset folder; written first when it holds none "
                                                "(default: OUT/data)")
    p.add_argument("--subjects", type=int, default=20, help="identities of a dataset written here (default 20)")
    p.add_argument("--data-seed", type=int, default=0, help="first identity of a dataset written here (default 0)")
    p.add_argument("--out", required=True, help="run folder: checkpoint, log.json, validation figures, weights")
    p.add_argument("--steps", type=int, default=1000, help="total training steps (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="weights initialisation and patch order")
    p.add_argument("--batch-size", type=int, default=8, help="patches per step (default 8)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-4 RCAN, 2e-4 pix2pixHD)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                   help="constant (default) or cosine: down to zero over --steps "
                        "(then --steps must be the run's length)")
    p.add_argument("--texture-input", choices=TEXTURE_INPUTS, default="sharp",
                   help="delight only: the texture δ learns from - the light stage's sharp one (default) or rcan, the "
                        "committed RCAN's super-resolution of the fitted-size texture, as the pipeline hands it over")
    p.add_argument("--fresh-lows", type=float, default=0.0, metavar="SHARE",
                   help="sr only: the share of training patches whose fitted-size texture is degraded afresh from "
                        "the sharp one (new blur, noise and JPEG, lightstage/fresh_lows.py); default 0")
    p.add_argument("--albedo-marks", type=float, default=0.0, metavar="SHARE",
                   help="delight only: the share of training patches with random dark marks painted into both the "
                        "texture and the albedo, so δ learns to keep pigment (lightstage/albedo_marks.py); default 0")
    p.add_argument("--normalise-level", action="store_true",
                   help="specular_albedo only: train on every subject scaled to one face-mean level "
                        "(the pattern; the level head sets the level)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default) or bf16: forward passes in bfloat16 under autocast, ~1.5x the steps "
                        "on CPUs with AVX-512 BF16; weights and losses stay float32")
    p.add_argument("--pixel-loss", choices=PIXEL_LOSSES, default="l1",
                   help="networks without a discriminator (sr, specular_albedo, normals): l1 (default) or l2, the squared "
                        "error that PSNR measures")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop early after this many minutes of training steps (the log says how many were done)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100)")
    p.add_argument("--val-every", type=int, default=100, help="steps between held-out numbers/figures (0: never)")
    p.add_argument("--val-patches", type=int, default=8, help="held-out patches scored each time (default 8)")
    p.set_defaults(func=run_train)
    return p


def train_from_dataset(task: Task, profile: Profile, data: str | os.PathLike, out: str | os.PathLike, steps: int,
                       batch_size: int = 8, seed: int = 0, lr: float | None = None, resume: bool = False,
                       checkpoint_every: int = 100, val_every: int = 100, val_patches: int = 8,
                       max_minutes: float | None = None, info: dict | None = None, progress: bool = True,
                       lr_schedule: str = "constant", normalise_level: bool = False,
                       precision: str = "fp32", pixel_loss: str = "l1", batch_transform=None) -> dict:
    """Train ``task`` on a light-stage dataset's training identities, scored on a fixed batch of its
    held-out ones (:mod:`~avatarme_edu.nets.validate`); what :func:`train` writes, and returns its log.

    Super-resolution uses the (texture, texture at ``sr_hw``) pairs where the maps are not exactly the
    texture x ``sr_scale`` (the paper profile), see :func:`~avatarme_edu.nets.tasks.task_for_profile`.

    ``normalise_level`` (ψ only): every subject's target is scaled to the training subjects' mean
    face-mean log level (:func:`~avatarme_edu.nets.specular_level.normalise_levels`), held-out ones too,
    so ψ learns the pattern and the level head sets the level; the log's ``info`` keeps the level.

    ``batch_transform``: a function ``batch -> batch`` applied to every training batch and to the
    validation batch, e.g. one that swaps the sharp texture for what the stage before hands over
    (:mod:`~avatarme_edu.cascade`); one whose ``training_only`` attribute is true (an augmentation,
    :mod:`~avatarme_edu.lightstage.albedo_marks`) leaves the validation batch as it is, so its held-out
    numbers compare with those of a run without it.
    """
    from avatarme_edu.lightstage.dataset import PatchDataset, patch_loader
    from avatarme_edu.nets.tasks import task_for_profile
    from avatarme_edu.nets.validate import held_out_batch, validator

    task = task_for_profile(task, profile)
    if normalise_level and task.target != "specular_albedo":
        raise ValueError(f"--normalise-level is for specular_albedo, not {task.name}")
    train_set = PatchDataset(data, "train", profile, keys=task.keys)  # fails early on a bad dataset
    levels, reference = {}, 0.0
    if normalise_level:
        from avatarme_edu.nets.specular_level import normalise_levels, subject_levels

        levels = subject_levels(train_set)
        reference = sum(levels.values()) / len(levels)
        info = {**(info or {}), "level_normalised_to": reference}

    def prepare(batch, validation: bool = False):  # the texture the trainer is to see, ψ's targets at one level
        if batch_transform is not None and not (validation and getattr(batch_transform, "training_only", False)):
            batch = batch_transform(batch)
        return normalise_levels(batch, levels, reference) if normalise_level else batch

    means = {}
    if task.priors:  # the UV prior comes from the training identities; it goes with the weights
        from avatarme_edu.lightstage.dataset.means import MEANS_NAME, save_training_means, training_means

        means = training_means(data)
        save_training_means(means, Path(out) / MEANS_NAME, str(data))

    def make_batches():
        return (prepare(add_priors(task, b, means))
                for b in patch_loader(data, "train", profile, batch_size, keys=task.keys, seed=seed))

    val = None
    if val_every > 0:
        if normalise_level:  # the validation patches' subjects, brought to the same level
            levels.update(subject_levels(PatchDataset(data, "held_out", profile, keys=task.keys)))
        val_batch = prepare(add_priors(task, held_out_batch(data, task, profile, val_patches, seed=12345), means),
                            validation=True)
        val = validator(task, val_batch, out)
    info = {"data": str(data), "batch_size": batch_size, "machine": machine_description(profile),
            "train_identities": train_set.identities, **(info or {})}
    return train(task, profile, make_batches, out, steps, seed=seed, lr=lr, resume=resume,
                 checkpoint_every=checkpoint_every, validate=val, val_every=val_every, info=info,
                 max_minutes=max_minutes, progress=progress, lr_schedule=lr_schedule, precision=precision,
                 pixel_loss=pixel_loss)


def run_train(args, texture_input=None) -> int:
    """``avatarme-edu train``: make the dataset if needed, train, write weights; returns the exit status.

    ``texture_input``: for ``--texture-input rcan``, a function ``(data, profile) -> (batch_transform,
    info)`` (:func:`avatarme_edu.cascade.rcan_texture_input`; it runs the stages, a layer above this one,
    so the ``avatarme-edu`` command passes it in)."""
    import shlex
    import sys

    from avatarme_edu.lightstage.dataset import make_dataset
    from avatarme_edu.nets.tasks import DELIGHT_VARIANTS, get_task
    from avatarme_edu.profiles import get_profile

    profile = get_profile(args.profile, args.device)
    task = get_task(DELIGHT_VARIANTS[args.variant] if args.network == "delight" else args.network)
    if args.network != "delight" and args.variant != "depth":
        raise ValueError(f"--variant is for delight only, not {args.network}")
    for name in ("steps", "batch_size", "subjects", "checkpoint_every", "val_patches"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.texture_input != "sharp" and args.network != "delight":
        raise ValueError(f"--texture-input is for delight only, not {args.network}")
    if args.texture_input != "sharp" and texture_input is None:
        raise ValueError(f"--texture-input {args.texture_input} runs RCAN first: use `avatarme-edu train`")
    if args.fresh_lows and args.network != "sr":
        raise ValueError(f"--fresh-lows is for sr only, not {args.network}")
    if not 0.0 <= args.fresh_lows <= 1.0:
        raise ValueError(f"--fresh-lows must be a share in [0, 1], got {args.fresh_lows}")
    if args.albedo_marks and args.network != "delight":
        raise ValueError(f"--albedo-marks is for delight only, not {args.network}")
    if not 0.0 <= args.albedo_marks <= 1.0:
        raise ValueError(f"--albedo-marks must be a share in [0, 1], got {args.albedo_marks}")
    if args.albedo_marks and args.texture_input != "sharp":
        raise ValueError("--albedo-marks paints into the sharp texture: it does not go with --texture-input rcan")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be positive, got {args.max_minutes}")
    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    if not (data / "manifest.json").is_file():
        print(f"no dataset in {str(data)!r}: writing {args.subjects} identities from {args.data_seed} there")
        make_dataset(args.subjects, args.data_seed, profile, data)
    transform, extra = None, {}  # what the batches go through first, and what the log records of it
    if args.texture_input != "sharp":
        transform, extra = texture_input(data, profile)
    elif args.fresh_lows:
        from avatarme_edu.lightstage.fresh_lows import fresh_lows
        from avatarme_edu.nets.tasks import task_for_profile

        transform = fresh_lows(args.fresh_lows, task_for_profile(task, profile).target)
        extra = {"fresh_lows": args.fresh_lows}
    elif args.albedo_marks:
        from avatarme_edu.lightstage.albedo_marks import albedo_marks

        transform = albedo_marks(args.albedo_marks, map_width=profile.map_hw[1])
        extra = {"albedo_marks": args.albedo_marks}
    argv = sys.argv[1:]
    argv = argv if argv[:1] == ["train"] else ["train", *argv]  # `python -m avatarme_edu.nets` drops "train"
    log = train_from_dataset(task, profile, data, out, args.steps, args.batch_size, args.seed, args.lr, args.resume,
                             args.checkpoint_every, args.val_every, args.val_patches, args.max_minutes,
                             info={"command": shlex.join(["avatarme-edu", *argv]), **extra},
                             lr_schedule=args.lr_schedule, normalise_level=args.normalise_level,
                             precision=args.precision, pixel_loss=args.pixel_loss, batch_transform=transform)
    last = [e for e in log["entries"] if "loss" in e][-1]
    vals = [e for e in log["entries"] if "val" in e]
    print(f"{task.name}: {log['steps_done']} steps in {log['wall_s']:.0f} s, last loss {last['loss']:.4f}"
          + (f", held-out {json.dumps(vals[-1]['val'])}" if vals else ""))
    print(f"weights: {out / (task.name + '.safetensors')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m avatarme_edu.nets NET ...``: the ``train`` command on its own (see ``__main__.py``)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m avatarme_edu.nets")
    add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except (ValueError, OSError) as err:  # bad input: one clear line, no traceback
        print(f"train: error: {err}", file=sys.stderr)
        return 2
