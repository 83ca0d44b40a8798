"""The pieces of the fit (:mod:`avatarme_edu.fitting.fit`): the face crop, the starting camera, the
parameters, the losses and the free-form offset's smoothness.

* **Crop.** Everything is optimised on a square crop around the detected face, resampled to
  ``FitConfig.crop_px`` (144 px): the photometric loss needs no more, and the renderer's cost grows
  with the pixel count. Photo pixel ``p = origin + crop_pixel * scale``.
* **Camera.** A pinhole with a fixed focal length (``FOCAL_PER_CROP`` crop widths: a portrait lens,
  ~16 degrees across the crop). The rotation starts frontal and the translation puts the mean head's
  landmarks over the detected ones (distance from their spread).
* **Parameters** (:class:`FitParams`): camera rotation (axis-angle) and translation, EduHead identity
  coefficients (standard deviations) and expression weights, the texture latent, SH light (9 x RGB),
  and a free-form per-vertex offset in mm (Laplacian-smooth, face only) for what the PCA cannot follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from avatarme_edu.fitting.diff_render import FRONT_VIEW, PinholeCamera, rotation_matrix

FOCAL_PER_CROP = 3.5  # focal length in crop widths
CROP_MARGIN = 1.9  # crop side = this x the landmarks' larger extent (room for forehead and chin)


@dataclass
class FitConfig:
    """Iterations, sizes and loss weights of :func:`avatarme_edu.fitting.fit.fit` (defaults: cpu budget)."""

    crop_px: int = 144
    landmark_steps: int = 30  # Levenberg-Marquardt iterations (at most; a third for the camera alone)
    full_steps: int = 60
    raster_every: int = 5  # re-rasterise the visibility buffer every this many steps
    snapshot_every: int = 0  # keep the landmarks (and rendering) every this many steps (0: none)
    identity_every: int = 10  # identity loss every this many steps (dlib's net + gradient: ~1-2 s on 2 cores)
    fit_shape: bool = True  # False: identity and expression stay at the mean head (the evaluation's baseline)
    free_form: bool = False  # the Laplacian-smooth per-vertex offset (face region); measured: no better shape
    learned_landmarks: bool = True  # dlib's points from the learned embedding (landmark_embedding.py)
    jaw_weight: float = 1.0  # extra factor on the 17 jaw points' landmark weights (1: the learned weights alone)
    learned_weights: bool = True  # landmark weights 1 / sigma^2 of dlib's scatter (landmark_embedding.py)
    # unseen texels from their seen mirror image's detail (symmetry.py): on real photos dlib finds the fit
    # rendered in another photo's pose closer to that photo; on held-out renders it costs 0.3-0.4 dB of texture
    # and 0.1-0.3 dB of end-to-end albedo (README, "Symmetric completion")
    mirror_fill: bool = True
    # the photo unwrapped a second time at this many times the profile's texture size (FitResult.texture_detail):
    # the fit's own renderings (overlay, new views, the cross-photo check) show the detail the photo has; the
    # pipeline super-resolves the profile-size texture, as AvatarMe does. 1: no second unwrap
    detail_scale: int = 2
    w_landmark: float = 1.0
    w_photo: float = 4.0
    w_identity: float = 0.3
    # shape priors, measured on held-out synthetic subjects (results/fit.md): weaker ones let dlib's
    # landmark errors bend the shape (expression most: the subjects are neutral, dlib's mouth is not)
    w_identity_coeff: float = 0.2
    w_expression: float = 1.0
    w_latent: float = 2e-3
    w_offset_smooth: float = 2.0
    w_offset: float = 0.02
    lr: dict = field(default_factory=lambda: {"rotation": 0.02, "translation": 0.004, "identity": 0.06,
                                              "expression": 0.03, "latent": 0.1, "sh": 0.05, "offset": 0.1})


@dataclass
class Crop:
    """The square face crop: ``image`` ``(3, R, R)`` linear RGB, ``valid`` ``(R, R)`` inside the photo,
    ``landmarks`` ``(68, 2)`` crop pixels; ``origin`` ``(x, y)`` and ``scale`` map crop to photo pixels."""

    image: torch.Tensor
    valid: torch.Tensor
    landmarks: torch.Tensor
    origin: tuple[float, float]
    scale: float

    def to_photo(self, xy: torch.Tensor) -> torch.Tensor:
        return xy * self.scale + xy.new_tensor(self.origin)


def face_crop(photo: torch.Tensor, landmarks: torch.Tensor, size: int) -> Crop:
    """Crop ``photo`` ``(3, H, W)`` around ``landmarks`` ``(68, 2)`` and resample to ``size`` (area filter)."""
    lo, hi = landmarks.min(0).values, landmarks.max(0).values
    centre = (lo + hi) / 2 - torch.tensor([0.0, 0.08]) * (hi - lo).max()  # a little up: the forehead
    side = int(round(float((hi - lo).max()) * CROP_MARGIN))
    side = max(side, 16)
    x0, y0 = int(round(float(centre[0]) - side / 2)), int(round(float(centre[1]) - side / 2))
    h, w = photo.shape[-2:]
    pad = (max(0, -x0), max(0, x0 + side - w), max(0, -y0), max(0, y0 + side - h))
    padded = F.pad(photo[None], pad)[0]
    ones = F.pad(torch.ones(1, 1, h, w), pad)[0]
    box = (slice(None), slice(y0 + pad[2], y0 + pad[2] + side), slice(x0 + pad[0], x0 + pad[0] + side))
    cut, valid = padded[box], ones[box]
    mode = "area" if side > size else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    image = F.interpolate(cut[None], size=(size, size), mode=mode, **kw)[0]
    valid = F.interpolate(valid[None], size=(size, size), mode=mode, **kw)[0, 0] > 0.99
    scale = side / size
    return Crop(image, valid, (landmarks - torch.tensor([x0, y0], dtype=torch.float32)) / scale,
                (float(x0), float(y0)), scale)


@dataclass
class FitParams:
    """The unknowns (leaf tensors): ``rotation`` (3,) axis-angle applied after the frontal view,
    ``translation`` (3,) m, ``identity`` (K,), ``expression`` (B,), ``latent`` (1, L), ``sh`` (9, 3),
    ``offset`` (n, 3) mm on the n welded face vertices the fit lets move."""

    rotation: torch.Tensor
    translation: torch.Tensor
    identity: torch.Tensor
    expression: torch.Tensor
    latent: torch.Tensor
    sh: torch.Tensor
    offset: torch.Tensor

    def camera(self, focal: float, size: int) -> PinholeCamera:
        return self.camera_from(focal, size, self.rotation, self.translation)

    @staticmethod
    def camera_from(focal: float, size: int, rotation: torch.Tensor, translation: torch.Tensor) -> PinholeCamera:
        """The crop's pinhole camera for ``rotation`` (3,) axis-angle after the frontal view, ``translation`` (3,) m."""
        rot = rotation_matrix(rotation) @ FRONT_VIEW.to(rotation)
        return PinholeCamera(rot, translation, focal, (size / 2, size / 2), (size, size))

    def groups(self, names, lr: dict) -> list[dict]:
        return [{"params": [getattr(self, n)], "lr": lr[n]} for n in names]

    def detached(self) -> "FitParams":
        return FitParams(*(getattr(self, k).detach().clone() for k in self.__dataclass_fields__))


