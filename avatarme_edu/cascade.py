"""Cascade training: teach the de-lighting network the texture that the stage before will hand it.

The light stage gives δ the *sharp* in-the-wild texture T̂ to learn from, but in the pipeline δ reads
RCAN's super-resolution of the fitted-size texture: a little smoother, its colours a little off. δ(T̂)
trained on sharp textures loses 1.35 dB of A_D when it is given RCAN's texture of the same subject
instead (held-out seeds 29-99: 26.52 -> 25.17 dB), and only 0.3 dB of that is the detail RCAN cannot
restore (δ's own answer blurred to the fitted texture's texels scores 26.20): the rest is a network
meeting an input it was not trained on. ``avatarme-edu train delight --texture-input rcan`` trains it on
what it will meet:

* :func:`super_resolved_textures` - every subject-expression's fitted-size texture ``texture_low``
  through :func:`~avatarme_edu.stages.super_resolve` (the committed RCAN, whole map, as the pipeline runs
  it), once before training;
* :func:`rcan_textures` - a ``batch_transform`` for
  :func:`~avatarme_edu.nets.train_command.train_from_dataset` that swaps each patch's ``texture`` for the
  same crop of RCAN's texture (the patch loader's ``corner`` says where), for training and validation.

The target, the mask and everything else stay the light stage's truth.

Measured, and **not used by the committed δ(T̂)**: trained so for 30 minutes (7161 steps, alone, two
threads, bf16; otherwise the committed recipe), δ(T̂) gains from RCAN's texture of the true fitted-size
texture (25.17 -> 25.79 dB on seeds 29-99; end to end's ``true_texture`` column 25.24 -> 25.60) but
loses from the *fitted* texture, which is what the pipeline really hands it (end to end A_D 23.73 ->
23.27 dB, render 28.15 -> 28.23; 14 photos of seeds 29-99, ``results/reflectance_training.md``). The
fitted texture has errors of its own (pose, the GAN's fill) that RCAN's texture of the true one does not
teach. Half the patches taken from RCAN's textures of *fitted* synthetic photos of the training identities
did worse still (end to end A_D 22.89 dB): a fitted texture is not registered with the truth texel for
texel, and such pairs teach a blurred answer (``results/reflectance_training.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avatarme_edu.profiles import Profile


def super_resolved_textures(data: str | os.PathLike, profile: Profile, sr_weights=None,
                            progress: bool = True) -> dict[tuple[int, str], torch.Tensor]:
    """``{(subject id, expression): (3, H, W) float32}``: RCAN's texture at ``profile.map_hw`` for every
    subject-expression of the dataset, both splits (the held-out ones feed validation only).

    ``sr_weights``: the RCAN weights file (default: the profile's committed one)."""
    from safetensors import safe_open
    from tqdm.auto import tqdm

    from avatarme_edu import stages
    from avatarme_edu.lightstage.dataset import PatchDataset

    entries = [e for split in ("train", "held_out") for e in PatchDataset(data, split, profile).entries]
    net = stages.load_network("sr", profile, sr_weights)  # once, not once per texture
    out = {}
    for e in tqdm(entries, desc="RCAN textures", disable=not progress):
        with safe_open(str(e.file), framework="pt") as f:
            low = f.get_tensor("texture_low").float()
        out[(e.id, e.expression)] = stages.super_resolve(low, profile, net).cpu()
    return out


def rcan_textures(textures: dict[tuple[int, str], torch.Tensor]):
    """A ``batch -> batch`` function: each patch's ``texture`` ``(N, 3, P, P)`` replaced by the crop of
    ``textures[(subject_id, expression)]`` at the patch's ``corner``."""

    def transform(batch: dict) -> dict:
        side = batch["texture"].shape[-1]
        crops = []
        for i in range(batch["texture"].shape[0]):
            t, l = (int(v) for v in batch["corner"][i])
            crops.append(textures[(int(batch["subject_id"][i]), batch["expression"][i])][:, t:t + side, l:l + side])
        return {**batch, "texture": torch.stack(crops).to(batch["texture"].device)}

    return transform


def rcan_texture_input(data: str | os.PathLike, profile: Profile, sr_weights=None, progress: bool = True):
    """What ``avatarme-edu train delight --texture-input rcan`` hands the trainer: the ``batch_transform``
    and, for the run's log and the weights manifest, which RCAN made the textures (its file's SHA-256)."""
    from avatarme_edu.lightstage.dataset.records import sha256_file
    from avatarme_edu.nets.weights import default_weights_path

    path = Path(sr_weights) if sr_weights is not None else default_weights_path("sr", profile)
    textures = super_resolved_textures(data, profile, path, progress)
    return rcan_textures(textures), {"texture_input": "rcan", "sr_weights_sha256": sha256_file(path)}
