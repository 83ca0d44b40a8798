"""What a dataset holds and how it is checked: keys, the identity split, checksums, JSON records.

Every data file of a subject has its SHA-256 in the subject's ``subject.json`` (``checksums``), the
manifest holds the SHA-256 of every ``subject.json`` (``subjects[i].record_sha256``), and both JSON
files carry a checksum of their own content (``sha256``, :func:`seal`): a flipped byte anywhere is
found on reading or by :func:`verify_subject` / :func:`verify_dataset`, and every problem is
reported with the file's name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from avatarme_edu.lightstage.subjects import subject_dir_name

FORMAT_VERSION = 2  # 2: per-file SHA-256 checksums in subject.json and the manifest
HELD_OUT_EVERY = 5  # identity ids with id % 5 == 4 are held out
SPLITS = ("train", "held_out")
DEFAULT_EXPRESSIONS = ("neutral",)

#: Maps stored at the reflectance maps' size ``profile.map_hw``: name -> channels.
MAP_KEYS = {
    "texture": 3,  # the wild texture, sharp (WildTexture.high)
    "diffuse_albedo": 3,
    "specular_albedo": 1,
    "diffuse_normals": 3,  # object space
    "specular_normals": 3,  # tangent space
    "position": 3,  # shape maps (geometry.uv_bake.ShapeMaps)
    "normals_object": 3,
    "normals_tangent": 3,
    "depth": 1,
    "height": 1,  # skin relief, mm
    "mask": 1,
}
#: Maps stored at the fitted texture's size ``profile.texture_hw``.
TEXTURE_KEYS = {"texture_low": 3, "mask_low": 1}
NORMAL_KEYS = ("diffuse_normals", "specular_normals", "normals_object", "normals_tangent")
PNG_KINDS = {"texture": "color", "texture_low": "color", "diffuse_albedo": "color", "specular_albedo": "gray",
             "diffuse_normals": "normal", "specular_normals": "normal", "mask": "mask", "mask_low": "mask"}


class DatasetError(ValueError):
    """A dataset file is missing, corrupt or inconsistent; the message names the file."""


# ----------------------------------------------------------------------------------------------
# The split
# ----------------------------------------------------------------------------------------------


def is_held_out(identity_id: int) -> bool:
    """True for the identities kept out of training: every fifth one (``id % 5 == 4``)."""
    return int(identity_id) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def split_of(identity_id: int) -> str:
    """``"held_out"`` or ``"train"`` for an identity (see :func:`is_held_out`)."""
    return "held_out" if is_held_out(identity_id) else "train"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are: {', '.join(SPLITS)}")
    return split


def wild_generator(identity_id: int, expression_index: int) -> torch.Generator:
    """The generator of the wild texture of one identity in one expression.

    Salted, so its stream differs from the subject's own (:func:`make_subject` uses the plain
    seed), and indexed by the expression's place in EduHead's list, so the texture does not depend on
    which other expressions were written.
    """
    salted = (int(identity_id) * 0x9E3779B1 + 0x7F4A7C15 + 1_000_003 * int(expression_index)) % (2**63 - 1)
    return torch.Generator().manual_seed(salted)


def file_list(fmt: str, expressions) -> list[str]:
    """The data files of a subject folder (``subject.json`` not included), relative to it."""
    if fmt == "safetensors":
        return [f"{e}.safetensors" for e in expressions]
    return [f"{e}/{k}.png" for e in expressions for k in PNG_KINDS]


# ----------------------------------------------------------------------------------------------
# Checksums and JSON records
# ----------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (bounded memory for any size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | os.PathLike, what: str) -> dict:
    """A JSON object from ``path``; missing, empty or corrupt files are one :class:`DatasetError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} not found")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{what} {str(path)!r} is empty or corrupt (not valid JSON: {e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{what} {str(path)!r} is corrupt (a JSON object was expected)")
    return data


SEAL_KEY = "sha256"  # a JSON record's own checksum: of its canonical JSON without this key


def seal(record: dict) -> dict:
    """``record`` with its own SHA-256 added (``sha256``), so a changed value is found on reading."""
    body = {k: v for k, v in record.items() if k != SEAL_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return {**body, SEAL_KEY: hashlib.sha256(text.encode("ascii")).hexdigest()}


def _check_seal(record: dict, path: Path, what: str) -> dict:
    if SEAL_KEY in record and seal(record)[SEAL_KEY] != record[SEAL_KEY]:
        raise DatasetError(f"{what} {str(path)!r} is corrupt: its content does not match its own SHA-256")
    return record


def read_manifest(path: str | os.PathLike) -> dict:
    """The ``manifest.json`` of a dataset folder."""
    f = Path(path) / "manifest.json"
    if not f.is_file():
        raise FileNotFoundError(f"no manifest.json in {str(path)!r}; write the dataset with make_dataset first")
    man = _check_seal(read_json(f, "manifest"), f, "manifest")
    for key in ("subjects", "map_hw", "texture_hw", "format", "split"):
        if key not in man:
            raise DatasetError(f"manifest {str(f)!r} has no {key!r}; it is corrupt or not ours")
    return man


def read_subject_record(folder: str | os.PathLike) -> dict:
    """The ``subject.json`` of a written identity."""
    f = Path(folder) / "subject.json"
    if not f.is_file():
        raise FileNotFoundError(f"{str(f)!r} not found: is {str(folder)!r} a subject folder written by make_dataset?")
    rec = _check_seal(read_json(f, "subject record"), f, "subject record")
    for key in ("id", "expressions", "format", "map_hw", "texture_hw"):
        if key not in rec:
            raise DatasetError(f"subject record {str(f)!r} has no {key!r}; it is corrupt or not ours")
    return rec


def check_file(folder: Path, rel: str, rec: dict) -> Path:
    """``folder / rel`` after checking it against the record's checksum (records without any pass)."""
    f = folder / rel
    sums = rec.get("checksums")
    if sums is None:
        return f  # format 1 (the committed sample): no checksums to check
    if rel not in sums:
        raise DatasetError(f"{str(f)!r} has no checksum in {str(folder / 'subject.json')!r}")
    if not f.is_file():
        raise DatasetError(f"{str(f)!r} is missing")
    if sha256_file(f) != sums[rel]:
        raise DatasetError(f"{str(f)!r} is corrupt: its SHA-256 does not match the one recorded when it was written")
    return f


def verify_subject(folder: str | os.PathLike, record_sha256: str | None = None) -> list[str]:
    """Every problem of one subject folder, one line each naming the file (empty: all good).

    Checks ``subject.json`` against ``record_sha256`` (from the manifest) when given, then every data
    file against its checksum.
    """
    folder = Path(folder)
    rec_file = folder / "subject.json"
    try:
        if record_sha256 is not None and rec_file.is_file() and sha256_file(rec_file) != record_sha256:
            return [f"{str(rec_file)!r} is corrupt: its SHA-256 does not match the manifest"]
        rec = read_subject_record(folder)
    except (OSError, DatasetError) as e:
        return [str(e)]
    if "checksums" not in rec:
        return [f"{str(rec_file)!r} records no checksums (written by an older version); write it again"]
    problems = []
    for rel in file_list(rec["format"], rec["expressions"]):
        try:
            check_file(folder, rel, rec)
        except (OSError, DatasetError) as e:
            problems.append(str(e))
    return problems


def verify_dataset(path: str | os.PathLike) -> list[str]:
    """Every problem of a dataset folder, one line each naming the file (empty: all good).

    Reads the manifest, checks every listed subject (:func:`verify_subject`), that each lies in the
    split the rule gives it, and that no files are there that the manifest does not know.
    """
    path = Path(path)
    try:
        man = read_manifest(path)
    except (OSError, DatasetError) as e:
        return [str(e)]
    problems = []
    listed = set()
    for s in man["subjects"]:
        folder = path / s.get("dir", subject_dir_name(s.get("id", -1)))
        listed.add(folder.name)
        if s.get("split") != split_of(s.get("id", -1)):
            problems.append(f"manifest lists identity {s.get('id')} as {s.get('split')!r}, "
                            f"but the rule makes it {split_of(s.get('id', -1))!r}")
        if not folder.is_dir():
            problems.append(f"{str(folder)!r} is missing")
            continue
        problems += verify_subject(folder, s.get("record_sha256"))
    for extra in sorted(path.glob("subject_*")):
        if extra.name not in listed:
            problems.append(f"{str(extra)!r} is not listed in the manifest")
    return problems