def initial_params(head, texture_model, crop: Crop, focal: float, sh: torch.Tensor, n_offset: int) -> FitParams:
    """Frontal camera whose projection of the mean head's landmarks best overlays the detected ones."""
    dev = head.mean.device
    lms = head.landmarks(head.vertices()).detach()
    cam_pts = lms @ FRONT_VIEW.to(dev).T  # camera axes, before translation
    spread_m = (cam_pts[:, :2] - cam_pts[:, :2].mean(0)).norm(dim=-1).mean()
    target = crop.landmarks.to(dev)
    spread_px = (target - target.mean(0)).norm(dim=-1).mean()
    tz = float(focal * spread_m / spread_px) - float(cam_pts[:, 2].mean())
    z = tz + cam_pts[:, 2].mean()
    centre = crop.image.shape[-1] / 2
    txy = (target.mean(0) - centre) * z / focal - cam_pts[:, :2].mean(0)
    return FitParams(
        rotation=torch.zeros(3, device=dev), translation=torch.stack([txy[0], txy[1], torch.tensor(tz, device=dev)]),
        identity=torch.zeros(head.n_identity, device=dev),
        expression=torch.zeros(head.blendshape_offsets.shape[0], device=dev),
        latent=texture_model.initial_latent(1).to(dev).clone(), sh=sh.to(dev).clone(),
        offset=torch.zeros(n_offset, 3, device=dev))


