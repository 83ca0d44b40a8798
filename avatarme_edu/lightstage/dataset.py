"""The virtual light-stage dataset on disk, its fixed train / held-out split, and a patch loader.

:func:`make_dataset` writes ``n_subjects`` identities, each in the chosen expressions, with an
in-the-wild texture per expression (:mod:`~avatarme_edu.lightstage.wild`)::

    path/
      manifest.json            what is in here: seed, profile, split, subjects, files, versions
      subject_0000/
        subject.json           identity, skin parameters, wild-texture parameters, split
        neutral.safetensors    every map of this subject in this expression (see MAP_KEYS)
        smile.safetensors ...
      subject_0001/ ...

**Identities and the split.** A dataset with ``seed`` s holds the identities s, s + 1, ..., s + n - 1
(the identity number is the :func:`~avatarme_edu.lightstage.subjects.make_subject` seed). The split
is a property of the identity, not of the dataset: **every fifth identity (id % 5 == 4) is held out**
(:func:`is_held_out`), in every dataset ever written, with all its expressions. So an identity that is
held out in one dataset can never be a training identity of another, and the loader checks the rule
itself instead of trusting the files: asked for ``"train"``, it never opens a held-out identity.

**Files.** Maps are stored as safetensors, float16 (half the size of float32 and ~0.05 degree on
unit normals, well below what any network here resolves), in the layout of the project, ``(C, H, W)``:
safetensors can read a crop of a tensor without reading the rest of the file, which keeps the patch
loader fast. Masks are uint8; mesh vertices float32. ``fmt="png"`` writes the maps as PNG files with
:mod:`avatarme_edu.maps_io` instead (8-bit sRGB colour, 16-bit normals): smaller for a committed
sample (``avatarme_edu/data/subject_0000``), and viewable in any image viewer.

**Atomic and resumable.** Each identity is written into a temporary folder that is renamed to
``subject_XXXX`` when complete, so an interrupted run leaves no half-written subject; running
:func:`make_dataset` again skips the subjects that are already there and writes the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from avatarme_edu.lightstage.subjects import (
    Subject,
    check_seed,
    make_subject_expressions,
    subject_dir_name,
    unit_vectors,
)
from avatarme_edu.lightstage.wild import WildParams, WildTexture, wild_texture
from avatarme_edu.profiles import Profile
from avatarme_edu.resources import data_path

FORMAT_VERSION = 1
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
#: What the patch loader yields by default (every stored map).
DEFAULT_PATCH_KEYS = tuple(k for k in MAP_KEYS if k != "height") + ("texture_low",)
_NORMAL_KEYS = ("diffuse_normals", "specular_normals", "normals_object", "normals_tangent")
_PNG_KINDS = {"texture": "color", "texture_low": "color", "diffuse_albedo": "color", "specular_albedo": "gray",
              "diffuse_normals": "normal", "specular_normals": "normal", "mask": "mask", "mask_low": "mask"}
_TMP_PREFIX = ".tmp-"


# ----------------------------------------------------------------------------------------------
# The split
# ----------------------------------------------------------------------------------------------


def is_held_out(identity_id: int) -> bool:
    """True for the identities kept out of training: every fifth one (``id % 5 == 4``)."""
    return int(identity_id) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def split_of(identity_id: int) -> str:
    """``"held_out"`` or ``"train"`` for an identity (see :func:`is_held_out`)."""
    return "held_out" if is_held_out(identity_id) else "train"


def _check_split(split: str) -> str:
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


# ----------------------------------------------------------------------------------------------
# Writing one identity
# ----------------------------------------------------------------------------------------------


def _maps_of(subject: Subject, wild: WildTexture) -> dict[str, torch.Tensor]:
    r, s = subject.reflectance, subject.shape
    return {"texture": wild.high, "diffuse_albedo": r.diffuse_albedo, "specular_albedo": r.specular_albedo,
            "diffuse_normals": r.diffuse_normals, "specular_normals": r.specular_normals,
            "position": s.position, "normals_object": s.normals_object, "normals_tangent": s.normals_tangent,
            "depth": s.depth, "height": subject.height, "mask": r.mask, "texture_low": wild.low,
            "mask_low": wild.mask_low}


def _versions() -> dict:
    import avatarme_edu

    return {"format": FORMAT_VERSION, "avatarme_edu": avatarme_edu.__version__, "torch": torch.__version__}


def _subject_record(subjects: list[Subject], wilds: list[WildTexture], profile: Profile, fmt: str) -> dict:
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
        "files": _file_list(fmt, [s.expression for s in subjects]),
        "versions": _versions(),
    }


def _file_list(fmt: str, expressions: list[str]) -> list[str]:
    if fmt == "safetensors":
        return ["subject.json"] + [f"{e}.safetensors" for e in expressions]
    return ["subject.json"] + [f"{e}/{k}.png" for e in expressions for k in _PNG_KINDS]


def write_subject(folder: str | os.PathLike, subjects: list[Subject], wilds: list[WildTexture],
                  profile: Profile, fmt: str = "safetensors") -> Path:
    """Write one identity (its expressions and wild textures) atomically to ``folder``.

    The files go into a temporary folder next to ``folder``, which is renamed to ``folder`` once
    everything is written: ``folder`` either does not exist or is complete. ``fmt``:
    ``"safetensors"`` (float16, every map, and the mesh vertices) or ``"png"`` (maps_io PNGs of the
    reflectance maps, textures and masks only, for small committed samples: the mesh is rebuilt from
    the recorded identity coefficients with EduHead, checked against a recorded checksum, and the
    shape maps are baked again on loading).
    """
    from safetensors.torch import save_file

    if fmt not in ("safetensors", "png"):
        raise ValueError(f"fmt must be 'safetensors' or 'png', got {fmt!r}")
    if not subjects or len(subjects) != len(wilds):
        raise ValueError(f"need one wild texture per subject, got {len(subjects)} subjects and {len(wilds)} textures")
    if len({s.id for s in subjects}) != 1:
        raise ValueError("write_subject writes one identity: all subjects must share one id")
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{str(folder)!r} already exists; a finished subject is never overwritten")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{folder.name}-", dir=folder.parent))
    try:
        for s, w in zip(subjects, wilds):
            maps = _maps_of(s, w)
            if fmt == "safetensors":
                tensors = {k: (v.to(torch.uint8) if v.dtype == torch.bool else v.to(torch.float16))
                           .detach().cpu().contiguous() for k, v in maps.items()}
                tensors["vertices"] = s.mesh.vertices.detach().float().cpu().contiguous()
                save_file(tensors, str(tmp / f"{s.expression}.safetensors"),
                          metadata={"id": str(s.id), "expression": s.expression, "format": str(FORMAT_VERSION)})
            else:
                from avatarme_edu.maps_io import save_map

                for k, kind in _PNG_KINDS.items():
                    _recompress_png(save_map(tmp / s.expression / f"{k}.png", maps[k], kind))
        record = _subject_record(subjects, wilds, profile, fmt)
        (tmp / "subject.json").write_text(json.dumps(record, indent=1))
        # mkdtemp (and maps_io's temporary files) are private; the finished subject is ordinary
        for f in tmp.rglob("*"):
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
        os.chmod(tmp, 0o755)
        os.replace(tmp, folder)  # atomic: the finished folder appears at once
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _recompress_png(path: Path) -> None:
    """Re-encode a PNG losslessly at zlib's highest level (maps_io favours speed; samples favour size)."""
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if ok and len(buf) < path.stat().st_size:
        path.write_bytes(buf.tobytes())


