import pytest
import torch

from avatarme_edu.geometry.camera import Camera
from avatarme_edu.geometry.mesh import Mesh, uv_sphere
from avatarme_edu.geometry.raster import dilate, interpolate, rasterize_image, rasterize_uv


def grid_mesh(n: int, u_range=(0.0, 1.0), v_range=(0.0, 1.0), jitter: float = 0.0, seed: int = 0) -> Mesh:
    """An n x n-cell plane: UVs span the given ranges, positions are (u, -v, 0) (v down = -Y)."""
    t = torch.linspace(0.0, 1.0, n + 1)
    vv, uu = torch.meshgrid(t, t, indexing="ij")
    uv = torch.stack([u_range[0] + uu * (u_range[1] - u_range[0]), v_range[0] + vv * (v_range[1] - v_range[0])], -1)
    if jitter:
        g = torch.Generator().manual_seed(seed)
        inner = torch.zeros(n + 1, n + 1, 1)
        inner[1:-1, 1:-1] = 1.0
        cell = (u_range[1] - u_range[0]) / n
        uv = uv + inner * (torch.rand(n + 1, n + 1, 2, generator=g) - 0.5) * jitter * cell
    uv = uv.reshape(-1, 2)
    idx = torch.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, c, d], -1).reshape(-1, 3), torch.stack([a, d, b], -1).reshape(-1, 3)])
    vertices = torch.stack([uv[:, 0], -uv[:, 1], torch.zeros(len(uv))], -1)
    return Mesh(vertices, faces, uv)


def texel_centres(hw):
    h, w = hw
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (cols + 0.5) / w, (rows + 0.5) / h


