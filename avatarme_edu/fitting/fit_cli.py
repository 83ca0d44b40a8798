"""Writing a fit to a folder, and the ``avatarme-edu fit PHOTO --out DIR`` command (``avatarme-edu same-person``,
which fits several photos and runs the cross-photo check, lives in :mod:`avatarme_edu.cli`: it draws a figure).

Files written (each atomically: a temporary name, then renamed, so nothing half-written is left):

| file | what |
|---|---|
| ``mesh.obj`` | the fitted head (EduHead topology, UVs), metres |
| ``texture.png`` | the UV texture at the profile's fitted-texture size (sRGB PNG; exact: ``fit.safetensors``) |
| ``texture_detail.png`` | the same unwrap at ``FitConfig.detail_scale`` (2) times that size, what the overlay shows |
| ``visibility.png`` | the photo's share of each texel (white: from the photo, black: from the texture model) |
| ``model_texture.png`` | the texture model's texture with the fitted light baked in |
| ``overlay.png`` | the photo crop, the rendering over it, side by side |
| ``report.json`` | landmark error, photometric error, dlib identity distances, seam, time per stage |
| ``history.json`` | the loss of every step (stage, total, landmark, photometric, identity) |
| ``fit.safetensors`` | texture, visibility, camera and all fitted parameters |

The command writes a new folder: all files go to a hidden temporary folder beside ``--out``, renamed
to ``--out`` at the end, so a failure leaves nothing; an existing ``--out`` with files in it is
refused before the fit starts (nothing of the user's is overwritten).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")
    tmp.replace(path)


def write_fit(result, out: str | Path) -> list[Path]:
    """Write a :class:`~avatarme_edu.fitting.fit.FitResult` under ``out`` (created); returns the paths."""
    from safetensors.torch import save_file

    from avatarme_edu.geometry.mesh import write_obj
    from avatarme_edu.maps_io import save_map

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder for the fit's outputs")
    out.mkdir(parents=True, exist_ok=True)
    written = [write_obj(out / "mesh.obj", result.mesh)]
    written.append(save_map(out / "texture.png", result.texture, "color"))
    if result.texture_detail is not None:
        written.append(save_map(out / "texture_detail.png", result.texture_detail, "color"))
    written.append(save_map(out / "visibility.png", result.visibility[None], "gray"))
    written.append(save_map(out / "model_texture.png", result.model_texture, "color"))
    crop = torch.nn.functional.interpolate(result.crop.image[None], size=result.overlay.shape[-2:], mode="bilinear",
                                           align_corners=False)[0]
    written.append(save_map(out / "overlay.png", torch.cat([crop, result.overlay], -1).clamp(0, 1), "color"))
    _write_json(out / "report.json", result.report)
    written.append(out / "report.json")
    _write_json(out / "history.json", result.history)
    written.append(out / "history.json")
    p, cam = result.params, result.camera
    tensors = {"texture": result.texture, "visibility": result.visibility, "model_texture": result.model_texture,
               **({} if result.texture_detail is None else {"texture_detail": result.texture_detail}),
               "rotation": p.rotation, "translation": p.translation, "identity": p.identity,
               "expression": p.expression, "latent": p.latent, "sh": p.sh, "offset_mm": p.offset,
               "camera_rotation": cam.rotation, "camera_translation": cam.translation}
    tmp = out / "fit.safetensors.part"
    save_file({k: v.detach().float().cpu().clone().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={"focal_px": str(cam.focal), "crop_origin": json.dumps(result.crop.origin),
                        "crop_scale": str(result.crop.scale), "crop_px": str(cam.hw[0])})
    tmp.replace(out / "fit.safetensors")
    written.append(out / "fit.safetensors")
    return written


def add_fit_parser(subparsers) -> None:
    """Add ``fit PHOTO --out DIR`` to the ``avatarme-edu`` command's sub-parsers."""
    from avatarme_edu.profiles import PROFILE_NAMES

    p = subparsers.add_parser("fit", help="fit EduHead, texture and light to one face photo (stage 1)",
                              description="Fit EduHead (shape, expression), a texture model and SH light to the "
                                          "largest face of a photo; writes mesh, UV texture, overlay and report.")
    p.add_argument("photo", help="a photo with a face (JPEG or PNG)")
    p.add_argument("--out", required=True, help="a new output folder (refused if it exists with files in it)")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None, help="cpu or paper (default: auto)")
    p.add_argument("--device", default=None, help="torch device (default: $AVATARME_DEVICE or auto)")
    p.add_argument("--texture-model", choices=("auto", "gan", "pca"), default="auto",
                   help="auto: the texture GAN when its weights exist, else PCA")
    p.add_argument("--free-form", choices=("on", "off"), default="off",
                   help="the Laplacian-smooth per-vertex offset beyond the PCA shape (default off: measured, "
                        "it does not make the shape better, results/fit.md)")
    p.add_argument("--mirror", choices=("on", "off"), default="on",
                   help="unseen texels from their mirror image's detail (default on: real photos' fits look more "
                        "like the person from other sides; held-out renders lose 0.3-0.4 dB of texture, README)")
    p.add_argument("--steps", type=int, default=None, help="steps of the full objective (default: the cpu budget)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_fit, command="fit")


def config_from_args(args):
    """The :class:`~avatarme_edu.fitting.fit_stages.FitConfig` that ``fit``'s or ``reconstruct``'s options ask
    for (``--steps``, ``--mirror``, and ``--free-form`` where the command has it)."""
    from avatarme_edu.fitting.fit_stages import FitConfig

    config = FitConfig(free_form=getattr(args, "free_form", "off") == "on", mirror_fill=args.mirror == "on")
    if args.steps is not None:
        config.full_steps = args.steps
    return config


def new_out_folder(args) -> Path:
    """``--out`` checked before any work: a new or empty folder in a writable place; ``--steps`` >= 0."""
    from avatarme_edu.atomic import check_writable

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder for the outputs")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {str(out)!r} already exists and is not empty; give a new folder "
                         "(nothing of yours is overwritten)")
    check_writable(out)  # an unwritable place is refused before the work, not after it
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    return out


def run_fit(args) -> int:
    """Run ``avatarme-edu fit``; bad photos raise ``ValueError`` with one clear line (the CLI prints it)."""
    from avatarme_edu.fitting.fit import fit
    from avatarme_edu.fitting.texture_model import default_texture_model, load_texture_model
    from avatarme_edu.atomic import atomic_dir
    from avatarme_edu.profiles import get_profile

    profile = get_profile(args.profile, args.device)
    out = new_out_folder(args)
    if args.texture_model == "auto":
        tex = default_texture_model(profile)
    else:
        tex = load_texture_model(profile, args.texture_model)
    result = fit(args.photo, profile, texture_model=tex, config=config_from_args(args), progress=not args.quiet)
    if out.is_dir():  # empty: the finished folder takes its place
        out.rmdir()
    with atomic_dir(out) as tmp:  # all or nothing: a failure leaves no half-written folder
        written = [out / p.relative_to(tmp) for p in write_fit(result, tmp)]
    r = result.report
    print(f"fitted {args.photo} in {sum(result.times.values()):.1f} s: landmark error {r['landmark_error_px']:.2f} px, "
          f"dlib distance photo-rendering {r['identity_distance_textured_rendering']:.3f} "
          f"(model only {r['identity_distance_model_rendering']:.3f}); wrote {len(written)} files under {out}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m avatarme_edu.fitting.fit_cli")
    add_fit_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"avatarme-edu fit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
