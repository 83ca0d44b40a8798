"""Exports: OBJ + MTL + PNG and binary glTF, loaded back by trimesh and checked by the Khronos validator."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avatarme_edu.geometry.mesh import Mesh, read_obj, uv_sphere
from avatarme_edu.maps_io import load_map
from avatarme_edu.optics.brdf import SKIN_IOR
from avatarme_edu.reflectance import ReflectanceMaps
from avatarme_edu.render.demo_maps import pattern_maps
from avatarme_edu.render.export import (
    SPECULAR_COLOR_FACTOR, export_glb, export_obj, gltf_tangents, mesh_tangent_frame,
    object_to_mesh_tangent, specular_normals_object, viewer_textures,
)

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = REPO / "tools" / "gltf-validator"
HW = (48, 72)


@pytest.fixture(scope="module")
def sphere():
    mesh = uv_sphere(16, 24)
    maps, shape = pattern_maps(mesh, HW)
    return mesh, maps, shape


def _plane(mirrored: bool = False, n: int = 6) -> Mesh:
    """A unit square in the XY plane facing +Z; UVs follow x and -y (or are mirrored in u)."""
    s = torch.linspace(0, 1, n)
    yy, xx = torch.meshgrid(s, s, indexing="ij")
    vertices = torch.stack([xx, yy, torch.zeros_like(xx)], -1).reshape(-1, 3)
    u = 1 - xx if mirrored else xx
    uvs = torch.stack([u, 1 - yy], -1).reshape(-1, 2)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, b, d], -1).reshape(-1, 3), torch.stack([a, d, c], -1).reshape(-1, 3)])
    return Mesh(vertices, faces, uvs)


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cos = (torch.nn.functional.normalize(a, dim=0) * torch.nn.functional.normalize(b, dim=0)).sum(0)
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


# ---------------------------------------------------------------------------------------------
# the tangent frame

def test_gltf_tangents_follow_u_and_are_orthonormal(sphere):
    mesh, _, _ = sphere
    t = gltf_tangents(mesh)
    n = mesh.vertex_normals()
    assert t.shape == (mesh.n_vertices, 4)
    assert torch.allclose(t[:, :3].norm(dim=1), torch.ones(mesh.n_vertices), atol=1e-5)
    assert (t[:, :3] * n).sum(1).abs().max() < 1e-4
    assert set(t[:, 3].tolist()) == {1.0}  # the sphere's chart is not mirrored
    # Away from the poles, +u runs along the azimuth: d/dphi (sin phi, ., cos phi) = (cos phi, 0, -sin phi).
    uv = mesh.uvs
    ring = (uv[:, 1] > 0.1) & (uv[:, 1] < 0.9)
    phi = (uv[ring, 0] - 0.5) * 2 * math.pi
    expected = torch.stack([torch.cos(phi), torch.zeros_like(phi), -torch.sin(phi)], 1)
    agree = (t[ring, :3] * expected).sum(1)
    seam = (uv[ring, 0] == 0) | (uv[ring, 0] == 1)  # seam vertices see the faces of one side only
    assert (agree[~seam] > 0.999).all() and (agree[seam] > 0.99).all()


def test_gltf_tangents_handedness_of_a_mirrored_chart():
    plain, mirrored = gltf_tangents(_plane()), gltf_tangents(_plane(mirrored=True))
    assert torch.allclose(plain, torch.tensor([1.0, 0, 0, 1]).expand_as(plain), atol=1e-6)
    # Mirrored in u: T flips to -X, and w = -1 keeps B = w (N x T) = +Y pointing up the image.
    assert torch.allclose(mirrored, torch.tensor([-1.0, 0, 0, -1]).expand_as(mirrored), atol=1e-6)


def test_exported_normal_map_decodes_in_an_independent_derivative_frame(sphere):
    """Decode the exported map as a viewer without our tangents would (three.js, MikkTSpace-like):
    x along dP/du, y along -dP/dv (green = up the image), z along the interpolated normal. The
    result must be the specular normals in object space."""
    mesh, maps, shape = sphere
    ns_obj = specular_normals_object(mesh, maps, shape)
    frame = mesh_tangent_frame(mesh, maps.hw)
    exported = object_to_mesh_tangent(ns_obj, frame)
    # Frame from finite differences of the baked position map (texel centres are 1/W, 1/H apart).
    p = shape.position
    dpdu = p[:, 1:-1, 2:] - p[:, 1:-1, :-2]
    dpdv = p[:, 2:, 1:-1] - p[:, :-2, 1:-1]
    n = frame[2][:, 1:-1, 1:-1]
    t = torch.nn.functional.normalize(dpdu - n * (n * dpdu).sum(0), dim=0)
    b = torch.nn.functional.normalize(-dpdv - n * (n * -dpdv).sum(0) - t * (t * -dpdv).sum(0), dim=0)
    e = exported[:, 1:-1, 1:-1]
    decoded = e[0:1] * t + e[1:2] * b + e[2:3] * n
    inner = torch.nn.functional.max_pool2d((~shape.mask).float()[None], 3, 1, 1)[0][1:-1, 1:-1] == 0
    v = (torch.arange(1, HW[0] - 1) + 0.5) / HW[0]
    inner &= ((v > 0.15) & (v < 0.85))[:, None]  # finite differences are poor near the poles
    err = _angle_deg(decoded, ns_obj[:, 1:-1, 1:-1])[inner]
    assert err.numel() > 1000
    assert err.mean() < 1.0 and err.max() < 5.0, (err.mean(), err.max())
    # and the map really carries detail: it is not just (0, 0, 1)
    assert _angle_deg(e, torch.tensor([0.0, 0, 1]).view(3, 1, 1))[inner].mean() > 5


def test_viewer_textures_are_8_bit_and_padded(sphere):
    mesh, maps, shape = sphere
    tex = viewer_textures(mesh, maps, shape)
    h, w = maps.hw
    assert {k: v.shape for k, v in tex.items()} == {
        "diffuse": (h, w, 3), "specular": (h, w, 1), "normal": (h, w, 3),
        "specular_normals_object": (h, w, 3), "diffuse_normals_object": (h, w, 3)}
    assert all(v.dtype == np.uint8 for v in tex.values())
    # Diffuse albedo is sRGB-encoded: linear 0.8 red of the top-left checker cell -> 231.
    assert tuple(tex["diffuse"][h // 8, w // 12]) == (231, 63, 63)
    small = viewer_textures(mesh, maps, shape, max_width=36, which=("diffuse",))
    assert small["diffuse"].shape == (h // 2, 36, 3)
    with pytest.raises(ValueError, match="unknown texture"):
        viewer_textures(mesh, maps, shape, which=("albedo",))


# ---------------------------------------------------------------------------------------------
# glTF

def _read_glb(path: Path):
    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, total) == (b"glTF", 2, len(data))
    json_len, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON" and json_len % 4 == 0
    gltf = json.loads(data[20:20 + json_len])
    bin_len, bin_type = struct.unpack_from("<I4s", data, 20 + json_len)
    assert bin_type == b"BIN\0"
    return gltf, data[28 + json_len:28 + json_len + bin_len]


def test_export_glb_structure_and_contents(sphere, tmp_path, texture8):
    mesh, maps, shape = sphere
    path = export_glb(tmp_path / "head.glb", mesh, maps, shape=shape)
    assert path == tmp_path / "head.glb" and not (tmp_path / "head.glb.part").exists()
    gltf, blob = _read_glb(path)
    prim = gltf["meshes"][0]["primitives"][0]
    assert set(prim["attributes"]) == {"POSITION", "NORMAL", "TANGENT", "TEXCOORD_0"}
    assert all(v["byteOffset"] % 4 == 0 for v in gltf["bufferViews"])

    def accessor(i, dtype, width):
        a = gltf["accessors"][i]
        v = gltf["bufferViews"][a["bufferView"]]
        return np.frombuffer(blob, dtype, a["count"] * width, v["byteOffset"]).reshape(a["count"], width)

    pos = accessor(prim["attributes"]["POSITION"], "<f4", 3)
    np.testing.assert_allclose(pos, mesh.vertices.numpy(), atol=1e-7)
    np.testing.assert_allclose(accessor(prim["attributes"]["TEXCOORD_0"], "<f4", 2), mesh.uvs.numpy(), atol=1e-7)
    np.testing.assert_array_equal(accessor(prim["indices"], "<u4", 1).reshape(-1, 3), mesh.faces.numpy())
    np.testing.assert_allclose(accessor(prim["attributes"]["TANGENT"], "<f4", 4), gltf_tangents(mesh).numpy(), atol=1e-7)

    material = gltf["materials"][0]
    assert material["extensions"]["KHR_materials_ior"]["ior"] == SKIN_IOR
    assert material["extensions"]["KHR_materials_specular"]["specularColorFactor"] == [SPECULAR_COLOR_FACTOR] * 3
    # F0 of a typical A_S = 0.5: ((ior - 1) / (ior + 1))^2 * factor * 0.5 = 0.028
    assert ((SKIN_IOR - 1) / (SKIN_IOR + 1)) ** 2 * SPECULAR_COLOR_FACTOR * 0.5 == pytest.approx(0.0278, abs=1e-4)
    tex = viewer_textures(mesh, maps, shape, which=("diffuse", "specular", "normal"))

    def image(texture_info):
        img = gltf["images"][gltf["textures"][texture_info["index"]]["source"]]
        v = gltf["bufferViews"][img["bufferView"]]
        return np.asarray(Image.open(io.BytesIO(blob[v["byteOffset"]:v["byteOffset"] + v["byteLength"]])))

    np.testing.assert_array_equal(image(material["pbrMetallicRoughness"]["baseColorTexture"]), tex["diffuse"])
    np.testing.assert_array_equal(image(material["normalTexture"]), tex["normal"])
    specular = image(material["extensions"]["KHR_materials_specular"]["specularTexture"])
    np.testing.assert_array_equal(specular[..., 3], tex["specular"][..., 0])  # the extension reads alpha
    # and those pixels are the maps themselves (expected values written out in tests/conftest.py)
    mask = maps.mask.numpy()
    base = image(material["pbrMetallicRoughness"]["baseColorTexture"])[..., :3]
    np.testing.assert_allclose(base[mask], texture8(maps.diffuse_albedo, "srgb")[mask], atol=1)
    np.testing.assert_allclose(specular[..., 3][mask], texture8(maps.specular_albedo, "linear")[mask][:, 0], atol=1)
    normals = image(material["normalTexture"])[..., :3][mask].astype(np.float64) / 255 * 2 - 1
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=0.02)


def test_export_glb_loads_in_trimesh(sphere, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh, maps, shape = sphere
    scene = trimesh.load(export_glb(tmp_path / "a.glb", mesh, maps, shape=shape), process=False)
    (geometry,) = scene.geometry.values()
    assert geometry.vertices.shape == (mesh.n_vertices, 3) and geometry.faces.shape == (mesh.n_faces, 3)
    np.testing.assert_allclose(geometry.visual.uv[:, 0], mesh.uvs[:, 0].numpy(), atol=1e-6)
    material = geometry.visual.material
    w_h = (maps.hw[1], maps.hw[0])
    assert material.baseColorTexture.size == w_h and material.normalTexture.size == w_h


def test_export_glb_passes_the_khronos_validator(sphere, tmp_path):
    node = shutil.which("node")
    script = VALIDATOR / "validate.js"
    if node is None:
        pytest.skip("node is not installed: the Khronos glTF validator runs on node")
    if not (VALIDATOR / "node_modules" / "gltf-validator").exists():
        pytest.skip("gltf-validator is not installed: run scripts/install_browser.sh (npm ci in tools/gltf-validator)")
    mesh, maps, shape = sphere
    path = export_glb(tmp_path / "v.glb", mesh, maps, shape=shape)
    run = subprocess.run([node, str(script), str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode in (0, 1), run.stderr
    report = json.loads(run.stdout)
    issues = report["issues"]
    messages = [m for m in issues["messages"] if m["severity"] <= 1]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, messages
    assert report["info"]["totalVertexCount"] == mesh.n_vertices
    assert report["info"]["totalTriangleCount"] == mesh.n_faces


def test_export_glb_rejects_bad_arguments(sphere, tmp_path):
    mesh, maps, shape = sphere
    with pytest.raises(ValueError, match=r"\.glb"):
        export_glb(tmp_path / "a.gltf", mesh, maps, shape=shape)
    with pytest.raises(ValueError, match="ReflectanceMaps"):
        export_glb(tmp_path / "a.glb", mesh, maps.as_dict(), shape=shape)
    with pytest.raises(ValueError, match="bake the shape"):
        export_glb(tmp_path / "a.glb", mesh, maps, shape=pattern_maps(mesh, (24, 36))[1])


# ---------------------------------------------------------------------------------------------
# OBJ + MTL + PNG

def test_export_obj_writes_consistent_files(sphere, tmp_path):
    mesh, maps, shape = sphere
    paths = export_obj(tmp_path / "out", mesh, maps, name="head", shape=shape)
    assert all(p.is_file() for p in paths.values()), paths
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["head.obj", "head.mtl", "head_diffuse.png", "head_specular.png", "head_normal.png", "raw", "README.txt"])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind

    # The OBJ names the MTL, the MTL names PNGs that exist.
    obj_text = paths["obj"].read_text()
    assert "mtllib head.mtl" in obj_text and "usemtl skin" in obj_text
    referenced = re.findall(r"^(?:map_Kd|map_Ks|map_Bump)\s+(?:-bm\s+\S+\s+)?(\S+)$", paths["mtl"].read_text(), re.M)
    assert sorted(referenced) == ["head_diffuse.png", "head_normal.png", "head_specular.png"]
    assert all((tmp_path / "out" / r).is_file() for r in referenced)

    back = read_obj(paths["obj"])
    assert torch.allclose(back.vertices, mesh.vertices, atol=1e-6)
    assert torch.equal(back.faces, mesh.faces)
    assert torch.allclose(back.uvs, mesh.uvs, atol=1e-6)
    assert Image.open(paths["diffuse"]).size == (maps.hw[1], maps.hw[0])

    # Raw maps at full precision: 16-bit normals come back to within quantisation.
    assert torch.equal(load_map(paths["raw_mask"], "mask"), maps.mask)
    assert _angle_deg(load_map(paths["raw_specular_normals"], "normal"), maps.specular_normals)[maps.mask].max() < 0.05
    assert (load_map(paths["raw_specular_albedo"], "gray") - maps.specular_albedo).abs().max() < 1e-4


def test_export_obj_loads_in_trimesh_with_its_texture(sphere, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh, maps, shape = sphere
    paths = export_obj(tmp_path / "out", mesh, maps, shape=shape)
    loaded = trimesh.load(paths["obj"], process=False)
    used = torch.unique(mesh.faces).numel()  # trimesh drops vertices no face uses (the sphere has 2)
    assert loaded.vertices.shape == (used, 3) and loaded.faces.shape == (mesh.n_faces, 3)
    assert loaded.visual.uv.shape == (used, 2)
    assert loaded.visual.material.image.size == (maps.hw[1], maps.hw[0])
    np.testing.assert_array_equal(np.asarray(loaded.visual.material.image.convert("RGB")),
                                  np.asarray(Image.open(paths["diffuse"]).convert("RGB")))


def test_export_obj_is_all_or_nothing(sphere, tmp_path):
    mesh, maps, shape = sphere
    good = export_obj(tmp_path / "out", mesh, maps, shape=shape)
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()}
    # A NaN in the specular albedo makes the last step (the raw 16-bit maps) fail.
    broken = ReflectanceMaps(**{**maps.as_dict(), "specular_albedo": maps.specular_albedo * float("nan")})
    with pytest.raises(ValueError, match="NaN"):
        export_obj(tmp_path / "out", mesh, broken, shape=shape)
    with pytest.raises(ValueError, match="NaN"):
        export_obj(tmp_path / "new", mesh, broken, shape=shape)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no "new", no temporary folders
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()} == before
    assert good["obj"].is_file()


def test_export_obj_rejects_bad_names(sphere, tmp_path):
    mesh, maps, shape = sphere
    for name in ("", "a/b", "my head"):
        with pytest.raises(ValueError, match="name"):
            export_obj(tmp_path / "out", mesh, maps, name=name, shape=shape)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_exports_work_from_cuda_tensors(sphere, tmp_path):
    mesh, maps, shape = sphere
    cpu = viewer_textures(mesh, maps, shape)
    gpu = viewer_textures(mesh.to("cuda"), maps.to("cuda"), shape.to("cuda"))
    for name in cpu:
        assert np.abs(cpu[name].astype(int) - gpu[name].astype(int)).max() <= 1, name
    gltf, _ = _read_glb(export_glb(tmp_path / "g.glb", mesh.to("cuda"), maps.to("cuda"), shape=shape.to("cuda")))
    assert gltf["accessors"][0]["count"] == mesh.n_vertices
    assert export_obj(tmp_path / "o", mesh.to("cuda"), maps.to("cuda"), shape=shape.to("cuda"))["obj"].is_file()
