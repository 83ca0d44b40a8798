"""Writing one identity: its maps as files, its record with checksums, atomically.

**Same inputs, same bytes.** Every subject has its own seed, subjects are always made with ONE torch
thread (in the caller's process as in the workers), and safetensors headers are written in sorted
order (:func:`avatarme_edu.maps_io.save_tensors`): the files are byte-identical whatever the worker
count and the caller's thread count. Across machines they are identical when the CPU family and the
torch build are (vectorised float kernels may round differently elsewhere); each record's
``versions`` say which torch wrote it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

import torch

from avatarme_edu.atomic import atomic_dir, write_text
from avatarme_edu.lightstage.dataset.records import (
    FORMAT_VERSION, MAP_KEYS, PNG_KINDS, file_list, seal, sha256_file, split_of, wild_generator,
)
from avatarme_edu.lightstage.subjects import Subject, make_subject_expressions
from avatarme_edu.lightstage.wild import WildTexture, wild_texture
from avatarme_edu.profiles import Profile


def _maps_of(subject: Subject, wild: WildTexture) -> dict[str, torch.Tensor]:
    r, s = subject.reflectance, subject.shape
    return {"texture": wild.high, "diffuse_albedo": r.diffuse_albedo, "specular_albedo": r.specular_albedo,
            "diffuse_normals": r.diffuse_normals, "specular_normals": r.specular_normals,
            "position": s.position, "normals_object": s.normals_object, "normals_tangent": s.normals_tangent,
            "depth": s.depth, "height": subject.height, "mask": r.mask, "texture_low": wild.low,
            "mask_low": wild.mask_low}


def versions() -> dict:
    import avatarme_edu

    return {"format": FORMAT_VERSION, "avatarme_edu": avatarme_edu.__version__, "torch": torch.__version__}


def mesh_checksum(vertices: torch.Tensor) -> list[float]:
    """Two numbers that change when a mesh's vertices change: their sum and their absolute sum (m)."""
    v = vertices.detach().double().cpu()
    return [float(v.sum()), float(v.abs().sum())]


def subject_bytes(profile: Profile, n_expressions: int = 1) -> int:
    """Bytes one identity takes on disk as safetensors (float16 maps, uint8 masks, float32 vertices)."""
    h, w = profile.map_hw
    th, tw = profile.texture_hw
    per_expression = h * w * (2 * (sum(MAP_KEYS.values()) - 1) + 1) + th * tw * (2 * 3 + 1) + 29_025 * 3 * 4
    return n_expressions * per_expression + 4096


def _subject_record(subjects: list[Subject], wilds: list[WildTexture], profile: Profile, fmt: str,
                    checksums: dict) -> dict:
    s0 = subjects[0]
    return {
        "id": s0.id, "seed": s0.seed, "split": split_of(s0.id), "format": fmt,
        "profile": profile.name, "map_hw": list(s0.hw), "texture_hw": list(wilds[0].mask_low.shape),
        "expressions": [s.expression for s in subjects],
        "identity": [float(x) for x in s0.identity.detach().cpu().tolist()],
        "skin": dataclasses.asdict(s0.skin),
        "texel_mm": list(s0.texel_mm),
        "mesh_checksum": {s.expression: mesh_checksum(s.mesh.vertices) for s in subjects},
        "wild": {s.expression: {"params": w.params.as_dict(), "exposure": w.exposure,
                                "white_balance": list(w.white_balance)} for s, w in zip(subjects, wilds)},
        "files": ["subject.json"] + file_list(fmt, [s.expression for s in subjects]),
        "checksums": checksums,
        "versions": versions(),
    }


def write_subject(folder: str | os.PathLike, subjects: list[Subject], wilds: list[WildTexture],
                  profile: Profile, fmt: str = "safetensors") -> Path:
    """Write one identity (its expressions and wild textures) atomically to ``folder``.

    The files go into a temporary folder next to ``folder``, which is renamed to ``folder`` once
    everything is written: ``folder`` either does not exist or is complete. ``fmt``:
    ``"safetensors"`` (float16, every map, and the mesh vertices) or ``"png"`` (maps_io PNGs of the
    reflectance maps, textures and masks only, for small committed samples: the mesh is rebuilt from
    the recorded identity coefficients with EduHead, checked against a recorded checksum, and the
    shape maps are baked again on loading). ``subject.json`` records each file's SHA-256.
    """
    from avatarme_edu.maps_io import save_map, save_tensors

    if fmt not in ("safetensors", "png"):
        raise ValueError(f"fmt must be 'safetensors' or 'png', got {fmt!r}")
    if not subjects or len(subjects) != len(wilds):
        raise ValueError(f"need one wild texture per subject, got {len(subjects)} subjects and {len(wilds)} textures")
    if len({s.id for s in subjects}) != 1:
        raise ValueError("write_subject writes one identity: all subjects must share one id")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(folder) as tmp:
        for s, w in zip(subjects, wilds):
            maps = _maps_of(s, w)
            if fmt == "safetensors":
                tensors = {k: (v.to(torch.uint8) if v.dtype == torch.bool else v.to(torch.float16))
                           for k, v in maps.items()}
                tensors["vertices"] = s.mesh.vertices.detach().float()
                save_tensors(tmp / f"{s.expression}.safetensors", tensors,
                             metadata={"id": str(s.id), "expression": s.expression, "format": str(FORMAT_VERSION)})
            else:
                for k, kind in PNG_KINDS.items():
                    _recompress_png(save_map(tmp / s.expression / f"{k}.png", maps[k], kind))
        names = file_list(fmt, [s.expression for s in subjects])
        checksums = {rel: sha256_file(tmp / rel) for rel in names}
        record = seal(_subject_record(subjects, wilds, profile, fmt, checksums))
        write_text(tmp / "subject.json", json.dumps(record, indent=1))
    return folder


def _recompress_png(path: Path) -> None:
    """Re-encode a PNG losslessly at zlib's highest level (maps_io favours speed; samples favour size)."""
    import cv2
    import numpy as np

    from avatarme_edu.atomic import write_bytes

    img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if ok and len(buf) < path.stat().st_size:
        write_bytes(path, buf.tobytes())


@contextlib.contextmanager
def one_torch_thread():
    """Run the block with one torch thread: the same float rounding as the worker processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_identity(identity_id: int, profile: Profile, expressions, all_expressions, folder: Path, fmt: str,
                    head=None) -> int:
    """Make one identity in its expressions, with a wild texture each, and write it atomically."""
    with one_torch_thread():
        subjects = make_subject_expressions(identity_id, profile, expressions, head=head)
        wilds = [wild_texture(s, profile, wild_generator(identity_id, all_expressions.index(s.expression)))
                 for s in subjects]
    write_subject(folder, subjects, wilds, profile, fmt)
    return identity_id
