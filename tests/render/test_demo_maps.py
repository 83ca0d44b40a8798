"""The checker test pattern used to look at viewers and exports."""

from __future__ import annotations

import pytest
import torch

from avatarme_edu.geometry.mesh import uv_sphere
from avatarme_edu.render.demo_maps import PATTERN_COLORS, pattern_maps


def test_pattern_maps_shapes_values_and_layout():
    mesh = uv_sphere(12, 18)
    maps, shape = pattern_maps(mesh, (24, 36))
    assert maps.hw == (24, 36) and shape.hw == (24, 36)
    m = maps.mask
    assert m.float().mean() > 0.9  # the sphere's UV layout covers almost the whole map
    assert torch.allclose(maps.specular_normals.norm(dim=0)[m], torch.ones(int(m.sum())), atol=1e-5)
    assert torch.allclose(maps.diffuse_normals.norm(dim=0)[m], torch.ones(int(m.sum())), atol=1e-5)
    assert maps.specular_albedo[:, m].min() >= 0.2 - 1e-6 and maps.specular_albedo[:, m].max() <= 0.6 + 1e-6
    # Top-left cell is red, the next one green (lightened: every other cell is paler).
    assert torch.allclose(maps.diffuse_albedo[:, 3, 3], PATTERN_COLORS[0])
    assert torch.allclose(maps.diffuse_albedo[:, 3, 9], 0.5 * PATTERN_COLORS[1] + 0.25)
    # The bumps tilt the specular normals away from the smooth N_T; no bumps, no tilt.
    tilt = (maps.specular_normals * shape.normals_tangent).sum(0)[m]
    assert tilt.min() < 0.97
    flat, _ = pattern_maps(mesh, (24, 36), shape=shape, bump_strength=0.0)
    assert torch.allclose(flat.specular_normals[:, m], shape.normals_tangent[:, m], atol=1e-5)


def test_pattern_maps_rejects_bad_sizes():
    with pytest.raises(ValueError, match="hw"):
        pattern_maps(uv_sphere(4, 6), (1, 36))
