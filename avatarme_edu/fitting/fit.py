"""Stage 1 of AvatarMe: fit EduHead, a texture model and the light to one photo (GANFIT-style).

``fit(photo, profile)`` runs, with a progress bar and a loss history:

1. **detect**: dlib's face and 68 landmarks (:func:`avatarme_edu.fitting.landmarks.detect_face`);
   the photo is cropped around the face (:func:`~avatarme_edu.fitting.fit_stages.face_crop`).
2. **landmarks**: camera (rotation, translation), identity and expression coefficients so that the
   model's 68 landmarks project onto dlib's (weighted least squares + coefficient priors, solved by
   Levenberg-Marquardt). Which mesh
   point is dlib's landmark, and how much each counts, is learned
   (:mod:`~avatarme_edu.fitting.landmark_embedding`: the jaw points slide with the yaw).
3. **full**: everything, with the full objective of GANFIT: landmarks + photometric (the
   differentiable rendering, :mod:`~avatarme_edu.fitting.diff_render`, against the photo) +
   identity (1 - cosine of dlib's face descriptors of rendering and photo, every few steps) +
   regularisers (identity, expression, texture latent, and, when ``FitConfig.free_form`` is on, the
   free-form offset's Laplacian: off by default, measured in ``results/fit.md``).
4. **texture**: the photo is unwrapped into UV through the fitted mesh, on the face region only
   (a texel seen in the photo is not necessarily skin: photos show the scalp under hair and the neck
   under a collar); the other texels come from the texture model, its colour pulled onto the photo's
   and blended with a feathered weight (:mod:`~avatarme_edu.fitting.fit_report`).

Bad input: :func:`avatarme_edu.maps_io.load_photo` refuses unreadable, tiny (< 64 px) and
huge photos and converts grey, RGBA and 16-bit ones (with a warning);
:func:`~avatarme_edu.fitting.landmarks.detect_face` refuses photos without a face and takes the
largest of several (with a warning, and the note lands in the report).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from avatarme_edu.fitting.diff_render import PinholeCamera, rasterize, render, uniform_sh, vertex_normals
from avatarme_edu.fitting.fit_stages import (FOCAL_PER_CROP, Crop, FitConfig, FitParams, edge_list, face_crop,
                                             initial_params, landmark_loss, landmark_weights, laplacian,
                                             photometric_loss, vertex_weights)
from avatarme_edu.fitting.landmark_embedding import LandmarkEmbedding, load_embedding, yaw_deg
from avatarme_edu.fitting.texture_model import TextureModel, default_texture_model
from avatarme_edu.geometry.mesh import Mesh
from avatarme_edu.profiles import Profile

# faces of the canonical head whose centre lies this far behind the ear line are never seen in a
# portrait (|yaw| < 60 degrees): leaving them out halves the rasteriser's work
BACK_OF_HEAD_Z = -0.04


@dataclass
class FitResult:
    """What :func:`fit` returns. ``mesh``: the fitted head (EduHead topology and UVs, metres);
    ``texture`` ``(3, H, W)`` linear RGB at ``profile.texture_hw`` (photo where seen, model elsewhere; what
    the pipeline super-resolves); ``texture_detail`` the same unwrap at ``FitConfig.detail_scale`` times that
    size (None at scale 1), which ``overlay`` and the cross-photo check render;
    ``visibility`` ``(H, W)`` float in [0, 1], the photo's share of each texel; ``model_texture``
    ``(3, H, W)`` the texture model's decode with the fitted light baked in; ``overlay``
    ``(3, h, w)`` linear RGB, the rendering over the photo crop; ``crop``; ``camera`` (crop pixels);
    ``params`` (detached); ``history`` {loss name: list per step}; ``report`` (numbers, see
    :func:`~avatarme_edu.fitting.fit_report.make_report`); ``times`` seconds per stage; ``snapshots``
    (with ``FitConfig.snapshot_every``) the optimisation step by step: dicts of ``stage``, ``step``,
    ``landmarks`` ``(68, 2)`` crop pixels and, in the full stage, ``image`` ``(3, R, R)`` the rendering."""

    mesh: Mesh
    texture: torch.Tensor
    visibility: torch.Tensor
    model_texture: torch.Tensor
    overlay: torch.Tensor
    crop: Crop
    camera: PinholeCamera
    params: FitParams
    history: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    times: dict = field(default_factory=dict)
    texture_info: dict = field(default_factory=dict)
    photo: torch.Tensor | None = field(default=None, repr=False)
    snapshots: list = field(default_factory=list, repr=False)
    texture_detail: torch.Tensor | None = field(default=None, repr=False)

    @property
    def detailed_texture(self) -> torch.Tensor:
        """``texture_detail`` when the fit made one (``FitConfig.detail_scale`` > 1), else ``texture``."""
        return self.texture if self.texture_detail is None else self.texture_detail


_MODELS: dict = {}


class _Model:
    """EduHead + texture model + the fit's precomputed constants (front faces, weights, edges)."""

    def __init__(self, head, texture_model: TextureModel, device, use_embedding: bool = True):
        self.head, self.tex = head, texture_model
        centroid_z = head.canonical[head.faces].mean(1)[:, 2]
        self.faces = head.faces[centroid_z > BACK_OF_HEAD_Z].to(device)
        self.all_faces = head.faces.to(device)
        self.uvs, self.weld = head.uvs.to(device), head.weld.to(device)
        w = vertex_weights(head)
        self.photo_weight = w["photo"].to(device)
        self.texture_weight = w["texture"].to(device)
        # the free-form offset lives on the welded face vertices only (fewer unknowns, cheaper steps)
        first_copy = head.weld == torch.arange(head.n_vertices, device=head.weld.device)
        self.offset_ids = torch.nonzero((w["offset"] > 0.05) & first_copy)[:, 0].to(device)
        self.offset_weight = w["offset"].to(device)[self.offset_ids]
        edges = edge_list(head.faces, head.weld).to(device)
        in_set = torch.zeros(head.n_vertices, dtype=torch.bool, device=device)
        in_set[self.offset_ids] = True
        # Laplacian rows of the offset's vertices (their neighbours outside the set count as 0)
        self.edges = edges[:, in_set[edges[0]]]
        # dlib's 68 points on the mesh: learned per yaw bin (jaw) when the embedding exists, else EduHead's own
        emb = load_embedding() if use_embedding else None
        self.emb = (emb or LandmarkEmbedding(head.landmark_ids.cpu()[None], torch.zeros(1), {})).to(device)
        ids = self.emb.ids  # (B, 68)
        lw = self.weld[ids]
        self.lm_mean = head.mean[lw]  # (B, 68, 3)
        self.lm_components = head.components[:, lw] * head.variances.sqrt()[:, None, None, None]
        self.lm_blend = head.blendshape_offsets[:, ids]

    def landmark_points(self, values: torch.Tensor, cam: PinholeCamera) -> torch.Tensor:
        """``(68, C)``: dlib's landmarks from per-vertex ``values`` ``(V, C)`` at the camera's yaw."""
        return self.emb.points(values, yaw_deg(cam.rotation))

    def full_offset(self, p: FitParams) -> torch.Tensor:
        """``(V, 3)`` metres: the offset (mm, on welded face vertices) spread to every vertex copy."""
        off = torch.zeros(self.weld.shape[0], 3, device=p.offset.device, dtype=p.offset.dtype)
        off = off.index_copy(0, self.offset_ids, self.offset_weight[:, None] * p.offset)
        return off

    def vertices(self, p: FitParams, offset: bool) -> torch.Tensor:
        v = self.head.vertices(p.identity, p.expression)
        if offset:
            v = v + 1e-3 * self.full_offset(p)[self.weld]  # mm -> m; seam copies agree
        return v

    def landmarks(self, p: FitParams, cam: PinholeCamera) -> torch.Tensor:
        """``(68, 3)`` landmark vertices without the offset, from their rows of the model only (fast)."""
        return self.landmarks_from(p.identity, p.expression, cam)

    def landmarks_from(self, identity: torch.Tensor, expression: torch.Tensor, cam: PinholeCamera) -> torch.Tensor:
        per_bin = (self.lm_mean + torch.einsum("k,kbvc->bvc", identity, self.lm_components)
                   + torch.einsum("e,ebvc->bvc", expression, self.lm_blend))
        w = self.emb.weights(yaw_deg(cam.rotation)).to(per_bin)
        return torch.einsum("b,bvc->vc", w, per_bin)

    def offset_smoothness(self, p: FitParams) -> torch.Tensor:
        full = self.full_offset(p)
        return (laplacian(full, self.edges)[self.offset_ids] ** 2).sum(-1).mean()


