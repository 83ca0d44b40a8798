"""One photo in, a render-ready avatar out: the whole of AvatarMe in one call.

:func:`reconstruct` runs, timing each stage (``avatar.report["time_s"]``) with a progress bar::

    fit        photo -> EduHead mesh, camera, light, UV texture T (3, h, w)  (fitting/fit.py, GANFIT-style)
    shape      mesh  -> ShapeMaps at profile.map_hw (depth D_O, normals N_O, N_T, mask)
    sr         T     -> T̂ (3, H, W)                         RCAN                     (stages.super_resolve)
    delight    T̂ (, D_O) -> A_D (3, H, W)                    pix2pixHD δ              (stages.delight)
    specular   A_D -> A_S (1, H, W);  A_D, N_T -> N_S;  A_D, N_O -> N_D               (stages.*)
    head       the face (mesh and maps) blended onto a complete EduHead (completion/transfer.py)
    identity   the completed head rendered in the photo's pose under new light (a soft frontal key + fill);
               dlib's descriptor distance between that rendering and the photo (same person below 0.6)

Everything stays in memory: :func:`~avatarme_edu.pipeline_io.write_avatar` writes an
:class:`Avatar` to a folder. ``weights``: ``None`` takes the profile's committed networks; a folder
takes ``<folder>/<net>.safetensors`` (e.g. freshly trained ones).
"""

from __future__ import annotations

import math
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from avatarme_edu.profiles import Profile, get_profile

STAGES = ("fit", "shape", "sr", "delight", "specular_albedo", "specular_normals", "diffuse_normals", "head",
          "identity")
SAME_PERSON = 0.6  # dlib's threshold on its descriptor distance


@dataclass
class Avatar:
    """What :func:`reconstruct` returns. Maps share EduHead's UV layout, ``(C, H, W)`` at ``profile.map_hw``.

    * ``mesh``: the fitted face (EduHead topology, metres); ``shape``: its baked ShapeMaps;
    * ``maps``: :class:`~avatarme_edu.reflectance.ReflectanceMaps` of the face: A_D, A_S, N_D (object
      space), N_S (tangent space), mask;
    * ``head_mesh``, ``head_maps``, ``head_shape``: the completed head (face blended onto EduHead);
    * ``texture``: the fitted UV texture T ``(3, h, w)`` linear RGB at ``profile.texture_hw``;
      ``texture_sr``: T̂ ``(3, H, W)``, super-resolved and resampled to the maps' size;
    * ``fit``: the :class:`~avatarme_edu.fitting.fit.FitResult` (camera, overlay, losses);
    * ``blend``: ``(H, W)`` the head-completion weight, 1 where the head's maps are the face's, 0 where
      they are EduHead's (tone-matched);
    * ``report``: ``time_s`` per stage, profile, device, the fit's numbers, the identity distance.
    """

    mesh: object
    shape: object
    maps: object
    head_mesh: object
    head_maps: object
    head_shape: object
    texture: torch.Tensor
    texture_sr: torch.Tensor
    fit: object
    profile: Profile
    blend: torch.Tensor | None = None
    report: dict = field(default_factory=dict)


def _weights(weights, name: str):
    return None if weights is None else Path(weights) / f"{name}.safetensors"


def check_weights(profile: Profile, weights=None) -> None:
    """Refuse, before any work, when a network's weights file is missing (one line saying how to train it).

    The cpu profile's weights are committed; the paper profile's are trained on a GPU
    (``avatarme-edu train <net> --profile paper``) and given as a folder (``weights``)."""
    from avatarme_edu.nets.weights import default_weights_path
    from avatarme_edu.stages import pipeline_networks, train_command

    for name in pipeline_networks(profile).values():
        path = Path(weights) / f"{name}.safetensors" if weights is not None else default_weights_path(name, profile)
        if not path.is_file():
            train = train_command(name, profile, data="DATASET")
            raise ValueError(f"no weights for the {name!r} network ({profile.name} profile) at {str(path)!r}; train "
                             f"them with `{train}` and pass a folder of <network>.safetensors as weights/--weights")