def mesh_checksum(vertices: torch.Tensor) -> list[float]:
    """Two numbers that change when a mesh's vertices change: their sum and their absolute sum (m)."""
    v = vertices.detach().double().cpu()
    return [float(v.sum()), float(v.abs().sum())]


def read_subject_record(folder: str | os.PathLike) -> dict:
    """The ``subject.json`` of a written identity."""
    f = Path(folder) / "subject.json"
    if not f.is_file():
        raise FileNotFoundError(f"{str(f)!r} not found: is {str(folder)!r} a subject folder written by make_dataset?")
    return json.loads(f.read_text())


# ----------------------------------------------------------------------------------------------
# Writing a dataset
# ----------------------------------------------------------------------------------------------


def make_dataset(n_subjects: int, seed: int, profile: Profile, path: str | os.PathLike,
                 expressions=DEFAULT_EXPRESSIONS, progress: bool = True, fmt: str = "safetensors",
                 head=None, workers: int | None = None) -> Path:
    """Write identities ``seed .. seed + n_subjects - 1`` to ``path``; returns the manifest's path.

    ``expressions``: the EduHead expressions per identity (default only ``"neutral"``; pass
    :data:`avatarme_edu.geometry.head.EXPRESSIONS` for the paper's seven). Each gets its own random
    in-the-wild texture. ``progress`` shows a tqdm bar. Finished subjects already in ``path`` are
    skipped (after checking they were written with the same profile sizes and expressions), so an
    interrupted run can simply be started again. Writes ``manifest.json`` last.

    ``workers``: child processes making subjects side by side, one torch thread each (0: all in this
    process). ``None`` chooses: one per CPU core (at most 4) for a CPU profile with 16 or more
    subjects to write, else 0. The files do not depend on it.
    ``head``: the head model (default EduHead; another model is used in this process only).
    ``fmt``: ``"safetensors"`` or ``"png"``.
    """
    from tqdm.auto import tqdm

    if not isinstance(n_subjects, int) or isinstance(n_subjects, bool) or n_subjects < 1:
        raise ValueError(f"n_subjects must be an int >= 1, got {n_subjects!r}")
    check_seed(seed)
    check_seed(seed + n_subjects - 1)
    if not isinstance(profile, Profile):
        raise ValueError(f"profile must be an avatarme_edu.profiles.Profile, got {type(profile).__name__}")
    expressions = tuple(expressions)
    if not expressions or len(set(expressions)) != len(expressions):
        raise ValueError(f"expressions must be a non-empty list without repeats, got {expressions}")
    default_head = head is None  # worker processes can load EduHead themselves, not another model
    if head is None:
        from avatarme_edu.geometry.head import load_eduhead

        head = load_eduhead(device=profile.torch_device)
    all_expressions = tuple(getattr(head, "expressions", None) or _eduhead_expressions())
    for e in expressions:
        if e not in all_expressions:
            raise ValueError(f"unknown expression {e!r}; valid expressions are: {', '.join(all_expressions)}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    manifest_file = path / "manifest.json"
    if manifest_file.exists():
        old = json.loads(manifest_file.read_text())
        for key, want in (("map_hw", list(profile.map_hw)), ("texture_hw", list(profile.texture_hw)),
                          ("expressions", list(expressions)), ("format", fmt)):
            if old.get(key) != want:
                raise ValueError(f"{str(path)!r} holds a dataset with {key}={old.get(key)}, not {want}; "
                                 "write to another folder or delete it")
    for leftover in path.glob(f"{_TMP_PREFIX}subject_*"):  # from an interrupted run
        shutil.rmtree(leftover, ignore_errors=True)

    ids = list(range(seed, seed + n_subjects))
    started = time.perf_counter()
    todo = []
    for identity_id in ids:
        folder = path / subject_dir_name(identity_id)
        if folder.exists():
            _check_existing(folder, identity_id, profile, expressions, fmt)
        else:
            todo.append(identity_id)
    if workers is None:  # automatic: processes pay off for many subjects on a CPU
        workers = min(os.cpu_count() or 1, 4) if profile.torch_device.type == "cpu" and len(todo) >= 16 else 0
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0 (0 = make subjects in this process), got {workers!r}")
    jobs = [(i, profile, expressions, all_expressions, path / subject_dir_name(i), fmt) for i in todo]
    bar = tqdm(total=len(ids), initial=len(ids) - len(todo), desc="virtual light stage", unit="subject",
               disable=not progress)
    if workers <= 1 or len(jobs) <= 1 or not default_head:
        for job in jobs:
            _write_identity(*job, head=head)
            bar.update(1)
    else:
        _write_in_processes(jobs, workers, profile, expressions, path, fmt, bar)
    bar.close()

    manifest = {
        "description": "avatarme-edu virtual light stage dataset",
        "seed": seed, "n_subjects": n_subjects, "expressions": list(expressions), "format": fmt,
        "dtype": "float16" if fmt == "safetensors" else "png",
        "profile": profile.name, "map_hw": list(profile.map_hw), "texture_hw": list(profile.texture_hw),
        "split": {"rule": f"identity id % {HELD_OUT_EVERY} == {HELD_OUT_EVERY - 1} is held out",
                  "train": [i for i in ids if not is_held_out(i)],
                  "held_out": [i for i in ids if is_held_out(i)]},
        "keys": {**{k: {"channels": c, "hw": "map_hw"} for k, c in MAP_KEYS.items()},
                 **{k: {"channels": c, "hw": "texture_hw"} for k, c in TEXTURE_KEYS.items()}},
        "subjects": [{"id": i, "split": split_of(i), "dir": subject_dir_name(i),
                      "files": _file_list(fmt, list(expressions))} for i in ids],
        "versions": _versions(),
        "seconds_this_run": round(time.perf_counter() - started, 2), "written_this_run": len(todo),
    }
    tmp = manifest_file.with_name(f"{_TMP_PREFIX}manifest.json")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, manifest_file)
    return manifest_file


