import time

import pytest
import torch

from avatarme_edu.geometry import head as H
from avatarme_edu.geometry import sculpt as S
from avatarme_edu.geometry import template as T
from avatarme_edu.geometry import template_fit as TF
from avatarme_edu.geometry.mesh import read_obj, weld_index, write_obj


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # ray casting: many small ops, fastest on one thread of a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def head():
    t0 = time.perf_counter()
    h = H.load_eduhead()
    assert time.perf_counter() - t0 < 10.0
    return h


def test_stored_model_loads_with_the_template_topology(head):
    assert H.DATA_PATH.exists() and H.DATA_PATH.stat().st_size < 8e6
    assert head.n_vertices == T.n_vertices()
    assert torch.equal(head.faces, T.template_faces()) and torch.equal(head.uvs, T.template_uvs())
    assert head.components.shape == (head.n_identity, head.n_vertices, 3)
    assert head.population_coeffs.shape == (H.N_HEADS, head.n_identity)
    assert head.explained_variance >= H.VARIANCE_KEPT
    assert bool((head.variances[1:] <= head.variances[:-1]).all())
    assert H.load_eduhead() is head  # cached


def test_every_identity_shares_faces_and_uvs(head):
    g = torch.Generator().manual_seed(0)
    a = head.mesh(head.sample_identity(g))
    b = head.mesh(head.sample_identity(g), expression="smile")
    assert torch.equal(a.faces, b.faces) and torch.equal(a.uvs, b.uvs)
    assert not torch.allclose(a.vertices, b.vertices)
    c = head.mesh(head.sample_identity(torch.Generator().manual_seed(0)))
    assert torch.equal(a.vertices, c.vertices)  # same seed, same head


@pytest.mark.parametrize("seed", [0, 1])
def test_mesh_is_closed_manifold_outward_and_not_degenerate(head, seed):
    coeffs = head.sample_identity(torch.Generator().manual_seed(seed), scale=2.0)  # a 2-sigma identity
    mesh = head.mesh(coeffs)
    v, f = mesh.vertices, mesh.faces
    cross = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    assert float(cross.norm(dim=-1).min()) > 1e-8  # no degenerate triangles (area > 0.005 mm^2)
    centre = torch.tensor(T.RAY_CENTRE)
    outward = ((cross * (v[f].mean(1) - centre)).sum(-1) > 0).float().mean()
    assert float(outward) > 0.995
    radial = torch.nn.functional.normalize(v - centre, dim=-1)
    assert float(((mesh.vertex_normals() * radial).sum(-1) > 0).float().mean()) > 0.99
    volume = float((v[f[:, 0]] * cross).sum() / 6)  # positive: the surface is not inside out
    assert 0.003 < volume < 0.009  # m^3, head and neck stump
    # welded by position, every edge has exactly two triangles, once in each direction: closed
    fw = weld_index(v)[f]
    directed = torch.cat([fw[:, [0, 1]], fw[:, [1, 2]], fw[:, [2, 0]]])
    _, counts = torch.unique(directed, dim=0, return_counts=True)
    assert bool((counts == 1).all())
    undirected = torch.sort(directed, dim=1).values
    _, counts = torch.unique(undirected, dim=0, return_counts=True)
    assert bool((counts == 2).all())


def test_expressions_do_not_fold_the_surface(head):
    coeffs = head.sample_identity(torch.Generator().manual_seed(3), scale=2.0)
    n0 = head.mesh(coeffs).face_normals()
    for name in H.BLENDSHAPE_NAMES:
        n = head.mesh(coeffs, {name: 1.0}).face_normals()
        flipped = int(((n * n0).sum(-1) < 0).sum())
        # at most a handful of the tiny faces inside the mouth-line crease, out of ~57k
        assert flipped <= 20, (name, flipped)


def test_uvs_in_range_and_not_folded(head):
    uv, f = head.uvs, head.faces
    assert float(uv.min()) >= 0 and float(uv.max()) <= 1
    a, b, c = uv[f[:, 0]], uv[f[:, 1]], uv[f[:, 2]]
    signed = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    assert bool((signed < 0).all())


