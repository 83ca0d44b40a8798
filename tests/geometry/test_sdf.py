import math

import torch

from avatarme_edu.geometry.sdf import (
    Points,
    capsule,
    ellipsoid,
    mirror_x,
    rotate_x,
    rotate_y,
    rotate_z,
    smooth_subtraction,
    smooth_union,
    sphere,
)


def _pts(*rows):
    return Points.from_tensor(torch.tensor(rows, dtype=torch.float32))


def test_sphere_and_capsule_are_exact_distances():
    p = _pts([2.0, 0, 0], [0, 0.5, 0], [0, 0, -1.0])
    assert torch.allclose(sphere(p, (0.0, 0.0, 0.0), 1.0), torch.tensor([1.0, -0.5, 0.0]))
    # capsule along X from 0 to 1, radius 0.25: beside the middle, beyond an end, inside
    q = _pts([0.5, 1.0, 0], [2.0, 0, 0], [0.5, 0, 0])
    d = capsule(q, (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), 0.25)
    assert torch.allclose(d, torch.tensor([0.75, 0.75, -0.25]))


def test_ellipsoid_is_zero_on_its_surface_and_signed():
    r = (0.3, 0.2, 0.1)
    t = torch.linspace(0, 2 * math.pi, 50)
    on = Points(r[0] * torch.cos(t), r[1] * torch.sin(t), torch.zeros_like(t))
    assert ellipsoid(on, (0.0, 0.0, 0.0), r).abs().max() < 1e-6
    assert float(ellipsoid(_pts([0.0, 0, 0]), (0.0, 0.0, 0.0), r)) < -0.05  # negative down to the centre
    # along an axis the bound equals the true distance
    assert torch.allclose(ellipsoid(_pts([0.5, 0, 0]), (0.0, 0.0, 0.0), r), torch.tensor([0.2]), atol=1e-6)


def test_smooth_union_fills_the_crease_and_keeps_far_values():
    a, b = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0])
    u = smooth_union(a, b, 0.1)
    assert abs(float(u[0]) + 0.025) < 1e-7  # equal distances: dips k/4 below
    assert float(u[1]) == 0.0  # far apart: plain min
    cut = smooth_subtraction(torch.tensor([-1.0]), torch.tensor([-1.0]), 0.1)
    assert float(cut) == 1.0  # inside the cutter -> outside the result


def test_rotations_are_right_handed_and_invertible():
    p = _pts([0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0])
    q = rotate_x(p, math.pi / 2)
    assert torch.allclose(q.to_tensor()[0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)  # +Y -> +Z
    q = rotate_y(p, math.pi / 2)
    assert torch.allclose(q.to_tensor()[1], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)  # +Z -> +X
    q = rotate_z(p, math.pi / 2)
    assert torch.allclose(q.to_tensor()[2], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)  # +X -> +Y
    back = rotate_z(rotate_y(rotate_x(rotate_x(rotate_y(rotate_z(p, 0.3), 0.2), 0.1), -0.1), -0.2), -0.3)
    assert torch.allclose(back.to_tensor(), p.to_tensor(), atol=1e-6)


def test_mirror_makes_symmetric_twins():
    p = _pts([0.4, 0.1, 0.0], [-0.4, 0.1, 0.0])
    d = sphere(mirror_x(p), (0.4, 0.1, 0.0), 0.05)
    assert torch.allclose(d, torch.tensor([-0.05, -0.05]))


def test_per_head_parameters_broadcast_against_points():
    p = Points(torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2, 5))
    radius = torch.tensor([[1.0], [2.0]])  # (N, 1) one value per head
    d = sphere(p, (0.0, 0.0, 0.0), radius)
    assert d.shape == (2, 5) and torch.equal(d[:, 0], torch.tensor([-1.0, -2.0]))