def landmark_weights(jaw_weight: float, per_point: torch.Tensor | None = None) -> torch.Tensor:
    """``(68,)``: ``per_point`` (default all 1) with the 17 jaw points' multiplied by ``jaw_weight``."""
    wts = torch.ones(68) if per_point is None else per_point.detach().float().cpu().clone()
    wts[:17] *= jaw_weight
    return wts


def landmark_loss(projected: torch.Tensor, target: torch.Tensor, face_size: float,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean squared landmark distance ``(68, 2)`` vs ``(68, 2)``, in units of the face's size
    (scale-free); ``weights`` ``(68,)`` default :func:`landmark_weights` ``(0.1)``."""
    d2 = ((projected - target) ** 2).sum(-1) / face_size ** 2
    wts = (landmark_weights(0.1) if weights is None else weights).to(d2)
    return (wts * d2).sum() / wts.sum()


def photometric_loss(image: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Robust (Charbonnier) colour difference ``(3, H, W)`` vs ``(3, H, W)``, weighted by ``(H, W)``."""
    diff = torch.sqrt(((image - target) ** 2).sum(0) + 1e-6)
    return (weight * diff).sum() / weight.sum().clamp_min(1.0)


def edge_list(faces: torch.Tensor, weld: torch.Tensor) -> torch.Tensor:
    """``(2, E)`` directed edges between welded vertex ids (each undirected edge both ways, once)."""
    f = weld[faces]
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = torch.cat([e, e.flip(1)])
    e = e[e[:, 0] != e[:, 1]]
    return torch.unique(e, dim=0).T


def laplacian(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Uniform graph Laplacian ``x_i - mean_{j ~ i} x_j`` of ``(V, C)`` values over ``edges`` ``(2, E)``."""
    n = values.shape[0]
    total = torch.zeros_like(values).index_add(0, edges[0], values[edges[1]])
    ones = torch.ones(edges.shape[1], device=values.device)
    degree = torch.zeros(n, device=values.device).index_add(0, edges[0], ones)
    has = degree > 0
    mean = total / degree.clamp_min(1)[:, None]
    return torch.where(has[:, None], values - mean, torch.zeros_like(values))


def vertex_weights(head) -> dict[str, torch.Tensor]:
    """Per-vertex ``(V,)`` weights: ``photo`` (skin the photo shows and the texture models: face, not
    hair, ears, neck or mouth interior), ``offset`` (where the free-form offset may act) and
    ``texture`` (where the UV texture may take the photo's colour: the face with its eyes and mouth,
    not the scalp or the neck, which photos show covered by hair and collars) and ``features`` (eyes,
    brows, lips, mouth: where the photo's colour may differ from the texture model's skin)."""
    r = head.vertex_regions()
    face = r["face"].clamp(0, 1)
    not_skin = torch.stack([r[k] for k in ("scalp", "ears", "neck", "mouth_interior", "eyeballs") if k in r]).amax(0)
    photo = (face * (1 - not_skin)).clamp(0, 1)
    covered = torch.stack([r[k] for k in ("scalp", "neck") if k in r]).amax(0)
    features = torch.stack([r[k] for k in ("eyes", "brows", "lips", "mouth_interior", "eyeballs") if k in r]).amax(0)
    return {"photo": photo, "offset": photo, "texture": (face * (1 - covered)).clamp(0, 1),
            "features": features.clamp(0, 1)}
