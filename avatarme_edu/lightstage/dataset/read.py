"""Reading a written dataset back: the maps of one subject, a whole :class:`Subject`, the committed sample.

Every file is checked against the SHA-256 its ``subject.json`` records before it is read, and maps
holding NaN or infinite values are refused: each problem is one error naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avatarme_edu.lightstage.dataset.records import (
    NORMAL_KEYS, PNG_KINDS, DatasetError, check_file, read_subject_record,
)
from avatarme_edu.lightstage.dataset.subject_files import mesh_checksum
from avatarme_edu.lightstage.subjects import Subject, subject_dir_name, unit_vectors
from avatarme_edu.lightstage.wild import WildParams, WildTexture
from avatarme_edu.resources import data_path


def load_maps(folder: str | os.PathLike, expression: str = "neutral", device=None) -> dict[str, torch.Tensor]:
    """Every stored map of one subject-expression, as float32 (masks bool) on ``device``.

    Normals are renormalised after float16 / 16-bit storage. PNG folders hold fewer maps (no shape
    maps, height or vertices; :func:`load_subject` rebuilds the mesh and bakes the shape maps again).
    Each file is checked against its recorded SHA-256 first; a mismatch, a missing or unreadable file,
    or NaN / infinite values raise :class:`DatasetError` naming the file.
    """
    from avatarme_edu.maps_io import MapFileError, load_map, load_tensors

    folder = Path(folder)
    rec = read_subject_record(folder)
    if expression not in rec["expressions"]:
        raise ValueError(f"{str(folder)!r} has expressions {rec['expressions']}, not {expression!r}")
    out = {}
    try:
        if rec["format"] == "safetensors":
            f = check_file(folder, f"{expression}.safetensors", rec)
            for k, v in load_tensors(f).items():
                out[k] = v.bool() if k.startswith("mask") else v.float()
        else:
            for k, kind in PNG_KINDS.items():
                out[k] = load_map(check_file(folder, f"{expression}/{k}.png", rec), kind)
    except MapFileError as e:
        raise DatasetError(str(e)) from None
    except FileNotFoundError as e:
        raise DatasetError(f"{e.args[0] if e.args else e} (the subject folder is incomplete)") from None
    for k in NORMAL_KEYS:
        if k in out:
            out[k] = unit_vectors(out[k]) * out["mask"]
    return {k: v.to(device) if device is not None else v for k, v in out.items()}


def load_subject(folder: str | os.PathLike, expression: str = "neutral", device=None,
                 head=None) -> tuple[Subject, WildTexture]:
    """A written subject and its wild texture, rebuilt as :class:`Subject` and :class:`WildTexture`.

    The mesh comes from the stored vertices with EduHead's faces and UVs (``head``, default
    :func:`~avatarme_edu.geometry.head.load_eduhead`); the shape maps and the region maps are baked
    again from it (exactly as when the subject was made); the reflectance maps and textures are the
    stored ones.
    """
    from avatarme_edu.geometry.mesh import Mesh
    from avatarme_edu.geometry.uv_bake import bake_shape_maps
    from avatarme_edu.lightstage.skin import SkinParams
    from avatarme_edu.lightstage.subjects import uv_fragments_for, bake_regions
    from avatarme_edu.reflectance import ReflectanceMaps

    folder = Path(folder)
    rec = read_subject_record(folder)
    maps = load_maps(folder, expression, device)
    dev = maps["mask"].device
    if head is None:
        from avatarme_edu.geometry.head import load_eduhead

        head = load_eduhead(device=dev)
    faces, uvs = head.faces.to(dev), head.uvs.to(dev)
    identity = torch.tensor(rec["identity"], dtype=torch.float32, device=dev)
    if "vertices" in maps:
        vertices = maps["vertices"]
    else:  # PNG subjects store no mesh: rebuild it, and make sure the head model is the same one
        vertices = head.mesh(identity, expression).vertices.detach().to(dev)
        want = rec["mesh_checksum"][expression]
        got = mesh_checksum(vertices)
        if any(abs(a - b) > 1e-4 * max(1.0, abs(b)) for a, b in zip(got, want)):
            raise ValueError(f"{str(folder)!r} was written with another head model (mesh checksum {got} != {want}); "
                             "write the subject again with the current model")
    if uvs.shape[0] != vertices.shape[0]:
        raise ValueError(f"{str(folder)!r} holds {vertices.shape[0]} vertices but the head model has "
                         f"{uvs.shape[0]}; it was written with another head model")
    mesh = Mesh(vertices, faces, uvs)
    hw = tuple(rec["map_hw"])
    fragments = uv_fragments_for(mesh, hw)
    shape = bake_shape_maps(mesh, hw, fragments=fragments)
    regions = bake_regions(fragments, faces, head.vertex_regions())
    mask = maps["mask"]
    reflectance = ReflectanceMaps(maps["diffuse_albedo"], maps["specular_albedo"], maps["diffuse_normals"],
                                  maps["specular_normals"], mask)
    height = maps.get("height", torch.zeros(1, *hw, device=dev))
    subject = Subject(id=int(rec["id"]), seed=int(rec["seed"]), expression=expression,
                      identity=identity,
                      skin=SkinParams(**rec["skin"]), mesh=mesh, shape=shape, reflectance=reflectance,
                      regions=regions, height=height, texel_mm=tuple(rec["texel_mm"]))
    w = rec["wild"][expression]
    wild = WildTexture(low=maps["texture_low"], high=maps["texture"], mask_low=maps["mask_low"], mask=mask,
                       params=WildParams.from_dict(w["params"]), exposure=float(w["exposure"]),
                       white_balance=tuple(w["white_balance"]),
                       sun_visibility=torch.ones(1, *hw, device=dev), occlusion=torch.ones(1, *hw, device=dev))
    return subject, wild


SAMPLE_SUBJECT_DIR = data_path(subject_dir_name(0))  # package data, see avatarme_edu/resources.py


def load_sample_subject(expression: str = "neutral", device=None, head=None) -> tuple[Subject, WildTexture]:
    """The bundled sample subject (``avatarme_edu/data/subject_0000``, cpu profile) and its wild texture.

    Written by :func:`write_sample_subject`; installed with the package as package data.
    """
    if not SAMPLE_SUBJECT_DIR.is_dir():
        raise FileNotFoundError(f"the sample subject is not at {str(SAMPLE_SUBJECT_DIR)!r}; reinstall avatarme-edu "
                                "or rewrite it with `python -m avatarme_edu.lightstage.dataset --sample`")
    return load_subject(SAMPLE_SUBJECT_DIR, expression, device, head)
