"""Measures of the synthetic check: shape error after similarity alignment, rotation angle."""

import math

import torch

from avatarme_edu.fitting.diff_render import rotation_matrix
from avatarme_edu.fitting.synthetic import rotation_error_deg, shape_error_mm


def test_shape_error_ignores_similarity_and_measures_the_rest():
    g = torch.Generator().manual_seed(0)
    true = torch.randn(200, 3, generator=g, dtype=torch.float64) * 0.05
    w = torch.ones(200, dtype=torch.float64)
    moved = 1.3 * true @ rotation_matrix(torch.tensor([0.2, -0.4, 0.1], dtype=torch.float64)).T + 0.02
    assert shape_error_mm(moved, true, w) < 1e-6
    bumped = true.clone()
    bumped[:, 2] += 0.002 * torch.sign(true[:, 0])  # 2 mm, not a similarity
    assert 1.0 < shape_error_mm(bumped, true, w) < 2.0


def test_rotation_error_deg():
    a = rotation_matrix(torch.tensor([0.0, 0.3, 0.0]))
    b = rotation_matrix(torch.tensor([0.0, 0.3 + math.radians(7), 0.0]))
    assert abs(rotation_error_deg(a, b) - 7.0) < 1e-3
