"""A training run's loss curves, drawn while it trains (the notebooks' "short training run").

* :func:`loss_curve` - one panel per loss term of a training log (:func:`avatarme_edu.nets.train.train`'s
  ``log.json``): every step faint, a moving average on top;
* :func:`train_live` - :func:`~avatarme_edu.nets.train_command.train_from_dataset` in chunks of steps, redrawing
  the curve after each chunk. Each chunk resumes the last one's checkpoint, and resume is exact
  (:mod:`avatarme_edu.nets.train`), so the chunks change nothing: ``N`` steps in chunks are the weights
  of ``N`` steps in one go. A folder that already holds a run of this task is continued.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

SKIP = ("step", "patches_per_s")


def loss_terms(log: dict) -> list[str]:
    """The loss terms a log records per step (``loss``, ``l1``, ``gan``...), in the log's order."""
    names: list[str] = []
    for e in log.get("entries", []):
        if "val" in e:
            continue
        names += [k for k, v in e.items() if k not in SKIP and k not in names and isinstance(v, (int, float))]
    return names


def loss_curve(log: dict, keys: list[str] | None = None, smooth: int = 10, title: str | None = None,
               width: float = 3.4) -> Figure:
    """One panel per loss term of ``log`` (``{"task", "entries": [{"step", "loss", ...}]}``).

    ``keys``: the terms to draw (default :func:`loss_terms`); ``smooth``: the moving-average window
    in steps (shortened to the steps there are). A pix2pixHD log has ``loss`` (the generator's whole
    objective), ``l1``, ``gan``, ``feature_matching`` and ``d`` (the discriminator's loss); RCAN's
    and the normals networks' only ``loss`` = ``l1``, drawn once.
    """
    entries = [e for e in log.get("entries", []) if "val" not in e and "step" in e]
    if not entries:
        raise ValueError("the log has no training steps to draw")
    keys = list(keys) if keys is not None else loss_terms(log)
    if keys == ["loss", "l1"] and all(e["loss"] == e["l1"] for e in entries):
        keys = ["loss"]  # L1 alone: the same curve twice
    missing = [k for k in keys if not any(k in e for e in entries)]
    if not keys or missing:
        raise ValueError(f"the log records no {missing or 'loss terms'}; it has: {', '.join(loss_terms(log))}")
    fig = Figure(figsize=(width * len(keys), 2.9 + (0.3 if title else 0)), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    colours = colormaps["tab10"].colors
    for k, (ax, key) in enumerate(zip(axes, keys)):
        steps = np.array([e["step"] for e in entries if key in e], dtype=float)
        values = np.array([e[key] for e in entries if key in e], dtype=float)
        c = colours[k % len(colours)]
        ax.plot(steps, values, color=c, alpha=0.3, lw=1)
        n = max(1, min(smooth, len(values)))
        avg = np.convolve(values, np.ones(n) / n, mode="valid")
        ax.plot(steps[n - 1:], avg, color=c, lw=2, label=f"mean of {n}")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.spines[["top", "right"]].set_visible(False)
        if k == 0:
            ax.legend(frameon=False, fontsize=8)
    fig.suptitle(title or f"{log.get('task', 'training')}: {len(entries)} steps")
    return fig


def _ipython_updater() -> Callable[[Figure, dict], None]:
    """Show the first figure in the notebook's output and replace it in place afterwards."""
    from IPython.display import display

    handle = None

    def update(fig: Figure, log: dict) -> None:
        nonlocal handle
        if handle is None:
            handle = display(fig, display_id=True)
        else:
            handle.update(fig)

    return update


def train_live(task, profile, data: str | os.PathLike, out: str | os.PathLike, steps: int, chunk: int = 5,
               batch_size: int = 4, seed: int = 0, lr: float | None = None,
               on_update: Callable[[Figure, dict], None] | None = None, show: bool = True,
               normalise_level: bool = False) -> dict:
    """Train ``task`` on the dataset ``data`` for ``steps`` steps in ``chunk``-step pieces; returns the log.

    After each piece the loss curve is redrawn: ``on_update(fig, log)`` when given, else (``show``) in
    the notebook's output, replaced in place. Weights go to ``out/<task>.safetensors`` as with
    ``avatarme-edu train``; no held-out validation (the notebook scores the result itself).
    ``normalise_level``: ψ on every subject at one level, as the committed ψ (``train --normalise-level``).
    """
    from avatarme_edu.nets.checkpoint import checkpoint_info
    from avatarme_edu.nets.tasks import get_task
    from avatarme_edu.nets.train import CHECKPOINT_NAME
    from avatarme_edu.nets.train_command import train_from_dataset

    task = get_task(task) if isinstance(task, str) else task
    if not isinstance(steps, int) or steps < 1 or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"steps and chunk must be ints >= 1, got {steps!r} and {chunk!r}")
    ckpt = Path(out) / CHECKPOINT_NAME
    done = checkpoint_info(ckpt)[0] if ckpt.is_file() else 0
    if done > steps:
        raise ValueError(f"{str(out)!r} already holds {done} steps of training, more than the {steps} asked for; "
                         "choose another folder")
    update = on_update if on_update is not None else (_ipython_updater() if show else None)
    log = None
    targets = list(range(done + chunk, steps, chunk)) + [steps]
    for target in targets:
        log = train_from_dataset(task, profile, data, out, target, batch_size=batch_size, seed=seed, lr=lr,
                                 resume=ckpt.is_file(), checkpoint_every=chunk, val_every=0, progress=False,
                                 normalise_level=normalise_level)
        if update is not None:
            update(loss_curve(log, title=f"{task.name}: step {target} of {steps}"), log)
    return log
