"""Network weights on disk: one safetensors file holding the tensors and, as metadata, what they are.

The metadata says which task the weights solve, for which profile, and the architecture's
configuration, so a file can rebuild its own network and refuses to load into the wrong one (a
``delight`` file given to ``specular_albedo``, a paper-profile file given to the cpu profile, a
4-channel de-lighting net where a 3-channel one is expected). safetensors holds plain tensors and
strings only: loading a file never runs code, unlike a pickled ``torch.save``.

The committed cpu-profile weights live at ``avatarme_edu/data/weights/<profile>/<task>.safetensors``
(:func:`default_weights_path`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from avatarme_edu.nets.tasks import Task, get_task
from avatarme_edu.profiles import Profile
from avatarme_edu.resources import data_path

FORMAT = "avatarme-edu-weights"
FORMAT_VERSION = "1"
WEIGHTS_DIR = data_path("weights")  # package data, see avatarme_edu/resources.py


def default_weights_path(task: Task | str, profile: Profile | str) -> Path:
    """``avatarme_edu/data/weights/<profile>/<task>.safetensors``."""
    name = task if isinstance(task, str) else task.name
    prof = profile if isinstance(profile, str) else profile.name
    return WEIGHTS_DIR / prof / f"{name}.safetensors"


def _atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    """Write to a temporary file next to ``path`` and rename it: no half-written file is ever left."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_weights(model: nn.Module, path: str | os.PathLike, task: Task, profile: Profile,
                 info: dict | None = None) -> Path:
    """Save ``model``'s weights and what they are (task, profile, configuration, optional ``info``)."""
    path = Path(path)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "task": task.name, "profile": profile.name,
            "network": task.network, "in_channels": str(task.in_channels), "config": json.dumps(model.config),
            "info": json.dumps(info or {})}
    _atomic_save(model.state_dict(), meta, path)
    return path


def read_weights_info(path: str | os.PathLike) -> dict:
    """The metadata of a weights file (``task``, ``profile``, ``network``, ``in_channels``, ``config``, ``info``)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{str(path)!r} is not a safetensors file: {e}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an avatarme-edu weights file (no {FORMAT!r} metadata)")
    return {**meta, "in_channels": int(meta["in_channels"]), "config": json.loads(meta["config"]),
            "info": json.loads(meta.get("info", "{}"))}


def load_weights(path: str | os.PathLike, task: Task | str, profile: Profile | None = None,
                 device=None) -> nn.Module:
    """Rebuild the network a weights file describes and load its tensors; in eval mode on ``device``.

    Raises ``ValueError`` with one line naming the mismatch when the file is for another task,
    another profile (when ``profile`` is given) or another number of input channels.
    """
    from safetensors.torch import load_file

    from avatarme_edu.nets.pix2pixhd import GlobalGenerator
    from avatarme_edu.nets.rcan import RCAN

    task = get_task(task) if isinstance(task, str) else task
    info = read_weights_info(path)
    want = (task.name, task.in_channels) + ((profile.name,) if profile is not None else ())
    got = (info["task"], info["in_channels"]) + ((info["profile"],) if profile is not None else ())
    if want != got:
        raise ValueError(f"{str(path)!r} holds weights for network {info['task']!r} of profile {info['profile']!r} "
                         f"with {info['in_channels']} input channels; expected {task.name!r}"
                         + (f" of profile {profile.name!r}" if profile is not None else "")
                         + f" with {task.in_channels}")
    model = (RCAN if info["network"] == "rcan" else GlobalGenerator)(**info["config"])
    state = load_file(str(path), device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ValueError(f"{str(path)!r} does not match its own configuration: {first}") from None
    return model.to(device or "cpu").eval()
