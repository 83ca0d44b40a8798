"""The synthetic check of the fit: photos of held-out light-stage subjects, whose truth is known.

A held-out subject (``identity_id % 5 == 4``, never seen by the texture models) is given its
in-the-wild texture (:func:`avatarme_edu.lightstage.wild.wild_texture`: random environment light,
camera colour and tone, the light baked in) and rendered as a photo from a random pose
(:func:`synthetic_photo`). The fit then sees only the photo. Measured (:func:`evaluate_fit`):

* **shape error** in mm: mean distance of the fitted face vertices to the true ones after a
  similarity alignment (Umeyama) over the face region, next to the same number for EduHead's mean head;
  also for the fitted identity alone, with a neutral expression (the subjects are neutral);
* **landmark error** in px: fitted landmark vertices projected by the fitted camera vs the true
  landmark vertices projected by the true camera (and vs dlib's detections, in the fit's report),
  next to the same fit with the shape held at the mean head (``FitConfig(fit_shape=False)``: camera,
  texture and light fitted as usual);
* **pose error** in degrees: the angle between the fitted and the true camera rotation (both fits);
* **texture PSNR** (dB) of the fitted UV texture against the true texture (the subject's wild
  texture at the fitted-texture size, before the noise of a real fit), over the face texels and over
  the texels seen in the photo, next to the texture model's mean texture.

Run ``python -m avatarme_edu.fitting.synthetic --seeds 4 9 14 --out fit_synthetic.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from avatarme_edu.fitting.diff_render import FRONT_VIEW, PinholeCamera, render, rotation_matrix, uniform_sh
from avatarme_edu.profiles import Profile, get_profile

PHOTO_HW = (384, 384)
FACE_FRACTION = 0.42  # the face's landmark spread as a fraction of the photo's width (a head-and-shoulders portrait)
FOCAL = 3.0  # focal length in photo widths
ORACLE_IDENTITY_PRIOR = 1e-4  # FitConfig.w_identity_coeff when the fit is given the true landmarks


@dataclass
class SyntheticPhoto:
    """``photo`` ``(3, H, W)`` linear RGB; ``subject`` and ``wild`` its truth; ``camera`` the true camera;
    ``texture`` ``(3, h, w)`` the true texture at ``profile.texture_hw``; ``landmarks`` ``(68, 2)`` true
    landmark pixels; ``rotation_deg`` (pitch, yaw, roll) of the head."""

    photo: torch.Tensor
    subject: object
    wild: object
    camera: PinholeCamera
    texture: torch.Tensor
    landmarks: torch.Tensor
    rotation_deg: tuple[float, float, float]


def synthetic_photo(seed: int, profile: Profile, pose_seed: int | None = None, hw=PHOTO_HW,
                    max_yaw: float = 25.0, head=None) -> SyntheticPhoto:
    """Render held-out subject ``seed`` as a photo (random pose from ``pose_seed``, default ``seed``)."""
    from avatarme_edu.lightstage.dataset import is_held_out

    if not is_held_out(seed):
        raise ValueError(f"subject {seed} is a training identity; the synthetic check uses held-out ids (id % 5 == 4)")
    return subject_photo(seed, profile, seed if pose_seed is None else pose_seed, hw, max_yaw, head)


def subject_photo(seed: int, profile: Profile, pose_seed: int, hw=PHOTO_HW, max_yaw: float = 25.0,
                  head=None) -> SyntheticPhoto:
    """Subject ``seed`` (any split: the caller answers for it) in its wild texture, as a photo from the
    random pose ``pose_seed`` (pitch within 10, yaw within ``max_yaw``, roll within 6 degrees)."""
    from avatarme_edu.lightstage.dataset import wild_generator
    from avatarme_edu.lightstage.subjects import make_subject
    from avatarme_edu.lightstage.wild import wild_texture

    subject = make_subject(seed, profile, head=head)
    wild = wild_texture(subject, profile, wild_generator(seed, 0))
    g = torch.Generator().manual_seed(1000 + pose_seed)
    u = torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1
    pitch, yaw, roll = 10.0 * float(u[0]), max_yaw * float(u[1]), 6.0 * float(u[2])
    mesh = subject.mesh
    dev = mesh.vertices.device
    angles = torch.tensor([math.radians(pitch), math.radians(yaw), math.radians(roll)], device=dev)
    rot = rotation_matrix(angles) @ FRONT_VIEW.to(dev)
    lm3 = mesh.vertices[head_landmark_ids(head)]
    centre = lm3.mean(0)
    focal = FOCAL * hw[1]
    spread = (lm3 - centre).norm(dim=-1).mean()
    depth = float(focal * spread / (FACE_FRACTION * hw[1] / 2.5))
    translation = -rot @ centre + torch.tensor([0.0, 0.0, depth], device=dev)
    cam = PinholeCamera(rot, translation, focal, (hw[1] / 2, hw[0] / 2), tuple(hw))
    ys, xs = torch.meshgrid(torch.linspace(0, 1, hw[0]), torch.linspace(0, 1, hw[1]), indexing="ij")
    tint = torch.rand(2, 3, generator=g) * 0.5 + 0.1
    background = tint[0][:, None, None] * (1 - ys) + tint[1][:, None, None] * ys + 0.05 * xs
    with torch.no_grad():
        r = render(mesh.vertices, mesh.faces, mesh.uvs, wild.high, uniform_sh(device=dev), cam,
                   background=background.to(dev), weld=(head or _head()).weld.to(dev))
    texture = F.interpolate(wild.high[None], size=tuple(profile.texture_hw), mode="area")[0].cpu()
    return SyntheticPhoto(r.image.clamp(0, 1).cpu(), subject, wild, cam, texture, cam.project(lm3)[0].cpu(),
                          (pitch, yaw, roll))


@functools.lru_cache(maxsize=8)
def _cached_photo(seed: int, profile: Profile) -> SyntheticPhoto:
    """Photos are deterministic: one per seed and profile per process (comparing fit settings)."""
    return synthetic_photo(seed, profile, head=_head().to(profile.device))


def _head():
    from avatarme_edu.geometry.head import load_eduhead

    return load_eduhead()


def head_landmark_ids(head=None) -> torch.Tensor:
    return (head or _head()).landmark_ids


def face_vertex_weights(head=None) -> torch.Tensor:
    """``(V,)`` 1 on the face the photo shows (the region the shape error is measured on), else 0."""
    from avatarme_edu.fitting.fit_stages import vertex_weights

    return (vertex_weights(head or _head())["photo"] > 0.5).float()


def shape_error_mm(fitted: torch.Tensor, true: torch.Tensor, weights: torch.Tensor) -> float:
    """Mean distance (mm) of ``fitted`` to ``true`` vertices ``(V, 3)`` where ``weights`` > 0, after
    the similarity (scale, rotation, translation) that best aligns them there."""
    from avatarme_edu.completion.blend import similarity_transform

    s, rot, t = similarity_transform(fitted.double(), true.double(), weights.double())
    aligned = s * fitted.double() @ rot.T + t
    d = (aligned - true.double()).norm(dim=-1)
    return float((d * weights).sum() / weights.sum() * 1000.0)


def rotation_error_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle (degrees) of the rotation between two ``(3, 3)`` rotations."""
    c = ((torch.trace(a.double().T @ b.double()) - 1) / 2).clamp(-1, 1)
    return math.degrees(math.acos(float(c)))