def _write_identity(identity_id: int, profile: Profile, expressions, all_expressions, folder: Path, fmt: str,
                    head=None) -> int:
    """Make one identity in its expressions, with a wild texture each, and write it atomically."""
    subjects = make_subject_expressions(identity_id, profile, expressions, head=head)
    wilds = [wild_texture(s, profile, wild_generator(identity_id, all_expressions.index(s.expression)))
             for s in subjects]
    write_subject(folder, subjects, wilds, profile, fmt)
    return identity_id


def _write_in_processes(jobs: list, workers: int, profile: Profile, expressions, path: Path, fmt: str,
                        bar) -> None:
    """Write the identities of ``jobs`` in ``workers`` child Python processes, one torch thread each.

    Why processes: the work is many small tensor operations, which one thread does about as fast as
    several (and threads fight over the cores of a busy machine), so N single-threaded processes make
    N subjects at a time. The children run this module's own ``--worker`` entry point (not the
    caller's script), so no ``if __name__ == "__main__"`` guard is needed anywhere. Every subject has
    its own seed: the files are the same as those written by one process.
    """
    import subprocess
    import sys
    import threading
    from queue import Queue

    ids = [job[0] for job in jobs]
    shares = [ids[k::workers] for k in range(workers)]
    spec = json.dumps({"profile": dataclasses.asdict(profile), "expressions": list(expressions),
                       "path": str(path), "fmt": fmt})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    events: Queue = Queue()
    procs = []
    for share in shares:
        if not share:
            continue
        log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty child can never block
        proc = subprocess.Popen([sys.executable, "-m", "avatarme_edu.lightstage.dataset", "--worker", spec,
                                 ",".join(map(str, share))], stdout=subprocess.PIPE, stderr=log,
                                text=True, env=env)
        proc.log = log
        procs.append(proc)

        def pump(proc=proc):
            for line in proc.stdout:
                if line.startswith("done "):
                    events.put("done")
            proc.wait()
            events.put(("exit", proc))

        threading.Thread(target=pump, daemon=True).start()
    try:
        running = len(procs)
        while running:
            event = events.get()
            if event == "done":
                bar.update(1)
                continue
            running -= 1
            proc = event[1]
            if proc.returncode != 0:
                proc.log.seek(0)
                err = proc.log.read()[-3000:]
                raise RuntimeError(f"a dataset worker process failed (exit code {proc.returncode}):\n{err}")
    finally:
        for proc in procs:  # on an error or Ctrl-C: stop the others (finished subjects stay)
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            proc.log.close()


