import numpy as np
import torch

from avatarme_edu.geometry import template as T


def test_template_size_and_uv_range():
    v = T.n_vertices()
    assert 15_000 <= v <= 30_000
    uvs = T.template_uvs()
    assert uvs.shape == (v, 2) and float(uvs.min()) >= 0.0 and float(uvs.max()) <= 1.0
    d = T.template_directions()
    assert torch.allclose(d.norm(dim=-1), torch.ones(v), atol=1e-6)


def test_uv_triangles_never_fold_and_have_a_few_texels():
    uv = T.template_uvs().double() * torch.tensor([576.0, 384.0], dtype=torch.float64)
    f = T.template_faces()
    a, b, c = uv[f[:, 0]], uv[f[:, 1]], uv[f[:, 2]]
    signed = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    assert bool((signed < 0).all())  # one orientation for every triangle: no fold-overs
    area = signed.abs() / 2
    # the grid tiles the whole map except half of each cell in the two pole rows (those triangles
    # would join two copies of the pole point)
    pole_halves = 2 * T.GRID_COLS * 0.5 * (576 / T.GRID_COLS) * (384 / T.GRID_ROWS)
    assert abs(float(area.sum()) - (576 * 384 - pole_halves)) < 1e-3
    assert 2.0 < float(area.median()) < 8.0  # "a few texels"


def test_warp_is_monotone_and_inverts():
    u = np.linspace(0, 1, 1001)
    az = T.azimuth_of_u(u)
    assert np.all(np.diff(az) > 0) and az[0] == -180 and az[-1] == 180
    assert np.allclose(T.u_of_azimuth(az), u, atol=1e-6)
    v = np.linspace(0, 1, 1001)
    el = T.elevation_of_v(v)
    assert np.all(np.diff(el) < 0) and el[0] == 90 and el[-1] == -90
    assert np.allclose(T.v_of_elevation(el), v, atol=1e-6)
    # the face window gets more texels per degree than the back of the head
    assert T.u_of_azimuth(np.array([10.0]))[0] - T.u_of_azimuth(np.array([0.0]))[0] > \
        3 * (T.u_of_azimuth(np.array([180.0]))[0] - T.u_of_azimuth(np.array([170.0]))[0])


def test_face_gets_most_of_the_map():
    frac_u = T.u_of_azimuth(np.array([70.0]))[0] - T.u_of_azimuth(np.array([-70.0]))[0]
    frac_v = T.v_of_elevation(np.array([-62.0]))[0] - T.v_of_elevation(np.array([48.0]))[0]
    assert frac_u * frac_v > 0.5


def test_seam_and_pole_duplicates_share_directions():
    d = T.template_directions()
    weld = T.template_weld()
    assert torch.equal(d, d[weld])
    grid = d.reshape(T.GRID_ROWS + 1, T.GRID_COLS + 1, 3)
    assert torch.equal(grid[:, 0], grid[:, -1])
    assert torch.equal(grid[0], torch.tensor([0.0, 1.0, 0.0]).expand(T.GRID_COLS + 1, 3))
    # the middle column looks straight ahead (+Z): u = 0.5 is the face's midline
    mid = grid[T.GRID_ROWS // 2, T.GRID_COLS // 2]
    assert float(mid[2]) > 0.9 and abs(float(mid[0])) < 1e-6


def test_grid_is_mirror_symmetric():
    grid = T.template_directions().reshape(T.GRID_ROWS + 1, T.GRID_COLS + 1, 3)
    mirrored = grid.flip(1) * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(grid[1:-1, 1:-1], mirrored[1:-1, 1:-1], atol=1e-6)
