"""The ``avatarme-edu`` command.

Every sub-command takes ``--profile`` (cpu | paper), ``--device`` and ``--seed`` (checked by
:mod:`avatarme_edu.seeds`: seed N is subject N everywhere); see ``avatarme-edu --help``.

Before working, each command checks that its output folder can be written and that its sizes fit in
memory (:mod:`avatarme_edu.memory`), and refuses what will not, saying what would. Errors are one
clear line, not a traceback: exit status 2 (bad input, will not fit, unwritable folder, full disk
naming the file), 1 (``dataset --verify`` found problems), 130 (Ctrl-C; nothing half-written is left).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avatarme_edu.evaluation import add_evaluate_parser
from avatarme_edu.fitting.fit_cli import add_fit_parser
from avatarme_edu.fitting.texture_gan_train import add_train_gan_parser
from avatarme_edu.nets.specular_level_train import add_train_level_parser
from avatarme_edu.nets.train_command import add_train_parser
from avatarme_edu.pipeline_io import add_reconstruct_parser
from avatarme_edu.profiles import PROFILE_NAMES, get_profile
from avatarme_edu.seeds import MAX_SEED, check_seed, seed_arg


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                   help="sizes and networks: 'cpu' (reduced) or 'paper' (published sizes); "
                        "default: $AVATARME_PROFILE, else 'paper' with CUDA and 'cpu' without")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:N, mps); default: $AVATARME_DEVICE or auto")
    p.add_argument("--seed", type=seed_arg, default=0,
                   help=f"identity / random seed in [0, {MAX_SEED}]: subject N of a dataset is --seed N "
                        "(same seed, same result)")


def _sized(profile, map_hw):
    """The profile with ``--map-size`` applied: the fitted texture keeps its share of the map."""
    if map_hw is None:
        return profile
    factor = profile.map_hw[0] // profile.texture_hw[0]
    return profile.replace(map_hw=tuple(map_hw),
                           texture_hw=(max(8, map_hw[0] // factor), max(12, map_hw[1] // factor)))


def _cmd_demo(args) -> int:
    from avatarme_edu.atomic import output_folder
    from avatarme_edu.demo import run_demo
    from avatarme_edu.memory import check_memory, subject_memory

    profile = _sized(get_profile(args.profile, args.device), args.map_size)
    check_memory(subject_memory, profile, f"the demo at {_size(profile)}")
    with output_folder(args.out) as out:
        written = run_demo(out, profile, seed=args.seed)
    print(f"profile {profile.name} on {profile.device}: wrote {len(written)} files under {args.out}/")
    for path in written:
        print(f"  {path}")
    return 0


def _cmd_head(args) -> int:
    from avatarme_edu.atomic import output_folder
    from avatarme_edu.geometry.head import EXPRESSIONS, load_eduhead
    from avatarme_edu.geometry.mesh import write_obj
    from avatarme_edu.lightstage.subjects import identity_of

    if args.expression not in EXPRESSIONS:
        raise ValueError(f"unknown expression {args.expression!r}; choose one of {', '.join(EXPRESSIONS)}")
    out = Path(args.out)
    if out.is_dir():
        raise IsADirectoryError(21, "is a folder; give the path of the .obj file to write", str(out))
    profile = get_profile(args.profile, args.device)
    with output_folder(out.parent):
        head = load_eduhead(profile.device)
        mesh = head.mesh(identity_of(args.seed, head), expression=args.expression)
        path = write_obj(out, mesh)
    print(f"wrote {path} (identity {args.seed}: {mesh.n_vertices} vertices, {mesh.n_faces} faces, "
          f"expression {args.expression})")
    return 0


def _cmd_dataset(args) -> int:
    from avatarme_edu.geometry.head import EXPRESSIONS
    from avatarme_edu.lightstage.dataset import make_dataset, verify_dataset

    if args.verify:
        problems = verify_dataset(args.verify)
        for line in problems:
            print(line)
        print(f"{args.verify}: {'OK, every file matches its checksum' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if args.n_subjects is None:
        raise ValueError("give the number of identities (avatarme-edu dataset N --out DIR), or --verify DIR")
    if args.n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {args.n_subjects}")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {args.workers}")
    check_seed(args.seed + args.n_subjects - 1, "seed + n_subjects - 1")
    expressions = EXPRESSIONS if args.expressions == "all" else tuple(args.expressions.split(","))
    unknown = [e for e in expressions if e not in EXPRESSIONS]
    if unknown:
        raise ValueError(f"unknown expression(s) {', '.join(unknown)}; choose from {', '.join(EXPRESSIONS)} or 'all'")
    profile = _sized(get_profile(args.profile, args.device), args.map_size)
    manifest = make_dataset(args.n_subjects, args.seed, profile, args.out, expressions=expressions,
                            workers=args.workers)
    import json

    rewritten = json.loads(Path(manifest).read_text()).get("rewritten_this_run", [])
    if rewritten:
        print(f"rewrote {len(rewritten)} subject(s) whose files failed their checksums: {rewritten}")
    print(f"dataset of {args.n_subjects} identities ({profile.name} profile) in {args.out}: {manifest}")
    return 0


def _cmd_capture(args) -> int:
    from avatarme_edu.geometry.uv_bake import tangent_to_object
    from avatarme_edu.lightstage import capture_subject, recovery_report, separate
    from avatarme_edu.lightstage.sphere import make_light_stage
    from avatarme_edu.lightstage.subjects import make_subject
    from avatarme_edu.memory import capture_memory, check_memory

    profile = get_profile(args.profile, args.device)
    if args.map_size:
        profile = profile.replace(map_hw=args.map_size)
    check_memory(capture_memory, profile, f"the capture at {_size(profile)}")
    subject = make_subject(args.seed, profile)
    stage = make_light_stage(device=profile.device)
    images = capture_subject(subject.shape, subject.reflectance, stage)
    r = subject.reflectance
    truth = {"diffuse_albedo": r.diffuse_albedo, "specular_albedo": r.specular_albedo,
             "diffuse_normals": r.diffuse_normals,
             "specular_normals": tangent_to_object(r.specular_normals, subject.shape)}
    paper = recovery_report(separate(images, stage), truth)
    aware = recovery_report(separate(images, stage, stage_aware_diffuse=True, lobe_aware_specular=True), truth)
    print(f"subject {args.seed}, {profile.map_hw[1]}x{profile.map_hw[0]} maps, "
          f"168-light polarised gradient capture recovered against the ground truth:")
    print(f"{'':28s} {'paper formulas':>15s} {'stage/lobe aware':>17s}")
    for key in paper:
        print(f"{key:28s} {_metric(key, paper[key]):>15s} {_metric(key, aware[key]):>17s}")
    return 0


def _metric(key: str, value: float) -> str:
    """A recovery number as printed. PSNR above 100 dB means equal to float32 rounding: its digits are
    rounding noise (they change with the thread count), so it prints as ``exact``."""
    return "exact" if key.endswith("psnr") and value > 100 else f"{value:.2f}"


def _size(profile) -> str:
    return f"{profile.map_hw[0]}x{profile.map_hw[1]} maps ({profile.name} profile, {profile.device})"


def _cmd_evaluate(args) -> int:
    """``evaluate``: the reflectance networks on their own, or with ``--end-to-end`` the whole pipeline."""
    if not args.end_to_end:
        if args.steps is not None:
            raise ValueError("--steps belongs to --end-to-end (the fit's steps)")
        from avatarme_edu.evaluation import run_evaluate

        return run_evaluate(args)
    from avatarme_edu.end_to_end import run_end_to_end

    if args.means_from:
        raise ValueError("--means-from computes the networks' baselines; run it without --end-to-end first")
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be >= 0, got {args.steps}")
    return run_end_to_end(args)


def _cmd_profile(args) -> int:
    profile = get_profile(args.profile, args.device)
    for key, value in vars(profile).items():
        print(f"{key:18s} {value}")
    print(f"{'sr_hw':18s} {profile.sr_hw}")
    return 0


def _add_same_person(sub) -> None:
    """``same-person PHOTO PHOTO [PHOTO ...] --out DIR``: the cross-photo check."""
    p = sub.add_parser(
        "same-person", help="fit several photos of one person; is each fit still that person from the others' "
                            "viewpoints? (dlib)",
        description="Fit each photo, render each fitted head in the camera fitted to every other photo and ask "
                    "dlib's face descriptor whether the rendering is the person in that photo (distance below "
                    "0.6). A photo of someone else is a useful control. Writes same_person.json, "
                    "same_person.png, the renderings and each fit.")
    p.add_argument("photos", nargs="+", help="two or more photos with a face (JPEG or PNG)")
    p.add_argument("--out", required=True, help="a new output folder (refused if it exists with files in it)")
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None, help="cpu or paper (default: auto)")
    p.add_argument("--device", default=None, help="torch device (default: $AVATARME_DEVICE or auto)")
    p.add_argument("--mirror", choices=("on", "off"), default="on", help="the fit's symmetric completion")
    p.add_argument("--steps", type=int, default=None, help="steps of the full objective (default: the cpu budget)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_same_person, command="same-person")


def photo_names(photos: list[str]) -> list[str]:
    """A short unique name per photo: its file name without the extension (numbered when two share one)."""
    stems = [Path(p).stem for p in photos]
    return [s if stems.count(s) == 1 else f"{s}_{i + 1}" for i, s in enumerate(stems)]


def _cmd_same_person(args) -> int:
    """Run ``avatarme-edu same-person``: fit every photo, then :func:`cross_photo_table` over all pairs."""
    from avatarme_edu.atomic import atomic_dir
    from avatarme_edu.figures.gallery import cross_photo_figure
    from avatarme_edu.fitting.cross_photo import cross_photo_table, summarise
    from avatarme_edu.fitting.fit import fit
    from avatarme_edu.fitting.fit_cli import config_from_args, new_out_folder, write_fit
    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.maps_io import save_map

    if len(args.photos) < 2:
        raise ValueError(f"give at least two photos (got {len(args.photos)}): each fit is rendered in the "
                         "pose of the others")
    profile = get_profile(args.profile, args.device)
    out = new_out_folder(args)
    names = photo_names(args.photos)
    config, head = config_from_args(args), load_eduhead(device=profile.torch_device)
    fits = {}
    for k, (name, photo) in enumerate(zip(names, args.photos)):
        if not args.quiet:
            print(f"[{k + 1}/{len(names)}] fitting {photo}", flush=True)
        try:
            fits[name] = fit(photo, profile, config=config, progress=not args.quiet, head=head)
        except ValueError as err:  # say which photo it was
            raise ValueError(f"{photo}: {err}") from err
    renders: dict = {}
    if not args.quiet:
        print(f"rendering each fit in the other photos' poses and asking dlib ({len(fits) * (len(fits) - 1)} pairs)",
              flush=True)
    table = cross_photo_table(fits, head, renders)
    if out.is_dir():  # empty: the finished folder takes its place
        out.rmdir()
    with atomic_dir(out) as tmp:  # all or nothing
        for name, result in fits.items():
            write_fit(result, tmp / "fits" / name)
        (tmp / "renders").mkdir()
        for (a, b), image in renders.items():
            save_map(tmp / "renders" / f"{a}_in_pose_of_{b}.png", image, "color")
        cross_photo_figure(fits, table, renders).savefig(tmp / "same_person.png", dpi=110)
        summary = summarise(table)
        (tmp / "same_person.json").write_text(json.dumps({
            "photos": dict(zip(names, args.photos)), "pairs": table, "summary": summary,
            "note": "distance: dlib's descriptor distance between the fit of 'fit' rendered in the pose of "
                    "'pose_of' and the photo 'pose_of'; photo_distance: between the two photos themselves; "
                    "agrees: the rendering gets the photos' verdict (same person below 0.6)"}, indent=1) + "\n")
    width = max(len(k) for k in table)
    print(f"{'fit in the pose of photo':<{width}}  dlib distance  photos' own  verdict (same person < 0.6)")
    for key, row in table.items():
        verdict = "same person" if row["same_person"] else "another person"
        if not row["agrees"]:
            verdict += f" (dlib on the photos: {'the same' if row['photos_same_person'] else 'another'} person)"
        print(f"{key:<{width}}  {row['distance']:>13.3f}  {row['photo_distance']:>11.3f}  {verdict}")
    counts = [f"{summary['recognised']} of {summary['same_person_pairs']} renderings of the same person (dlib on the "
              "photos) recognised" if summary["same_person_pairs"] else "",
              f"{summary['kept_apart']} of {summary['other_person_pairs']} of other people kept apart"
              if summary["other_person_pairs"] else ""]
    print("; ".join(c for c in counts if c) + f". Wrote {out}/same_person.png, same_person.json, renders/ and fits/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatarme-edu",
        description="AvatarMe, for teaching: reconstruct a render-ready face from one photo, stage by stage.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run the main job on the bundled sample and write everything to --out")
    _add_common(p)
    p.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    p.add_argument("--map-size", type=_hw, default=None, metavar="HxW",
                   help="override the profile's map size, e.g. 192x288 (W:H must be 3:2)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("head", help="export an EduHead identity/expression as OBJ with UVs")
    _add_common(p)
    p.add_argument("--expression", default="neutral")
    p.add_argument("--out", default="outputs/head.obj")
    p.set_defaults(func=_cmd_head)

    p = sub.add_parser("dataset", help="write a virtual light-stage dataset (subjects, wild textures, split)")
    _add_common(p)
    p.add_argument("n_subjects", type=int, nargs="?", help="number of identities (identities seed .. seed + n - 1)")
    p.add_argument("--out", default="outputs/lightstage", help="output folder; re-running resumes (and "
                   "re-verifies every kept file, rewriting those that fail)")
    p.add_argument("--verify", metavar="DIR", default=None,
                   help="check every file of the dataset in DIR against its checksum, list what is wrong")
    p.add_argument("--map-size", type=_hw, default=None, metavar="HxW", help="override the map size, e.g. 192x288")
    p.add_argument("--expressions", default="neutral", help="comma-separated expressions, or 'all' (the seven)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: automatic)")
    p.set_defaults(func=_cmd_dataset)

    p = sub.add_parser("capture", help="simulate the light-stage capture of a subject and report the recovery")
    _add_common(p)
    p.add_argument("--map-size", type=_hw, default=None, metavar="HxW", help="override the map size, e.g. 192x288")
    p.set_defaults(func=_cmd_capture)

    p = sub.add_parser("profile", help="print the chosen profile's sizes and networks")
    _add_common(p)
    p.set_defaults(func=_cmd_profile)

    # the stages' own commands: each module adds its parser with its own --profile/--device/--seed
    add_reconstruct_parser(sub)
    add_fit_parser(sub)
    _add_same_person(sub)
    add_train_parser(sub).set_defaults(func=_cmd_train)
    p = add_evaluate_parser(sub)
    p.add_argument("--end-to-end", action="store_true",
                   help="the whole pipeline from photos of held-out subjects, against their true maps "
                        "(default --out results/end_to_end.json; see avatarme_edu/end_to_end.py)")
    p.add_argument("--steps", type=int, default=None, help="with --end-to-end: steps of the fit's full objective")
    p.set_defaults(func=_cmd_evaluate)
    add_train_gan_parser(sub)
    add_train_level_parser(sub)
    return parser


def _cmd_train(args) -> int:
    from avatarme_edu.cascade import rcan_texture_input
    from avatarme_edu.nets.train_command import run_train

    return run_train(args, texture_input=rcan_texture_input)


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(t) for t in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 384x576, got {text!r}") from None
    if h < 16 or w < 16 or w * 2 != h * 3:
        raise argparse.ArgumentTypeError(f"map size {text} must be at least 16x24 with W:H = 3:2 (e.g. 384x576)")
    return (h, w)


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 done, 1 a check found problems, 2 refused or failed (one line
    on stderr, no traceback), 130 interrupted (Ctrl-C)."""
    args = build_parser().parse_args(argv)
    where = f"avatarme-edu {args.command}"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{where}: interrupted; finished files are kept, nothing half-written is left", file=sys.stderr)
        return 130
    except (ValueError, MemoryError) as err:  # bad input, or work that cannot fit: one clear line
        print(f"{where}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an output folder that is a file, a read-only folder, a full disk
        name = f": {err.filename}" if err.filename else ""
        print(f"{where}: error: {err.strerror or err}{name}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
