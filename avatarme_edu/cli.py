"""The ``avatarme-edu`` command.

Every sub-command takes ``--profile`` (cpu | paper) and ``--device``; see ``avatarme-edu --help``.
Errors in the user's input are printed as one clear line (exit status 2), not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avatarme_edu.profiles import PROFILE_NAMES, get_profile


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                   help="sizes and networks: 'cpu' (reduced) or 'paper' (published sizes); "
                        "default: $AVATARME_PROFILE, else 'paper' with CUDA and 'cpu' without")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda, cuda:N, mps); default: $AVATARME_DEVICE or auto")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")


def _cmd_demo(args) -> int:
    from avatarme_edu.demo import run_demo

    profile = get_profile(args.profile, args.device)
    written = run_demo(Path(args.out), profile, seed=args.seed, map_hw=args.map_size)
    print(f"profile {profile.name} on {profile.device}: wrote {len(written)} files under {args.out}/")
    for path in written:
        print(f"  {path}")
    return 0


def _cmd_head(args) -> int:
    import torch

    from avatarme_edu.geometry.head import EXPRESSIONS, load_eduhead
    from avatarme_edu.geometry.mesh import write_obj

    if args.expression not in EXPRESSIONS:
        raise ValueError(f"unknown expression {args.expression!r}; choose one of {', '.join(EXPRESSIONS)}")
    profile = get_profile(args.profile, args.device)
    head = load_eduhead(profile.device)
    coeffs = head.sample_identity(torch.Generator().manual_seed(args.seed))
    mesh = head.mesh(coeffs, expression=args.expression)
    path = write_obj(args.out, mesh)
    print(f"wrote {path} ({mesh.n_vertices} vertices, {mesh.n_faces} faces, expression {args.expression})")
    return 0


def _cmd_profile(args) -> int:
    profile = get_profile(args.profile, args.device)
    for key, value in vars(profile).items():
        print(f"{key:18s} {value}")
    print(f"{'sr_hw':18s} {profile.sr_hw}")
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

    p = sub.add_parser("profile", help="print the chosen profile's sizes and networks")
    _add_common(p)
    p.set_defaults(func=_cmd_profile)
    return parser


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(t) for t in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 384x576, got {text!r}") from None
    if h < 16 or w < 16 or w * 2 != h * 3:
        raise argparse.ArgumentTypeError(f"map size {text} must be at least 16x24 with W:H = 3:2 (e.g. 384x576)")
    return (h, w)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # bad input or parameters: one clear line, no traceback
        print(f"avatarme-edu {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