def _worker_main(spec_json: str, ids_csv: str) -> int:
    """Entry point of one worker process (see :func:`_write_in_processes`)."""
    from avatarme_edu.geometry.head import load_eduhead

    torch.set_num_threads(1)  # this process is a worker of ours: one thread, the others run beside it
    spec = json.loads(spec_json)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["profile"].items()}
    profile = Profile(**fields)
    head = load_eduhead(device=profile.torch_device)
    all_expressions = _eduhead_expressions()
    for identity_id in (int(x) for x in ids_csv.split(",")):
        folder = Path(spec["path"]) / subject_dir_name(identity_id)
        if not folder.exists():
            _write_identity(identity_id, profile, tuple(spec["expressions"]), all_expressions, folder, spec["fmt"],
                            head=head)
        print(f"done {identity_id}", flush=True)
    return 0


def _eduhead_expressions() -> tuple[str, ...]:
    from avatarme_edu.geometry.head import EXPRESSIONS

    return tuple(EXPRESSIONS)


def _check_existing(folder: Path, identity_id: int, profile: Profile, expressions, fmt: str) -> None:
    rec = read_subject_record(folder)
    problems = []
    if rec.get("id") != identity_id:
        problems.append(f"id {rec.get('id')} (expected {identity_id})")
    if rec.get("map_hw") != list(profile.map_hw) or rec.get("texture_hw") != list(profile.texture_hw):
        problems.append(f"sizes {rec.get('map_hw')}/{rec.get('texture_hw')}")
    if rec.get("expressions") != list(expressions):
        problems.append(f"expressions {rec.get('expressions')}")
    if rec.get("format") != fmt:
        problems.append(f"format {rec.get('format')}")
    if problems:
        raise ValueError(f"{str(folder)!r} was written with different settings ({'; '.join(problems)}); "
                         "write to another folder or delete it")


