"""The light stage rig: a sphere of polarised LED lights around the head, and a frontal arc of cameras.

AvatarMe's data came from a polarised LED sphere with 168 lights and 9 DSLR cameras (after Ma et al.
2007 and Ghosh et al. 2011). This module describes such a rig as plain data; :mod:`~avatarme_edu.lightstage.capture` renders
a subject inside it.

Layout decisions (all in object space: metres, +Y up, the face looks towards +Z, head centre at 0):

* **Lights** sit on a sphere of ``radius`` metres (1 m: a 2 m stage, as in the USC light stages).
  They are spread evenly with a *Fibonacci spiral*: equal steps in height ``y`` and golden-angle
  steps in azimuth, which gives every light the same share of the covered area, so each light's
  **solid angle** (seen from the centre) is ``covered area / n_lights`` steradians.
* **The floor**: real stages have no lights under the subject's feet/chair. Lights exist only above
  ``floor_elevation_deg`` (default -60 deg, i.e. a missing cap of 30 deg around straight down, about
  7 % of the sphere). Use ``-90`` for a complete sphere.
* **Two polarisation banks**: at every light position there are two LEDs a few centimetres apart,
  one behind a polariser *crossed* with the cameras' polarisers (the camera then sees only the
  depolarised, i.e. diffuse, light) and one *parallel* to them (diffuse + specular). The capture
  treats both LEDs as sitting at the light's centre (``led_spacing`` only matters for drawings:
  3 cm at 1 m is under 2 degrees).
* **Cameras**: ``n_cameras`` on a frontal arc at ``camera_distance`` metres (outside the light
  sphere, looking through gaps), all aimed at the head centre. Azimuths (0 = straight in front,
  positive towards +X) are evenly spaced over -60..+60 deg; elevations alternate +15 / -15 deg so
  that both the forehead and the underside of nose and chin are seen (for 9 cameras: a row of 5
  above and a row of 4 below eye level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from avatarme_edu.geometry.sphere_points import fibonacci_directions

BANKS = ("cross", "parallel")  # the two polarisation banks, in this order everywhere
HEAD_RADIUS = 0.1  # metres; only for drawings


@dataclass(frozen=True)
class LightStage:
    """A polarised LED sphere with cameras. Tensors are float32 on one device (CPU by default).

    * ``light_directions``  ``(L, 3)`` unit vectors from the head centre towards each light;
    * ``light_solid_angles`` ``(L,)`` steradians each light covers, seen from the centre;
    * ``radius``            metres from the centre to the lights;
    * ``camera_positions``  ``(C, 3)`` metres; every camera looks at the centre (the origin);
    * ``floor_elevation_deg`` lowest light elevation; below it is the floor (no lights);
    * ``led_spacing``       metres between the cross- and parallel-polarised LED of one light.
    """

    light_directions: torch.Tensor
    light_solid_angles: torch.Tensor
    radius: float
    camera_positions: torch.Tensor
    floor_elevation_deg: float = -60.0
    led_spacing: float = 0.03

    def __post_init__(self):
        d, omega, cams = self.light_directions, self.light_solid_angles, self.camera_positions
        if d.ndim != 2 or d.shape[1] != 3:
            raise ValueError(f"light_directions must be (L, 3), got {tuple(d.shape)}")
        if omega.shape != (d.shape[0],):
            raise ValueError(f"light_solid_angles must be ({d.shape[0]},), got {tuple(omega.shape)}")
        if cams.ndim != 2 or cams.shape[1] != 3 or cams.shape[0] < 1:
            raise ValueError(f"camera_positions must be (C, 3) with C >= 1, got {tuple(cams.shape)}")
        if not self.radius > 0:
            raise ValueError(f"radius must be > 0 metres, got {self.radius}")

    @property
    def n_lights(self) -> int:
        return int(self.light_directions.shape[0])

    @property
    def n_cameras(self) -> int:
        return int(self.camera_positions.shape[0])

    @property
    def light_positions(self) -> torch.Tensor:
        """``(L, 3)`` metres: the light centres."""
        return self.light_directions * self.radius

    @property
    def camera_forward(self) -> torch.Tensor:
        """``(C, 3)`` unit viewing directions, from each camera towards the head centre."""
        return torch.nn.functional.normalize(-self.camera_positions, dim=-1)

    @property
    def device(self) -> torch.device:
        return self.light_directions.device

    def led_positions(self, bank: str) -> torch.Tensor:
        """``(L, 3)`` metres: where the ``bank`` ("cross" or "parallel") LED of every light sits.

        The two LEDs are offset by +-``led_spacing``/2 along the light's local "east" direction.
        """
        if bank not in BANKS:
            raise ValueError(f"unknown bank {bank!r}; valid banks are {BANKS}")
        d = self.light_directions
        up = torch.tensor([0.0, 1.0, 0.0], dtype=d.dtype, device=d.device).expand_as(d)
        east = torch.linalg.cross(up, d, dim=-1)
        # at the zenith "east" is undefined; any horizontal direction will do there
        east = torch.where(east.norm(dim=-1, keepdim=True) < 1e-6, torch.tensor([1.0, 0.0, 0.0],
                           dtype=d.dtype, device=d.device).expand_as(d), east)
        east = torch.nn.functional.normalize(east, dim=-1)
        sign = -0.5 if bank == "cross" else 0.5
        return self.light_positions + sign * self.led_spacing * east

    def to(self, device) -> "LightStage":
        return replace(self, light_directions=self.light_directions.to(device),
                       light_solid_angles=self.light_solid_angles.to(device),
                       camera_positions=self.camera_positions.to(device))


def camera_arc(n_cameras: int = 9, distance: float = 1.7, azimuth_range_deg: float = 60.0,
               elevation_deg: float = 15.0) -> torch.Tensor:
    """``(C, 3)`` camera positions on a frontal arc; see the module docstring for the layout."""
    if n_cameras < 1:
        raise ValueError(f"n_cameras must be >= 1, got {n_cameras}")
    if not distance > 0:
        raise ValueError(f"camera distance must be > 0 metres, got {distance}")
    if n_cameras == 1:
        az = torch.zeros(1, dtype=torch.float64)
        el = torch.zeros(1, dtype=torch.float64)
    else:
        az = torch.linspace(-azimuth_range_deg, azimuth_range_deg, n_cameras, dtype=torch.float64)
        el = torch.tensor([elevation_deg if k % 2 == 0 else -elevation_deg for k in range(n_cameras)],
                          dtype=torch.float64)
    az, el = torch.deg2rad(az), torch.deg2rad(el)
    pos = torch.stack([torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], -1)
    return (pos * distance).float()


def make_light_stage(n_lights: int = 168, n_cameras: int = 9, radius: float = 1.0,
                     camera_distance: float = 1.7, floor_elevation_deg: float = -60.0,
                     camera_azimuth_range_deg: float = 60.0, camera_elevation_deg: float = 15.0,
                     device: str | torch.device = "cpu") -> LightStage:
    """The default rig: 168 lights above a floor at -60 deg, 9 cameras at 1.7 m on a -60..+60 deg arc.

    >>> stage = make_light_stage()
    >>> stage.n_lights, stage.n_cameras
    (168, 9)
    """
    if n_lights < 8:
        raise ValueError(f"n_lights must be >= 8 to form gradients over the sphere, got {n_lights}")
    if not -90.0 <= floor_elevation_deg <= 0.0:
        raise ValueError(f"floor_elevation_deg must be in [-90, 0] degrees, got {floor_elevation_deg}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0 metres, got {radius}")
    directions = fibonacci_directions(n_lights, floor_elevation_deg)
    covered = 2.0 * math.pi * (1.0 - math.sin(math.radians(floor_elevation_deg)))  # steradians
    solid_angles = torch.full((n_lights,), covered / n_lights, dtype=torch.float32)
    cameras = camera_arc(n_cameras, camera_distance, camera_azimuth_range_deg, camera_elevation_deg)
    return LightStage(directions, solid_angles, float(radius), cameras,
                      float(floor_elevation_deg)).to(device)
