"""The pythreejs scene: the widget tree, the data it carries, and what the controls change.

What the browser draws from it is checked in tests/browser/test_viewers.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pythreejs = pytest.importorskip("pythreejs")
widgets = pytest.importorskip("ipywidgets")

from avatarme_edu.geometry.mesh import uv_sphere  # noqa: E402
from avatarme_edu.render.demo_maps import pattern_maps  # noqa: E402
from avatarme_edu.render.export import viewer_textures  # noqa: E402
from avatarme_edu.render.threejs import (  # noqa: E402
    MAP_CHOICES, SPECULAR_F0, avatar_scene, light_direction,
)


@pytest.fixture(scope="module")
def scene():
    mesh = uv_sphere(12, 18)
    maps, shape = pattern_maps(mesh, (24, 36))
    box = avatar_scene(mesh, maps, shape=shape, size=(320, 240))
    return mesh, maps, shape, box


def _parts(box):
    renderer, menu_row, light_row = box.children
    head, camera, light, ambient = renderer.scene.children
    (show,) = menu_row.children
    azimuth, elevation, diffuse, specular = light_row.children
    return dict(renderer=renderer, head=head, camera=camera, light=light, ambient=ambient, show=show,
                azimuth=azimuth, elevation=elevation, diffuse=diffuse, specular=specular)


def test_widget_tree(scene):
    *_, box = scene
    assert isinstance(box, widgets.VBox)
    p = _parts(box)
    assert isinstance(p["renderer"], pythreejs.Renderer)
    assert (p["renderer"].width, p["renderer"].height) == (320, 240)
    assert p["renderer"].gammaOutput is True
    assert isinstance(p["head"], pythreejs.Mesh)
    assert isinstance(p["camera"], pythreejs.PerspectiveCamera) and p["camera"].aspect == pytest.approx(4 / 3)
    assert isinstance(p["light"], pythreejs.DirectionalLight) and isinstance(p["ambient"], pythreejs.AmbientLight)
    (controls,) = p["renderer"].controls
    assert isinstance(controls, pythreejs.OrbitControls) and controls.controlling is p["camera"]
    assert isinstance(p["show"], widgets.Dropdown) and p["show"].options == MAP_CHOICES
    assert isinstance(p["azimuth"], widgets.FloatSlider) and isinstance(p["elevation"], widgets.FloatSlider)
    assert isinstance(p["diffuse"], widgets.Checkbox) and isinstance(p["specular"], widgets.Checkbox)


def test_geometry_carries_the_mesh(scene):
    mesh, _, _, box = scene
    geometry = _parts(box)["head"].geometry
    assert set(geometry.attributes) == {"position", "normal", "uv"}
    np.testing.assert_allclose(geometry.attributes["position"].array, mesh.vertices.numpy())
    normals = geometry.attributes["normal"].array
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    uv = geometry.attributes["uv"].array
    np.testing.assert_allclose(uv[:, 0], mesh.uvs[:, 0].numpy())
    np.testing.assert_allclose(uv[:, 1], 1 - mesh.uvs[:, 1].numpy())  # three.js's t runs up
    np.testing.assert_array_equal(geometry.index.array, mesh.faces.numpy().reshape(-1))
    assert geometry.index.array.dtype == np.uint32


def test_shaded_material_and_textures(scene, texture8):
    mesh, maps, shape, box = scene
    material = _parts(box)["head"].material
    assert isinstance(material, pythreejs.MeshPhongMaterial)
    assert material.specular == SPECULAR_F0 and material.color == "#ffffff"
    tex = viewer_textures(mesh, maps, shape)
    # Rows are uploaded bottom-up, so flipping them back gives the stored image.
    np.testing.assert_array_equal(material.map.data[::-1], tex["diffuse"])
    np.testing.assert_array_equal(material.normalMap.data[::-1], tex["normal"])
    np.testing.assert_array_equal(material.specularMap.data[::-1, :, 0], tex["specular"][..., 0])
    # the uploaded pixels are the maps themselves (expected values written out in tests/conftest.py)
    mask = maps.mask.numpy()
    np.testing.assert_allclose(material.map.data[::-1][mask][:, :3], texture8(maps.diffuse_albedo, "srgb")[mask],
                               atol=1)
    np.testing.assert_allclose(material.specularMap.data[::-1][mask][:, 0],
                               texture8(maps.specular_albedo, "linear")[mask][:, 0], atol=1)
    normals = material.normalMap.data[::-1][mask][:, :3].astype(np.float64) / 255 * 2 - 1
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=0.02)  # unit tangent-space normals
    assert float(np.median(normals[:, 2])) > 0.8  # mostly +Z: bumps on a smooth sphere
    assert material.map.encoding == "sRGBEncoding" and material.normalMap.encoding == "LinearEncoding"
    assert material.map.flipY is False


def test_map_menu_swaps_materials(scene):
    mesh, maps, shape, box = scene
    p = _parts(box)
    shaded = p["head"].material
    tex = viewer_textures(mesh, maps, shape)
    for choice, key in (("specular normals", "specular_normals_object"), ("diffuse albedo", "diffuse"),
                        ("diffuse normals", "diffuse_normals_object")):
        p["show"].value = choice
        assert isinstance(p["head"].material, pythreejs.MeshBasicMaterial)
        np.testing.assert_array_equal(p["head"].material.map.data[::-1], tex[key])
    p["show"].value = "shaded"
    assert p["head"].material is shaded


def test_light_sliders_and_term_toggles(scene):
    *_, box = scene
    p = _parts(box)
    p["azimuth"].value, p["elevation"].value = 90, 0
    direction = np.asarray(p["light"].position) / np.linalg.norm(p["light"].position)
    np.testing.assert_allclose(direction, [1, 0, 0], atol=1e-9)
    p["elevation"].value = 60
    direction = np.asarray(p["light"].position) / np.linalg.norm(p["light"].position)
    np.testing.assert_allclose(direction, [0.5, math.sqrt(3) / 2, 0], atol=1e-9)
    material = p["head"].material
    p["diffuse"].value = False
    assert material.color == "#000000" and material.specular == SPECULAR_F0
    p["specular"].value = False
    assert material.specular == "#000000"
    p["diffuse"].value = p["specular"].value = True
    assert material.color == "#ffffff" and material.specular == SPECULAR_F0


def test_light_direction_known_values():
    assert light_direction(0, 0) == pytest.approx((0, 0, 1))
    assert light_direction(-90, 0) == pytest.approx((-1, 0, 0))
    x, y, z = light_direction(35, 25)
    assert math.hypot(x, y, z) == pytest.approx(1)
    assert y == pytest.approx(math.sin(math.radians(25)))


def test_bad_size_is_refused(scene):
    mesh, maps, shape, _ = scene
    with pytest.raises(ValueError, match="size"):
        avatar_scene(mesh, maps, shape=shape, size=(8, 8))
    with pytest.raises(ValueError, match="Mesh"):
        avatar_scene(mesh.vertices, maps, shape=shape)
