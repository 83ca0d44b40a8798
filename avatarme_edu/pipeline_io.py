"""Writing an :class:`~avatarme_edu.pipeline.Avatar` to a folder, and ``avatarme-edu reconstruct``.

``write_avatar(avatar, out)`` writes everything into a hidden temporary folder beside ``out`` and
renames it to ``out`` at the end (:func:`avatarme_edu.atomic.atomic_dir`): a failure or Ctrl-C at
any moment leaves no ``out`` at all, never half of one. ``out`` must not exist yet, or be an empty
folder; an existing folder with files in it is refused before any work, so no user file is ever
overwritten. Layout of ``out/``:

| path | what |
|---|---|
| ``maps/*.png`` | the face's four maps at the full map size: ``diffuse_albedo`` (8-bit sRGB), ``specular_albedo`` (16-bit grey), ``diffuse_normals`` (object space) and ``specular_normals`` (tangent space) as 16-bit normal maps, ``mask`` |
| ``head_maps/*.png`` | the same for the completed head |
| ``maps.safetensors`` | exact float32 values: ``face/<map>``, ``head/<map>``, ``texture``, ``texture_sr``, masks |
| ``texture/fitted.png`` | the fitted UV texture T (profile's texture size); ``super_resolved.png`` T̂ at the map size |
| ``fit/`` | the fit's own files (mesh, texture, visibility, overlay, report, history; :mod:`~avatarme_edu.fitting.fit_cli`) |
| ``export/face/``, ``export/head/`` | OBJ + MTL + PNG textures (+ ``raw/``) of the face and of the completed head |
| ``export/face.glb``, ``export/head.glb`` | binary glTF with the maps (Blender, three.js, any glTF viewer) |
| ``export/head.html`` | standalone WebGL viewer of the head (open in a browser; no network needed) |
| ``renders/turntable_*.png`` | the head from three views under studio light |
| ``renders/relight_*.png`` | the head from the front under four new lightings (:data:`RELIGHT`) |
| ``renders/photo_vs_render.png`` | the photo crop and the head rendered in its pose under new light |
| ``report.json`` | time per stage, device, profile, versions, identity distance, the fit's numbers; with ``--synthetic`` or ``--truth-subject``, ``ground_truth``: each map's PSNR (or angle) against the subject's truth, the render PSNR and the shape error |
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import torch

from avatarme_edu.atomic import TMP_PREFIX, atomic_dir, check_writable, write_text
from avatarme_edu.seeds import seed_arg

RENDER_SIDE = 256
# the relighting strip's lights (render/views.py default_light_sets): a key light from the side and
# from above, the sun outdoors, a warm indoor light; four of the seven keep the demo under a minute
RELIGHT = ("key_left", "key_above", "outdoor_sun", "indoor_warm")
SAMPLES = {"astronaut": "astronaut.jpg"}  # bundled photos (avatarme_edu/data/photos/), for --sample
# what write_avatar puts at the top of its folder: --overwrite replaces a folder holding nothing else
OUTPUT_NAMES = frozenset({"maps", "head_maps", "maps.safetensors", "texture", "fit", "export", "renders",
                          "report.json"})
MARKER = "avatarme-edu reconstruct"


def sample_photo(name: str) -> Path:
    """The path of a bundled sample photo (``"astronaut"``)."""
    from avatarme_edu.resources import data_path

    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; bundled samples: {', '.join(SAMPLES)}")
    return data_path("photos", SAMPLES[name])


def is_previous_output(folder: Path) -> bool:
    """True when ``folder`` holds a finished reconstruction and nothing else (safe to replace)."""
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return False
    names = {p.name for p in folder.iterdir()}
    return isinstance(report, dict) and report.get("written_by") == MARKER and names <= OUTPUT_NAMES


def check_out(out: str | Path, overwrite: bool = False) -> Path:
    """Refuse an ``out`` that is a file, cannot be written, or exists with files in it (one line each).

    ``overwrite``: an existing folder is accepted when it holds a previous reconstruction and nothing
    else (:func:`is_previous_output`); a folder with anything of the user's in it is always refused.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give the path of a new folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"--out {str(out)!r} already exists and is not empty; give a new folder, or "
                             "--overwrite to replace a previous reconstruction there")
        if not is_previous_output(out):
            raise ValueError(f"--out {str(out)!r} holds files that are not a previous reconstruction; "
                             "--overwrite only replaces a folder written by `avatarme-edu reconstruct`")
    check_writable(out)
    return out