def face_texels(profile: Profile, head=None) -> torch.Tensor:
    """``(h, w)`` bool: texels of the face region at ``profile.texture_hw``."""
    from avatarme_edu.geometry.mesh import Mesh
    from avatarme_edu.geometry.raster import interpolate, rasterize_uv

    head = head or _head()
    mesh = Mesh(head.mean, head.faces, head.uvs)
    frags = rasterize_uv(mesh, tuple(profile.texture_hw))
    return (interpolate(frags, face_vertex_weights(head)[:, None], head.faces)[0] > 0.5) & frags.mask


def check_held_out(seeds) -> list[int]:
    """The seeds as ints; a training identity (or a non-identity) raises one clear ``ValueError``."""
    from avatarme_edu.lightstage.dataset import is_held_out

    seeds = list(seeds)
    if not seeds:
        raise ValueError("give at least one held-out seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be identity numbers (ints >= 0), got {s!r}")
        if not is_held_out(s):
            raise ValueError(f"seed {s} is a training identity; the fit is evaluated on held-out identities only "
                             f"(those with seed % 5 == 4, e.g. {s - s % 5 + 4})")
    return seeds


def evaluate_fit(seeds, profile: Profile, config=None, texture_model=None, progress: bool = False,
                 oracle_landmarks: bool = False) -> dict:
    """Fit each held-out subject's synthetic photo; per-seed numbers and their means (see module docstring).

    A seed whose photo dlib finds no face in is kept as a row with its ``error`` and left out of the means.
    ``oracle_landmarks``: fit the true landmarks (EduHead's landmark vertices through the true camera)
    instead of dlib's, with a weak identity prior (:data:`ORACLE_IDENTITY_PRIOR`) - what the fit makes
    of perfect landmarks, apart from the detector's errors."""
    from dataclasses import replace

    from avatarme_edu.fitting.fit import fit
    from avatarme_edu.fitting.landmarks import FaceNotFoundError
    from avatarme_edu.fitting.texture_model import default_texture_model
    from avatarme_edu.metrics import psnr

    from avatarme_edu.fitting.fit_stages import FitConfig
    from avatarme_edu.fitting.landmarks import Face, detect_face

    seeds = check_held_out(seeds)
    config = config or FitConfig()
    if oracle_landmarks:
        # a prior's weight should follow the landmarks' noise: exact landmarks deserve a weak one (the
        # default is set against dlib's errors, which are ~5x what the population's shapes move the points)
        config = replace(config, learned_landmarks=False, w_identity_coeff=ORACLE_IDENTITY_PRIOR)
    head = _head().to(profile.device)
    texture_model = texture_model or default_texture_model(profile)
    weights = face_vertex_weights(head).to(profile.device)
    face_uv = face_texels(profile, head).cpu()
    mean_tex = texture_model.decode(texture_model.initial_latent(1))[0].detach().cpu()
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        sp = _cached_photo(int(seed), profile)
        try:
            if not oracle_landmarks:
                with warnings.catch_warnings():  # the renders are marginal faces to dlib: no warning each
                    warnings.simplefilter("ignore")
                    face = detect_face(sp.photo)
            else:
                lo, hi = sp.landmarks.min(0).values, sp.landmarks.max(0).values
                face = Face(box=(*lo.tolist(), *hi.tolist()), landmarks=sp.landmarks.numpy(), score=float("nan"),
                            plausibility=float("nan"), note="oracle: the true landmarks")
            res = fit(sp.photo, profile, texture_model=texture_model, config=config, progress=progress, head=head,
                      face=face)
        except FaceNotFoundError as err:
            rows.append({"seed": int(seed), "pose_deg": [round(x, 1) for x in sp.rotation_deg], "error": str(err)})
            continue
        true_v = sp.subject.mesh.vertices.to(profile.device)
        # not fitting the shape: the same fit with the mean head (camera, texture and light still fitted)
        base = fit(sp.photo, profile, texture_model=texture_model, config=replace(config, fit_shape=False),
                   progress=False, head=head, face=face)
        mean_lm = base.mesh.vertices[head.landmark_ids.cpu()].to(profile.device)
        mean_lm_xy = base.crop.to_photo(base.camera.project(mean_lm)[0].cpu())
        lm_vertices = res.mesh.vertices[head.landmark_ids.cpu()].to(profile.device)
        lm_fit = res.crop.to_photo(res.camera.project(lm_vertices)[0].cpu())
        seen = res.visibility > 0.5
        rows.append({
            "seed": int(seed), "pose_deg": [round(x, 1) for x in sp.rotation_deg],
            "shape_error_mm": round(shape_error_mm(res.mesh.vertices.to(profile.device), true_v, weights), 3),
            "shape_error_mean_head_mm": round(shape_error_mm(head.vertices(), true_v, weights), 3),
            # the fitted identity alone (neutral face, no offset): the subjects are neutral, so this
            # separates what the identity recovers from what a fitted expression adds
            "identity_shape_error_mm": round(shape_error_mm(head.vertices(res.params.identity.to(profile.device)),
                                                            true_v, weights), 3),
            "landmark_error_px": round(float((lm_fit - sp.landmarks.cpu()).norm(dim=-1).mean()), 3),
            "landmark_error_mean_head_px": round(float((mean_lm_xy - sp.landmarks.cpu()).norm(dim=-1).mean()), 3),
            "pose_error_mean_head_deg": round(rotation_error_deg(base.camera.rotation.cpu(),
                                                                 sp.camera.rotation.cpu()), 2),
            "landmark_error_vs_dlib_px": res.report["landmark_error_px"],
            "pose_error_deg": round(rotation_error_deg(res.camera.rotation.cpu(), sp.camera.rotation.cpu()), 2),
            "texture_psnr_face_db": round(psnr(res.texture, sp.texture, face_uv), 2),
            "texture_psnr_seen_db": (round(psnr(res.texture, sp.texture, seen & face_uv), 2)
                                     if bool((seen & face_uv).any()) else None),
            "texture_psnr_mean_texture_db": round(psnr(mean_tex, sp.texture, face_uv), 2),
            "identity_distance_textured_rendering": res.report["identity_distance_textured_rendering"],
            "seam_gradient_ratio": res.report.get("seam_gradient_ratio"),
            "fit_time_s": round(sum(res.times.values()), 1), "total_time_s": round(time.perf_counter() - t0, 1),
        })
        if progress:
            print(json.dumps(rows[-1]), flush=True)
    done = [r for r in rows if "error" not in r]
    keys = [k for k in done[0] if isinstance(done[0][k], (int, float)) and k != "seed"] if done else []
    mean = {k: round(sum(r[k] for r in done if r[k] is not None) / max(1, sum(r[k] is not None for r in done)), 3)
            for k in keys}
    return {"profile": profile.name, "texture_model": type(texture_model).__name__, "seeds": [int(s) for s in seeds],
            "landmarks": "oracle (true)" if oracle_landmarks else "dlib",
            "fitted": len(done), "failed": len(rows) - len(done), "per_seed": rows, "mean": mean}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avatarme_edu.fitting.synthetic",
                                     description="Fit held-out synthetic subjects and compare with their truth.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 9, 14])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--device", default=None)
    parser.add_argument("--free-form", choices=("on", "off"), default="off")
    parser.add_argument("--oracle-landmarks", action="store_true")
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    from avatarme_edu.fitting.fit_stages import FitConfig

    try:
        profile = get_profile(args.profile, args.device)
        result = evaluate_fit(args.seeds, profile, FitConfig(free_form=args.free_form == "on"), progress=True,
                              oracle_landmarks=args.oracle_landmarks)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        tmp = Path(args.out).with_name(Path(args.out).name + ".part")
        tmp.write_text(text + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
