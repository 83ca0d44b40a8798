"""Shadow maps: of a mesh (the renderer's cast shadows) and of a point set (the wild textures' shadows and AO)."""

import math

import pytest
import torch
import torch.nn.functional as F

from avatarme_edu.geometry.mesh import Mesh, uv_sphere
from avatarme_edu.geometry.uv_bake import bake_shape_maps
from avatarme_edu.optics.shadows import SHADOW_SOFTNESS_MM, shadow_visibility, splat_visibility
from avatarme_edu.reflectance import ReflectanceMaps
from avatarme_edu.render.lights import DirectionalLight
from avatarme_edu.render.shading import shade_uv


@pytest.fixture(scope="module")
def blocked():
    """A 10 cm sphere and, 25 cm in front of it on +Z, a 3 cm sphere that blocks light from +Z."""
    mesh = uv_sphere(24, 48, radius=0.1)
    shape = bake_shape_maps(mesh, (48, 72))
    blocker = uv_sphere(12, 24, radius=0.03)
    scene = Mesh(torch.cat([mesh.vertices, blocker.vertices + torch.tensor([0.0, 0.0, 0.25])]),
                 torch.cat([mesh.faces, blocker.faces + mesh.n_vertices]), torch.cat([mesh.uvs, blocker.uvs]))
    return scene, shape


def white_lambert(shape) -> ReflectanceMaps:
    h, w = shape.hw
    flat = torch.zeros(3, h, w)
    flat[2] = 1.0
    return ReflectanceMaps(torch.ones(3, h, w), torch.zeros(1, h, w), shape.normals_object.clone(), flat,
                           shape.mask.clone())


def test_a_small_sphere_casts_a_round_shadow(blocked):
    scene, shape = blocked
    # the renderer's default soft penumbra (2 mm) is far narrower than the 1 cm margins below
    vis = shadow_visibility(scene, shape.position, shape.normals_object, shape.mask,
                            DirectionalLight((0, 0, 1)), resolution=256, softness_mm=SHADOW_SOFTNESS_MM)[0]
    p = shape.position
    off_axis = (p[0] ** 2 + p[1] ** 2).sqrt()
    front = shape.mask & (p[2] > 0.05)
    assert (vis[front & (off_axis < 0.02)] < 0.05).all()  # the blocker (r = 3 cm) hides the light
    assert (vis[front & (off_axis > 0.04)] > 0.95).all()
    assert (vis >= 0).all() and (vis <= 1).all()
    out = shade_uv(shape, white_lambert(shape), DirectionalLight((0, 0, 1)), (0, 0, 1),
                   sss=False, shadows=True, mesh=scene, shadow_resolution=256)
    torch.testing.assert_close(out["diffuse"][0], vis * shape.normals_object[2].clamp_min(0) * shape.mask)


def test_soft_shadow_widens_the_penumbra_but_keeps_the_edge_in_place(blocked):
    scene, shape = blocked
    args = (scene, shape.position, shape.normals_object, shape.mask, DirectionalLight((0, 0, 1)))
    hard = shadow_visibility(*args, resolution=256)[0]
    soft = shadow_visibility(*args, resolution=256, softness_mm=6.0)[0]
    p = shape.position
    off_axis = (p[0] ** 2 + p[1] ** 2).sqrt()
    front = shape.mask & (p[2] > 0.05)
    assert (soft[front & (off_axis < 0.018)] < 0.05).all() and (soft[front & (off_axis > 0.042)] > 0.95).all()
    partial = lambda v: int((front & (v > 0.05) & (v < 0.95)).sum())  # noqa: E731
    assert partial(soft) > partial(hard)
    # no self-shadowing from the wide filter on the lit, convex sphere (receiver-plane bias)
    lit_side = shape.mask & (p[2] < -0.02) | (front & (off_axis > 0.05))
    assert float(soft[lit_side].min()) > 0.95
    with pytest.raises(ValueError, match="softness_mm"):
        shadow_visibility(*args, softness_mm=-1.0)


def test_visibility_of_two_planes():
    # a 10 x 10 cm floor at y = 0 and a 4 x 4 cm roof at y = 3 cm above its middle; light from above
    s = torch.linspace(-0.05, 0.05, 101)
    x, z = torch.meshgrid(s, s, indexing="ij")
    floor = torch.stack([x, torch.zeros_like(x), z], -1).reshape(-1, 3)
    r = torch.linspace(-0.02, 0.02, 41)
    rx, rz = torch.meshgrid(r, r, indexing="ij")
    roof = torch.stack([rx, torch.full_like(rx, 0.03), rz], -1).reshape(-1, 3)
    pts = torch.cat([floor, roof])
    up = torch.tensor([0.0, 1.0, 0.0]).expand_as(pts)
    vis = splat_visibility(pts, up, torch.tensor([[0.0, 1.0, 0.0]]), pixel=0.0015)[0]
    f = vis[: floor.shape[0]].reshape(101, 101)
    assert (vis[floor.shape[0]:] == 1).all()  # the roof sees the light
    assert (f[40:61, 40:61] == 0).all()  # the floor under the roof is in shadow
    assert (f[:20] == 1).all() and (f[:, 80:] == 1).all()  # the rest of the floor is lit
    # a light from the side moves the shadow: at 45 degrees it falls 3 cm over in x
    slanted = torch.tensor([[-math.sqrt(0.5), math.sqrt(0.5), 0.0]])
    f2 = splat_visibility(pts, up, slanted, pixel=0.0015)[0][: floor.shape[0]].reshape(101, 101)
    assert (f2[70:81, 40:61] == 0).all() and (f2[30:50, 40:61] == 1).all()
    # the shadow's edge lands within a few shadow-map cells (1.5 mm, 2.1 mm on the slanted floor)
    # of the geometric edge at x = 1 cm: the 3x3 gap filling and the filtering widen it a little
    edge = float(s[(f2[:, 50] < 0.5).nonzero()[0, 0]])
    assert 0.0 < edge <= 0.0101


def test_a_convex_surface_does_not_shadow_itself():
    shape = bake_shape_maps(uv_sphere(32, 48, 0.1), (96, 144))
    m = shape.mask
    pts, nrm = shape.position[:, m].T, shape.normals_object[:, m].T
    dirs = F.normalize(torch.tensor([[0.0, 0.0, 1.0], [0.3, 0.8, -0.5], [1.0, 0.2, 0.1]]), dim=-1)
    vis = splat_visibility(pts, nrm, dirs, pixel=0.005)
    facing = (nrm @ dirs.T).T > 0.2
    assert vis[facing].min() > 0.99  # no "shadow acne", even at grazing light
    assert ((vis - 1).abs() < 1e-6).float().mean() > 0.99


def test_lights_without_a_direction_or_position_cast_no_shadow(blocked):
    scene, shape = blocked
    env = object()  # e.g. an SH environment: neither ``direction`` nor ``position``
    vis = shadow_visibility(scene, shape.position, shape.normals_object, shape.mask, env)
    assert torch.equal(vis, torch.ones(1, *shape.hw))
