"""Signed distance fields (SDFs): the sculpting tools of the EduHead model.

An SDF maps a point to its signed distance from a surface: negative inside, positive outside, zero
on the surface. Simple shapes have simple SDFs, and shapes combine with ``min`` (union) and ``max``
(intersection). The *smooth* versions blend the two surfaces over a distance ``k`` so that the seam
becomes a fillet - this is how a nose grows out of a face instead of being glued onto it.

Points are passed as a tuple ``(x, y, z)`` of three tensors of one shape (metres), not as one
``(..., 3)`` tensor: element-wise arithmetic on three contiguous arrays is many times faster than
on a thin last axis, and a head is a few hundred such operations over 10^5-10^7 points.
Centres, radii and blend widths may be Python floats or tensors that broadcast against the
coordinates (e.g. ``(N, 1)`` per-head parameters against ``(N, P)`` points), so a whole population of
heads is evaluated at once on any device.

References: the polynomial smooth minimum and the ellipsoid bound follow Inigo Quilez's articles on
distance functions (iquilezles.org), re-derived here.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Points(NamedTuple):
    """Three coordinate tensors of one shape: a structure of arrays for fast SDF arithmetic."""

    x: torch.Tensor
    y: torch.Tensor
    z: torch.Tensor

    def __sub__(self, c) -> "Points":  # p - centre, with centre a 3-tuple of floats/tensors
        return Points(self.x - c[0], self.y - c[1], self.z - c[2])

    def __add__(self, c) -> "Points":
        return Points(self.x + c[0], self.y + c[1], self.z + c[2])

    @staticmethod
    def from_tensor(p: torch.Tensor) -> "Points":
        """``(..., 3)`` tensor -> Points."""
        return Points(p[..., 0], p[..., 1], p[..., 2])

    def to_tensor(self) -> torch.Tensor:
        """Points -> ``(..., 3)`` tensor."""
        return torch.stack(torch.broadcast_tensors(self.x, self.y, self.z), dim=-1)


def length(x, y, z) -> torch.Tensor:
    return (x * x + y * y + z * z).sqrt()


def sphere(p: Points, centre, radius) -> torch.Tensor:
    """Exact SDF of a sphere."""
    q = p - centre
    return length(*q) - radius


def ellipsoid(p: Points, centre, radii) -> torch.Tensor:
    """Approximate SDF of an axis-aligned ellipsoid with semi-axes ``radii = (rx, ry, rz)``.

    The exact distance to an ellipsoid needs a root solve. ``k0 (k0 - 1) / k1`` with
    ``k0 = |q / r|`` and ``k1 = |q / r^2|`` is exact on the surface, has the right gradient there and is
    a good bound nearby - enough for sphere tracing with a safety factor. Inside, the deeper of it
    and ``(k0 - 1) * min(r)`` is used, which stays negative down to the centre.
    """
    q = p - centre
    rx, ry, rz = radii
    k0 = length(q.x / rx, q.y / ry, q.z / rz)
    k1 = length(q.x / (rx * rx), q.y / (ry * ry), q.z / (rz * rz)).clamp_min(1e-9)
    outside = k0 * (k0 - 1.0) / k1
    # deep inside the formula tends to 0 at the centre; (k0 - 1) * smallest radius is a safe bound there
    r_min = torch.minimum(torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry)), torch.as_tensor(rz))
    return torch.where(k0 < 1.0, torch.minimum(outside, (k0 - 1.0) * r_min), outside)


def capsule(p: Points, a, b, radius) -> torch.Tensor:
    """Exact SDF of a capsule: all points within ``radius`` of the segment ``a``-``b``."""
    pa = p - a
    ba = (b[0] - a[0], b[1] - a[1], b[2] - a[2])
    bb = ba[0] * ba[0] + ba[1] * ba[1] + ba[2] * ba[2]
    h = ((pa.x * ba[0] + pa.y * ba[1] + pa.z * ba[2]) / bb).clamp(0.0, 1.0)
    return length(pa.x - ba[0] * h, pa.y - ba[1] * h, pa.z - ba[2] * h) - radius


def smooth_union(a: torch.Tensor, b: torch.Tensor, k) -> torch.Tensor:
    """Union of two shapes with a fillet of width about ``k`` (polynomial smooth minimum).

    Where the two distances differ by more than ``k`` this is exactly ``min(a, b)``; closer, it dips
    below both by at most ``k / 4``, which fills the crease between the shapes.
    """
    h = (k - (a - b).abs()).clamp_min(0.0) / k
    return torch.minimum(a, b) - h * h * k * 0.25


def smooth_intersection(a: torch.Tensor, b: torch.Tensor, k) -> torch.Tensor:
    """Intersection with a rounded edge of width about ``k`` (smooth maximum)."""
    return -smooth_union(-a, -b, k)


def smooth_subtraction(a: torch.Tensor, b: torch.Tensor, k) -> torch.Tensor:
    """Shape ``a`` with shape ``b`` carved out of it, the cut's rim rounded over about ``k``."""
    return smooth_intersection(a, -b, k)


def _cos_sin(angle, like: torch.Tensor):
    a = torch.as_tensor(angle, dtype=like.dtype, device=like.device)
    return torch.cos(a), torch.sin(a)


def rotate_x(q: Points, angle) -> Points:
    """Rotate points about +X by ``angle`` radians (right-handed: +angle turns +Y towards +Z)."""
    c, s = _cos_sin(angle, q.y)
    return Points(q.x, c * q.y - s * q.z, s * q.y + c * q.z)


def rotate_y(q: Points, angle) -> Points:
    """Rotate points about +Y by ``angle`` radians (+angle turns +Z towards +X)."""
    c, s = _cos_sin(angle, q.x)
    return Points(c * q.x + s * q.z, q.y, -s * q.x + c * q.z)


def rotate_z(q: Points, angle) -> Points:
    """Rotate points about +Z by ``angle`` radians (+angle turns +X towards +Y)."""
    c, s = _cos_sin(angle, q.x)
    return Points(c * q.x - s * q.y, s * q.x + c * q.y, q.z)


def mirror_x(p: Points) -> Points:
    """Fold space at ``x = 0`` so one primitive placed at ``x > 0`` also makes its mirror twin.

    ``|x|`` keeps distances exact: the distance to a symmetric pair is the distance to the nearer twin.
    """
    return Points(p.x.abs(), p.y, p.z)
