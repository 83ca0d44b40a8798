"""After the fit: the UV texture from the photo, the rendering over the photo, the report, the files,
and the ``avatarme-edu fit PHOTO --out DIR`` command (:func:`add_fit_parser`, :func:`run_fit`).

**Texture** (:func:`unwrap_texture`). Each texel of the fitted mesh's UV layout has a 3D point; it
is projected into the photo and counts as *seen* when it faces the camera and is the nearest surface
there (depth test against a z-buffer). Seen texels of the face region (``skin_weight``: not the scalp
or the neck, where photos show hair and collars, not skin) take the photo's colour; the others the
texture model's, with the fitted SH light baked in and its colour matched to the photo over the seen
texels. The two are blended in two parts: the photo's share is feathered (eroded, then blurred), and
the model's low frequencies are first moved onto the photo's (the difference photo - model where the
photo is sure, spread smoothly over the map: :func:`smooth_fill`), so that no step in shading or
colour is left for the feather to smear. With ``mirror`` (the fit's default), a texel not seen whose
mirror image across the face's midline was seen takes the mirror's detail on the light of the texture
made without it (:mod:`~avatarme_edu.fitting.symmetry`).
The seam is measured as the colour gradient in the blend band
over the gradient elsewhere (1 = no seam); the report gives it for the hard switch, the feather alone
and the full blend.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from avatarme_edu.fitting.diff_render import (PinholeCamera, barycentrics, rasterize, render, sh_shading,
                                              uniform_sh, vertex_normals)
from avatarme_edu.fitting.symmetry import REFERENCE_WIDTH, mirror_fill
from avatarme_edu.geometry.mesh import Mesh

FACING_MIN = 0.2  # cosine between normal and view below which a texel counts as unseen (grazing)
DEPTH_TOLERANCE = 0.004  # m: a texel this far behind the z-buffer is hidden
# in texels of a texture REFERENCE_WIDTH (144) wide, the cpu profile's; scaled with the texture's width, so
# they cover the same part of the face at any size (a finer unwrap, the paper profile)
FEATHER_TEXELS = 2  # erosion (and blur sigma) of the photo's share
FILL_SIGMAS = (3.0, 6.0, 12.0, 24.0)  # the scales of the photo-minus-model colour correction
# the outlier test of the photo's colour against the fitted model's (:func:`skin_consistency`): robust
# z-scores of the smoothed log-ratio photo / model; full trust below OUTLIER_Z[0], none above OUTLIER_Z[1]
OUTLIER_Z = (2.5, 4.5)
OUTLIER_SPREAD_MIN = 0.05  # log-ratio: a spread below 5% is not believed (a photo that matches the model closely)
OUTLIER_SIGMA = 1.5  # texels: the log-ratio is smoothed first, so only occluders larger than a feature count
FEATURE_SIGMA, FEATURE_GAIN = 2.5, 3.0  # the features' region, widened: the test leaves eyes, brows, lips alone


def _scaled_camera(cam: PinholeCamera, factor: float) -> PinholeCamera:
    return PinholeCamera(cam.rotation, cam.translation, cam.focal * factor,
                         (cam.principal[0] * factor, cam.principal[1] * factor),
                         (int(round(cam.hw[0] * factor)), int(round(cam.hw[1] * factor))))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma * sigma))
    k = k / k.sum()
    y = F.conv2d(F.pad(x[None, None], (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))[0, 0]


def _gradient(texture: torch.Tensor) -> torch.Tensor:
    """``(H-1, W-1)`` colour gradient magnitude (L1 over channels, x plus y differences)."""
    gx = (texture[:, :, 1:] - texture[:, :, :-1]).abs().sum(0)[:-1, :]
    gy = (texture[:, 1:, :] - texture[:, :-1, :]).abs().sum(0)[:, :-1]
    return gx + gy


def seam_ratio(texture: torch.Tensor, weight: torch.Tensor) -> float:
    """Mean colour gradient where ``0.05 < weight < 0.95`` over the mean gradient elsewhere (1 = no seam)."""
    g = _gradient(texture)
    w = weight[:-1, :-1]
    band = (w > 0.05) & (w < 0.95)
    if not bool(band.any()):
        return float("nan")
    return float(g[band].mean() / g[~band].mean().clamp_min(1e-8))


def skin_consistency(sampled: torch.Tensor, baked: torch.Tensor, share: torch.Tensor,
                     features: torch.Tensor | None = None) -> torch.Tensor:
    """``(H, W)`` in [0, 1]: how far each texel's photo colour can be trusted as skin.

    A texel seen in the photo is not necessarily skin: a collar, a fringe, a hand or glasses may
    cover it. The fitted model's texture ``baked`` ``(3, H, W)`` (with its light, colour-matched) says
    what skin there should look like; ``sampled`` ``(3, H, W)`` is the photo's colour. The residual is
    the log-ratio photo / model per channel, smoothed (sigma :data:`OUTLIER_SIGMA` texels: features
    narrower than an occluder - brows, eyelids - do not count), minus its median over the texels the
    photo shows (``share`` ``(H, W)`` > 0.5); its length over the channels is divided by the robust
    spread (1.4826 x the median absolute deviation, at least :data:`OUTLIER_SPREAD_MIN`). Z-scores below ``OUTLIER_Z[0]`` keep the photo,
    above ``OUTLIER_Z[1]`` reject it, with a linear ramp between (a soft blend, no hard edge).
    ``features`` ``(H, W)`` in [0, 1]: eyes, brows, lips, where a photo may rightly differ from the
    model's skin (the model places them only roughly): there the test does not apply, and those
    texels do not count towards the median and the spread."""
    if features is None:
        features = torch.zeros_like(share)
    features = (FEATURE_GAIN * _blur(features, FEATURE_SIGMA)).clamp(0, 1)  # the model places them roughly
    known = (share > 0.5) & (features < 0.5)
    if int(known.sum()) < 16:
        return torch.ones_like(share)
    ratio = torch.log(sampled.clamp_min(1e-3)) - torch.log(baked.clamp_min(1e-3))
    w = share.clamp(0, 1)
    mass = _blur(w, OUTLIER_SIGMA).clamp_min(1e-6)
    smooth = torch.stack([_blur(c * w, OUTLIER_SIGMA) for c in ratio]) / mass  # weighted: no bleed from unseen
    centred = smooth - smooth[:, known].median(dim=1).values[:, None, None]
    dist = centred.norm(dim=0)
    spread = (1.4826 * dist[known].median()).clamp_min(OUTLIER_SPREAD_MIN)
    z = dist / spread
    lo, hi = OUTLIER_Z
    return 1 - (1 - ((hi - z) / (hi - lo)).clamp(0, 1)) * (1 - features)


def unwrap_texture(mesh: Mesh, model_texture: torch.Tensor, sh: torch.Tensor, cam: PinholeCamera, crop,
                   photo: torch.Tensor, hw, weld: torch.Tensor | None = None, skin_weight: torch.Tensor | None = None,
                   feature_weight: torch.Tensor | None = None, outliers: bool = False, mirror: bool = False):
    """Photo texels where seen, the model elsewhere. Returns ``texture`` ``(3, H, W)``, the photo's
    share ``(H, W)``, the model's lit texture ``(3, H, W)`` and a dict of numbers (seen fraction, seam).

    ``skin_weight`` ``(V,)`` in [0, 1]: where the photo may show skin at all (the fit's face region,
    without scalp and neck: there photos show hair and collars); ``None`` takes every seen texel.
    ``outliers``: reject seen texels whose colour is far from the fitted model's (:func:`skin_consistency`),
    except on ``feature_weight`` ``(V,)`` (eyes, brows, lips). Off in the fit: on the five real photos
    it moved dlib's distances up by 0.00-0.08 (the texture model's skin is too far from real faces for a
    colour test to tell skin from occluders). ``mirror``: texels the photo does not show take their
    mirror image's detail on the light of the texture made without it (:func:`~avatarme_edu.fitting.symmetry.mirror_fill`)."""
    from avatarme_edu.geometry.raster import interpolate as uv_interpolate
    from avatarme_edu.geometry.raster import rasterize_uv

    for name, wt in (("skin_weight", skin_weight), ("feature_weight", feature_weight)):
        if wt is not None and tuple(wt.shape) != (mesh.vertices.shape[0],):
            raise ValueError(f"{name} must be one weight per vertex, ({mesh.vertices.shape[0]},), got {tuple(wt.shape)}")
    h, w = (int(x) for x in hw)
    frags = rasterize_uv(mesh, (h, w))
    normals_v = vertex_normals(mesh.vertices, mesh.faces, weld)
    pos = uv_interpolate(frags, mesh.vertices, mesh.faces)  # (3, H, W)
    nrm = F.normalize(uv_interpolate(frags, normals_v, mesh.faces), dim=0)
    inside = frags.mask
    pts = pos.reshape(3, -1).T
    # visibility: depth test against a z-buffer at twice the crop's resolution
    big = _scaled_camera(cam, 2.0)
    zbuf_faces = rasterize(mesh.vertices, mesh.faces, big)
    xy_v, z_v = big.project(mesh.vertices)
    _, zbuf = barycentrics(zbuf_faces, xy_v, z_v, mesh.faces)
    xy, z = big.project(pts)
    col = (xy[:, 0]).floor().long().clamp(0, big.hw[1] - 1)
    row = (xy[:, 1]).floor().long().clamp(0, big.hw[0] - 1)
    on_image = (xy[:, 0] >= 0) & (xy[:, 0] < big.hw[1]) & (xy[:, 1] >= 0) & (xy[:, 1] < big.hw[0])
    unoccluded = z <= zbuf[row, col] + DEPTH_TOLERANCE
    facing = (nrm.reshape(3, -1).T * big.view_directions(pts)).sum(-1)
    crop_valid = crop.valid.to(pts.device)[(row // 2).clamp(0, crop.valid.shape[0] - 1),
                                           (col // 2).clamp(0, crop.valid.shape[1] - 1)]
    seen = (on_image & unoccluded & crop_valid & (facing > FACING_MIN)).reshape(h, w) & inside
    # photo colour: sample the photo, pre-reduced to about two photo pixels per texel (no aliasing)
    photo_xy = crop.to_photo(xy / 2.0)
    face_px = crop.scale * crop.valid.shape[0] / 1.9
    factor = max(1, int(face_px / (0.45 * w) / 2))
    small = F.avg_pool2d(photo[None], factor, factor, ceil_mode=True)[0] if factor > 1 else photo
    sh_, sw_ = small.shape[-2:]
    grid = torch.stack([photo_xy[:, 0] / (factor * sw_) * 2 - 1, photo_xy[:, 1] / (factor * sh_) * 2 - 1], -1)
    sampled = F.grid_sample(small[None], grid.view(1, h, w, 2).to(small), mode="bilinear",
                            padding_mode="border", align_corners=False)[0]
    # the model's texture with the fitted light baked in, colour-matched to the photo where seen
    shading = sh_shading(nrm.permute(1, 2, 0), sh).permute(2, 0, 1)
    baked = (model_texture * shading).clamp(0, 1)
    share = seen.float() * ((facing.reshape(h, w) - FACING_MIN) / 0.3).clamp(0, 1)
    if skin_weight is not None:
        share = share * uv_interpolate(frags, skin_weight.to(pos)[:, None], mesh.faces)[0].clamp(0, 1)
    consistency = torch.ones_like(share)
    features = None if feature_weight is None or not outliers else \
        uv_interpolate(frags, feature_weight.to(pos)[:, None], mesh.faces)[0].clamp(0, 1)
    for _ in range(2 if outliers else 1):  # the colour match, then the outlier test against it, then again
        trusted = share * consistency
        if bool((trusted > 0).any()):
            gain = (sampled * trusted).sum((1, 2)) / (baked * trusted).sum((1, 2)).clamp_min(1e-6)
            matched = (baked * gain.clamp(0.5, 2.0)[:, None, None]).clamp(0, 1)
        else:
            matched = baked
        if outliers:
            consistency = skin_consistency(sampled, matched, share, features)
    baked = matched
    share = own_share = share * consistency
    weight = _feather(share)
    if mirror:  # the far side of a turned face: the near side's mirrored detail on the light found without it
        sampled, share = mirror_fill(sampled, share, _pull_onto(baked, sampled, weight))
        weight = _feather(share)
    feather_only = weight * sampled + (1 - weight) * baked
    baked = _pull_onto(baked, sampled, weight)
    texture = weight * sampled + (1 - weight) * baked
    texture = torch.where(inside[None], texture, torch.zeros_like(texture))
    hard = torch.where(seen[None], sampled, baked)
    info = {"seen_fraction": float(seen.float().sum() / inside.float().sum()),
            "photo_fraction": float((own_share > 0.5).float().sum() / inside.float().sum()),
            "mirrored_fraction": float(((share > 0.5) & (own_share <= 0.5)).float().sum() / inside.float().sum()),
            "seam_gradient_ratio": seam_ratio(texture, weight),
            "seam_gradient_ratio_feather_only": seam_ratio(feather_only, weight),
            # the same ratio of the two sources' own gradients mixed by the weight: what a blend that
            # adds no edge of its own measures (the band lies where the face has more detail)
            "seam_gradient_ratio_sources": seam_ratio_sources(sampled, baked, weight),
            "seam_gradient_ratio_unfeathered": seam_ratio(hard, seen.float() * 0.5)}
    return texture, weight, baked, info


def _feather(share: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` blend weight of the photo: its share eroded and blurred by :data:`FEATHER_TEXELS` (scaled
    with the map's width)."""
    r = max(1, round(FEATHER_TEXELS * share.shape[-1] / REFERENCE_WIDTH))
    eroded = -F.max_pool2d(-share[None, None], 2 * r + 1, 1, r)[0, 0]
    return (_blur(eroded, r) * share).clamp(0, 1)


def _pull_onto(model: torch.Tensor, photo: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The model's low frequencies pulled onto the photo's: the difference photo - model where the photo
    is sure (``weight`` > 0.5), spread smoothly over the whole map (a gradient-domain blend's effect,
    without a solve)."""
    return (model + smooth_fill(photo - model, (weight > 0.5).float())).clamp(0, 1)


def seam_ratio_sources(photo_texture: torch.Tensor, model_texture: torch.Tensor, weight: torch.Tensor) -> float:
    """:func:`seam_ratio` of the sources' gradients mixed by ``weight`` (no blend edge): the ratio an
    invisible seam gives on this face, since the band lies where the face has more detail."""
    w = weight[:-1, :-1]
    mixed = w * _gradient(photo_texture) + (1 - w) * _gradient(model_texture)
    band = (w > 0.05) & (w < 0.95)
    if not bool(band.any()):
        return float("nan")
    return float(mixed[band].mean() / mixed[~band].mean().clamp_min(1e-8))


def smooth_fill(values: torch.Tensor, known: torch.Tensor, sigmas=None) -> torch.Tensor:
    """``(C, H, W)`` ``values`` known where ``known`` ``(H, W)`` is 1, spread smoothly everywhere:
    normalised Gaussian convolutions from the widest ``sigma`` (texels) down to the finest, each
    taking over where it has enough known texels nearby. Only the low frequencies survive (the finest
    sigma), so adding the result to the model moves its colour, not its detail, onto the photo's.
    ``sigmas``: default :data:`FILL_SIGMAS` scaled with the map's width."""
    if sigmas is None:
        sigmas = [s * values.shape[-1] / REFERENCE_WIDTH for s in FILL_SIGMAS]
    if not bool(known.any()):
        return torch.zeros_like(values)
    out = None
    for sigma in sorted(sigmas, reverse=True):
        mass = _blur(known, sigma)
        est = torch.stack([_blur(c * known, sigma) for c in values]) / mass.clamp_min(1e-6)
        if out is None:
            out = (values * known).sum((1, 2), keepdim=True) / known.sum() * torch.ones_like(values)
        trust = (mass / 0.3).clamp(0, 1)
        out = trust * est + (1 - trust) * out
    return out


def overlay_rendering(mesh: Mesh, texture: torch.Tensor, cam: PinholeCamera, crop, faces: torch.Tensor,
                      weld: torch.Tensor | None = None, factor: float = 2.0) -> torch.Tensor:
    """The textured mesh (light already in the texture) over the photo crop, ``(3, 2R, 2R)`` linear RGB."""
    big = _scaled_camera(cam, factor)
    bg = F.interpolate(crop.image[None].to(texture), size=big.hw, mode="bilinear", align_corners=False)[0]
    r = render(mesh.vertices, faces, mesh.uvs, texture, uniform_sh(device=texture.device), big,
               background=bg, weld=weld)
    return r.image.clamp(0, 1)


def render_views(mesh: Mesh, texture: torch.Tensor, yaws_deg=(-45.0, 0.0, 45.0), size: int = 256,
                 faces: torch.Tensor | None = None, weld: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The fitted head from new views: ``(3, size, size)`` linear RGB per yaw (degrees, 0 = frontal),
    the texture as lit in the photo (its light is baked in), grey background, the head filling ~80%."""
    from avatarme_edu.fitting.diff_render import FRONT_VIEW, rotation_matrix

    v = mesh.vertices
    centre = (v.amax(0) + v.amin(0)) / 2
    extent = float((v.amax(0) - v.amin(0))[:2].max())
    focal = 4.0 * size
    depth = focal * extent / (0.8 * size)
    out = []
    for yaw in yaws_deg:
        rot = rotation_matrix(torch.tensor([0.0, math.radians(-yaw), 0.0], device=v.device)) @ FRONT_VIEW.to(v)
        cam = PinholeCamera(rot, -rot @ centre + v.new_tensor([0.0, 0.0, depth]), focal, (size / 2, size / 2),
                            (size, size))
        bg = torch.full((3, size, size), 0.18, device=v.device)
        r = render(v, mesh.faces if faces is None else faces, mesh.uvs, texture, uniform_sh(device=v.device), cam,
                   background=bg, weld=weld)
        out.append(r.image.clamp(0, 1).cpu())
    return out


def _srgb_uint8(image: torch.Tensor):
    from avatarme_edu.color import linear_to_srgb

    return (linear_to_srgb(image.clamp(0, 1)) * 255).round().byte().permute(1, 2, 0).cpu().numpy().copy()


def dlib_distance(image_a: torch.Tensor, landmarks_a, image_b: torch.Tensor, landmarks_b=None) -> tuple[float, str]:
    """dlib's own descriptor distance between two linear-RGB images; ``landmarks_b`` is used only when
    dlib finds no face in ``image_b``. Returns the distance and how image b's face was found."""
    import numpy as np

    from avatarme_edu.fitting.dlib_models import import_dlib
    from avatarme_edu.fitting.landmarks import FaceNotFoundError, detect_faces, face_recognition_net

    dlib, net = import_dlib(), face_recognition_net()  # loaded once: the cross-photo table asks many times

    def descriptor(img, lms):
        rgb = _srgb_uint8(img)
        pts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in np.asarray(lms)])
        shape = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), pts)
        return np.array(net.compute_face_descriptor(rgb, shape))

    how = "dlib detection"
    try:  # HOG only: a rendering's face is where the projected landmarks are; the CNN would only cost time
        found = detect_faces(image_b, cnn=False)
    except FaceNotFoundError:
        found = []
    if found:
        lb = found[0].landmarks
    elif landmarks_b is not None:
        lb, how = landmarks_b, "projected model landmarks (dlib found no face in the rendering)"
    else:
        return float("nan"), "no face found"
    return float(np.linalg.norm(descriptor(image_a, landmarks_a) - descriptor(image_b, lb))), how


def make_report(result, face, model) -> dict:
    """Landmark error (photo px), photometric error, dlib identity distances, seam numbers."""
    cam, crop = result.camera, result.crop
    with torch.no_grad():
        verts = result.mesh.vertices.to(cam.rotation.device)
        lm3 = model.landmark_points(verts, cam)
        lm_xy = crop.to_photo(cam.project(lm3)[0].cpu())
        detected = torch.as_tensor(face.landmarks, dtype=torch.float32)
        err = (lm_xy - detected).norm(dim=-1)
        iod = float((detected[36:42].mean(0) - detected[42:48].mean(0)).norm())
        texture = model.tex.decode(result.params.latent)[0]
        r = render(verts, model.faces, model.uvs, texture, result.params.sh, cam,
                   background=crop.image.to(verts.device), weld=model.weld)
        skin = (r.face_index >= 0) & crop.valid.to(verts.device)
        photo_err = (r.image - crop.image.to(verts.device)).abs().mean(0)[skin].mean()
    big = _scaled_camera(cam, 2.0)
    lm_big = (cam.project(lm3)[0] * 2.0).cpu()
    photo_big = F.interpolate(crop.image[None], size=big.hw, mode="bilinear", align_corners=False)[0]
    model_big = F.interpolate(r.image.clamp(0, 1)[None].cpu(), size=big.hw, mode="bilinear", align_corners=False)[0]
    crop_lms = (detected - torch.tensor(crop.origin)) / crop.scale * 2.0
    d_model, how_model = dlib_distance(photo_big, crop_lms, model_big, lm_big)
    d_tex, how_tex = dlib_distance(photo_big, crop_lms, result.overlay, lm_big)
    return {
        "landmark_error_px": round(float(err.mean()), 3),
        "landmark_error_interocular": round(float(err.mean()) / max(iod, 1e-6), 4),
        "photometric_error": round(float(photo_err), 5),
        "photometric_error_note": "mean |rendering - photo| over the rendered face, linear RGB in [0, 1], "
                                  "model texture + SH light",
        "identity_distance_model_rendering": round(d_model, 4),
        "identity_distance_textured_rendering": round(d_tex, 4),
        "identity_found_by": {"model": how_model, "textured": how_tex},
        "same_person_threshold": 0.6,
        **{k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
           for k, v in result.texture_info.items()},
        "face_note": face.note,
        "pose_rotation_deg": [round(math.degrees(float(x)), 2) for x in result.params.rotation],
    }