def _identity_setup(photo: torch.Tensor, landmarks: torch.Tensor, device):
    from avatarme_edu.fitting.face_align import face_chip
    from avatarme_edu.fitting.identity import load_face_net

    net = load_face_net(device=device)
    with torch.no_grad():
        target = net.from_linear(face_chip(photo.to(device), landmarks.to(device)))[0]
    return net, target


def fit(photo, profile: Profile, texture_model: TextureModel | None = None, config: FitConfig | None = None,
        progress: bool = True, head=None, face=None) -> FitResult:
    """Fit the face in ``photo`` (a path, or ``(3, H, W)`` linear RGB in [0, 1]) on ``profile.device``.

    ``face``: a :class:`~avatarme_edu.fitting.landmarks.Face` to fit instead of dlib's detection (the
    synthetic check's oracle: the true landmarks, with ``FitConfig(learned_landmarks=False)``).

    ``texture_model``: default :func:`~avatarme_edu.fitting.texture_model.default_texture_model`
    (the GAN when trained, else PCA). ``config``: iterations and weights (:class:`FitConfig`).
    """
    from avatarme_edu.fitting.fit_report import make_report, overlay_rendering, unwrap_texture
    from avatarme_edu.fitting.landmarks import detect_face
    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.maps_io import load_photo

    config = config or FitConfig()
    device = profile.torch_device
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    if isinstance(photo, (str, Path)):
        photo = load_photo(photo)
    if not torch.is_tensor(photo) or photo.ndim != 3 or photo.shape[0] != 3:
        raise ValueError("photo must be a path or a (3, H, W) linear RGB tensor, "
                         f"got {getattr(photo, 'shape', photo)!r}")
    photo = photo.float().cpu().clamp(0, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        face = face or detect_face(photo)
    for w in caught:  # pass them on, and keep the note for the report
        warnings.warn(w.message, w.category, stacklevel=2)
    head = head or load_eduhead(device=device)
    texture_model = texture_model or default_texture_model(profile)
    if tuple(texture_model.texture_hw) != tuple(profile.texture_hw):
        raise ValueError(f"the texture model makes {tuple(texture_model.texture_hw)} textures but "
                         f"profile.texture_hw is {tuple(profile.texture_hw)}")
    key = (id(head), id(texture_model), str(device), config.learned_landmarks)
    if key not in _MODELS:  # the edge list and region weights take seconds: once per head
        _MODELS.clear()
        _MODELS[key] = _Model(head, texture_model, device, config.learned_landmarks)
    model = _MODELS[key]
    landmarks = torch.as_tensor(face.landmarks, dtype=torch.float32)
    per_point = model.emb.landmark_weights() if (config.learned_weights and config.learned_landmarks) else None
    # without learned weights, EduHead's own points with the jaw at 0.1 (dlib's jaw follows the outline)
    jaw = config.jaw_weight if per_point is not None else 0.1 * config.jaw_weight
    lm_weights = landmark_weights(jaw, per_point).to(device)
    crop = face_crop(photo, landmarks, config.crop_px)
    size, focal = config.crop_px, FOCAL_PER_CROP * config.crop_px
    target_img, target_lm = crop.image.to(device), crop.landmarks.to(device)
    face_size = float((target_lm.max(0).values - target_lm.min(0).values).max())
    params = initial_params(head, texture_model, crop, focal, uniform_sh(device=device), model.offset_ids.numel())
    times["detect"] = time.perf_counter() - t0
    history: dict[str, list] = {"stage": [], "total": [], "landmark": [], "photo": [], "identity": []}
    snapshots: list[dict] = []

    def log(stage, total, lm, ph=float("nan"), ident=float("nan")):
        for k, v in (("stage", stage), ("total", total), ("landmark", lm), ("photo", ph), ("identity", ident)):
            history[k].append(v if isinstance(v, str) else float(v))

    # --- stage 2: landmarks -------------------------------------------------------------------
    t0 = time.perf_counter()
    _landmark_stage(model, params, config, (focal, size), target_lm, face_size, lm_weights, log, snapshots, progress)
    times["landmarks"] = time.perf_counter() - t0

    # --- stage 3: the full objective ----------------------------------------------------------
    t0 = time.perf_counter()
    net, photo_desc = _identity_setup(photo, landmarks, device) if config.w_identity > 0 else (None, None)
    names = ["rotation", "translation", "latent", "sh"]
    names += ["identity", "expression"] if config.fit_shape else []
    names += ["offset"] if config.free_form and config.fit_shape else []
    for n in names:
        getattr(params, n).requires_grad_(True)
    opt = torch.optim.Adam(params.groups(names, config.lr))
    valid = crop.valid.to(device).float()
    with torch.no_grad():  # start the light at the photo's brightness and colour (closed form, per channel)
        cam = params.camera(focal, size)
        verts = model.vertices(params, False)
        face_index = rasterize(verts, model.faces, cam)
        r = render(verts, model.faces, model.uvs, texture_model.decode(params.latent)[0], params.sh, cam,
                   face_index=face_index, weld=model.weld, aa=False)
        skin = (_pixel_weight(model, r, face_index >= 0) * valid * (face_index >= 0)) > 0.5
        if bool(skin.any()):
            gain = target_img[:, skin].mean(1) / r.image[:, skin].mean(1).clamp_min(1e-4)
            params.sh.mul_(gain.clamp(0.2, 5.0)[None])
    face_index = None
    bar = tqdm(range(config.full_steps), desc="fit: full", disable=not progress, leave=False)
    for step in bar:
        cam = params.camera(focal, size)
        verts = model.vertices(params, config.free_form and config.fit_shape)
        if face_index is None or step % config.raster_every == 0:
            # visibility and normals change slowly: refresh them every few steps (no gradient)
            face_index = rasterize(verts, model.faces, cam)
            normals = vertex_normals(verts.detach(), model.faces, model.weld)
        texture = texture_model.decode(params.latent)[0]
        r = render(verts, model.faces, model.uvs, texture, params.sh, cam, background=target_img,
                   face_index=face_index, weld=model.weld, normals=normals)
        hit = face_index >= 0
        px_weight = _pixel_weight(model, r, hit) * valid
        ph = photometric_loss(r.image, target_img, px_weight)
        lm_xy = model.landmark_points(r.xy, cam)
        lm_loss = landmark_loss(lm_xy, target_lm, face_size, lm_weights)
        loss = config.w_photo * ph + config.w_landmark * 1e3 * lm_loss
        ident = float("nan")
        if net is not None and step % config.identity_every == 0:
            from avatarme_edu.fitting.face_align import face_chip
            from avatarme_edu.fitting.identity import identity_loss

            id_loss = identity_loss(net, face_chip(r.image.clamp(0, 1), lm_xy), photo_desc)
            loss = loss + config.w_identity * id_loss
            ident = id_loss.item()
        loss = loss + config.w_identity_coeff * (params.identity ** 2).sum() \
            + config.w_expression * (params.expression ** 2).sum() \
            + config.w_latent * texture_model.latent_prior(params.latent)
        if config.free_form and config.fit_shape:
            loss = loss + config.w_offset_smooth * model.offset_smoothness(params) \
                + config.w_offset * (params.offset ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            params.expression.clamp_(-0.2, 1.0)
        log("full", loss.item(), lm_loss.item(), ph.item(), ident)
        if config.snapshot_every and (step % config.snapshot_every == 0 or step == config.full_steps - 1):
            snapshots.append({"stage": "full", "step": step, "landmarks": lm_xy.detach().cpu(),
                              "image": r.image.detach().clamp(0, 1).cpu()})
        bar.set_postfix(photo=f"{ph.item():.4f}", landmark_px=f"{lm_loss.item() ** 0.5 * face_size:.2f}")
    times["full"] = time.perf_counter() - t0

    # --- stage 4: texture, rendering, report --------------------------------------------------
    t0 = time.perf_counter()
    final = params.detached()
    with torch.no_grad():
        verts = model.vertices(final, config.free_form)
        cam = final.camera(focal, size)
        mesh = Mesh(verts, model.all_faces, model.uvs)
        model_tex = texture_model.decode(final.latent)[0]
        texture, visibility, baked, tex_info = unwrap_texture(mesh, model_tex, final.sh, cam, crop, photo.to(device),
                                                   profile.texture_hw, model.weld, model.texture_weight,
                                                   mirror=config.mirror_fill)
        detail = None
        if config.detail_scale > 1:  # the photo holds more than the profile's texture: for the fit's renderings
            hw = tuple(config.detail_scale * int(x) for x in profile.texture_hw)
            big_model = torch.nn.functional.interpolate(model_tex[None], size=hw, mode="bilinear",
                                                        align_corners=False)[0]
            detail = unwrap_texture(mesh, big_model, final.sh, cam, crop, photo.to(device), hw, model.weld,
                                    model.texture_weight, mirror=config.mirror_fill)[0]
        overlay = overlay_rendering(mesh, texture if detail is None else detail, cam, crop, model.faces, model.weld)
    times["texture"] = time.perf_counter() - t0
    result = FitResult(mesh=Mesh(verts.cpu(), model.all_faces.cpu(), model.uvs.cpu()), texture=texture.cpu(),
                       texture_detail=None if detail is None else detail.cpu(),
                       visibility=visibility.cpu(), model_texture=baked.cpu(), overlay=overlay.cpu(), crop=crop,
                       camera=cam.detached(), params=final, history=history, times=times, photo=photo,
                       texture_info=tex_info, snapshots=snapshots)
    t0 = time.perf_counter()
    result.report = make_report(result, face, model)
    times["report"] = time.perf_counter() - t0
    result.report["time_s"] = {k: round(v, 2) for k, v in times.items()}
    return result


def _landmark_stage(model, params, config, camera_size, target_lm, face_size, lm_weights, log, snapshots, progress):
    """Stage 2 by Levenberg-Marquardt, as classic 3DMM fitters do: the landmark loss is a sum of
    squares over 68 points, so its Jacobian (136 rows, a few dozen unknowns) gives Newton-like steps.
    Plain gradient steps crawl here: the shape moves the landmarks by a pixel or two where the pose
    moves them by tens, and only the curvature tells the two apart. First the camera alone
    (``landmark_steps // 3`` iterations at most), then camera, identity and expression (the camera alone
    throughout when ``config.fit_shape`` is off). Updates ``params``."""
    focal, size = camera_size
    lm_scale = (config.w_landmark * 1e3 / lm_weights.sum()) ** 0.5 / face_size
    point_w = lm_weights.sqrt()[:, None]

    def residuals(p: dict, shape_on: bool):
        """The stacked residuals ``(R,)`` and the projected landmarks ``(68, 2)`` for the unknowns ``p``."""
        cam = params.camera_from(focal, size, p["rotation"], p["translation"])
        ident, expr = p.get("identity", params.identity), p.get("expression", params.expression)
        xy = cam.project(model.landmarks_from(ident, expr, cam))[0]
        r = [(lm_scale * point_w * (xy - target_lm)).reshape(-1)]
        if shape_on:  # the priors as residuals: the sum of squares is the stage's loss (landmarks x 1e3 + priors)
            r += [config.w_identity_coeff ** 0.5 * ident, config.w_expression ** 0.5 * expr]
        return torch.cat(r), xy

    budget = config.landmark_steps
    camera = ("rotation", "translation")
    phases = [(camera, budget // 3), (camera + ("identity", "expression"), budget - budget // 3)] \
        if config.fit_shape else [(camera, budget)]
    bar = tqdm(total=budget, desc="fit: landmarks", disable=not progress, leave=False)
    iteration = 0
    for names, n_iter in phases:
        shape_on = "identity" in names
        sizes = [getattr(params, n).numel() for n in names]

        def unpack(x):
            return dict(zip(names, torch.split(x, sizes)))

        def res_of(x):
            return residuals(unpack(x), shape_on)[0]

        x = torch.cat([getattr(params, n).detach().reshape(-1) for n in names])
        damping = 1e-3
        r, xy = residuals(unpack(x), shape_on)
        for _ in range(n_iter):
            # forward mode, vectorised: one pass for a few dozen unknowns (the first call in a process
            # costs about a second to set up)
            jac = torch.func.jacfwd(res_of)(x)
            jtj, jtr = jac.T @ jac, jac.T @ r
            while True:  # raise the damping until the step lowers the loss
                trial = x + torch.linalg.solve(jtj + damping * torch.diag(jtj.diagonal().clamp_min(1e-9)), -jtr)
                if shape_on:
                    trial[-sizes[-1]:].clamp_(-0.2, 1.0)  # the expression weights, as the full stage keeps them
                r_trial, xy_trial = residuals(unpack(trial), shape_on)
                if r_trial.square().sum() <= r.square().sum() or damping > 1e8:
                    break
                damping *= 10
            better = bool(r_trial.square().sum() <= r.square().sum())
            converged = bool(r.square().sum() - r_trial.square().sum() < 1e-7 * r.square().sum())
            if better:
                x, r, xy, damping = trial, r_trial, xy_trial, max(damping / 10, 1e-7)
            lm_part = r[:target_lm.numel()].square().sum() / (config.w_landmark * 1e3)  # = landmark_loss
            log("landmarks", float(r.square().sum()), float(lm_part))
            if config.snapshot_every:  # every iteration: there are few, and each is a visible jump
                snapshots.append({"stage": "landmarks", "step": iteration, "landmarks": xy.detach().cpu()})
            iteration += 1
            bar.update(1)
            bar.set_postfix(landmark_px=f"{float(lm_part) ** 0.5 * face_size:.2f}")
            if not better or converged:
                break
        with torch.no_grad():
            for n, v in unpack(x).items():
                getattr(params, n).copy_(v.reshape(getattr(params, n).shape))
    bar.total = bar.n  # converged early: the bar ends full
    bar.refresh()
    bar.close()


def _pixel_weight(model: _Model, r, hit: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` photometric weight: skin pixels of the rendering, and the background just around
    the silhouette (there the anti-aliased outline meets the photo: that gives the outline a gradient)."""
    from avatarme_edu.fitting.diff_render import interpolate

    skin = interpolate(r.uv.new_zeros(*r.face_index.shape, 3).fill_(1 / 3), r.face_index,
                       model.photo_weight[:, None].detach(), model.faces)[0]
    near = torch.nn.functional.max_pool2d(hit[None, None].float(), 3, 1, 1)[0, 0] > 0
    return torch.where(hit, skin, near.float()).detach()
