"""A pinhole camera: where a world point lands in an image, and how far away it is.

Conventions:

* World space is the mesh's (metres, +Y up, the face looks towards +Z; see :mod:`.mesh`).
* Camera space follows the computer-vision convention: x right, y *down*, z forward into the
  scene. Then the depth of a point is simply its camera-space z, and pixel rows grow with y,
  like image rows and like the UV maps' v.
* Pixel coordinates are continuous ``(x, y)``: x to the right, y down, the centre of pixel
  ``(row, col)`` at ``(col + 0.5, row + 0.5)``. The principal point defaults to the image centre
  ``(W / 2, H / 2)``.

Projection of a camera-space point ``(X, Y, Z)``: ``x = focal * X / Z + cx``, ``y = focal * Y / Z + cy``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from avatarme_edu.imaging import check_hw


@dataclass
class Camera:
    """A pinhole camera with square pixels.

    ``world_to_camera`` is a ``(4, 4)`` rigid transform (rotation rows: right, down, forward),
    ``focal`` the focal length in pixels, ``hw`` the image size ``(H, W)``.
    """

    world_to_camera: torch.Tensor  # (4, 4) float32
    focal: float  # pixels
    hw: tuple[int, int]  # (H, W)
    principal: tuple[float, float] | None = None  # (x, y) pixels; None = image centre

    def __post_init__(self):
        if tuple(self.world_to_camera.shape) != (4, 4):
            raise ValueError(f"world_to_camera must be (4, 4), got {tuple(self.world_to_camera.shape)}")
        if not (self.focal > 0 and math.isfinite(self.focal)):
            raise ValueError(f"focal must be a positive number of pixels, got {self.focal}")
        self.hw = check_hw(self.hw)
        self.focal = float(self.focal)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def look_at(eye, target, up=(0.0, 1.0, 0.0), fov_deg: float = 20.0, hw=(512, 512),
                device=None) -> "Camera":
        """A camera at ``eye`` looking at ``target``, with ``up`` pointing up in the image.

        ``fov_deg`` is the *vertical* field of view in degrees, in (0, 180). A narrow field of view
        (the default 20 degrees, like a portrait lens) keeps the face free of wide-angle distortion.
        """
        if not 0.0 < fov_deg < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180) degrees, got {fov_deg}")
        hw = check_hw(hw)
        if device is None:
            device = eye.device if torch.is_tensor(eye) else "cpu"
        eye, target, up = (torch.as_tensor(x, dtype=torch.float32, device=device).reshape(3)
                           for x in (eye, target, up))
        forward = target - eye
        if forward.norm() < 1e-12:
            raise ValueError("look_at needs eye and target at different positions")
        forward = forward / forward.norm()
        right = torch.linalg.cross(forward, up)
        if right.norm() < 1e-6 * up.norm().clamp_min(1e-12):
            raise ValueError("look_at: 'up' must not be parallel to the viewing direction (target - eye)")
        right = right / right.norm()
        down = torch.linalg.cross(forward, right)  # y down in camera space, like image rows
        rotation = torch.stack([right, down, forward])
        world_to_camera = torch.eye(4, dtype=torch.float32, device=device)
        world_to_camera[:3, :3] = rotation
        world_to_camera[:3, 3] = -rotation @ eye
        focal = (hw[0] / 2) / math.tan(math.radians(fov_deg) / 2)
        return Camera(world_to_camera, focal, hw)

    def to(self, device) -> "Camera":
        return Camera(self.world_to_camera.to(device), self.focal, self.hw, self.principal)

    # ------------------------------------------------------------------ properties
    @property
    def rotation(self) -> torch.Tensor:
        """``(3, 3)`` world-to-camera rotation; rows are the camera's right, down and forward axes."""
        return self.world_to_camera[:3, :3]

    @property
    def translation(self) -> torch.Tensor:
        return self.world_to_camera[:3, 3]

    @property
    def position(self) -> torch.Tensor:
        """``(3,)`` camera centre in world space: the point that maps to the camera origin."""
        return -self.rotation.transpose(0, 1) @ self.translation

    @property
    def forward(self) -> torch.Tensor:
        """``(3,)`` unit viewing direction in world space."""
        return self.rotation[2]

    @property
    def principal_point(self) -> tuple[float, float]:
        """``(cx, cy)`` in pixels."""
        if self.principal is not None:
            return (float(self.principal[0]), float(self.principal[1]))
        return (self.hw[1] / 2.0, self.hw[0] / 2.0)

    @property
    def fov_deg(self) -> float:
        """Vertical field of view in degrees."""
        return math.degrees(2 * math.atan((self.hw[0] / 2) / self.focal))

    # ------------------------------------------------------------------ geometry
    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """``(N, 3)`` world points -> ``(N, 3)`` camera-space points (x right, y down, z forward)."""
        _check_points(points)
        m = self.world_to_camera.to(device=points.device, dtype=points.dtype)
        return points @ m[:3, :3].transpose(0, 1) + m[:3, 3]

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 3)`` world points -> ``(N, 2)`` pixel coordinates ``(x, y)`` and ``(N,)`` depth.

        Depth is camera-space z in metres, positive in front of the camera. Points behind the
        camera (depth <= 0) get meaningless pixel coordinates; callers must check the depth.
        Differentiable with respect to ``points``.
        """
        cam = self.to_camera(points)
        depth = cam[:, 2]
        # Guard the division only: a point at depth 0 has no image; callers test depth > 0.
        safe = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
        cx, cy = self.principal_point
        x = self.focal * cam[:, 0] / safe + cx
        y = self.focal * cam[:, 1] / safe + cy
        return torch.stack([x, y], dim=-1), depth

    def view_directions(self, points: torch.Tensor) -> torch.Tensor:
        """``(N, 3)`` unit vectors from each world point towards the camera centre (the V of shading)."""
        _check_points(points)
        eye = self.position.to(device=points.device, dtype=points.dtype)
        return torch.nn.functional.normalize(eye - points, dim=-1)


def _check_points(points: torch.Tensor) -> None:
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {tuple(points.shape)}")
