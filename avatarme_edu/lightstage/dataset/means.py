"""The training set's means: the colour of the diffuse albedo and the per-texel specular albedo map.

Two of AvatarMe's baselines (``balanced_texture``, ``mean_map``, :mod:`avatarme_edu.evaluation`) and
the specular-albedo network's UV prior (:mod:`avatarme_edu.nets.tasks`) are statistics of the training
identities only; they are computed once from a dataset and kept next to the weights
(``training_means.safetensors``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avatarme_edu.profiles import Profile

MEANS_NAME = "training_means.safetensors"


def training_means(data: str | os.PathLike) -> dict[str, torch.Tensor]:
    """From a light-stage dataset's training identities: ``diffuse_albedo_colour`` ``(3,)`` (mean over
    the valid texels of every map) and ``specular_albedo_map`` ``(1, H, W)`` (per-texel mean where
    valid, 0 elsewhere)."""
    from avatarme_edu.lightstage.dataset.read import load_maps
    from avatarme_edu.lightstage.dataset.records import read_manifest
    from avatarme_edu.lightstage.subjects import subject_dir_name

    data = Path(data)
    ids = read_manifest(data)["split"]["train"]
    if not ids:
        raise ValueError(f"the dataset in {str(data)!r} has no training identities")
    colour, n_colour, spec, n_spec = torch.zeros(3, dtype=torch.float64), 0, None, None
    for i in ids:
        maps = load_maps(data / subject_dir_name(i))
        m = maps["mask"]
        colour += maps["diffuse_albedo"][:, m].double().sum(1)
        n_colour += int(m.sum())
        s = maps["specular_albedo"].double() * m
        spec = s if spec is None else spec + s
        n_spec = m.double() if n_spec is None else n_spec + m
    return {"diffuse_albedo_colour": (colour / n_colour).float(),
            "specular_albedo_map": (spec / n_spec.clamp_min(1)).float()}


def save_training_means(means: dict[str, torch.Tensor], path: str | os.PathLike, data: str = "") -> Path:
    """Write :func:`training_means` as safetensors (atomically), with the dataset it came from."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        save_file({k: v.contiguous() for k, v in means.items()}, str(tmp), metadata={"data": str(data)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_training_means(weights_dir: str | os.PathLike, profile: Profile) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(weights_dir) / MEANS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MEANS_NAME} in {str(weights_dir)!r}; write it with "
                                f"`python -m avatarme_edu.evaluation --means-from DATASET --weights {weights_dir}`")
    means = load_file(str(path))
    if tuple(means["specular_albedo_map"].shape[-2:]) != tuple(profile.map_hw):
        raise ValueError(f"{str(path)!r} holds a {tuple(means['specular_albedo_map'].shape[-2:])} mean map, "
                         f"but the {profile.name} profile's maps are {tuple(profile.map_hw)}")
    return means
