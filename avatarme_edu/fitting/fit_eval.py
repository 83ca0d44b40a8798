"""``avatarme-edu evaluate --fit``: the photo fit scored on held-out virtual subjects, against the mean head.

Each held-out identity (``seed % 5 == 4``, never seen by the texture models) is rendered as a photo
(random pose, its in-the-wild texture: :func:`~avatarme_edu.fitting.synthetic.synthetic_photo`) and
fitted (:func:`~avatarme_edu.fitting.fit.fit`); :func:`~avatarme_edu.fitting.synthetic.evaluate_fit`
measures it against the truth. The baselines are *not fitting*: EduHead's mean head (for the shape
error; for the landmark and pose errors the same fit with the shape held at the mean head, camera,
texture and light fitted as usual) and the texture model's mean texture (for the PSNR).

Writes ``--out`` (default ``fit.json``: the per-seed rows and their means) and a markdown table next
to it (``.md``) with the exact command. A training identity is refused before any work.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

ROWS = (  # (key of the fit, key of the baseline, label, unit, better)
    ("shape_error_mm", "shape_error_mean_head_mm", "shape error, face region, after similarity alignment", "mm",
     "lower"),
    ("identity_shape_error_mm", "shape_error_mean_head_mm", "the same, fitted identity with a neutral expression",
     "mm", "lower"),
    ("landmark_error_px", "landmark_error_mean_head_px", "landmark error vs the true landmark vertices", "px",
     "lower"),
    ("texture_psnr_face_db", "texture_psnr_mean_texture_db", "texture PSNR vs the true texture, face texels", "dB",
     "higher"),
    ("texture_psnr_seen_db", None, "texture PSNR, face texels seen in the photo", "dB", "higher"),
    ("pose_error_deg", "pose_error_mean_head_deg", "camera rotation error", "deg", "lower"),
    ("landmark_error_vs_dlib_px", None, "landmark error vs dlib's detections", "px", "lower"),
    ("identity_distance_textured_rendering", None, "dlib descriptor distance, rendering vs photo", "", "lower"),
    ("seam_gradient_ratio", None, "seam: gradient in the blend band / elsewhere (1 = none)", "", "1"),
    ("fit_time_s", None, "fit time per photo", "s", "lower"),
)


def fit_table(result: dict) -> str:
    """The means of :func:`~avatarme_edu.fitting.synthetic.evaluate_fit` as a markdown table."""
    mean = result["mean"]
    lines = ["| measure | fit | not fitting the shape or texture (mean head / mean texture) | unit |",
             "|---|---|---|---|"]
    for key, base, label, unit, _ in ROWS:
        if key not in mean:
            continue
        b = f"{mean[base]:.3f}" if base and base in mean else ""
        lines.append(f"| {label} | {mean[key]:.3f} | {b} | {unit} |")
    return "\n".join(lines)


def per_seed_table(result: dict) -> str:
    keys = ("seed", "pose_deg", "shape_error_mm", "identity_shape_error_mm", "shape_error_mean_head_mm",
            "landmark_error_px", "landmark_error_mean_head_px", "texture_psnr_face_db", "texture_psnr_mean_texture_db",
            "fit_time_s")
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in result["per_seed"]:
        lines.append("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)


def run_fit_evaluate(args) -> int:
    """``avatarme-edu evaluate --fit``: fit the held-out seeds, write ``--out`` and its ``.md``."""
    from avatarme_edu.atomic import write_text
    from avatarme_edu.fitting.fit_stages import FitConfig
    from avatarme_edu.fitting.synthetic import check_held_out, evaluate_fit
    from avatarme_edu.profiles import get_profile

    seeds = check_held_out(args.seeds)
    profile = get_profile(args.profile, args.device)
    config = FitConfig()
    if args.free_form is not None:
        config.free_form = args.free_form == "on"
    if args.mirror is not None:
        config.mirror_fill = args.mirror == "on"
    if args.fit_steps:
        if min(args.fit_steps) < 1:
            raise ValueError(f"--fit-steps must be two counts >= 1, got {args.fit_steps}")
        config.landmark_steps, config.full_steps = args.fit_steps
    out = Path(args.out or "fit.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = evaluate_fit(seeds, profile, config, progress=True, oracle_landmarks=args.oracle_landmarks)
    argv = ["avatarme-edu", "evaluate", "--fit", "--profile", profile.name, "--device", str(profile.device),
            "--seeds", *map(str, seeds)]
    argv += ["--fit-steps", *map(str, args.fit_steps)] if args.fit_steps else []
    argv += ["--free-form", args.free_form] if args.free_form else []
    argv += ["--mirror", args.mirror] if args.mirror else []
    argv += ["--oracle-landmarks"] if args.oracle_landmarks else []
    result["command"] = shlex.join([*argv, "--out", str(args.out or "fit.json")])
    result["config"] = {k: getattr(config, k) for k in ("landmark_steps", "full_steps", "free_form", "mirror_fill",
                                                        "learned_landmarks", "w_identity_coeff", "w_expression")}
    write_text(out, json.dumps(result, indent=1) + "\n")
    text = (f"# Photo fit on held-out virtual subjects ({profile.name} profile)\n\n"
            f"Seeds {' '.join(map(str, seeds))}, averaged ({result['fitted']} fitted, {result['failed']} without a "
            f"face found by dlib); landmarks: {result['landmarks']}; texture model {result['texture_model']}. "
            f"Command: `{result['command']}`\n\n" + fit_table(result) + "\n\n## Per seed\n\n"
            + per_seed_table(result) + "\n")
    write_text(out.with_suffix(".md"), text)
    print(fit_table(result))
    print(f"results: {out} and {out.with_suffix('.md')}")
    return 0
