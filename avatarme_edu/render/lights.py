"""Lights for the renderer: directional and point lights, and an order-2 spherical-harmonics environment.

Conventions (used by :mod:`avatarme_edu.render.shading` and tested there):

* World space is the mesh's object space: metres, +Y up, the face looks towards +Z.
* ``direction`` of a :class:`DirectionalLight` points FROM the surface TOWARDS the light, so
  ``DirectionalLight((0, 0, 1))`` lights the face from the front (from where a front camera stands).
* ``color`` is a linear-RGB tint (it is not normalised) and ``intensity`` a scalar, and together they are
  scaled so that **a white Lambertian surface facing the light shows radiance ``intensity * color``**.
  Physically, the light delivers irradiance ``E = pi * intensity * color`` on a surface facing it, and a
  Lambertian surface of albedo ``rho`` reflects radiance ``rho / pi * E = rho * intensity * color``.
  So with ``intensity = 1`` a white surface facing the light is exactly 1.0 (display white): convenient
  for teaching, and still physically consistent (the same ``pi`` appears in the specular lobes).
* :class:`PointLight` uses the same scale at 1 m and falls off with the inverse square of the distance:
  ``E = pi * intensity * color / d**2`` (``d`` in metres).
* :class:`SHEnvironment` holds the **radiance** ``L(w)`` of the distant surroundings as 9 real
  spherical-harmonic coefficients per colour channel. A uniform environment of radiance 1 makes a white
  Lambertian surface radiance 1 too (the "white furnace"), so its scale matches the lights above.
  Irradiance uses the Ramamoorthi & Hanrahan (2001) convolution: ``E(n) = sum_lm A_l L_lm Y_lm(n)`` with
  ``A_0 = pi, A_1 = 2 pi / 3, A_2 = pi / 4`` - order 2 already captures ~99% of the irradiance of any
  environment, because the clamped cosine is so smooth.

Presets (:func:`studio`, :func:`outdoor_sun`, :func:`indoor_warm`) return plain lists of lights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from avatarme_edu.geometry.sphere_points import fibonacci_directions

# Order-2 spherical-harmonic band of each of the 9 coefficients (l = 0, 1, 1, 1, 2, 2, 2, 2, 2).
SH_BANDS = (0, 1, 1, 1, 2, 2, 2, 2, 2)
# Ramamoorthi & Hanrahan's clamped-cosine convolution constants A_l for bands 0, 1, 2.
SH_COSINE_LOBE = (math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0)


def _vec3(value, name: str) -> tuple[float, float, float]:
    t = torch.as_tensor(value, dtype=torch.float64).flatten()
    if t.numel() != 3 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be 3 finite numbers, got {value!r}")
    return (float(t[0]), float(t[1]), float(t[2]))


def _unit3(value, name: str) -> tuple[float, float, float]:
    x, y, z = _vec3(value, name)
    n = math.sqrt(x * x + y * y + z * z)
    if n < 1e-12:
        raise ValueError(f"{name} must be a non-zero vector, got {value!r}")
    return (x / n, y / n, z / n)


def _color(value) -> tuple[float, float, float]:
    c = _vec3(value, "color")
    if min(c) < 0:
        raise ValueError(f"color must be linear RGB >= 0, got {value!r}")
    return c


def _intensity(value) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"intensity must be a finite number >= 0, got {value!r}")
    return v


def direction_from_angles(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    """Unit direction for an azimuth around +Y (0 = front +Z, 90 = the subject's left, +X) and an
    elevation above the horizontal plane (90 = straight above)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az))


