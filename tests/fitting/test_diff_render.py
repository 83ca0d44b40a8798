"""The differentiable renderer: gradients against finite differences, SH lighting against closed form."""

import math

import pytest
import torch

from avatarme_edu.fitting.diff_render import (FRONT_VIEW, PinholeCamera, rasterize, render, rotation_matrix,
                                              sh_shading, uniform_sh)
from avatarme_edu.geometry.mesh import uv_sphere


def _camera(hw=(24, 24), focal=90.0, dtype=torch.float64):
    return PinholeCamera(FRONT_VIEW.to(dtype), torch.tensor([0.0, 0.0, 1.0], dtype=dtype), focal,
                         (hw[1] / 2, hw[0] / 2), hw)


def _quad():
    """Two triangles (a square 0.16 m wide facing the camera) with UVs over the whole texture."""
    v = torch.tensor([[-0.08, -0.07, 0.0], [0.075, -0.08, 0.01], [0.08, 0.08, 0.0], [-0.07, 0.075, -0.01]],
                     dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uv = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    return v, f, uv


def test_rotation_matrix_is_rodrigues_and_smooth_at_zero():
    r = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    rot = rotation_matrix(r)
    assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    axis = r / r.norm()
    assert torch.allclose(rot @ axis, axis, atol=1e-12)  # the axis stays put
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    rotation_matrix(z).sum().backward()
    assert torch.isfinite(z.grad).all()
    assert torch.allclose(rotation_matrix(z.detach()), torch.eye(3, dtype=torch.float64))


def _loss(v, f, uv, tex, sh, cam, weights, face_index):
    r = render(v, f, uv, tex, sh, cam, background=torch.full((3, *cam.hw), 0.2, dtype=v.dtype),
               face_index=face_index)
    return (r.image * weights).sum()


@pytest.mark.parametrize("which", ["vertices", "texture"])
def test_gradients_match_finite_differences(which):
    torch.manual_seed(0)
    v, f, uv = _quad()
    cam = _camera()
    tex = torch.rand(3, 8, 8, dtype=torch.float64)
    sh = uniform_sh().double()
    sh[1:4] = torch.tensor([[0.3, 0.2, 0.1], [0.5, 0.4, 0.6], [-0.2, 0.1, 0.0]], dtype=torch.float64)
    weights = torch.rand(3, *cam.hw, dtype=torch.float64)
    face_index = rasterize(v, f, cam)
    assert (face_index >= 0).sum() > 100 and (face_index < 0).sum() > 100  # outline inside the image
    x = (v if which == "vertices" else tex).clone().requires_grad_(True)
    args = (x, f, uv, tex, sh) if which == "vertices" else (v, f, uv, x, sh)
    _loss(*args, cam, weights, face_index).backward()
    eps = 1e-6
    numeric = torch.zeros_like(x)
    flat = numeric.view(-1)
    for i in range(x.numel()):
        plus, minus = x.detach().clone(), x.detach().clone()
        plus.view(-1)[i] += eps
        minus.view(-1)[i] -= eps
        a = (plus, f, uv, tex, sh) if which == "vertices" else (v, f, uv, plus, sh)
        b = (minus, f, uv, tex, sh) if which == "vertices" else (v, f, uv, minus, sh)
        # same visibility buffer: the anti-aliased outline is what carries the vertex gradient
        flat[i] = (_loss(*a, cam, weights, face_index) - _loss(*b, cam, weights, face_index)) / (2 * eps)
    assert numeric.abs().max() > 1e-3  # the check is not vacuous
    assert torch.allclose(x.grad, numeric, rtol=1e-4, atol=1e-6 * numeric.abs().max())


def test_silhouette_gradient_moves_the_outline_the_right_way():
    """Pull the square to the right: its right edge's gradient must say 'move right' where the
    background pixels just outside ask for the surface colour (a real edge gradient, not interior)."""
    v, f, uv = _quad()
    cam = _camera()
    tex = torch.ones(3, 4, 4, dtype=torch.float64)
    target_shift = torch.tensor([0.01, 0.0, 0.0], dtype=torch.float64)
    with torch.no_grad():
        target = render(v + target_shift, f, uv, tex, uniform_sh().double(), cam).image
    x = v.clone().requires_grad_(True)
    r = render(x, f, uv, tex, uniform_sh().double(), cam, face_index=rasterize(v, f, cam))
    ((r.image - target) ** 2).sum().backward()
    # moving every vertex along +x lowers the loss: the x-gradient sums to a negative number
    assert float(x.grad[:, 0].sum()) < 0
    assert abs(float(x.grad[:, 0].sum())) > 3 * abs(float(x.grad[:, 1].sum()))
    # and a small step down the gradient brings the rendering closer to the target
    with torch.no_grad():
        step = x - 2e-8 * x.grad
        before = ((render(v, f, uv, tex, uniform_sh().double(), cam).image - target) ** 2).sum()
        after = ((render(step, f, uv, tex, uniform_sh().double(), cam).image - target) ** 2).sum()
    assert after < before


def test_sh_lighting_on_a_sphere_matches_the_closed_form():
    """Environment radiance L(w) = a + b w.d + c (w.z)^2: its irradiance is known in closed form,
    E(n) = pi a + 2 pi / 3 b n.d + c (pi / 3 + pi / 12 (3 n_z^2 - 1)) (Ramamoorthi and Hanrahan's A_l)."""
    from avatarme_edu.geometry.sphere_points import fibonacci_directions
    from avatarme_edu.render.lights import sh_basis

    a, b, c = 0.6, 0.3, 0.2
    d = torch.tensor([0.48, 0.6, 0.64], dtype=torch.float64)
    w = fibonacci_directions(400, dtype=torch.float64)
    radiance = a + b * (w @ d) + c * w[:, 2] ** 2
    coeffs = torch.linalg.lstsq(sh_basis(w), radiance[:, None]).solution  # exact: L is in the span
    sh = coeffs.expand(9, 3).clone()
    sphere = uv_sphere(48, 96, radius=0.1)
    v = sphere.vertices.double()
    cam = _camera(hw=(64, 64), focal=300.0)
    r = render(v, sphere.faces, sphere.uvs.double(), torch.ones(3, 4, 4, dtype=torch.float64), sh, cam, aa=False)
    hit = r.face_index >= 0
    n = r.normals.permute(1, 2, 0)[hit]
    expected = (math.pi * a + 2 * math.pi / 3 * b * (n @ d)
                + c * (math.pi / 3 + math.pi / 12 * (3 * n[:, 2] ** 2 - 1))) / math.pi
    got = r.image[0][hit]
    assert hit.sum() > 1000
    assert (got - expected).abs().max() < 1e-6  # given the interpolated normal, the SH part is exact
    # and the interpolated normal is the sphere's true normal within the tessellation's error
    cam_pts = r.depth[hit]
    assert torch.isfinite(cam_pts).all()
    assert sh_shading(torch.tensor([[0.0, 0.0, 1.0]]), uniform_sh()).allclose(torch.ones(1, 3), atol=1e-5)


def test_uv_per_pixel_reads_the_texture_where_it_should():
    """A texture whose red channel is u and green is v: each pixel's colour is its own UV."""
    v, f, uv = _quad()
    cam = _camera(hw=(32, 32), focal=100.0)
    h, w = 16, 16
    cols = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    rows = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    tex = torch.stack([cols.expand(h, w), rows[:, None].expand(h, w), torch.zeros(h, w, dtype=torch.float64)])
    r = render(v, f, uv, tex, uniform_sh().double(), cam, aa=False)
    hit = r.face_index >= 0
    inner = hit & (r.uv[0] > 1 / w) & (r.uv[0] < 1 - 1 / w) & (r.uv[1] > 1 / h) & (r.uv[1] < 1 - 1 / h)
    assert inner.sum() > 150
    assert torch.allclose(r.image[:2][:, inner], r.uv[:, inner], atol=1e-5)