def versions() -> dict:
    """Versions of what made the result (for the report)."""
    import numpy

    import avatarme_edu

    out = {"avatarme_edu": avatarme_edu.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
           "python": platform.python_version()}
    try:
        from avatarme_edu.fitting.dlib_models import import_dlib

        out["dlib"] = getattr(import_dlib(), "__version__", "?")
    except Exception:  # noqa: BLE001 - a version string is not worth a failure
        pass
    return out


def photo_pose_render(avatar_or_head, fitted, lights=None, factor: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The completed head rendered in the photo's pose: ``(render, crop)``, both ``(3, s, s)`` linear.

    ``avatar_or_head``: ``(mesh, shape, maps)`` of the head; ``fitted``: the FitResult (its camera sees
    the face crop at ``crop_px``; both images are ``factor`` times that). The rendering has the photo
    crop as background, so dlib sees a face in its usual surroundings. ``lights`` default: a soft
    portrait light, a key from the front-above and a fill as strong
    (:func:`~avatarme_edu.render.views.soft_front_lights`; new light, not the photo's fitted one).
    """
    import torch.nn.functional as F

    from avatarme_edu.fitting.diff_render import PinholeCamera
    from avatarme_edu.render.shading import render_view
    from avatarme_edu.render.views import soft_front_lights

    mesh, shape, maps = avatar_or_head
    cam = fitted.camera
    big = PinholeCamera(cam.rotation, cam.translation, cam.focal * factor,
                        (cam.principal[0] * factor, cam.principal[1] * factor),
                        (int(round(cam.hw[0] * factor)), int(round(cam.hw[1] * factor))))
    crop = F.interpolate(fitted.crop.image[None].float(), size=big.hw, mode="bilinear", align_corners=False)[0]
    lights = soft_front_lights() if lights is None else lights
    device = mesh.vertices.device
    r = render_view(mesh, shape, maps, lights, big.as_geometry_camera(), background=crop.to(device))
    return r["image"].clamp(0, 1).cpu(), crop.clamp(0, 1)


def identity_check(head, fitted, factor: float = 2.0, lights=None) -> dict:
    """dlib's descriptor distance between the photo's face and the completed head rendered in the photo's
    pose (:func:`photo_pose_render`, under ``lights``: default its soft portrait light); same person below
    :data:`SAME_PERSON`. The rendering's face is found by dlib; ``distance`` is ``None`` when dlib finds none."""
    from avatarme_edu.fitting.fit_report import dlib_distance

    render, crop = photo_pose_render(head, fitted, lights=lights, factor=factor)
    crop_landmarks = fitted.crop.landmarks.cpu().float() * factor  # dlib's 68 of the photo, in crop pixels
    d, how = dlib_distance(crop, crop_landmarks, render)
    return {"distance": round(d, 4) if math.isfinite(d) else None, "found_by": how,
            "same_person_threshold": SAME_PERSON}


def reconstruct(photo, profile: Profile | str | None = None, *, weights=None, fit_config=None,
                texture_model=None, progress: bool = True, identity: bool = True) -> Avatar:
    """The avatar of the largest face in ``photo`` (a path, or ``(3, H, W)`` linear RGB in [0, 1]).

    ``profile``: a :class:`Profile` or its name (default :func:`get_profile`). ``fit_config``: a
    :class:`~avatarme_edu.fitting.fit_stages.FitConfig` (default: the cpu budget). Bad photos raise
    :class:`ValueError` with one line naming the problem (see :func:`avatarme_edu.maps_io.load_photo`).
    What was done about an unusual photo (grey, transparent or 16-bit, several faces: the largest is
    taken; EXIF orientation is applied, large photos are downscaled) is warned and kept in
    ``report["notes"]``.
    """
    from tqdm.auto import tqdm

    from avatarme_edu import stages
    from avatarme_edu.completion.transfer import transfer_to_head
    from avatarme_edu.fitting.fit import fit
    from avatarme_edu.geometry.uv_bake import bake_shape_maps
    from avatarme_edu.maps_io import load_photo
    from avatarme_edu.reflectance import ReflectanceMaps

    if profile is None or isinstance(profile, str):
        profile = get_profile(profile)
    if not isinstance(profile, Profile):
        raise ValueError(f"profile must be a Profile or one of 'cpu', 'paper', got {profile!r}")
    if weights is not None and not Path(weights).is_dir():
        raise ValueError(f"weights {str(weights)!r} is not a folder of <network>.safetensors files")
    check_weights(profile, weights)
    times: dict[str, float] = {}
    bar = tqdm(total=len(STAGES) - (0 if identity else 1), desc="reconstruct", disable=not progress)

    def done(name: str, t0: float) -> None:
        times[name] = time.perf_counter() - t0
        bar.set_postfix_str(f"{name} {times[name]:.1f} s")
        bar.update(1)

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # grey / RGBA / 16-bit photo, several faces...
        warnings.simplefilter("always")
        photo = load_photo(photo) if isinstance(photo, (str, os.PathLike)) else photo
        fitted = fit(photo, profile, texture_model=texture_model, config=fit_config, progress=False)
    notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))
    for w in caught:  # passed on, and kept for the report
        warnings.warn(w.message, w.category, stacklevel=2)
    done("fit", t0)
    t0 = time.perf_counter()
    mesh = fitted.mesh.to(profile.torch_device)
    shape = bake_shape_maps(mesh, profile.map_hw)
    done("shape", t0)
    t0 = time.perf_counter()
    texture = fitted.texture.to(profile.torch_device)
    texture_sr = stages.super_resolve(texture, profile, _weights(weights, "sr"))
    done("sr", t0)
    t0 = time.perf_counter()
    delighter = stages.pipeline_networks(profile)["delight"]  # δ(T̂) at the cpu profile, δ(T̂, D_O) at paper
    albedo = stages.delight(texture_sr, shape, profile, _weights(weights, delighter))
    done("delight", t0)
    t0 = time.perf_counter()
    # ψ's level head reads pores, and δ's albedo of a fitted texture has none at the cpu size (its finest
    # band is δ's noise): the head would read dry skin (-6.1 dB end to end, nets/specular_level.py), so
    # the pipeline keeps ψ's own level, the training subjects' mean (ψ is trained at one level)
    spec = stages.specular_albedo(albedo, profile, _weights(weights, "specular_albedo"), mask=shape.mask,
                                  level_head=False)
    done("specular_albedo", t0)
    t0 = time.perf_counter()
    n_s = stages.specular_normals(albedo, shape, profile, _weights(weights, "specular_normals"))
    done("specular_normals", t0)
    t0 = time.perf_counter()
    n_d = stages.diffuse_normals(albedo, shape, profile, _weights(weights, "diffuse_normals"))
    done("diffuse_normals", t0)
    maps = ReflectanceMaps(diffuse_albedo=albedo, specular_albedo=spec, diffuse_normals=n_d,
                           specular_normals=n_s, mask=shape.mask)
    t0 = time.perf_counter()
    head_mesh, head_maps, info = transfer_to_head(mesh, maps, profile=profile, face_shape=shape)
    done("head", t0)
    report = {
        "profile": profile.name, "device": profile.device, "map_hw": list(profile.map_hw),
        "texture_hw": list(profile.texture_hw), "torch_threads": torch.get_num_threads(),
        # which weights file ran each network stage (δ(T̂) or δ(T̂, D_O): profile.delight_variant), and from where
        "networks": {stage: f"{name}.safetensors" for stage, name in stages.pipeline_networks(profile).items()},
        "weights": "committed" if weights is None else str(weights),
        "notes": notes, "fit": fitted.report,
    }
    if identity:
        t0 = time.perf_counter()
        report["identity"] = identity_check((head_mesh, info.shape, head_maps), fitted)
        done("identity", t0)
    bar.close()
    report["time_s"] = {k: round(v, 2) for k, v in times.items()}
    report["time_s"]["total"] = round(sum(times.values()), 2)
    report["fit_time_s"] = fitted.report.get("time_s", {})
    report["versions"] = versions()
    report["cpu_count"] = os.cpu_count()
    return Avatar(mesh=mesh, shape=shape, maps=maps, head_mesh=head_mesh, head_maps=head_maps, head_shape=info.shape,
                  texture=fitted.texture, texture_sr=texture_sr, fit=fitted, profile=profile, blend=info.alpha, report=report)
