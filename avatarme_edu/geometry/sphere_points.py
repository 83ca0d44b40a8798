"""Directions spread evenly over the sphere: the Fibonacci spiral.

One home for the point set that the light stage's LEDs, the ambient-occlusion directions, the SH
rotation and the lobe integrals all use.
"""

from __future__ import annotations

import math

import torch


def fibonacci_directions(n: int, min_elevation_deg: float = -90.0, dtype=torch.float32) -> torch.Tensor:
    """``(n, 3)`` unit vectors spread evenly over the sphere above ``min_elevation_deg``.

    Equal steps in ``y`` (Archimedes: equal height slices of a sphere have equal area) and
    golden-angle steps in azimuth, so no two lights line up and every light covers the same area.
    Computed in float64 and returned as ``dtype``. Object space: +Y up, the first point nearest the
    zenith, azimuth measured from +Z towards +X.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not -90.0 <= min_elevation_deg < 90.0:
        raise ValueError(f"min_elevation_deg must be in [-90, 90), got {min_elevation_deg}")
    i = torch.arange(n, dtype=torch.float64)
    y_min = math.sin(math.radians(min_elevation_deg))
    y = 1.0 - (i + 0.5) / n * (1.0 - y_min)  # from the zenith down to the floor
    ring = torch.sqrt((1.0 - y * y).clamp_min(0.0))
    golden_angle = math.pi * (3.0 - math.sqrt(5.0))
    phi = i * golden_angle
    return torch.stack([ring * torch.sin(phi), y, ring * torch.cos(phi)], -1).to(dtype)
