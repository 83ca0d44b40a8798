import importlib.util
from pathlib import Path

import pytest
import torch

from avatarme_edu.geometry.mesh import Mesh, uv_sphere
from avatarme_edu.geometry.uv_bake import (bake_shape_maps, object_to_tangent, smooth_vertices,
                                           tangent_to_object)

HW = (48, 72)


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-texel angle between two (3, H, W) unit fields."""
    return torch.rad2deg(torch.acos((a * b).sum(0).clamp(-1.0, 1.0)))


def bumpy_sphere(rows=48, cols=72, radius=0.1, height=0.15, width=0.25):
    """A sphere with one smooth radial bump at the front (+Z), where uv = (0.5, 0.5)."""
    mesh = uv_sphere(rows, cols, radius)
    d = torch.nn.functional.normalize(mesh.vertices, dim=-1)
    angle = torch.acos(d[:, 2].clamp(-1, 1))  # angle from +Z
    r = 1 + height * torch.exp(-((angle / width) ** 2))
    return mesh.with_vertices(mesh.vertices * r[:, None]), angle


@pytest.fixture(scope="module")
def sphere_maps():
    return bake_shape_maps(uv_sphere(24, 36), HW)  # default smoothing: ~6 cm on a 10 cm sphere


def test_sphere_normals_are_radial(sphere_maps):
    m = sphere_maps
    radial = torch.nn.functional.normalize(m.position, dim=0)
    err = angle_deg(m.normals_object, radial)[m.mask]
    assert err.mean() < 1.0
    assert torch.allclose(m.normals_object.norm(dim=0)[m.mask], torch.ones(int(m.mask.sum())), atol=1e-5)


def test_maps_are_zero_outside_the_mask_and_shaped_alike(sphere_maps):
    m = sphere_maps
    assert 0.9 < m.mask.float().mean() < 1.0  # the pole cells are half empty in UV
    for name in ("position", "normals_object", "tangent", "bitangent", "base_normal", "normals_tangent", "depth"):
        x = getattr(m, name)
        assert x.shape[1:] == HW and x.dtype == torch.float32, name
        assert (x[:, ~m.mask] == 0).all(), name


def test_frame_is_orthonormal_right_handed_and_follows_u(sphere_maps):
    m = sphere_maps
    k = m.mask
    t, b, n = m.tangent, m.bitangent, m.base_normal
    for x in (t, b, n):
        assert torch.allclose(x.norm(dim=0)[k], torch.ones(int(k.sum())), atol=1e-5)
    assert (t * n).sum(0)[k].abs().max() < 1e-5 and (t * b).sum(0)[k].abs().max() < 1e-5
    assert torch.allclose(torch.linalg.cross(n, t, dim=0)[:, k], b[:, k], atol=1e-5)
    # T along +u: position differences along a row (u increasing) point along T; B points up the map
    both_u = k[:, 1:] & k[:, :-1]
    du = m.position[:, :, 1:] - m.position[:, :, :-1]
    assert ((du * t[:, :, 1:]).sum(0)[both_u] > 0).all()
    both_v = k[1:] & k[:-1]
    dv = m.position[:, 1:] - m.position[:, :-1]  # moving down the map (v increasing)
    assert ((dv * b[:, 1:]).sum(0)[both_v] < 0).all()


def test_object_tangent_round_trip(sphere_maps):
    m = sphere_maps
    g = torch.Generator().manual_seed(1)
    n = torch.nn.functional.normalize(torch.randn(3, *HW, generator=g), dim=0) * m.mask
    assert (tangent_to_object(object_to_tangent(n, m), m) - n).abs().max() < 1e-5
    assert (object_to_tangent(tangent_to_object(n, m), m) - n).abs().max() < 1e-5
    # the base normal is +Z in its own frame
    z = object_to_tangent(m.base_normal, m)
    assert torch.allclose(z[2][m.mask], torch.ones(int(m.mask.sum())), atol=1e-5)


def test_on_a_sphere_the_smoothed_frame_gives_flat_tangent_normals(sphere_maps):
    m = sphere_maps
    tilt = torch.rad2deg(torch.acos(m.normals_tangent[2].clamp(-1, 1)))[m.mask]
    assert tilt.mean() < 1.0 and tilt.max() < 3.0


def test_without_smoothing_tangent_normals_carry_no_shape():
    mesh, _ = bumpy_sphere(16, 24)
    m = bake_shape_maps(mesh, (32, 48), smooth_iterations=0)
    nt = m.normals_tangent[:, m.mask]
    assert (nt[2] > 1 - 1e-5).all()


def test_on_a_bumpy_sphere_tangent_normals_tilt_at_the_bump():
    mesh, _ = bumpy_sphere()
    m = bake_shape_maps(mesh, HW)
    tilt = torch.rad2deg(torch.acos(m.normals_tangent[2].clamp(-1, 1)))
    d = torch.nn.functional.normalize(m.position, dim=0)
    angle = torch.acos(d[2].clamp(-1, 1))  # angle of each texel's point from the bump centre (+Z)
    on_flank = m.mask & (angle > 0.1) & (angle < 0.35)
    far = m.mask & (angle > 1.5)
    assert tilt[on_flank].mean() > 5.0
    assert tilt[far].mean() < 1.5
    # on the flank the shape normal leans away from the bump centre, in tangent space too:
    # tangent_to_object of N_T gives back N_O, and N_O leans outwards (towards larger angle)
    back = tangent_to_object(m.normals_tangent, m)
    assert (back - m.normals_object).abs().max() < 1e-5
    # the bump's front (nose tip) is the frontmost point: depth 1 there
    assert m.depth.max() == pytest.approx(1.0) and m.depth[0][m.mask].min() == pytest.approx(0.0, abs=1e-6)
    assert m.depth[0][m.mask & (angle < 0.1)].min() > 0.95


def test_smoothing_welds_seams_and_pins_the_boundary():
    # an open grid: boundary vertices stay, interior ones move towards the (flat) mean
    n = 6
    t = torch.linspace(0, 1, n + 1)
    vv, uu = torch.meshgrid(t, t, indexing="ij")
    bump = torch.exp(-((uu - 0.5) ** 2 + (vv - 0.5) ** 2) / 0.05)
    verts = torch.stack([uu, vv, bump], -1).reshape(-1, 3)
    idx = torch.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, c, d], -1).reshape(-1, 3), torch.stack([a, d, b], -1).reshape(-1, 3)])
    out = smooth_vertices(verts, faces, 3, scale=0.3)  # a 1 m grid: smooth over ~0.3 m
    edge = ((uu == 0) | (uu == 1) | (vv == 0) | (vv == 1)).reshape(-1)
    assert torch.equal(out[edge], verts[edge])
    assert out[~edge, 2].max() < verts[~edge, 2].max() - 0.2  # the bump flattens
    # seam duplicates of the sphere move together
    sphere = uv_sphere(8, 12)
    s = smooth_vertices(sphere.vertices, sphere.faces, 2)
    seam0 = (sphere.uvs[:, 0] == 0)
    seam1 = (sphere.uvs[:, 0] == 1)
    assert torch.equal(s[seam0], s[seam1])


def test_smoothing_keeps_a_sphere_a_sphere():
    # the cotangent heat flow shrinks a sphere evenly and does not slide vertices sideways,
    # even though the UV sphere's triangles crowd together at the poles
    mesh = uv_sphere(24, 36)
    out = smooth_vertices(mesh.vertices, mesh.faces, 4)
    r = out.norm(dim=1)
    assert r.mean() < 0.095  # it did smooth (shrink) ...
    assert r.std() / r.mean() < 0.01  # ... evenly
    cos = (torch.nn.functional.normalize(out, dim=1) * torch.nn.functional.normalize(mesh.vertices, dim=1)).sum(1)
    assert torch.rad2deg(torch.acos(cos.clamp(-1, 1))).max() < 1.5


def test_bad_parameters_raise_clear_errors(sphere_maps):
    mesh = uv_sphere(6, 8)
    with pytest.raises(ValueError, match="smooth_iterations"):
        bake_shape_maps(mesh, (8, 12), smooth_iterations=-1)
    with pytest.raises(ValueError, match="hw"):
        bake_shape_maps(mesh, (8, -12))
    with pytest.raises(ValueError, match="scale"):
        smooth_vertices(mesh.vertices, mesh.faces, 1, scale=0.0)
    with pytest.raises(ValueError, match=r"normals_object must be \(3, 48, 72\), got \(3, 5, 5\)"):
        object_to_tangent(torch.zeros(3, 5, 5), sphere_maps)


def _eduhead_loader():
    """load_eduhead when geometry/head.py has it and its data file is stored (building takes ~1 min)."""
    if importlib.util.find_spec("avatarme_edu.geometry.head") is None:
        return None
    from avatarme_edu.geometry import head

    if not hasattr(head, "load_eduhead") or not Path(getattr(head, "DATA_PATH", "")).is_file():
        return None
    return head.load_eduhead


@pytest.mark.skipif(_eduhead_loader() is None, reason="EduHead data (geometry/head.py DATA_PATH) not stored yet")
def test_eduhead_bakes_clean_maps():
    load_eduhead = _eduhead_loader()
    head = load_eduhead()
    mesh = head if isinstance(head, Mesh) else head.mesh()
    m = bake_shape_maps(mesh, (96, 144))
    k = m.mask
    assert k.float().mean() > 0.3
    assert torch.allclose(m.normals_object.norm(dim=0)[k], torch.ones(int(k.sum())), atol=1e-4)
    assert (tangent_to_object(object_to_tangent(m.normals_object, m), m) - m.normals_object).abs().max() < 1e-5
    # the smoothed frame leaves mid-frequency shape in N_T, but stays close to +Z on average
    tilt = torch.rad2deg(torch.acos(m.normals_tangent[2].clamp(-1, 1)))[k]
    assert 1.0 < tilt.mean() < 30.0