def rotation_y(degrees: float) -> torch.Tensor:
    """``(3, 3)`` float32 rotation about +Y by ``degrees`` (right-handed: +Z turns towards +X)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float32)


@dataclass(frozen=True)
class DirectionalLight:
    """A distant light (the sun, a far softbox). ``direction`` points from the surface to the light."""

    direction: tuple[float, float, float] = (0.0, 0.0, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "direction", _unit3(self.direction, "direction"))
        object.__setattr__(self, "color", _color(self.color))
        object.__setattr__(self, "intensity", _intensity(self.intensity))

    def rotated(self, rotation: torch.Tensor, center=(0.0, 0.0, 0.0)) -> "DirectionalLight":
        """The light turned by a ``(3, 3)`` rotation (``center`` is irrelevant for a distant light)."""
        d = torch.as_tensor(rotation, dtype=torch.float64) @ torch.tensor(self.direction, dtype=torch.float64)
        return DirectionalLight(tuple(d.tolist()), self.color, self.intensity)


@dataclass(frozen=True)
class PointLight:
    """A small lamp at ``position`` (metres), inverse-square falloff: ``E = pi * intensity * color / d**2``."""

    position: tuple[float, float, float] = (0.0, 0.0, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "position", _vec3(self.position, "position"))
        object.__setattr__(self, "color", _color(self.color))
        object.__setattr__(self, "intensity", _intensity(self.intensity))

    def rotated(self, rotation: torch.Tensor, center=(0.0, 0.0, 0.0)) -> "PointLight":
        """The lamp moved by a ``(3, 3)`` rotation about ``center`` (e.g. the head's centre)."""
        c = torch.tensor(_vec3(center, "center"), dtype=torch.float64)
        p = torch.as_tensor(rotation, dtype=torch.float64) @ (torch.tensor(self.position, dtype=torch.float64) - c) + c
        return PointLight(tuple(p.tolist()), self.color, self.intensity)


def sh_basis(directions: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to order 2 at unit ``directions`` ``(..., 3)`` -> ``(..., 9)``.

    Order: Y_00, Y_1-1 (y), Y_10 (z), Y_11 (x), Y_2-2 (xy), Y_2-1 (yz), Y_20 (3z^2-1), Y_21 (xz),
    Y_22 (x^2-y^2), with the usual orthonormal constants (the basis is complete for order 2, so which
    axis is called "z" does not matter as long as one convention is used throughout).
    """
    x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
    return torch.stack([
        torch.full_like(x, 0.282095),
        0.488603 * y, 0.488603 * z, 0.488603 * x,
        1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z,
        0.546274 * (x * x - y * y),
    ], dim=-1)


@dataclass(frozen=True)
class SHEnvironment:
    """Distant environment radiance as order-2 spherical harmonics: ``coeffs`` ``(9, 3)`` linear RGB.

    Cheap image-based lighting: the diffuse term uses the exact order-2 irradiance, and the specular
    term reads the (very blurred) environment in the reflection direction.
    """

    coeffs: torch.Tensor = field(default_factory=lambda: torch.zeros(9, 3))

    def __post_init__(self):
        c = torch.as_tensor(self.coeffs, dtype=torch.float32).detach().cpu()
        if c.shape != (9, 3):
            raise ValueError(f"SHEnvironment coeffs must be (9, 3) (9 SH coefficients x RGB), got {tuple(c.shape)}")
        if not bool(torch.isfinite(c).all()):
            raise ValueError("SHEnvironment coeffs must be finite")
        object.__setattr__(self, "coeffs", c)

    @staticmethod
    def uniform(color=(1.0, 1.0, 1.0), intensity: float = 1.0) -> "SHEnvironment":
        """A constant environment of radiance ``intensity * color`` (only the DC term)."""
        c = torch.zeros(9, 3)
        # L(w) = L_00 * Y_00 with Y_00 = 1 / (2 sqrt(pi)), so L_00 = radiance * 2 sqrt(pi).
        c[0] = torch.tensor(_color(color)) * _intensity(intensity) * 2.0 * math.sqrt(math.pi)
        return SHEnvironment(c)

    @staticmethod
    def from_directions(directions, colors=None, intensities=None, ambient=(0.0, 0.0, 0.0)) -> "SHEnvironment":
        """Project a few coloured distant lights (plus a uniform ``ambient`` radiance) into order-2 SH.

        Each light ``k`` is a delta of radiance whose irradiance on a surface facing it is
        ``pi * intensities[k] * colors[k]`` - the same scale as :class:`DirectionalLight` - so
        ``from_directions([d], [c], [i])`` is a soft (order-2, ~6% brighter facing it and a faint glow
        behind) version of ``DirectionalLight(d, c, i)``.
        ``directions`` ``(K, 3)`` towards the lights; ``colors`` ``(K, 3)`` (default white);
        ``intensities`` ``(K,)`` (default 1).
        """
        d = torch.as_tensor(directions, dtype=torch.float64).reshape(-1, 3)
        k = d.shape[0]
        norms = d.norm(dim=-1, keepdim=True)
        if k == 0 or bool((norms < 1e-12).any()):
            raise ValueError("from_directions needs at least one non-zero direction")
        d = d / norms
        col = torch.ones(k, 3, dtype=torch.float64) if colors is None else \
            torch.as_tensor(colors, dtype=torch.float64).reshape(-1, 3)
        inten = torch.ones(k, dtype=torch.float64) if intensities is None else \
            torch.as_tensor(intensities, dtype=torch.float64).reshape(-1)
        if col.shape[0] != k or inten.shape[0] != k:
            raise ValueError(f"got {k} directions but {col.shape[0]} colors and {inten.shape[0]} intensities")
        if bool((col < 0).any()) or bool((inten < 0).any()):
            raise ValueError("colors and intensities must be >= 0")
        # Delta radiance pi * I * c * delta(w - d) projects to L_lm = pi * I * c * Y_lm(d).
        coeffs = math.pi * sh_basis(d).T @ (col * inten[:, None])
        env = SHEnvironment.uniform(ambient, 1.0)
        return SHEnvironment(env.coeffs + coeffs.float())

    def radiance(self, directions: torch.Tensor) -> torch.Tensor:
        """Environment radiance seen along unit ``directions`` ``(..., 3)`` -> ``(..., 3)``, clamped >= 0."""
        c = self.coeffs.to(device=directions.device, dtype=directions.dtype)
        return (sh_basis(directions) @ c).clamp_min(0.0)

    def irradiance(self, normals: torch.Tensor, lobe=SH_COSINE_LOBE) -> torch.Tensor:
        """Irradiance ``E(n)`` on unit ``normals`` ``(..., 3)`` -> ``(..., 3)``, clamped >= 0.

        ``E(n) = sum_lm A_l L_lm Y_lm(n)``; ``lobe`` gives the per-band ``A_l`` (the cosine lobe by default;
        the shader passes a narrower lobe for glossy reflection).
        """
        a = torch.tensor([lobe[b] for b in SH_BANDS], device=normals.device, dtype=normals.dtype)
        c = self.coeffs.to(device=normals.device, dtype=normals.dtype) * a[:, None]
        return (sh_basis(normals) @ c).clamp_min(0.0)

    def rotated(self, rotation: torch.Tensor, center=(0.0, 0.0, 0.0)) -> "SHEnvironment":
        """The environment turned by a ``(3, 3)`` rotation: ``L'(w) = L(R^T w)``.

        Rotations keep each SH band separate, so sampling the rotated environment at a few dozen
        directions and projecting back by least squares is exact (no quadrature error).
        """
        r = torch.as_tensor(rotation, dtype=torch.float64)
        w = fibonacci_directions(64, dtype=torch.float64)
        values = sh_basis(w @ r) @ self.coeffs.double()  # rows: L(R^T w_i), since (R^T w)^T = w^T R
        coeffs = torch.linalg.lstsq(sh_basis(w), values).solution
        return SHEnvironment(coeffs.float())


Light = DirectionalLight | PointLight | SHEnvironment


def rotate_lights(lights, rotation: torch.Tensor, center=(0.0, 0.0, 0.0)) -> list:
    """Every light of ``lights`` turned by ``rotation`` about ``center`` (a lamp rig on a turntable)."""
    return [light.rotated(rotation, center) for light in as_light_list(lights)]


def as_light_list(lights) -> list:
    """Accept one light or an iterable of lights; check their types."""
    if isinstance(lights, (DirectionalLight, PointLight, SHEnvironment)):
        lights = [lights]
    lights = list(lights)
    for light in lights:
        if not isinstance(light, (DirectionalLight, PointLight, SHEnvironment)):
            raise ValueError("lights must be DirectionalLight, PointLight or SHEnvironment, "
                             f"got {type(light).__name__}")
    return lights


def studio() -> list:
    """Portrait lighting: a key light high on the subject's right (about 4x brighter than the fill),
    a soft fill from the left and above (an SH environment, so it adds no second hard highlight), and a
    rim light from behind that outlines the head."""
    fill = SHEnvironment.from_directions(
        [direction_from_angles(45.0, 10.0), (0.0, 1.0, 0.0)], colors=[(0.9, 0.95, 1.0), (1.0, 1.0, 1.0)],
        intensities=[0.25, 0.1], ambient=(0.04, 0.04, 0.045))
    return [
        DirectionalLight(direction_from_angles(-40.0, 35.0), (1.0, 0.97, 0.92), 1.1),
        fill,
        DirectionalLight(direction_from_angles(150.0, 30.0), (1.0, 1.0, 1.0), 0.4),
    ]


def outdoor_sun() -> list:
    """Midday sun, warm and hard, from high on one side, plus a blue sky dome brighter above than below
    (ground bounce is dimmer and warmer)."""
    sky = SHEnvironment.from_directions(
        [(0.0, 1.0, 0.0), (0.0, -1.0, 0.0)], colors=[(0.45, 0.62, 1.0), (0.55, 0.45, 0.35)],
        intensities=[0.35, 0.08], ambient=(0.04, 0.05, 0.07))
    return [DirectionalLight(direction_from_angles(-50.0, 55.0), (1.0, 0.93, 0.82), 1.1), sky]


def indoor_warm() -> list:
    """A tungsten-coloured lamp about half a metre away on the subject's left, and warm room bounce."""
    room = SHEnvironment.from_directions(
        [direction_from_angles(40.0, 20.0), (0.0, 1.0, 0.0)], colors=[(1.0, 0.75, 0.5), (1.0, 0.85, 0.7)],
        intensities=[0.12, 0.06], ambient=(0.05, 0.04, 0.03))
    lamp = PointLight((0.35, 0.15, 0.45), (1.0, 0.72, 0.42), 0.30)
    return [lamp, room]


PRESETS = {"studio": studio, "outdoor_sun": outdoor_sun, "indoor_warm": indoor_warm}
