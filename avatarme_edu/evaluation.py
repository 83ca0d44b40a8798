"""How good are the reflectance networks? Held-out virtual subjects, every network against its baselines.

For each held-out identity (``seed``: any identity the dataset split keeps out of training,
:func:`~avatarme_edu.lightstage.dataset.is_held_out`) the light stage makes the subject and its
in-the-wild texture exactly as the dataset writer does, and every stage runs on it with the
sliding window of :mod:`avatarme_edu.stages`. Each stage gets the *true* maps as inputs (the sharp
texture T̂ for de-lighting, the true A_D for the albedo-to-specular and normals networks), so a
stage's numbers do not inherit the errors of the stage before it.

=================  ==============================================  ==============================
stage              methods                                         metrics (valid texels)
=================  ==============================================  ==============================
super_resolution   ``network`` (RCAN), ``bicubic``                 PSNR, SSIM vs the sharp texture
delighting         ``network`` δ(T̂, D_O), ``no_shape`` δ(T̂),       PSNR, SSIM vs A_D
                   ``normals_input`` δ(T̂, N_O) (where its weights
                   are in the folder), ``texture``,
                   ``balanced_texture``
specular_albedo    ``network`` ψ(A_D) with its level head,         PSNR, SSIM vs A_S
                   ``no_level_head`` ψ alone (where the folder
                   holds a head), ``mean_map``
specular_normals   ``network`` ρ, ``shape_normals`` (N_T)          angle to N_S (deg), also face
diffuse_normals    ``network`` σ, ``shape_normals`` (N_O)          angle to N_D (deg), also face
=================  ==============================================  ==============================

Baselines: ``texture`` takes the lit texture as the albedo; ``balanced_texture`` multiplies it per
channel so its mean colour becomes the training set's mean albedo colour (a white balance that knows
skin, not the light's shape); ``mean_map`` is the training set's mean specular albedo map. Both
training-set means are computed once from the training identities (:func:`training_means`) and
kept next to the weights (``training_means.safetensors``). The numbers of several seeds are averaged.

Results: ``{"<stage>": {"<method>": {"psnr", "ssim"}}}`` for colour and grey maps and
``{"<stage>": {"<method>": {"angular_error_deg": {"mean", "median"}, "angular_error_deg_face": ...}}}``
for normals.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from avatarme_edu.lightstage.dataset.means import (  # noqa: F401  (their home; used by the baselines)
    MEANS_NAME, load_training_means, save_training_means, training_means,
)
from avatarme_edu.profiles import Profile

STAGES = ("super_resolution", "delighting", "specular_albedo", "specular_normals", "diffuse_normals")


# ----------------------------------------------------------------------------------------------
# One held-out subject, every stage and baseline
# ----------------------------------------------------------------------------------------------


def held_out_subject(seed: int, profile: Profile):
    """``(subject, wild)``: held-out identity ``seed`` (neutral) and its wild texture, as the dataset
    writer makes them. A training identity is refused with one line."""
    from avatarme_edu.geometry.head import EXPRESSIONS, load_eduhead
    from avatarme_edu.lightstage.dataset import is_held_out, wild_generator
    from avatarme_edu.lightstage.dataset.subject_files import one_torch_thread
    from avatarme_edu.lightstage.subjects import make_subject_expressions
    from avatarme_edu.lightstage.wild import wild_texture

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seeds must be identity numbers (ints >= 0), got {seed!r}")
    if not is_held_out(seed):
        raise ValueError(f"seed {seed} is a training identity; evaluate on held-out identities only "
                         f"(those with seed % 5 == 4, e.g. {seed - seed % 5 + 4})")
    head = load_eduhead(device=profile.torch_device)
    with one_torch_thread():  # the dataset's float rounding: the same maps as a written held-out subject
        subject = make_subject_expressions(seed, profile, ["neutral"], head=head)[0]
        wild = wild_texture(subject, profile, wild_generator(seed, list(EXPRESSIONS).index("neutral")))
    return subject, wild


def _colour(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict:
    from avatarme_edu.metrics import psnr, ssim

    pred = pred.float().clamp(0, 1)
    return {"psnr": psnr(pred, target.float(), mask), "ssim": ssim(pred, target.float(), mask)}


def _normals(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, face: torch.Tensor) -> dict:
    from avatarme_edu.metrics import angular_error

    e, f = angular_error(pred, target, mask), angular_error(pred, target, mask & face)
    return {"angular_error_deg": {"mean": e["mean"], "median": e["median"]},
            "angular_error_deg_face": {"mean": f["mean"], "median": f["median"]}}


def balanced_texture(texture: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)``: the texture with per-channel gains that make its mean over ``mask`` equal ``colour`` (3,)."""
    mean = texture[:, mask].double().mean(1).clamp_min(1e-6)
    gains = colour.double().to(texture.device) / mean
    return (texture.double() * gains.view(3, 1, 1)).float() * mask