def solve_barycentric(corners: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Reference barycentrics in float64: corners (N, 3, 2), p (N, 2) -> (N, 3)."""
    corners, p = corners.double(), p.double()
    m = torch.stack([corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]], -1)  # (N, 2, 2)
    l12 = torch.linalg.solve(m, p - corners[:, 0])
    return torch.cat([1 - l12.sum(-1, keepdim=True), l12], -1)


def test_uv_plane_covers_exactly_the_expected_texels_with_exact_barycentrics():
    hw = (8, 12)
    mesh = grid_mesh(1, u_range=(0.2, 0.7), v_range=(0.15, 0.8))
    frags = rasterize_uv(mesh, hw)
    u, v = texel_centres(hw)
    expected = (u >= 0.2) & (u <= 0.7) & (v >= 0.15) & (v <= 0.8)
    assert torch.equal(frags.mask, expected)
    assert frags.mask.sum() == 6 * 5 and frags.depth is None
    f = frags.face_index[frags.mask]
    px = torch.stack([u[frags.mask], v[frags.mask]], -1) * torch.tensor([12.0, 8.0])
    ref = solve_barycentric(mesh.uvs[mesh.faces[f]] * torch.tensor([12.0, 8.0]), px)
    assert (ref >= -1e-9).all()  # the reported face really contains the texel centre
    assert torch.allclose(frags.barycentric[frags.mask].double(), ref, atol=1e-6)
    assert torch.allclose(frags.barycentric.sum(-1)[frags.mask], torch.ones(30))
    assert (frags.barycentric[~frags.mask] == 0).all()


def test_interpolating_an_affine_function_reproduces_it():
    hw = (24, 36)
    mesh = grid_mesh(5, jitter=0.6)
    a = torch.tensor([[1.5, -0.5], [0.25, 2.0], [-1.0, 0.3]])
    attr = mesh.uvs @ a.T + torch.tensor([0.1, -0.2, 0.3])  # (V, 3), affine in uv
    frags = rasterize_uv(mesh, hw)
    assert frags.mask.all()
    out = interpolate(frags, attr, mesh.faces)
    u, v = texel_centres(hw)
    expected = torch.einsum("ck,khw->chw", a, torch.stack([u, v])) + torch.tensor([0.1, -0.2, 0.3])[:, None, None]
    assert out.shape == (3, 24, 36)
    assert (out - expected).abs().max() < 1e-5


@pytest.mark.parametrize("mirror", [False, True])
def test_shared_edges_through_texel_centres_are_drawn_exactly_once(mirror):
    # 4x4 cells on an 8x8 map: every cell diagonal passes exactly through texel centres
    mesh = grid_mesh(4)
    if mirror:  # a mirrored chart flips every triangle's orientation in UV
        mesh = Mesh(mesh.vertices, mesh.faces, torch.stack([1 - mesh.uvs[:, 0], mesh.uvs[:, 1]], -1))
    full = rasterize_uv(mesh, (8, 8))
    assert full.mask.all()
    half = mesh.n_faces // 2
    lower = rasterize_uv(Mesh(mesh.vertices, mesh.faces[:half], mesh.uvs), (8, 8)).mask
    upper = rasterize_uv(Mesh(mesh.vertices, mesh.faces[half:], mesh.uvs), (8, 8)).mask
    assert not (lower & upper).any()  # no texel claimed twice ...
    assert (lower | upper).all()  # ... and no crack
    assert torch.equal(full.face_index < half, lower)


def test_chunking_does_not_change_the_result():
    mesh = uv_sphere(8, 12)
    a = rasterize_uv(mesh, (32, 48))
    b = rasterize_uv(mesh, (32, 48), chunk=37)  # pairs split mid-triangle
    assert torch.equal(a.face_index, b.face_index)
    assert torch.equal(a.barycentric, b.barycentric)


def test_sphere_uv_positions_lie_on_the_sphere():
    mesh = uv_sphere(16, 24, radius=0.1)
    frags = rasterize_uv(mesh, (64, 96))
    # the pole rows keep one triangle per cell (the other is degenerate in 3D), so half a row of
    # cells at each pole is empty in UV: 1 - 1/16 of the texels are covered
    assert frags.mask.float().mean().item() == pytest.approx(1 - 1 / 16, abs=0.01)
    r = interpolate(frags, mesh.vertices, mesh.faces).norm(dim=0)[frags.mask]
    assert r.max() <= 0.1 + 1e-6 and r.min() > 0.1 * 0.97  # chords of a 16x24 sphere


def quad(size: float, z: float) -> Mesh:
    s = size / 2
    v = torch.tensor([[-s, -s, z], [s, -s, z], [s, s, z], [-s, s, z]])
    return Mesh(v, torch.tensor([[0, 1, 2], [0, 2, 3]]), torch.zeros(4, 2))


def test_image_quad_seen_head_on_covers_its_projection_at_the_right_depth():
    cam = Camera.look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), fov_deg=20.0, hw=(64, 80))
    frags = rasterize_image(quad(0.2, 0.0), cam)
    half = 0.1 * cam.focal  # projected half-size in pixels at depth 1
    rows, cols = torch.meshgrid(torch.arange(64), torch.arange(80), indexing="ij")
    expected = ((cols + 0.5 - 40).abs() <= half) & ((rows + 0.5 - 32).abs() <= half)
    assert torch.equal(frags.mask, expected)
    assert torch.allclose(frags.depth[frags.mask], torch.ones(int(expected.sum())), atol=1e-6)
    assert torch.isinf(frags.depth[~frags.mask]).all()


@pytest.mark.parametrize("near_first", [True, False])
def test_the_nearer_of_two_overlapping_triangles_wins(near_first):
    cam = Camera.look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), fov_deg=30.0, hw=(48, 48))
    far = torch.tensor([[-0.2, -0.2, 0.0], [0.2, -0.2, 0.0], [0.0, 0.2, 0.0]])
    near = torch.tensor([[-0.1, 0.1, 0.1], [0.0, -0.1, 0.1], [0.1, 0.1, 0.1]])  # facing away: no culling
    verts = torch.cat([near, far] if near_first else [far, near])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    frags = rasterize_image(Mesh(verts, faces, torch.zeros(6, 2)), cam)
    near_id = 0 if near_first else 1
    only_near = rasterize_image(Mesh(near, torch.tensor([[0, 1, 2]]), torch.zeros(3, 2)), cam).mask
    assert only_near.sum() > 20
    assert (frags.face_index[only_near] == near_id).all()
    assert torch.allclose(frags.depth[only_near], torch.full((int(only_near.sum()),), 0.9), atol=1e-5)
    assert ((frags.face_index == 1 - near_id) & only_near).sum() == 0
    assert (frags.face_index == 1 - near_id).sum() > 50  # the far triangle still shows around it


def test_a_closed_sphere_shows_only_its_front():
    mesh = uv_sphere(16, 24, radius=0.1)
    cam = Camera.look_at((0.1, 0.2, 0.5), (0.0, 0.0, 0.0), fov_deg=35.0, hw=(48, 48))
    frags = rasterize_image(mesh, cam)
    k = frags.mask
    points = interpolate(frags, mesh.vertices, mesh.faces)[:, k].T
    normals = torch.nn.functional.normalize(points, dim=1)  # outward on a sphere
    assert ((normals * cam.view_directions(points)).sum(1) > -0.05).all()  # every visible point faces the camera
    # the silhouette: a sphere at distance d subtends asin(r / d); compare covered area with the disc
    d = float(cam.position.norm())
    radius_px = cam.focal * torch.tan(torch.asin(torch.tensor(0.1 / d)))
    assert k.sum().item() == pytest.approx(torch.pi * radius_px.item() ** 2, rel=0.06)


def test_image_barycentrics_are_perspective_correct_and_differentiable():
    cam = Camera.look_at((0.3, 0.2, 0.6), (0.0, 0.0, 0.0), fov_deg=40.0, hw=(40, 56))
    mesh = grid_mesh(2, jitter=0.3)
    verts = (mesh.vertices - torch.tensor([0.5, -0.5, 0.0])) * 0.4
    verts = verts @ torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.8, -0.6], [0.0, 0.6, 0.8]]).T  # tilted plane
    verts.requires_grad_(True)
    frags = rasterize_image(mesh.with_vertices(verts), cam)
    assert frags.mask.sum() > 300
    points = interpolate(frags, verts, mesh.faces).reshape(3, -1).T[frags.mask.reshape(-1)]
    xy, depth = cam.project(points)
    idx = torch.nonzero(frags.mask.reshape(-1)).squeeze(1)
    centres = torch.stack([idx % 56 + 0.5, idx // 56 + 0.5], -1).float()
    # the interpolated 3D point under each pixel projects back onto that pixel's centre
    assert (xy - centres).abs().max() < 1e-3
    assert torch.allclose(depth, frags.depth[frags.mask], rtol=1e-5)
    # scaling the scene about the camera centre by k keeps every pixel on the same (scaled) point,
    # so d(sum of depths)/dk = sum of depths: the chain rule through barycentrics must agree
    frags.depth[frags.mask].sum().backward()
    d_dk = (verts.grad * (verts.detach() - cam.position)).sum()
    assert d_dk.item() == pytest.approx(frags.depth[frags.mask].sum().item(), rel=1e-4)


def test_interpolate_gradient_flows_to_attributes():
    mesh = grid_mesh(2)
    frags = rasterize_uv(mesh, (6, 6))
    attr = torch.ones(mesh.n_vertices, 2, requires_grad=True)
    interpolate(frags, attr, mesh.faces).sum().backward()
    # each covered texel spreads weight 1 over its corners, per channel
    assert attr.grad.sum().item() == pytest.approx(2 * 36, rel=1e-6)


def test_triangles_behind_the_camera_are_dropped():
    cam = Camera.look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), hw=(16, 16))
    assert not rasterize_image(quad(0.5, 2.0), cam).mask.any()


def test_dilate_fills_only_a_ring_outside_the_mask():
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[3:6, 3:6] = True
    img = torch.zeros(2, 9, 9)
    img[0, 3:6, 3:6] = 0.5
    img[1, 3:6, 3:6] = torch.arange(3.0)[None, :]  # varies along columns
    img[:, ~mask] = -7.0  # background that must not bleed in
    out = dilate(img, mask, 1)
    ring = torch.zeros_like(mask)
    ring[2:7, 2:7] = True
    ring &= ~mask
    assert torch.equal(out[:, mask], img[:, mask])  # inside: untouched
    assert torch.equal(out[:, ~(mask | ring)], img[:, ~(mask | ring)])  # beyond: untouched
    assert torch.allclose(out[0, ring], torch.full((int(ring.sum()),), 0.5))
    assert torch.allclose(out[1, 3:6, 2], torch.tensor([0.0, 0.0, 0.0]))  # left ring copies the left column
    assert torch.allclose(out[1, 3:6, 6], torch.tensor([2.0, 2.0, 2.0]))
    grown = dilate(img, mask, 2)
    assert (grown[0, 1:8, 1:8] == 0.5).all() and (grown[0, 0] == -7).all()


def test_bad_inputs_raise_clear_errors():
    mesh = grid_mesh(1)
    with pytest.raises(ValueError, match="hw"):
        rasterize_uv(mesh, (0, 4))
    with pytest.raises(ValueError, match="chunk"):
        rasterize_uv(mesh, (4, 4), chunk=0)
    frags = rasterize_uv(mesh, (4, 4))
    with pytest.raises(ValueError, match=r"\(V, C\)"):
        interpolate(frags, torch.zeros(4), mesh.faces)
    with pytest.raises(ValueError, match="attributes has 2 rows"):
        interpolate(frags, torch.zeros(2, 1), mesh.faces)
    with pytest.raises(ValueError, match="mask must be"):
        dilate(torch.zeros(1, 4, 4), torch.zeros(3, 3, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match="non-negative"):
        dilate(torch.zeros(1, 4, 4), torch.zeros(4, 4, dtype=torch.bool), -1)
