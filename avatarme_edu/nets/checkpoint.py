"""Training checkpoints as safetensors: weights, optimiser state, step and random state - no pickle.

A checkpoint must let a run stop and go on as if it never stopped (``avatarme-edu train --resume``).
It therefore holds, besides the weights, each Adam optimiser's moments and step counts, its
hyper-parameters, the step number and torch's random-number-generator states. ``torch.save`` would
do it in one line but writes a pickle, and loading a pickle can run arbitrary code; here every tensor
is a named safetensors entry and everything else is JSON in the file's metadata:

* ``model/<name>/<parameter>``          - ``state_dict`` of each network (``G``, ``D``);
* ``optim/<name>/<index>/<key>``        - per-parameter optimiser state (``exp_avg``, ``exp_avg_sq``, ``step``);
* ``rng/cpu``, ``rng/cuda/<i>``         - generator states (uint8);
* metadata ``optim/<name>`` (param groups and non-tensor state), ``step``, ``extra`` (JSON).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from avatarme_edu.nets.weights import _atomic_save

CHECKPOINT_FORMAT = "avatarme-edu-checkpoint"


def save_checkpoint(path: str | os.PathLike, modules: dict[str, nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer], step: int, extra: dict | None = None) -> Path:
    """Write everything needed to continue training exactly (atomically: a crash leaves the old file)."""
    tensors: dict[str, torch.Tensor] = {}
    meta = {"format": CHECKPOINT_FORMAT, "step": str(int(step)), "extra": json.dumps(extra or {})}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"model/{name}/{k}"] = v
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        plain: dict[str, dict] = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim/{name}/{idx}/{k}"] = v
                else:
                    plain.setdefault(str(idx), {})[k] = v
        meta[f"optim/{name}"] = json.dumps({"param_groups": sd["param_groups"], "plain": plain})
    tensors["rng/cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    path = Path(path)
    _atomic_save(tensors, meta, path)
    return path


def checkpoint_info(path: str | os.PathLike) -> tuple[int, dict]:
    """``(step, extra)`` of a checkpoint, without loading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not an avatarme-edu training checkpoint")
    return int(meta["step"]), json.loads(meta["extra"])


def load_checkpoint(path: str | os.PathLike, modules: dict[str, nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer]) -> tuple[int, dict]:
    """Restore ``modules`` and ``optimizers`` in place and the random state; returns ``(step, extra)``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    checkpoint_info(path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    for name, m in modules.items():
        prefix = f"model/{name}/"
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            m.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"checkpoint {str(path)!r} does not fit network {name!r} "
                             f"(another profile or network?): {str(e).splitlines()[0]}") from None
    for name, opt in optimizers.items():
        saved = json.loads(meta[f"optim/{name}"])
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith(f"optim/{name}/"):
                idx, key = k.split("/")[2:]
                state.setdefault(int(idx), {})[key] = v
        for idx, plain in saved["plain"].items():
            state.setdefault(int(idx), {}).update(plain)
        opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    torch.set_rng_state(tensors["rng/cpu"])
    cuda_keys = sorted((t for t in tensors if t.startswith("rng/cuda/")), key=lambda t: int(t.split("/")[-1]))
    cuda = [tensors[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return int(meta["step"]), json.loads(meta["extra"])
