import math

import pytest
import torch

from avatarme_edu.geometry.sphere_points import fibonacci_directions


def test_points_are_unit_even_and_above_the_floor():
    d = fibonacci_directions(500, min_elevation_deg=-30.0)
    assert d.dtype == torch.float32 and d.shape == (500, 3)
    assert torch.allclose(d.norm(dim=1), torch.ones(500), atol=1e-6)
    assert float(d[:, 1].min()) >= math.sin(math.radians(-30.0)) - 1e-6
    # even spread: the mean of a full sphere's points is the centre, and equal-height slices hold as many
    full = fibonacci_directions(1000, dtype=torch.float64)
    assert full.dtype == torch.float64 and float(full.mean(0).norm()) < 2e-3
    assert int((full[:, 1] > 0.5).sum()) == pytest.approx(250, abs=1)
    # nearest neighbours about equally far apart (no clumps)
    dots = full @ full.T - 2 * torch.eye(1000, dtype=torch.float64)
    nearest = torch.acos(dots.max(1).values.clamp(-1, 1))
    assert float(nearest.max() / nearest.min()) < 1.8


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must be"):
        fibonacci_directions(0)
    with pytest.raises(ValueError, match="min_elevation_deg"):
        fibonacci_directions(10, min_elevation_deg=95.0)