def test_pca_reconstructs_population_members(head):
    # sculpt two stored members from their parameters and compare with their PCA reconstruction;
    # this also catches a stored model that no longer matches the code
    idx = [0, 137]
    params = [S.HeadParams(**dict(zip(S.PARAM_NAMES, head.population_params[i].tolist()))) for i in idx]
    truth = TF.sculpt_vertices(params, head.canonical)
    for j, i in enumerate(idx):
        err = (head.shape(head.population_identity(i)) - truth[j]).norm(dim=-1)
        assert float(err.square().mean().sqrt()) < 0.001  # < 1 mm RMS
        assert float((err > 0.002).float().mean()) < 0.02  # a few silhouette vertices (ear lobe, nose wings)
    # project() inverts shape()
    c = head.sample_identity(torch.Generator().manual_seed(5))
    assert torch.allclose(head.project(head.shape(c)), c, atol=1e-3)


def test_population_matches_its_seed():
    params = S.sample_head_params(torch.Generator().manual_seed(H.SEED), H.N_HEADS)
    stored = H.load_eduhead().population_params
    assert torch.allclose(torch.tensor([[getattr(p, n) for n in S.PARAM_NAMES] for p in params]), stored)


@pytest.mark.slow
def test_build_is_deterministic_and_small_builds_work():
    a = H.build_eduhead(n_heads=3, seed=11, variance_kept=0.9)
    b = H.build_eduhead(n_heads=3, seed=11, variance_kept=0.9)
    assert a.n_identity <= 2 and a.explained_variance >= 0.9
    assert torch.equal(a.mean, b.mean) and torch.equal(a.components, b.components)
    with pytest.raises(ValueError, match="at least 2"):
        H.build_eduhead(n_heads=1)


def test_save_and_read_round_trip(head, tmp_path):
    path = H.save_eduhead(head, tmp_path / "m.safetensors")
    back = H.read_eduhead(path)
    assert torch.equal(back.mean, head.mean) and torch.equal(back.landmark_ids, head.landmark_ids)
    assert torch.allclose(back.components, head.components, atol=1e-3)
    with pytest.raises(FileNotFoundError, match="--build"):
        H.read_eduhead(tmp_path / "missing.safetensors")


def test_shape_is_differentiable_and_batched(head):
    c = torch.zeros(2, head.n_identity, requires_grad=True)
    w = torch.zeros(2, len(H.BLENDSHAPE_NAMES), requires_grad=True)
    v = head.vertices(c, w)
    assert v.shape == (2, head.n_vertices, 3)
    lm = head.landmarks(v)
    assert lm.shape == (2, 68, 3)
    lm[:, 30, 2].sum().backward()
    assert c.grad is not None and float(c.grad.abs().sum()) > 0
    assert w.grad is not None and float(w.grad.abs().sum()) > 0


def test_bad_inputs_raise_clear_errors(head):
    with pytest.raises(ValueError, match=f"last dimension K = {head.n_identity}"):
        head.shape(torch.zeros(3))
    with pytest.raises(ValueError, match="unknown expression 'grin'"):
        head.mesh(expression="grin")
    with pytest.raises(ValueError, match="unknown blendshapes"):
        head.mesh(expression={"wink": 1.0})
    with pytest.raises(ValueError, match="population index"):
        head.population_identity(H.N_HEADS)


def test_obj_round_trip(head, tmp_path):
    mesh = head.mesh(head.sample_identity(torch.Generator().manual_seed(2)), expression="smile")
    back = read_obj(write_obj(tmp_path / "head.obj", mesh))
    assert torch.allclose(back.vertices, mesh.vertices, atol=1e-6)
    assert torch.equal(back.faces, mesh.faces)
    assert torch.allclose(back.uvs, mesh.uvs, atol=1e-6)


def _tensors(head):
    for name, value in vars(head).items():
        for key, t in (value.items() if isinstance(value, dict) else [(None, value)]):
            yield f"{name}[{key}]" if key else name, t


def test_model_moves_to_another_device(head):
    # "meta" is a real second device on every machine (shapes, no storage); a GPU is checked below
    moved = head.to("meta")
    assert moved is not head and moved.device.type == "meta" and head.device.type == "cpu"
    for name, t in _tensors(moved):
        assert t.device.type == "meta", name
    shape = moved.shape(torch.zeros(2, head.n_identity, device="meta"))
    assert shape.device.type == "meta" and shape.shape == (2, head.n_vertices, 3)
    assert H.load_eduhead("cpu") is head


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_model_on_cuda_gives_the_cpu_shape(head):
    on_gpu = H.load_eduhead("cuda")
    assert all(t.device.type == "cuda" for _, t in _tensors(on_gpu))
    assert H.load_eduhead("cuda") is on_gpu  # cached per device
    c = head.sample_identity(torch.Generator().manual_seed(4))
    assert torch.allclose(on_gpu.shape(c.cuda()).cpu(), head.shape(c), atol=1e-6)
