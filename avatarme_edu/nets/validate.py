"""Held-out numbers and pictures during training: a fixed batch of patches of held-out identities.

The same patches are used at every validation, so the numbers in the training log form a curve
(how far a 5-minute run gets, how far 30 minutes get). Colour and grey maps are scored with PSNR and
SSIM, normals with the angle to the truth in degrees (:mod:`avatarme_edu.metrics`), over valid texels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from avatarme_edu.nets.tasks import Task, batch_mask, network_input, network_target
from avatarme_edu.profiles import Profile


def held_out_batch(data: str | os.PathLike, task: Task, profile: Profile, n: int = 8, seed: int = 0) -> dict:
    """``n`` patches of the dataset's held-out identities, the same ones for the same ``seed``."""
    from avatarme_edu.lightstage.dataset import patch_loader

    return next(iter(patch_loader(data, "held_out", profile, n, keys=task.keys, seed=seed, n_batches=1)))


def _side_by_side(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W) -> (C, H, N * W)``: the patches in a row, so the metrics see one map."""
    return x.permute(1, 2, 0, 3).reshape(x.shape[1], x.shape[2], -1)


def score(task: Task, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> dict:
    """``{"psnr", "ssim"}`` for colour/grey maps, ``{"angular_error_deg": {"mean", "median"}}`` for normals."""
    from avatarme_edu.metrics import angular_error, psnr, ssim

    p, t = _side_by_side(pred.float().cpu()), _side_by_side(target.float().cpu())
    m = _side_by_side(mask.cpu()[:, None])[0] if mask is not None else None
    if task.is_normals:
        e = angular_error(p, t, m)
        return {"angular_error_deg": {"mean": e["mean"], "median": e["median"]}}
    p = p.clamp(0, 1)
    return {"psnr": psnr(p, t, m), "ssim": ssim(p, t, m)}


def predict(G: torch.nn.Module, task: Task, batch: dict) -> torch.Tensor:
    """The network's answer for a batch, in eval mode, without gradients."""
    G.eval()
    device = next(G.parameters()).device
    with torch.no_grad():
        return G(network_input(task, batch).to(device)).cpu()


def _display(x: torch.Tensor, normals: bool) -> torch.Tensor:
    """``(C, H, W)`` -> ``(H, W, 3)`` in [0, 1] for imshow: sRGB for colour, ``n/2 + 1/2`` for normals."""
    from avatarme_edu.color import linear_to_srgb

    if normals or x.shape[0] == 3 and x.min() < 0:
        img = x[:3] * 0.5 + 0.5
    elif x.shape[0] >= 3:
        img = linear_to_srgb(x[:3])
    else:
        img = linear_to_srgb(x[:1]).expand(3, -1, -1)
    return img.clamp(0, 1).permute(1, 2, 0)


def save_figure(task: Task, batch: dict, pred: torch.Tensor, path: str | os.PathLike, rows: int = 4) -> Path:
    """A PNG grid: one row per patch, columns input (first map) / prediction / ground truth."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    key = task.inputs[0][0]
    first = batch[key].float().cpu()
    target = network_target(task, batch).float().cpu()
    rows = min(rows, pred.shape[0])
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for r in range(rows):
        for c, (img, title) in enumerate([(first[r], key), (pred[r], "network"), (target[r], task.target)]):
            axes[r, c].imshow(_display(img, task.is_normals and c > 0).numpy(), interpolation="nearest")
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def validator(task: Task, batch: dict, out: str | os.PathLike | None = None) -> Callable[[torch.nn.Module, int], dict]:
    """``fn(G, step) -> held-out numbers`` for :func:`~avatarme_edu.nets.train.train`; with ``out`` it also
    writes ``val_<step>.png`` there."""

    def fn(G: torch.nn.Module, step: int) -> dict:
        pred = predict(G, task, batch)
        numbers = score(task, pred, network_target(task, batch), batch_mask(task, batch))
        if out is not None:
            save_figure(task, batch, pred, Path(out) / f"val_{step:06d}.png")
        return numbers

    return fn