def super_resolution_scores(low: torch.Tensor, sharp: torch.Tensor, mask: torch.Tensor, profile: Profile,
                            weights=None) -> dict:
    """``{"network": {"psnr", "ssim"}, "bicubic": {...}}``: RCAN's and bicubic's up-sampling of the fitted-size
    texture ``low`` ``(3, h, w)`` against the sharp one ``(3, H, W)`` over ``mask`` ``(H, W)`` bool."""
    from avatarme_edu import stages

    sr = stages.super_resolve(low, profile, weights)
    bicubic = F.interpolate(low[None], size=tuple(profile.map_hw), mode="bicubic", align_corners=False)[0]
    return {"network": _colour(sr, sharp, mask), "bicubic": _colour(bicubic, sharp, mask)}


def evaluate_subject(seed: int, profile: Profile, weights_dir: str | os.PathLike | None = None,
                     means: dict | None = None) -> dict:
    """The results dict (see the module docstring) of one held-out identity."""
    from avatarme_edu import stages
    from avatarme_edu.nets.specular_level import set_level
    from avatarme_edu.nets.weights import WEIGHTS_DIR

    wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR / profile.name
    means = means if means is not None else load_training_means(wdir, profile)
    w = {name: wdir / f"{name}.safetensors" for name in
         ("sr", "delight", "delight_no_shape", "specular_albedo", "specular_normals", "diffuse_normals")}
    subject, wild = held_out_subject(seed, profile)
    r, shape = subject.reflectance, subject.shape
    mask = r.mask.bool()
    face = subject.regions["face"] > 0.5
    texture, albedo = wild.high, r.diffuse_albedo

    out: dict = {"super_resolution": super_resolution_scores(wild.low, texture, mask, profile, w["sr"])}

    out["delighting"] = {
        "network": _colour(stages.delight(texture, shape, profile, w["delight"], "depth"), albedo, mask),
        "no_shape": _colour(stages.delight(texture, shape, profile, w["delight_no_shape"], "no_shape"), albedo, mask),
        **({"normals_input": _colour(stages.delight(texture, shape, profile, wdir / "delight_normals_input.safetensors",
                                                    "normals_input"), albedo, mask)}
           if (wdir / "delight_normals_input.safetensors").is_file() else {}),
        "texture": _colour(texture, albedo, mask),
        "balanced_texture": _colour(balanced_texture(texture, mask, means["diffuse_albedo_colour"]), albedo, mask),
    }
    # ψ with its level head (nets/specular_level.py), where there is one for these maps, and without
    head = stages.find_level_head(wdir, profile, tuple(mask.shape))
    psi = stages.specular_albedo(albedo, profile, w["specular_albedo"], mask, means, level_head=False)
    out["specular_albedo"] = {
        "network": _colour(set_level(psi, mask, head.predict(albedo, mask)) if head else psi, r.specular_albedo, mask),
        **({"no_level_head": _colour(psi, r.specular_albedo, mask)} if head else {}),
        "mean_map": _colour(means["specular_albedo_map"].to(mask.device) * mask, r.specular_albedo, mask),
    }
    out["specular_normals"] = {
        "network": _normals(stages.specular_normals(albedo, shape, profile, w["specular_normals"]),
                            r.specular_normals, mask, face),
        "shape_normals": _normals(shape.normals_tangent, r.specular_normals, mask, face),
    }
    out["diffuse_normals"] = {
        "network": _normals(stages.diffuse_normals(albedo, shape, profile, w["diffuse_normals"]),
                            r.diffuse_normals, mask, face),
        "shape_normals": _normals(shape.normals_object, r.diffuse_normals, mask, face),
    }
    return out


def _average(results: list[dict]):
    """The mean of the numbers at the same place in several results dicts."""
    first = results[0]
    if isinstance(first, dict):
        return {k: _average([r[k] for r in results]) for k in first}
    return float(sum(results) / len(results))