def _clean(x):
    """JSON-safe: NaN and infinities become None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _maps(folder: Path, maps) -> list[Path]:
    from avatarme_edu.maps_io import save_map
    from avatarme_edu.reflectance import MAP_KINDS, MAP_NAMES

    paths = [save_map(folder / f"{n}.png", getattr(maps, n).cpu(), MAP_KINDS[n]) for n in MAP_NAMES]
    return paths + [save_map(folder / "mask.png", maps.mask.cpu(), "mask")]


def write_avatar(avatar, out: str | Path, photo_name: str = "", progress: bool = False,
                 overwrite: bool = False) -> Path:
    """Write ``avatar`` to the new folder ``out`` (see the module docstring); returns ``out``.

    ``overwrite``: replace a previous reconstruction in ``out`` (see :func:`check_out`); the old folder
    is swapped out only once the new one is complete, then removed."""
    from tqdm.auto import tqdm

    from avatarme_edu.fitting.fit_cli import write_fit
    from avatarme_edu.maps_io import save_map, save_tensors
    from avatarme_edu.pipeline import photo_pose_render
    from avatarme_edu.reflectance import MAP_NAMES
    from avatarme_edu.render.export import export_glb, export_obj
    from avatarme_edu.render.html_viewer import write_html_viewer
    from avatarme_edu.render.lights import studio
    from avatarme_edu.render.views import default_light_sets, relight_strip, save_views, turntable

    out = check_out(out, overwrite)
    steps = ("maps", "textures", "fit", "exports", "renders", "report")
    bar = tqdm(steps, desc="write", disable=not progress)
    t0 = time.perf_counter()
    old = None
    if out.is_dir() and not any(out.iterdir()):  # empty: the finished folder takes its place
        out.rmdir()
    elif out.is_dir():  # a previous reconstruction (check_out): swapped out once the new one is done
        old = out.with_name(f"{TMP_PREFIX}{out.name}-old-{os.getpid()}")
    a = avatar
    with atomic_dir(out.with_name(f"{TMP_PREFIX}{out.name}-new-{os.getpid()}") if old else out) as tmp:
        bar.set_postfix_str("maps")
        _maps(tmp / "maps", a.maps)
        _maps(tmp / "head_maps", a.head_maps)
        tensors = {f"face/{n}": getattr(a.maps, n).float().cpu() for n in MAP_NAMES}
        tensors.update({f"head/{n}": getattr(a.head_maps, n).float().cpu() for n in MAP_NAMES})
        tensors.update({"face/mask": a.maps.mask.to(torch.uint8).cpu(), "head/mask": a.head_maps.mask.to(torch.uint8).cpu(),
                        "texture": a.texture.float().cpu(), "texture_sr": a.texture_sr.float().cpu()})
        save_tensors(tmp / "maps.safetensors", tensors, {"profile": a.profile.name, "photo": photo_name,
                                                         "layout": "(C, H, W) EduHead UV; see report.json"})
        bar.update(1)
        bar.set_postfix_str("textures")
        save_map(tmp / "texture" / "fitted.png", a.texture.cpu(), "color")
        save_map(tmp / "texture" / "super_resolved.png", a.texture_sr.cpu(), "color")
        bar.update(1)
        write_fit(a.fit, tmp / "fit")
        bar.update(1)
        bar.set_postfix_str("exports")
        export_obj(tmp / "export" / "face", a.mesh, a.maps, name="face", shape=a.shape)
        export_obj(tmp / "export" / "head", a.head_mesh, a.head_maps, name="head", shape=a.head_shape)
        export_glb(tmp / "export" / "face.glb", a.mesh, a.maps, shape=a.shape)
        export_glb(tmp / "export" / "head.glb", a.head_mesh, a.head_maps, shape=a.head_shape)
        write_html_viewer(tmp / "export" / "head.html", a.head_mesh, a.head_maps, shape=a.head_shape,
                          title=f"avatarme-edu: {photo_name or 'reconstruction'}")
        bar.update(1)
        bar.set_postfix_str("renders")
        hw = (RENDER_SIDE, RENDER_SIDE)
        head = (a.head_mesh, a.head_shape, a.head_maps)
        save_views(tmp / "renders" / "turntable", turntable(*head, studio(), hw=hw))
        sets = default_light_sets()
        save_views(tmp / "renders" / "relight", relight_strip(*head, {k: sets[k] for k in RELIGHT}, hw=hw))
        render, crop = photo_pose_render(head, a.fit)
        save_views(tmp / "renders" / "photo_vs_render", torch.stack([crop, render]), names=["photo", "render"])
        bar.update(1)
        report = dict(a.report)
        report["photo"] = photo_name
        report["written_by"] = MARKER
        report["write_s"] = round(time.perf_counter() - t0, 2)
        write_text(tmp / "report.json", json.dumps(_clean(report), indent=1) + "\n")
        bar.update(1)
    if old is not None:
        new = out.with_name(f"{TMP_PREFIX}{out.name}-new-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    bar.close()
    return out


# ---------------------------------------------------------------------------------------------- the command


def add_reconstruct_parser(subparsers) -> None:
    """Add ``reconstruct PHOTO --out DIR`` to the ``avatarme-edu`` command's sub-parsers."""
    from avatarme_edu.profiles import PROFILE_NAMES

    p = subparsers.add_parser("reconstruct", help="one photo in, a render-ready avatar out (fit, maps, head)",
                              description="Fit the largest face of PHOTO, infer its four reflectance maps, put "
                                          "it on a complete head, and write maps, meshes, renders, exports "
                                          "and report.json to a new folder --out.")
    p.add_argument("photo", nargs="?", default=None, help="a photo with a face (JPEG or PNG)")
    p.add_argument("--sample", choices=sorted(SAMPLES), default=None,
                   help="reconstruct a bundled sample photo instead of PHOTO (make demo: astronaut)")
    p.add_argument("--synthetic", type=seed_arg, default=None, metavar="SEED",
                   help="reconstruct held-out virtual subject SEED (seed %% 5 == 4), rendered as a photo in random "
                        "pose and light, instead of PHOTO; report.json gets its numbers against the truth")
    p.add_argument("--truth-subject", type=seed_arg, default=None, metavar="SEED",
                   help="PHOTO is a render of virtual subject SEED (data_samples/photos/synthetic_000N_*.jpg are "
                        "subjects 0-2): report.json gets each map's PSNR against its truth")
    p.add_argument("--out", required=True, help="a new output folder (refused if it exists with files in it)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it holds a previous reconstruction and nothing else")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                   help="cpu (reduced sizes) or paper (published sizes, for a GPU); default: automatic")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:N, mps); default: automatic")
    p.add_argument("--weights", default=None, help="folder of <network>.safetensors (default: the committed ones)")
    p.add_argument("--steps", type=int, default=None, help="steps of the fit's full objective (default: cpu budget)")
    p.add_argument("--mirror", choices=("on", "off"), default="on",
                   help="the fit's unseen texels from their mirror image's detail (default on; see `fit --help`)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=run_reconstruct, command="reconstruct")


def run_reconstruct(args) -> int:
    """``avatarme-edu reconstruct``: checks everything it can before working; one line per problem."""
    from avatarme_edu.fitting.fit_cli import config_from_args
    from avatarme_edu.lightstage.dataset import is_held_out
    from avatarme_edu.maps_io import load_photo
    from avatarme_edu.pipeline import check_weights, reconstruct
    from avatarme_edu.profiles import get_profile

    start = time.perf_counter()
    profile = get_profile(args.profile, args.device)
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    if args.weights is not None and not Path(args.weights).is_dir():
        raise ValueError(f"--weights {args.weights!r} is not a folder of <network>.safetensors files")
    if sum(x is not None for x in (args.photo, args.sample, args.synthetic)) != 1:
        raise ValueError("give one of PHOTO, --sample NAME (e.g. --sample astronaut) or --synthetic SEED")
    truth_seed = args.synthetic if args.synthetic is not None else args.truth_subject
    if args.truth_subject is not None and args.photo is None:
        raise ValueError("--truth-subject goes with a PHOTO that is a render of that subject")
    if args.synthetic is not None and not is_held_out(args.synthetic):
        raise ValueError(f"--synthetic {args.synthetic} is a training identity of the networks; held-out subjects "
                         f"have seed % 5 == 4 (e.g. {args.synthetic - args.synthetic % 5 + 4})")
    check_weights(profile, args.weights)
    out = check_out(args.out, args.overwrite)
    if args.synthetic is not None:
        from avatarme_edu.fitting.synthetic import synthetic_photo

        photo, name = synthetic_photo(args.synthetic, profile).photo, f"held-out virtual subject {args.synthetic}"
    else:
        photo = Path(args.photo) if args.photo is not None else sample_photo(args.sample)
        name = photo.name
        with warnings.catch_warnings():  # a bad photo fails here, before any work; reconstruct notes the rest
            warnings.simplefilter("ignore")
            load_photo(photo)
    avatar = reconstruct(photo, profile, weights=args.weights, fit_config=config_from_args(args),
                         progress=not args.quiet)
    if truth_seed is not None:
        from avatarme_edu.end_to_end import truth_report

        avatar.report["ground_truth"] = truth_report(avatar, truth_seed, profile)
    write_avatar(avatar, out, photo_name=name, progress=not args.quiet, overwrite=args.overwrite)
    r = avatar.report
    ident = r.get("identity", {})
    d = ident.get("distance")
    print(f"reconstructed {name} in {time.perf_counter() - start:.1f} s, written included "
          f"({profile.name} profile, {profile.device}); "
          f"dlib distance photo vs render {'n/a' if d is None else f'{d:.3f}'} (same person below 0.6)")
    if "ground_truth" in r:
        g = r["ground_truth"]
        print(f"against the truth of subject {g['subject']}{'' if g['held_out'] else ' (a training identity)'}: "
              f"A_D {g['diffuse_albedo_psnr']:.2f} dB, A_S {g['specular_albedo_psnr']:.2f} dB, "
              f"N_D {g['diffuse_normals_deg']:.2f} deg, N_S {g['specular_normals_deg']:.2f} deg, "
              f"render {g['render_psnr']:.2f} dB, shape {g['shape_error_mm']:.2f} mm")
    print(f"outputs in {out}/: maps/ head_maps/ export/ (head.glb, head.html) renders/ report.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m avatarme_edu.pipeline_io")
    add_reconstruct_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as err:
        print(f"avatarme-edu reconstruct: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
