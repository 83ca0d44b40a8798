import torch

from avatarme_edu.geometry.mesh import Mesh, read_obj, uv_sphere, vertex_normals, write_obj


def test_sphere_normals_point_outward_and_weld_the_seam():
    mesh = uv_sphere(24, 36)
    n = mesh.vertex_normals()
    radial = torch.nn.functional.normalize(mesh.vertices, dim=-1)
    assert (n * radial).sum(-1).min() > 0.99
    # u = 0 and u = 1 duplicates share one normal
    seam_a = (mesh.uvs[:, 0] == 0) & (mesh.uvs[:, 1] > 0) & (mesh.uvs[:, 1] < 1)
    seam_b = (mesh.uvs[:, 0] == 1) & (mesh.uvs[:, 1] > 0) & (mesh.uvs[:, 1] < 1)
    assert torch.allclose(n[seam_a], n[seam_b])


def test_face_normals_are_outward_for_ccw_faces():
    mesh = uv_sphere(12, 16)
    centres = mesh.vertices[mesh.faces].mean(1)
    assert ((mesh.face_normals() * centres).sum(-1) > 0).all()


def test_obj_round_trip(tmp_path):
    mesh = uv_sphere(8, 12)
    path = write_obj(tmp_path / "sphere.obj", mesh)
    back = read_obj(path)
    assert torch.allclose(back.vertices, mesh.vertices, atol=1e-6)
    assert torch.equal(back.faces, mesh.faces)
    assert torch.allclose(back.uvs, mesh.uvs, atol=1e-6)
    assert not list(tmp_path.glob("*.part"))


def test_shape_errors_are_clear():
    import pytest

    with pytest.raises(ValueError, match=r"uvs must be \(V, 2\)"):
        Mesh(torch.zeros(4, 3), torch.zeros(1, 3, dtype=torch.long), torch.zeros(3, 2))


def test_single_triangle_normal():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    n = vertex_normals(v, torch.tensor([[0, 1, 2]]))
    assert torch.allclose(n, torch.tensor([0.0, 0, 1]).expand(3, 3))