def evaluate_reflectance(seeds, profile: Profile, weights_dir: str | os.PathLike | None = None,
                         progress: bool = False, per_seed: dict | None = None) -> dict:
    """Every network and baseline on the held-out identities ``seeds``, averaged over them.

    ``weights_dir``: a folder holding ``<network>.safetensors`` for the six networks (``sr``,
    ``delight``, ``delight_no_shape``, ``specular_albedo``, ``specular_normals``,
    ``diffuse_normals``; also ``delight_normals_input`` where present) and ``training_means.safetensors``;
    default the profile's committed weights.
    ``per_seed``: a dict that receives each seed's own results (``{seed: results}``).
    """
    from avatarme_edu.nets.weights import WEIGHTS_DIR

    seeds = list(seeds)
    if not seeds:
        raise ValueError("give at least one held-out seed")
    for s in seeds:  # refuse a training identity before any work
        if isinstance(s, bool) or not isinstance(s, int) or s < 0 or s % 5 != 4:
            held_out_subject(s, profile)
    wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR / profile.name
    means = load_training_means(wdir, profile)
    each = []
    for s in seeds:
        each.append(evaluate_subject(s, profile, wdir, means))
        if per_seed is not None:
            per_seed[s] = each[-1]
        if progress:
            print(f"seed {s}: done", flush=True)
    return _average(each)


# ----------------------------------------------------------------------------------------------
# `avatarme-edu evaluate ...` and the markdown table
# ----------------------------------------------------------------------------------------------


def results_table(results: dict) -> str:
    """The results as a markdown table: one row per stage and method."""
    lines = ["| stage | method | PSNR (dB) | SSIM | mean angle (deg) | median angle (deg) | face mean (deg) |",
             "|---|---|---|---|---|---|---|"]
    for stage, methods in results.items():
        for method, m in methods.items():
            if "psnr" in m:
                lines.append(f"| {stage} | {method} | {m['psnr']:.2f} | {m['ssim']:.4f} | | | |")
            else:
                a, f = m["angular_error_deg"], m["angular_error_deg_face"]
                lines.append(f"| {stage} | {method} | | | {a['mean']:.3f} | {a['median']:.3f} | {f['mean']:.3f} |")
    return "\n".join(lines)


#: The issue's targets at the cpu profile: (what, stage, network, baseline, kind, target). ``kind`` "db":
#: the network's PSNR minus the baseline's, at least ``target``; "angle": the fraction by which the
#: network lowers the baseline's mean angular error, at least ``target``.
TARGETS = (
    ("RCAN vs bicubic", "super_resolution", "network", "bicubic", "db", 1.5),
    ("de-lighting vs texture", "delighting", "network", "texture", "db", 6.0),
    ("de-lighting vs balanced_texture", "delighting", "network", "balanced_texture", "db", 1.0),
    ("de-lighting vs no_shape (shape helps)", "delighting", "network", "no_shape", "db", 1e-9),
    # the cpu pipeline's de-lighter is the ablation δ(T̂) (profiles.py): the same targets for it
    ("de-lighting δ(T̂) (the cpu pipeline's) vs texture", "delighting", "no_shape", "texture", "db", 6.0),
    ("de-lighting δ(T̂) (the cpu pipeline's) vs balanced_texture", "delighting", "no_shape", "balanced_texture", "db",
     1.0),
    ("specular albedo vs mean_map", "specular_albedo", "network", "mean_map", "db", 3.0),
    ("specular normals vs shape_normals", "specular_normals", "network", "shape_normals", "angle", 0.30),
    ("diffuse normals vs shape_normals", "diffuse_normals", "network", "shape_normals", "angle", 0.30),
)


def targets_table(results: dict) -> str:
    """Each target of :data:`TARGETS` with the measured margin and met / MISSED, as a markdown table."""
    lines = ["| check | measured | target | |", "|---|---|---|---|"]
    for what, stage, net, base, kind, target in TARGETS:
        if stage not in results or net not in results[stage] or base not in results[stage]:
            continue
        a, b = results[stage][net], results[stage][base]
        if kind == "db":
            margin = a["psnr"] - b["psnr"]
            text, goal = f"{margin:+.2f} dB", f">= {target:+.1f} dB" if target >= 0.01 else "> 0 dB"
        else:
            ea, eb = a["angular_error_deg"]["mean"], b["angular_error_deg"]["mean"]
            margin = 1 - ea / eb
            text, goal = f"{100 * margin:.1f}% lower mean angle ({ea:.3f} vs {eb:.3f} deg)", f">= {100 * target:.0f}% lower"
        lines.append(f"| {what} | {text} | {goal} | {'met' if margin >= target else 'MISSED'} |")
    return "\n".join(lines)


