"""The four reflectance maps AvatarMe produces, in one small container.

All maps share the subject's UV layout (docs/design.md section 2) and live on one device:

* ``diffuse_albedo``   A_D ``(3, H, W)`` float32, linear RGB in [0, 1];
* ``specular_albedo``  A_S ``(1, H, W)`` float32 in [0, 1]; skin's specular reflection is a dielectric
  (Fresnel) reflection and therefore colourless, so one channel carries it;
* ``diffuse_normals``  N_D ``(3, H, W)`` unit vectors in **object space** (smooth, subsurface-blurred);
* ``specular_normals`` N_S ``(3, H, W)`` unit vectors in **tangent space** of the shape's smoothed base
  frame (see :mod:`avatarme_edu.geometry.uv_bake`), +Z out of the surface, with pore-level detail;
* ``mask``             ``(H, W)`` bool, texels that belong to the surface.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

MAP_NAMES = ("diffuse_albedo", "specular_albedo", "diffuse_normals", "specular_normals")
MAP_CHANNELS = {"diffuse_albedo": 3, "specular_albedo": 1, "diffuse_normals": 3, "specular_normals": 3}
MAP_KINDS = {"diffuse_albedo": "color", "specular_albedo": "gray", "diffuse_normals": "normal",
             "specular_normals": "normal"}


@dataclass
class ReflectanceMaps:
    diffuse_albedo: torch.Tensor
    specular_albedo: torch.Tensor
    diffuse_normals: torch.Tensor
    specular_normals: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self):
        hw = tuple(self.mask.shape)
        for name in MAP_NAMES:
            m = getattr(self, name)
            if m.ndim != 3 or m.shape[0] != MAP_CHANNELS[name] or tuple(m.shape[1:]) != hw:
                raise ValueError(f"{name} must be ({MAP_CHANNELS[name]}, {hw[0]}, {hw[1]}), got {tuple(m.shape)}")

    @property
    def hw(self) -> tuple[int, int]:
        return tuple(self.mask.shape)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to(self, device) -> "ReflectanceMaps":
        return ReflectanceMaps(**{k: v.to(device) for k, v in self.as_dict().items()})
