"""The fitted in-the-wild textures of one split of a virtual light-stage dataset, whole, in memory.

The texture models (:mod:`~avatarme_edu.fitting.texture_gan`, PCA in
:mod:`~avatarme_edu.fitting.texture_eval`) learn from whole ``texture_low`` maps of the TRAINING
identities and are tested on the HELD-OUT ones; the split is the identity's
(:func:`~avatarme_edu.lightstage.dataset.is_held_out`), decided here by the rule, never by the files.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avatarme_edu.profiles import Profile


def load_textures(path: str | os.PathLike, split: str, profile: Profile) -> dict:
    """The fitted wild textures of one split of a dataset: ``{"textures", "masks", "ids", "seed"}``.

    ``textures`` ``(N, 3, H, W)`` float32 linear RGB at ``profile.texture_hw``, ``masks`` ``(N, H, W)``
    bool, ``ids`` the identity of each (one entry per stored expression), ``seed`` the dataset's seed
    and ``data_command`` the command that writes the same dataset again.
    Which identities are in ``split`` is decided by :func:`~avatarme_edu.lightstage.dataset.is_held_out`;
    for ``"train"`` a held-out identity is never opened, and a dataset whose files say otherwise is refused.
    """
    from safetensors import safe_open

    from avatarme_edu.lightstage.dataset import SPLITS, is_held_out, read_manifest, read_subject_record, split_of

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are: {', '.join(SPLITS)}")
    manifest = read_manifest(path)
    if manifest.get("format") != "safetensors":
        raise ValueError(f"{str(path)!r} is a {manifest.get('format')!r} dataset; the GAN reads safetensors datasets")
    if list(manifest["texture_hw"]) != list(profile.texture_hw):
        raise ValueError(f"the dataset's textures are {manifest['texture_hw']} but profile {profile.name!r} "
                         f"fits {list(profile.texture_hw)}")
    for s in manifest["subjects"]:  # the rule decides; files that disagree with it are not trusted
        if s["split"] != split_of(s["id"]):
            raise ValueError(f"{str(path)!r} lists identity {s['id']} as {s['split']!r} but it is "
                             f"{split_of(s['id'])!r} by the rule; refusing to read this dataset")
    textures, masks, ids = [], [], []
    for s in manifest["subjects"]:
        if split_of(s["id"]) != split:
            continue  # never opened
        folder = Path(path) / s["dir"]
        rec = read_subject_record(folder)
        if rec["id"] != s["id"] or rec.get("split") != split:
            raise ValueError(f"{str(folder)!r} holds identity {rec['id']} ({rec.get('split')}), not {s['id']} "
                             f"({split}); refusing to read this dataset")
        for e in rec["expressions"]:
            with safe_open(str(folder / f"{e}.safetensors"), framework="pt") as f:
                textures.append(f.get_tensor("texture_low").float())
                masks.append(f.get_tensor("mask_low").bool())
            ids.append(int(rec["id"]))
    if split == "train":
        # the one rule that must never break: no held-out identity reaches training
        assert not any(is_held_out(i) for i in ids), "held-out identities in the training textures"
    if not ids:
        raise ValueError(f"the {split!r} split of {str(path)!r} is empty")
    data_command = (f"avatarme-edu dataset {manifest['n_subjects']} --seed {manifest['seed']} --profile "
                    f"{manifest['profile']} --expressions {','.join(manifest['expressions'])} --out DATA")
    return {"textures": torch.stack(textures), "masks": torch.stack(masks), "ids": ids, "seed": manifest["seed"],
            "data_command": data_command}