def add_evaluate_parser(subparsers) -> "argparse.ArgumentParser":  # noqa: F821
    """Add ``evaluate`` to an argparse sub-parser set; the parsed args go to :func:`run_evaluate`."""
    from avatarme_edu.profiles import PROFILE_NAMES

    p = subparsers.add_parser("evaluate", help="score every reflectance network and baseline on held-out subjects "
                                               "(--fit: the photo fit instead)")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None, help="'cpu' or 'paper' (default: automatic)")
    p.add_argument("--device", default=None, help="torch device (default: automatic)")
    p.add_argument("--seeds", type=int, nargs="+", default=[4, 9, 14, 19, 24],
                   help="held-out identities (seed %% 5 == 4; default 4 9 14 19 24)")
    p.add_argument("--weights", default=None, help="folder of <network>.safetensors and training_means.safetensors "
                                                   "(default: the committed weights of the profile)")
    p.add_argument("--means-from", default=None, metavar="DATASET",
                   help="first compute the training-set means from this dataset into --weights")
    p.add_argument("--out", default=None,
                   help="results JSON (default results.json, with --fit fit.json); a markdown table goes next to it "
                        "(.md), each seed's reflectance numbers to *_per_seed.json")
    p.add_argument("--fit", action="store_true",
                   help="evaluate the photo fit instead: held-out subjects rendered as photos, fitted, shape / "
                        "landmark / texture errors against the mean head and mean texture")
    p.add_argument("--fit-steps", type=int, nargs=2, default=None, metavar=("LANDMARK", "FULL"),
                   help="with --fit: the fit's landmark-stage and full-stage steps (default the fit's own)")
    p.add_argument("--free-form", choices=("on", "off"), default=None,
                   help="with --fit: the free-form offset on or off (default the fit's own)")
    p.add_argument("--mirror", choices=("on", "off"), default=None,
                   help="with --fit: unseen texels from their mirror image on or off (default on)")
    p.add_argument("--oracle-landmarks", action="store_true",
                   help="with --fit: fit the true landmarks instead of dlib's (the fit apart from the detector)")
    p.set_defaults(func=run_evaluate)
    return p


def run_evaluate(args) -> int:
    """``avatarme-edu evaluate``: write the results JSON and markdown table; returns the exit status."""
    import shlex
    import sys

    from avatarme_edu.atomic import write_text
    from avatarme_edu.profiles import get_profile

    if getattr(args, "fit", False):
        from avatarme_edu.fitting.fit_eval import run_fit_evaluate

        return run_fit_evaluate(args)
    profile = get_profile(args.profile, args.device)
    if args.means_from:
        if not args.weights:
            raise ValueError("--means-from needs --weights (where to write training_means.safetensors)")
        save_training_means(training_means(args.means_from), Path(args.weights) / MEANS_NAME, args.means_from)
    each: dict = {}
    results = evaluate_reflectance(args.seeds, profile, args.weights, progress=True, per_seed=each)
    out = Path(args.out or "results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(results, indent=1))
    write_text(out.with_name(out.stem + "_per_seed.json"), json.dumps({str(k): v for k, v in each.items()}, indent=1))
    argv = sys.argv[1:]
    argv = argv if argv[:1] == ["evaluate"] else ["evaluate", *argv]
    table = (f"# Reflectance networks on held-out subjects ({profile.name} profile)\n\n"
             f"Seeds {' '.join(map(str, args.seeds))}, averaged. Command: `{shlex.join(['avatarme-edu', *argv])}`\n\n"
             + results_table(results) + "\n")
    if profile.name == "cpu":
        table += "\n## Targets (cpu profile, held-out subjects)\n\n" + targets_table(results) + "\n"
    write_text(out.with_suffix(".md"), table)
    print(results_table(results))
    print(f"results: {out} and {out.with_suffix('.md')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m avatarme_edu.evaluation ...``: the ``evaluate`` command on its own."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m avatarme_edu.evaluation")
    add_evaluate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except (ValueError, OSError) as err:  # bad input: one clear line, no traceback
        print(f"evaluate: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