# ----------------------------------------------------------------------------------------------
# Reading subjects back
# ----------------------------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike) -> dict:
    f = Path(path) / "manifest.json"
    if not f.is_file():
        raise FileNotFoundError(f"no manifest.json in {str(path)!r}; write the dataset with make_dataset first")
    return json.loads(f.read_text())


def load_maps(folder: str | os.PathLike, expression: str = "neutral", device=None) -> dict[str, torch.Tensor]:
    """Every stored map of one subject-expression, as float32 (masks bool) on ``device``.

    Normals are renormalised after float16 / 16-bit storage. PNG folders hold fewer maps (no shape
    maps, height or vertices; :func:`load_subject` rebuilds the mesh and bakes the shape maps again).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    rec = read_subject_record(folder)
    if expression not in rec["expressions"]:
        raise ValueError(f"{str(folder)!r} has expressions {rec['expressions']}, not {expression!r}")
    out = {}
    if rec["format"] == "safetensors":
        for k, v in load_file(str(folder / f"{expression}.safetensors")).items():
            out[k] = v.bool() if k.startswith("mask") else v.float()
    else:
        from avatarme_edu.maps_io import load_map

        for k, kind in _PNG_KINDS.items():
            out[k] = load_map(folder / expression / f"{k}.png", kind)
    for k in _NORMAL_KEYS:
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


def write_sample_subject(folder: str | os.PathLike = SAMPLE_SUBJECT_DIR) -> Path:
    """(Re)write the sample subject: identity 0, neutral, cpu profile, PNG maps (~2.8 MB).

    Run it (``python -m avatarme_edu.lightstage.dataset --sample``) after changing the head model or the
    skin painter, so the committed sample matches them again. The old folder is replaced only once the
    new one is complete.
    """
    from avatarme_edu.profiles import get_profile

    folder = Path(folder)
    profile = get_profile("cpu", device="cpu")
    staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=folder.parent))
    try:
        make_dataset(1, 0, profile, staging, fmt="png", progress=False, workers=0)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging / subject_dir_name(0), folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


# ----------------------------------------------------------------------------------------------
# Patches for training
# ----------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    id: int
    expression: str
    file: Path


class PatchDataset:
    """Aligned random patches of one split of a dataset written by :func:`make_dataset`.

    ``split``: ``"train"`` or ``"held_out"``. Which identities belong to a split is decided by
    :func:`is_held_out` here, not read from the files, and the manifest and every ``subject.json``
    are checked against it: a ``"train"`` dataset refuses to open if a held-out identity is listed as
    training data, and never reads one. ``keys``: the maps to crop (default
    :data:`DEFAULT_PATCH_KEYS`: every stored map at ``map_hw``, and ``texture_low`` when ``map_hw`` is a
    whole multiple of ``texture_hw`` - not in the paper profile, where 4096 / 384 is not whole).

    :meth:`sample` returns ``batch_size`` patches of ``profile.patch_size``, each the SAME crop of every
    map of one subject-expression: ``(B, C, p, p)`` float32 maps, ``(B, p, p)`` bool ``mask``;
    ``texture_low`` is the matching ``(B, 3, p / r, p / r)`` crop of the fitted texture, where
    ``r = map_hw / texture_hw`` must be a whole number (4 in the cpu profile); ``subject_id`` ``(B,)``,
    ``expression`` (list) and ``corner`` ``(B, 2)`` ``(top, left)`` at ``map_hw`` say where each came from.
    """

    def __init__(self, path: str | os.PathLike, split: str, profile: Profile, keys=None,
                 min_valid: float = 0.5):
        self.path = Path(path)
        self.split = _check_split(split)
        self.profile = profile
        self.keys = tuple(DEFAULT_PATCH_KEYS if keys is None else keys)
        self.min_valid = float(min_valid)
        known = set(MAP_KEYS) | set(TEXTURE_KEYS)
        unknown = [k for k in self.keys if k not in known]
        if unknown or not self.keys:
            raise ValueError(f"unknown patch keys {unknown}; valid keys are: {', '.join(sorted(known))}")
        manifest = read_manifest(self.path)
        if manifest.get("format") != "safetensors":
            raise ValueError(f"the patch loader reads safetensors datasets; {str(self.path)!r} is "
                             f"{manifest.get('format')!r}")
        if [manifest["map_hw"], manifest["texture_hw"]] != [list(profile.map_hw), list(profile.texture_hw)]:
            raise ValueError(f"the dataset has map_hw={manifest['map_hw']}, texture_hw={manifest['texture_hw']} "
                             f"but profile {profile.name!r} has {list(profile.map_hw)}, {list(profile.texture_hw)}")
        H, W = profile.map_hw
        p = int(profile.patch_size)
        if not 0 < p <= min(H, W):
            raise ValueError(f"profile.patch_size must be in [1, {min(H, W)}] for {H}x{W} maps, got {p}")
        self.ratio = None
        if H % profile.texture_hw[0] == 0 and W % profile.texture_hw[1] == 0 and \
                H // profile.texture_hw[0] == W // profile.texture_hw[1]:
            self.ratio = H // profile.texture_hw[0]
        if self.ratio is not None and p % self.ratio != 0:
            self.ratio = None
        if keys is None and self.ratio is None:
            self.keys = tuple(k for k in self.keys if k not in TEXTURE_KEYS)
        if ("texture_low" in self.keys or "mask_low" in self.keys) and self.ratio is None:
            raise ValueError(f"texture_low patches need map_hw {tuple(profile.map_hw)} to be a whole multiple r of "
                             f"texture_hw {tuple(profile.texture_hw)} with patch_size {p} divisible by r; "
                             "leave 'texture_low' out of keys")

        # The split: by the rule, checked against what the files say.
        for s in manifest["subjects"]:
            if s["split"] != split_of(s["id"]):
                raise ValueError(f"manifest lists identity {s['id']} as {s['split']!r} but it is "
                                 f"{split_of(s['id'])!r} by the rule; refusing to read this dataset")
        if split == "train" and any(is_held_out(i) for i in manifest["split"]["train"]):
            bad = [i for i in manifest["split"]["train"] if is_held_out(i)]
            raise ValueError(f"manifest's train split contains held-out identities {bad}; refusing to read it")
        self.entries: list[_Entry] = []
        for s in manifest["subjects"]:
            if split_of(s["id"]) != split:
                continue  # never opened
            folder = self.path / s["dir"]
            rec = read_subject_record(folder)
            if rec["id"] != s["id"] or split_of(rec["id"]) != split:
                raise ValueError(f"{str(folder)!r} holds identity {rec['id']}, not {s['id']}; refusing to read it")
            for e in rec["expressions"]:
                self.entries.append(_Entry(int(rec["id"]), e, folder / f"{e}.safetensors"))
        if not self.entries:
            raise ValueError(f"the {split!r} split of {str(self.path)!r} is empty")
        self._handles: dict[Path, object] = {}
        self._masks: dict[Path, torch.Tensor] = {}

    def __len__(self) -> int:
        """Number of subject-expressions in the split."""
        return len(self.entries)

    @property
    def identities(self) -> list[int]:
        return sorted({e.id for e in self.entries})

    def _handle(self, file: Path):
        from safetensors import safe_open

        if file not in self._handles:
            self._handles[file] = safe_open(str(file), framework="pt")
        return self._handles[file]

    def _sampling_mask(self, entry: _Entry) -> torch.Tensor:
        if entry.file not in self._masks:
            key = "mask_low" if self.ratio is not None else "mask"
            self._masks[entry.file] = self._handle(entry.file).get_tensor(key).bool()
        return self._masks[entry.file]

    def sample(self, batch_size: int, generator: torch.Generator) -> dict:
        """One batch of aligned patches (see the class docstring), on ``profile.device``."""
        from avatarme_edu.tiling import sample_patches

        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        p = int(self.profile.patch_size)
        r = self.ratio or 1
        pick = torch.randint(len(self.entries), (batch_size,), generator=generator, device=generator.device).cpu()
        rows: list[tuple[int, int, int]] = [(0, 0, 0)] * batch_size  # (entry, top, left) per batch slot
        for e in sorted(set(pick.tolist())):
            slots = (pick == e).nonzero().flatten().tolist()
            m = self._sampling_mask(self.entries[e])
            _, corners = sample_patches({"mask": m[None]}, m, p // r, len(slots), generator, self.min_valid)
            for slot, (t, l) in zip(slots, corners.tolist()):
                rows[slot] = (e, t * r, l * r)
        out: dict[str, list] = {k: [] for k in self.keys}
        for e, t, l in rows:
            f = self._handle(self.entries[e].file)
            for k in self.keys:
                sl = f.get_slice(k)
                if k in TEXTURE_KEYS:
                    tl, ll, pl = t // r, l // r, p // r
                    crop = sl[tl:tl + pl, ll:ll + pl] if k == "mask_low" else sl[:, tl:tl + pl, ll:ll + pl]
                else:
                    crop = sl[t:t + p, l:l + p] if k == "mask" else sl[:, t:t + p, l:l + p]
                out[k].append(crop)
        dev = self.profile.torch_device
        batch = {k: torch.stack(v).to(dev) for k, v in out.items()}
        for k in batch:
            batch[k] = batch[k].bool() if k.startswith("mask") else batch[k].float()
            if k in _NORMAL_KEYS:  # float16 storage: make them unit again (zero stays zero)
                batch[k] = unit_vectors(batch[k])
        batch["subject_id"] = torch.tensor([self.entries[e].id for e, _, _ in rows], dtype=torch.int64)
        batch["expression"] = [self.entries[e].expression for e, _, _ in rows]
        batch["corner"] = torch.tensor([[t, l] for _, t, l in rows], dtype=torch.int64)
        return batch

    def batches(self, batch_size: int, generator: torch.Generator, n_batches: int | None = None) -> Iterator[dict]:
        """``n_batches`` batches (endless when None)."""
        i = 0
        while n_batches is None or i < n_batches:
            yield self.sample(batch_size, generator)
            i += 1


def patch_loader(path: str | os.PathLike, split: str, profile: Profile, batch_size: int,
                 generator: torch.Generator, keys=None, n_batches: int | None = None) -> Iterator[dict]:
    """Batches of aligned random patches from one split: ``PatchDataset(...).batches(...)``.

    A plain generator (no worker processes): reading crops from safetensors is cheap, and the same
    ``generator`` state gives the same batches.

    >>> for batch in patch_loader("data/ls", "train", profile, 8, torch.Generator().manual_seed(0), n_batches=100):
    ...     loss = net(batch["texture"]) - batch["diffuse_albedo"]   # doctest: +SKIP
    """
    return PatchDataset(path, split, profile, keys).batches(batch_size, generator, n_batches)


# ----------------------------------------------------------------------------------------------
# Command line: python -m avatarme_edu.lightstage.dataset N SEED PATH [--profile cpu] ...
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return _worker_main(argv[1], argv[2])
    if argv[:1] == ["--sample"]:
        print(write_sample_subject())
        return 0
    from avatarme_edu.profiles import get_profile

    parser = argparse.ArgumentParser(
        prog="python -m avatarme_edu.lightstage.dataset",
        description="Write a virtual light-stage dataset (subjects, wild textures, split). "
                    "`--sample` alone rewrites avatarme_edu/data/subject_0000.")
    parser.add_argument("n_subjects", type=int, help="number of identities")
    parser.add_argument("seed", type=int, help="the first identity; identities are seed .. seed + n - 1")
    parser.add_argument("path", help="output folder (re-running resumes)")
    parser.add_argument("--profile", default=None, help="cpu or paper (default: AVATARME_PROFILE, else by device)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--expressions", default=",".join(DEFAULT_EXPRESSIONS),
                        help="comma-separated EduHead expressions, or 'all'")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: automatic)")
    args = parser.parse_args(argv)
    expressions = _eduhead_expressions() if args.expressions == "all" else tuple(args.expressions.split(","))
    manifest = make_dataset(args.n_subjects, args.seed, get_profile(args.profile, args.device), args.path,
                            expressions=expressions, workers=args.workers)
    print(manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
