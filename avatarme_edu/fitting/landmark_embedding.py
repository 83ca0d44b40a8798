"""Which mesh vertex is dlib's landmark *i*? A landmark embedding learned from dlib on training subjects.

EduHead's 68 landmark vertices (:attr:`avatarme_edu.geometry.head.EduHead.landmark_ids`) were placed
on the mesh by hand after the iBUG scheme. dlib's shape predictor has its own idea of where each point
sits (measured on renders of held-out subjects: brows and eyes 5-7 px, nose and mouth ~5 px, at an
inter-ocular distance of ~70 px) and, for the 17 jaw points, it follows the *visible outline* of the
face: when the head turns, the far-side jaw points slide over the cheek to the new silhouette (there,
up to 28 px from the fixed vertices). A fit that pulls fixed vertices onto dlib's points therefore
bends the shape wrong (measured: fitted shape worse than the mean head).

The embedding (as FLAME's dynamic contour landmarks, Li et al. 2017) is learned here: training
subjects (``id % 5 != 4``; held-out identities are refused) are rendered as photos from random poses
(:func:`~avatarme_edu.fitting.synthetic.subject_photo`), dlib marks them (its best box over the
known face, :func:`~avatarme_edu.fitting.landmarks.face_near`: these renders are marginal faces to dlib), and for each landmark the
vertex near the hand-placed one whose projection by the true camera lands closest to dlib's point, on
average, is taken, and how far dlib scatters around it (``sigma``, in eye distances: the fit weighs
each point by ``1 / sigma^2``, :meth:`LandmarkEmbedding.landmark_weights`). The 51 inner points get one vertex; the 17 jaw points one vertex per yaw bin
(:data:`YAW_BINS_DEG`), and a fit blends the two bins around its current yaw (:meth:`points`).

Stored in ``data/eduhead/dlib_landmarks.safetensors`` (ids ``(bins, 68)``, the yaw bins, sigma, and how
it was made); :mod:`~avatarme_edu.fitting.landmark_calibration` learns it
(``python -m avatarme_edu.fitting.landmark_calibration --ids ... --poses N``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch

from avatarme_edu.resources import data_path

EMBEDDING_FILE = ("eduhead", "dlib_landmarks.safetensors")
YAW_BINS_DEG = (-30.0, -15.0, 0.0, 15.0, 30.0)
INNER_RADIUS_M = 0.012  # inner points: candidates within this of the hand-placed vertex (mean head)
JAW_RADIUS_M = 0.035  # jaw points may slide further (over the cheek to the silhouette)


def yaw_deg(rotation: torch.Tensor) -> float:
    """The head's yaw (degrees) seen by a camera of world-to-camera ``rotation`` ``(3, 3)``: the angle of
    the face's forward axis (+z of the canonical head) off the camera's axis, in the camera's x-z plane
    (0 frontal; the sign of :func:`~avatarme_edu.fitting.synthetic.subject_photo`'s yaw)."""
    d = rotation.detach().double() @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64, device=rotation.device)
    return math.degrees(math.atan2(-float(d[0]), -float(d[2])))


@dataclass
class LandmarkEmbedding:
    """``ids`` ``(B, 68)`` vertex ids per yaw bin; ``yaw`` ``(B,)`` the bins' centres (degrees, rising)."""

    ids: torch.Tensor
    yaw: torch.Tensor
    info: dict
    sigma: torch.Tensor | None = None  # (68,) dlib's spread around the learned point, in eye distances

    def landmark_weights(self) -> torch.Tensor:
        """``(68,)`` weights of a maximum-likelihood landmark loss, ``(median sigma / sigma_k)^2``
        clamped to [0.05, 2] (all 1 without ``sigma``): dlib's surer points count more."""
        if self.sigma is None:
            return torch.ones(68)
        return ((self.sigma.median() / self.sigma) ** 2).clamp(0.05, 2.0)

    def weights(self, yaw: float) -> torch.Tensor:
        """``(B,)`` linear interpolation weights of the bins at ``yaw`` degrees (clamped at the ends)."""
        y = self.yaw.double()
        if len(y) == 1:
            return torch.ones(1)
        w = torch.zeros(len(y), dtype=torch.float64)
        yaw = min(max(yaw, float(y[0])), float(y[-1]))
        k = int(torch.searchsorted(y, torch.tensor([yaw], dtype=torch.float64)).clamp(1, len(y) - 1))
        t = (yaw - float(y[k - 1])) / float(y[k] - y[k - 1])
        w[k - 1], w[k] = 1 - t, t
        return w.float()

    def points(self, values: torch.Tensor, yaw: float) -> torch.Tensor:
        """``(68, C)`` landmark values blended from ``values`` ``(V, C)`` (vertices or their pixels)."""
        w = self.weights(yaw).to(values)
        return torch.einsum("b,bkc->kc", w, values[self.ids.to(values.device)])

    def to(self, device) -> "LandmarkEmbedding":
        return LandmarkEmbedding(self.ids.to(device), self.yaw, self.info, self.sigma)


def load_embedding() -> LandmarkEmbedding | None:
    """The committed embedding, or None when it has not been made (the fit then uses EduHead's ids)."""
    from safetensors import safe_open

    path = data_path(*EMBEDDING_FILE)
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        sigma = f.get_tensor("sigma").float() if "sigma" in f.keys() else None
        return LandmarkEmbedding(f.get_tensor("ids").long(), f.get_tensor("yaw_deg").float(),
                                 json.loads(f.metadata().get("info", "{}")), sigma)
