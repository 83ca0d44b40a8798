"""The standalone HTML viewer: one self-contained file with the mesh and maps embedded.

That the page draws the textured mesh is checked in a real browser in tests/browser/test_viewers.py.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from avatarme_edu.geometry.mesh import uv_sphere
from avatarme_edu.render.demo_maps import pattern_maps
from avatarme_edu.render.export import viewer_textures
from avatarme_edu.render.html_viewer import write_html_viewer


@pytest.fixture(scope="module")
def sphere():
    mesh = uv_sphere(12, 18)
    maps, shape = pattern_maps(mesh, (24, 36))
    return mesh, maps, shape


def _embedded(page: str) -> dict:
    m = re.search(r'<script id="avatar-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


def test_page_is_self_contained(sphere, tmp_path):
    mesh, maps, shape = sphere
    path = write_html_viewer(tmp_path / "v.html", mesh, maps, title="Ann's <head>", shape=shape, size=(300, 200))
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"https?://", page), "the viewer must work offline: no http(s) URLs"
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page), "no external scripts, styles or images"
    assert "Ann&#x27;s &lt;head&gt;" in page and "<head>" in page  # the title is escaped
    assert 'width="300" height="200"' in page
    assert not (tmp_path / "v.html.part").exists()


def test_page_embeds_the_mesh_and_maps(sphere, tmp_path, texture8):
    mesh, maps, shape = sphere
    data = _embedded(write_html_viewer(tmp_path / "v.html", mesh, maps, shape=shape).read_text(encoding="utf-8"))
    positions = np.frombuffer(base64.b64decode(data["positions"]), "<f4").reshape(-1, 3)
    np.testing.assert_array_equal(positions, mesh.vertices.numpy())
    uvs = np.frombuffer(base64.b64decode(data["uvs"]), "<f4").reshape(-1, 2)
    np.testing.assert_array_equal(uvs, mesh.uvs.numpy())
    indices = np.frombuffer(base64.b64decode(data["indices"]), "<u4").reshape(-1, 3)
    np.testing.assert_array_equal(indices, mesh.faces.numpy())
    assert data["n_vertices"] == mesh.n_vertices and data["n_faces"] == mesh.n_faces
    assert data["radius"] == pytest.approx(0.1, rel=1e-4)  # uv_sphere's radius, centred at 0
    tex = viewer_textures(mesh, maps, shape)
    for name, key in (("diffuseAlbedo", "diffuse"), ("specularAlbedo", "specular"),
                      ("specularNormals", "specular_normals_object"), ("diffuseNormals", "diffuse_normals_object")):
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["textures"][name]))))
        np.testing.assert_array_equal(image.reshape(tex[key].shape), tex[key])
    # and what the page holds is the maps themselves (expected values written out in tests/conftest.py)
    mask = maps.mask.numpy()
    for name, m, kind in (("diffuseAlbedo", maps.diffuse_albedo, "srgb"), ("specularAlbedo", maps.specular_albedo,
                          "linear"), ("diffuseNormals", maps.diffuse_normals, "normal")):
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["textures"][name]))), dtype=np.float64)
        image = image.reshape(*mask.shape, -1)
        np.testing.assert_allclose(image[mask], texture8(m, kind)[mask], atol=1, err_msg=name)
    normals = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["textures"]["specularNormals"]))),
                         dtype=np.float64)[mask] / 255 * 2 - 1
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=0.02)  # unit vectors, 8-bit


def test_large_maps_are_shrunk_for_the_page(sphere, tmp_path):
    mesh, maps, shape = sphere
    data = _embedded(write_html_viewer(tmp_path / "v.html", mesh, maps, shape=shape, max_width=18)
                     .read_text(encoding="utf-8"))
    assert Image.open(io.BytesIO(base64.b64decode(data["textures"]["diffuseAlbedo"]))).size == (18, 12)


def test_bad_size_is_refused(sphere, tmp_path):
    mesh, maps, shape = sphere
    with pytest.raises(ValueError, match="size"):
        write_html_viewer(tmp_path / "v.html", mesh, maps, shape=shape, size=(0, 100))
