"""The whole pipeline against ground truth: photos of held-out virtual subjects, reconstructed, scored.

No published system can be scored like this, since no real in-the-wild photo comes with its true
reflectance maps. The virtual light stage's held-out subjects (``seed % 5 == 4``, never trained on)
do: each is rendered as a photo (:func:`~avatarme_edu.fitting.synthetic.synthetic_photo`: its
in-the-wild texture with random environment light and camera tone baked in, random pose, on a
random background), and the photo goes through :func:`~avatarme_edu.pipeline.reconstruct`. The
resulting maps are compared with the subject's true maps in UV (same EduHead layout) over the face
region, and as renderings under a new light (:data:`RENDER_LIGHTS`) from the true subject's front
camera, each with its own mesh (so shape errors count too).

Where do the errors come from? The same maps are also made with one more stage fed its true input
each time (**methods**, columns of the table):

==================  =====================================================================================
``end_to_end``      photo -> fit -> RCAN -> δ -> ψ, ρ, σ; the fitted shape's maps (what a user gets)
``true_texture``    the true fitted-size texture (no fitting error) and the true shape -> RCAN -> ...
``true_sharp``      the true sharp texture (no super-resolution error) -> δ -> ...
``true_albedo``     the true A_D -> ψ, ρ, σ (each network on its own; δ's column is ``true_sharp``)
``no_networks``     baseline from the end-to-end inputs: A_D = the super-resolved texture, A_S = the
                    training set's mean map, N_D = N_O and N_S = N_T of the fitted shape
==================  =====================================================================================

Reading a row: ``true_texture - end_to_end`` is what fitting costs, ``true_sharp - true_texture`` what
super-resolution costs, ``true_albedo - true_sharp`` what de-lighting costs the later maps.
Metrics: PSNR (dB) of A_D and A_S, mean angle (deg) of N_D and N_S, over the true mask and face
region; render PSNR (dB) over the face pixels both renderings cover.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from avatarme_edu.profiles import Profile

METHODS = ("end_to_end", "true_texture", "true_sharp", "true_albedo", "no_networks")
ROWS = ("diffuse_albedo_psnr", "specular_albedo_psnr", "diffuse_normals_deg", "specular_normals_deg",
        "render_psnr")
RENDER_LIGHTS = ("key_left", "outdoor_sun")  # new light: the wild textures were lit by environments
RENDER_SIDE = 192
DEFAULT_SEEDS = (4, 9, 14)


DEGRADABLE = ("sr", "delight", "specular_albedo", "specular_normals", "diffuse_normals")


def degraded_weights(stage: str, out_dir, profile: Profile, noise: float = 1.0, seed: int = 0,
                     weights=None) -> Path:
    """A copy of the weights folder (default: the profile's committed one) in ``out_dir`` where network
    ``stage``'s float tensors get Gaussian noise of ``noise`` times each tensor's own standard deviation
    (four times that in the output convolution, which no normalisation follows).

    For checking that the regression suite notices a worse stage (``tests/test_notebooks.py``):
    pass the folder as ``weights`` to :func:`~avatarme_edu.pipeline.reconstruct` or this module.
    """
    import shutil

    from safetensors import safe_open

    from avatarme_edu.maps_io import save_tensors
    from avatarme_edu.nets.tasks import get_task
    from avatarme_edu.nets.weights import WEIGHTS_DIR
    from avatarme_edu.stages import pipeline_networks

    if stage not in DEGRADABLE:
        raise ValueError(f"unknown stage {stage!r}; degradable stages: {', '.join(DEGRADABLE)}")
    if not noise > 0:
        raise ValueError(f"noise must be > 0, got {noise}")
    src = Path(weights) if weights is not None else WEIGHTS_DIR / profile.name
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copyfile(f, out / f.name)
    name = pipeline_networks(profile)[stage]  # the network the pipeline runs for this stage
    path = src / f"{name}.safetensors"
    g = torch.Generator().manual_seed(seed)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    # the output convolution(s): weights with as many filters as the network has output channels (instance
    # norm after every other layer would undo most noise there), and their biases
    out_ch = get_task(name).out_channels
    last = {k for k, t in tensors.items() if t.ndim == 4 and t.shape[0] == out_ch}
    last |= {k.rsplit(".", 1)[0] + ".bias" for k in last}
    for k, t in tensors.items():
        if t.is_floating_point() and t.numel() > 1 and "running" not in k:  # not the norms' statistics
            scale = noise * (4.0 if k in last else 1.0)
            tensors[k] = t + scale * t.float().std() * torch.randn(t.shape, generator=g, dtype=t.dtype)
    save_tensors(out / path.name, tensors, meta)
    return out


def _chain(shape, profile: Profile, weights, low=None, sharp=None, albedo=None) -> dict:
    """The networks from whichever input is given: ``low`` (fitted-size texture), ``sharp`` or ``albedo``."""
    from avatarme_edu import stages

    def w(name):
        return None if weights is None else Path(weights) / f"{name}.safetensors"

    measured = albedo is not None  # ψ's level head reads pores: only a measured albedo shows them (pipeline.py)
    if albedo is None:
        if sharp is None:
            sharp = stages.super_resolve(low, profile, w("sr"))
        albedo = stages.delight(sharp, shape, profile, w(stages.pipeline_networks(profile)["delight"]))
    return {"diffuse_albedo": albedo,
            "specular_albedo": stages.specular_albedo(albedo, profile, w("specular_albedo"), mask=shape.mask,
                                                      level_head=None if measured else False),
            "specular_normals": stages.specular_normals(albedo, shape, profile, w("specular_normals")),
            "diffuse_normals": stages.diffuse_normals(albedo, shape, profile, w("diffuse_normals"))}


def map_errors(maps: dict, truth, region: torch.Tensor) -> dict:
    """PSNR of the albedos and mean angle of the normals against ``truth`` (ReflectanceMaps) over ``region``."""
    from avatarme_edu.metrics import angular_error, psnr

    return {"diffuse_albedo_psnr": psnr(maps["diffuse_albedo"].clamp(0, 1), truth.diffuse_albedo, region),
            "specular_albedo_psnr": psnr(maps["specular_albedo"].clamp(0, 1), truth.specular_albedo, region),
            "diffuse_normals_deg": angular_error(maps["diffuse_normals"], truth.diffuse_normals, region)["mean"],
            "specular_normals_deg": angular_error(maps["specular_normals"], truth.specular_normals, region)["mean"]}


def render_psnr(mesh, shape, maps: dict, true_mesh, true_shape, truth, face_uv: torch.Tensor) -> float:
    """PSNR (dB) of ``maps`` on ``mesh`` against the truth, rendered from the true subject's front camera
    under each of :data:`RENDER_LIGHTS`, over the pixels both cover whose true UV lies in ``face_uv``."""
    from avatarme_edu.reflectance import ReflectanceMaps
    from avatarme_edu.render.shading import render_view
    from avatarme_edu.render.views import default_light_sets, view_camera

    cam = view_camera(true_mesh, "front", (RENDER_SIDE, RENDER_SIDE))
    rec = ReflectanceMaps(**{k: maps[k] for k in ("diffuse_albedo", "specular_albedo", "diffuse_normals",
                                                   "specular_normals")}, mask=shape.mask)
    sets = default_light_sets()
    preds, trues, masks = [], [], []
    for name in RENDER_LIGHTS:
        t = render_view(true_mesh, true_shape, truth, sets[name], cam)
        p = render_view(mesh, shape, rec, sets[name], cam)
        uv = t["uv"].permute(1, 2, 0)[None] * 2 - 1  # (1, H, W, 2) in [-1, 1] for grid_sample
        face = F.grid_sample(face_uv[None, None].float(), uv, mode="nearest", align_corners=False)[0, 0] > 0.5
        preds.append(p["image"].clamp(0, 1))
        trues.append(t["image"].clamp(0, 1))
        masks.append(t["mask"] & p["mask"] & face)
    m = torch.stack(masks)[:, None].double()  # (N, 1, H, W): each lighting's own valid pixels
    mse = float(((torch.stack(preds).double() - torch.stack(trues).double()).square() * m).sum() / (3 * m.sum()))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def evaluate_seed(seed: int, profile: Profile, weights=None, fit_config=None, means: dict | None = None,
                  keep: dict | None = None) -> dict:
    """One held-out subject through the whole pipeline and the oracle chains (see the module docstring).
    ``keep``: a dict that receives ``{seed: (SyntheticPhoto, Avatar)}`` (for figures)."""
    from avatarme_edu.fitting.synthetic import face_vertex_weights, shape_error_mm, synthetic_photo
    from avatarme_edu.metrics import psnr
    from avatarme_edu.pipeline import reconstruct

    t0 = time.perf_counter()
    sp = synthetic_photo(int(seed), profile)
    subject, truth = sp.subject, sp.subject.reflectance
    region = truth.mask.bool() & (subject.regions["face"] > 0.5)
    avatar = reconstruct(sp.photo, profile, weights=weights, fit_config=fit_config, progress=False, identity=False)
    fitted = avatar.shape
    if keep is not None:
        keep[int(seed)] = (sp, avatar)
    out: dict = {"seed": int(seed), "pose_deg": [round(x, 1) for x in sp.rotation_deg], "maps": {}, "render_psnr": {}}
    chains = {
        "end_to_end": (avatar.mesh, fitted, {k: getattr(avatar.maps, k) for k in
                                             ("diffuse_albedo", "specular_albedo", "diffuse_normals", "specular_normals")}),
        "true_texture": (subject.mesh, subject.shape, _chain(subject.shape, profile, weights, low=sp.texture)),
        "true_sharp": (subject.mesh, subject.shape, _chain(subject.shape, profile, weights, sharp=sp.wild.high)),
        "true_albedo": (subject.mesh, subject.shape, _chain(subject.shape, profile, weights, albedo=truth.diffuse_albedo)),
    }
    if means is not None:
        chains["no_networks"] = (avatar.mesh, fitted, {
            "diffuse_albedo": avatar.texture_sr * fitted.mask, "specular_albedo": means["specular_albedo_map"] * fitted.mask,
            "diffuse_normals": fitted.normals_object, "specular_normals": fitted.normals_tangent})
    for method, (mesh, shape, maps) in chains.items():
        out["maps"][method] = map_errors(maps, truth, region)
        out["render_psnr"][method] = render_psnr(mesh, shape, maps, subject.mesh, subject.shape, truth, region)
    out["maps"]["true_albedo"]["diffuse_albedo_psnr"] = None  # the truth itself there: not a result
    # the texture stages on their own
    face_lo = F.interpolate(region[None, None].float(), size=tuple(profile.texture_hw), mode="area")[0, 0] > 0.5
    out["texture"] = {"fitted_psnr": psnr(avatar.texture, sp.texture, face_lo),
                      "super_resolved_psnr": psnr(avatar.texture_sr, sp.wild.high, region),
                      "true_texture_super_resolved_psnr": psnr(
                          _sr_only(sp.texture, profile, weights), sp.wild.high, region)}
    w = face_vertex_weights().to(avatar.mesh.vertices.device)
    out["shape_error_mm"] = shape_error_mm(avatar.mesh.vertices, subject.mesh.vertices.to(avatar.mesh.vertices.device), w)
    out["time_s"] = dict(avatar.report["time_s"], evaluation_total=round(time.perf_counter() - t0, 2))
    return out


def truth_report(avatar, seed: int, profile: Profile) -> dict:
    """``avatar``'s maps against the truth of virtual light-stage subject ``seed``, when its photo is a
    render of that subject (``avatarme-edu reconstruct --synthetic SEED`` or ``--truth-subject SEED``):
    PSNR of A_D and A_S, mean angle of N_D and N_S (UV, face region), the render PSNR under new light and
    the shape error in mm, as in :func:`evaluate_seed`'s ``end_to_end`` column. A training identity
    (``seed % 5 != 4``) is scored too, with a note: the networks have seen it."""
    from avatarme_edu.fitting.synthetic import face_vertex_weights, shape_error_mm
    from avatarme_edu.lightstage.dataset import is_held_out
    from avatarme_edu.lightstage.subjects import make_subject

    subject = make_subject(int(seed), profile)
    truth = subject.reflectance
    if tuple(truth.mask.shape) != tuple(avatar.maps.mask.shape):
        raise ValueError(f"subject {seed}'s maps are {tuple(truth.mask.shape)}, the avatar's "
                         f"{tuple(avatar.maps.mask.shape)}: score with the profile that reconstructed it")
    region = truth.mask.bool() & (subject.regions["face"] > 0.5)
    maps = {k: getattr(avatar.maps, k).to(truth.mask.device) for k in
            ("diffuse_albedo", "specular_albedo", "diffuse_normals", "specular_normals")}
    mesh = avatar.mesh.to(truth.mask.device)
    out = {"subject": int(seed), "held_out": is_held_out(int(seed)), **map_errors(maps, truth, region),
           "render_psnr": render_psnr(mesh, avatar.shape, maps, subject.mesh, subject.shape, truth, region)}
    w = face_vertex_weights().to(mesh.vertices.device)
    out["shape_error_mm"] = shape_error_mm(mesh.vertices, subject.mesh.vertices.to(mesh.vertices.device), w)
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}
    out["note"] = ("PSNR in dB (A_D, A_S in UV over the face region; the render from the subject's front camera "
                   f"under {' and '.join(RENDER_LIGHTS)}), normals' mean angle in degrees, shape error in mm")
    if not out["held_out"]:
        out["note"] += (f"; subject {seed} is a training identity (held out: seed % 5 == 4), the networks have "
                        "seen its maps, so these are not held-out numbers")
    return out


def _sr_only(low, profile, weights):
    from avatarme_edu import stages

    return stages.super_resolve(low, profile, None if weights is None else Path(weights) / "sr.safetensors")


def clean(x):
    """JSON-safe copy: floats rounded to 4 decimals, NaN and infinities as None."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, float):
        return round(x, 4) if math.isfinite(x) else None
    return x


def _mean(values):
    vals = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def average(per_seed: list[dict]) -> dict:
    """Means over seeds of every number in the per-seed results (``None`` where none is finite)."""
    first = per_seed[0]
    out = {"maps": {m: {r: _mean([s["maps"][m][r] for s in per_seed]) for r in first["maps"][m]} for m in first["maps"]},
           "render_psnr": {m: _mean([s["render_psnr"][m] for s in per_seed]) for m in first["render_psnr"]},
           "texture": {k: _mean([s["texture"][k] for s in per_seed]) for k in first["texture"]},
           "shape_error_mm": _mean([s["shape_error_mm"] for s in per_seed]),
           "time_s": {k: _mean([s["time_s"][k] for s in per_seed]) for k in first["time_s"]}}
    return out


def evaluate_end_to_end(seeds, profile: Profile, weights=None, fit_config=None, progress: bool = False,
                        keep: dict | None = None) -> dict:
    """Every held-out ``seed`` through :func:`evaluate_seed`; ``{"seeds", "per_seed", "mean", ...}``.

    A training identity (``seed % 5 != 4``) is refused before any work. A photo in which dlib finds no
    face is a failure of the pipeline: listed in ``"failed"`` (and the table), left out of the means.
    ``keep``: see :func:`evaluate_seed`.
    """
    from avatarme_edu.evaluation import load_training_means
    from avatarme_edu.fitting.landmarks import FaceNotFoundError
    from avatarme_edu.nets.weights import WEIGHTS_DIR

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one held-out seed")
    bad = [s for s in seeds if s < 0 or s % 5 != 4]
    if bad:
        raise ValueError(f"seed(s) {', '.join(map(str, bad))} are training identities; the end-to-end evaluation "
                         "uses held-out ones only (seed % 5 == 4, e.g. 4 9 14 19 24)")
    wdir = Path(weights) if weights is not None else WEIGHTS_DIR / profile.name
    try:
        means = load_training_means(wdir, profile)
    except (FileNotFoundError, ValueError):
        means = None  # the no_networks baseline needs them; the rest does not
    per_seed, failed = [], []
    for s in seeds:
        try:
            per_seed.append(evaluate_seed(s, profile, weights, fit_config, means, keep))
        except FaceNotFoundError as err:  # the pipeline's failure on this photo: counted, not hidden
            failed.append({"seed": s, "failed": str(err)})
            if progress:
                print(f"seed {s}: FAILED, {err}", flush=True)
            continue
        if progress:
            print(f"seed {s}: A_D {per_seed[-1]['maps']['end_to_end']['diffuse_albedo_psnr']:.2f} dB end to end, "
                  f"{per_seed[-1]['time_s']['evaluation_total']:.0f} s", flush=True)
    if not per_seed:
        raise ValueError(f"no seed could be reconstructed ({len(failed)} failed: {failed[0]['failed']})")
    return clean({"profile": profile.name, "device": profile.device, "map_hw": list(profile.map_hw), "seeds": seeds,
                  "reconstructed": [r["seed"] for r in per_seed], "failed": failed,
                  "methods": list(per_seed[0]["maps"]), "render_lights": list(RENDER_LIGHTS),
                  "mean": average(per_seed), "per_seed": per_seed})


def merge(a: dict, b: dict) -> dict:
    """Two results of :func:`evaluate_end_to_end` (other seeds, same settings) as one, means recomputed."""
    per = a["per_seed"] + b["per_seed"]
    return clean({**a, "seeds": a["seeds"] + b["seeds"], "reconstructed": [r["seed"] for r in per],
                  "failed": a["failed"] + b["failed"], "mean": average(per), "per_seed": per})


def _cell(v, digits=2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def results_table(results: dict) -> str:
    """Markdown: the paper-style table (rows: maps and renders; columns: methods) and the loss per stage."""
    mean = results["mean"]
    methods = [m for m in METHODS if m in mean["maps"]]
    failed = results.get("failed", [])
    lines = [f"Reconstructed {len(results['reconstructed'])} of {len(results['seeds'])} photos (seeds "
             f"{' '.join(map(str, results['reconstructed']))}); means over those."
             + (" Failed: " + "; ".join(f"seed {f['seed']}: {f['failed'].split(':')[0]}" for f in failed) + "."
                if failed else ""), "",
             "| map (metric) | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    names = {"diffuse_albedo_psnr": "diffuse albedo A_D (PSNR dB, higher better)",
             "specular_albedo_psnr": "specular albedo A_S (PSNR dB, higher better)",
             "diffuse_normals_deg": "diffuse normals N_D (mean angle deg, lower better)",
             "specular_normals_deg": "specular normals N_S (mean angle deg, lower better)"}
    for row, label in names.items():
        lines.append(f"| {label} | " + " | ".join(_cell(mean["maps"][m][row]) for m in methods) + " |")
    lines.append("| render under new light (PSNR dB, higher better) | "
                 + " | ".join(_cell(mean["render_psnr"][m]) for m in methods) + " |")
    t = mean["texture"]
    lines += ["", "Loss per stage (difference of adjacent columns; positive = that stage loses this much):", "",
              "| map | fitting (true_texture - end_to_end) | super-resolution (true_sharp - true_texture) "
              "| de-lighting (true_albedo - true_sharp) |", "|---|---|---|---|"]
    for row, label in names.items():
        sign = 1 if row.endswith("psnr") else -1
        v = {m: mean["maps"][m][row] for m in methods}

        def diff(a, b):
            return None if v.get(a) is None or v.get(b) is None else sign * (v[a] - v[b])
        lines.append(f"| {label.split(' (')[0]} | {_cell(diff('true_texture', 'end_to_end'))} | "
                     f"{_cell(diff('true_sharp', 'true_texture'))} | {_cell(diff('true_albedo', 'true_sharp'))} |")
    lines += ["", f"Texture: fitted vs true {_cell(t['fitted_psnr'])} dB; super-resolved fitted texture vs true sharp "
              f"{_cell(t['super_resolved_psnr'])} dB (from the true texture: {_cell(t['true_texture_super_resolved_psnr'])} dB). "
              f"Shape error {_cell(mean['shape_error_mm'])} mm.", "",
              "Time per stage (s, mean): " + ", ".join(f"{k} {_cell(v, 1)}" for k, v in mean["time_s"].items())]
    return "\n".join(lines)


def run_end_to_end(args) -> int:
    """``avatarme-edu evaluate --end-to-end``: JSON + markdown next to it; returns the exit status."""
    import shlex
    import sys

    from avatarme_edu.atomic import check_writable, write_text
    from avatarme_edu.fitting.fit_stages import FitConfig
    from avatarme_edu.profiles import get_profile

    profile = get_profile(args.profile, args.device)
    out = Path(args.out if args.out not in (None, "results.json") else "results/end_to_end.json")
    check_writable(out.parent)
    config = FitConfig()
    if getattr(args, "steps", None) is not None:
        config.full_steps = args.steps
    results = evaluate_end_to_end(args.seeds, profile, args.weights, config, progress=True)
    argv = sys.argv[1:]
    results["command"] = shlex.join(["avatarme-edu", *(argv if argv[:1] == ["evaluate"] else ["evaluate", *argv])])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(results, indent=1, allow_nan=False) + "\n")
    table = results_table(results)
    write_text(out.with_suffix(".md"),
               f"# The whole pipeline on held-out subjects ({profile.name} profile)\n\n"
               f"Photos rendered from held-out virtual light-stage subjects (seeds {' '.join(map(str, results['seeds']))}, "
               f"random pose and in-the-wild light), reconstructed, compared with their true maps over the face "
               f"region; methods in `avatarme_edu/end_to_end.py`. Command: `{results['command']}`\n\n{table}\n")
    print(table)
    print(f"results: {out} and {out.with_suffix('.md')}")
    return 0
