"""Tests of the static multi-view pictures (tiny sizes, a sphere whose symmetry gives known answers)."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from avatarme_edu.geometry.mesh import uv_sphere
from avatarme_edu.geometry.uv_bake import bake_shape_maps
from avatarme_edu.reflectance import ReflectanceMaps
from avatarme_edu.render.lights import DirectionalLight, direction_from_angles, studio
from avatarme_edu.render.views import (
    compare_renders, default_light_sets, relight_strip, save_views, turntable, view_camera,
)

HW = (64, 64)
FAST = {"shadows": False}  # a convex sphere casts no shadows; skip the shadow maps to keep tests fast


@pytest.fixture(scope="module")
def scene():
    mesh = uv_sphere(24, 48, radius=0.1)
    shape = bake_shape_maps(mesh, (48, 72))
    h, w = shape.hw
    flat = torch.zeros(3, h, w)
    flat[2] = 1.0
    maps = ReflectanceMaps(torch.tensor([0.6, 0.4, 0.3]).view(3, 1, 1).expand(3, h, w).clone(),
                           torch.full((1, h, w), 0.35), shape.normals_object.clone(), flat, shape.mask.clone())
    return mesh, shape, maps


def _psnr(a, b):
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def test_turntable_of_a_sphere_looks_the_same_from_every_view(scene):
    mesh, shape, maps = scene
    lights = [DirectionalLight(direction_from_angles(-30, 20))]
    out = turntable(mesh, shape, maps, lights, views=("front", "profile", 180.0), hw=HW, shadow_resolution=64)
    assert out["images"].shape == (3, 3, *HW) and out["srgb"].shape == (3, 3, *HW)
    assert out["masks"].shape == (3, *HW) and out["names"] == ["front", "profile", "az+180"]
    # The lights turn with the camera and the sphere (48 segments) is symmetric under 90-degree turns:
    # every view shows the same picture.
    assert _psnr(out["srgb"][0], out["srgb"][1]) > 35
    assert _psnr(out["srgb"][0], out["srgb"][2]) > 30  # the back has the UV seam
    # Lights fixed to the head instead: the profile view sees the key light from the side.
    fixed = turntable(mesh, shape, maps, lights, views=("front", "profile"), hw=HW, lights_follow_camera=False,
                      shadow_resolution=64)
    assert _psnr(fixed["srgb"][0], fixed["srgb"][1]) < 25
    assert torch.equal(fixed["srgb"][0], out["srgb"][0])


def test_view_camera_frames_the_whole_mesh(scene):
    mesh, _, _ = scene
    cam = view_camera(mesh, "three_quarter", hw=(48, 96))
    xy, depth = cam.project(mesh.vertices)
    assert (depth > 0).all()
    assert (xy[:, 0] > 0).all() and (xy[:, 0] < 96).all() and (xy[:, 1] > 0).all() and (xy[:, 1] < 48).all()
    assert float(xy[:, 1].max() - xy[:, 1].min()) > 0.8 * 48  # and fills the narrow side
    with pytest.raises(ValueError, match="unknown view"):
        view_camera(mesh, "top")


def test_relight_strip_mirrors_left_and_right_key_lights(scene):
    mesh, shape, maps = scene
    sets = default_light_sets()
    assert {"key_left", "key_right", "studio", "outdoor_sun", "indoor_warm"} <= set(sets)
    out = relight_strip(mesh, shape, maps, {"left": sets["key_left"], "right": sets["key_right"]}, hw=HW, **FAST)
    assert out["names"] == ["left", "right"]
    left, right = out["srgb"]
    assert _psnr(left, right.flip(-1)) > 30  # a sphere lit from the left is the mirror image of the right
    assert _psnr(left, right) < 25
    # the lit side is brighter: light from the subject's right (-X) appears on the image's left
    w = HW[1]
    assert left[:, :, : w // 2].mean() > 1.5 * left[:, :, w // 2:].mean()


def test_compare_identical_maps_gives_infinite_psnr_and_a_change_lowers_it(scene):
    mesh, shape, maps = scene
    same = compare_renders(maps, maps, mesh, shape, views=("front", "profile"), hw=HW, **FAST)
    assert same["psnr"] == [math.inf, math.inf] and same["psnr_mean"] == math.inf
    assert same["side_by_side"].shape == (3, 2 * HW[0], 3 * HW[1])
    assert (same["difference"] == 0).all()
    brighter = ReflectanceMaps(**{**maps.as_dict(), "diffuse_albedo": (maps.diffuse_albedo * 1.1).clamp(0, 1)})
    diff = compare_renders(maps, brighter, mesh, shape, views=("front", "profile"), hw=HW, space="linear", **FAST)
    assert all(20 < p < 60 for p in diff["psnr"])
    assert diff["psnr_mean"] == pytest.approx(sum(diff["psnr"]) / 2, abs=1.0)
    with pytest.raises(ValueError, match="space"):
        compare_renders(maps, maps, mesh, shape, views=("front",), hw=HW, space="log", **FAST)


def test_save_views_writes_pngs(scene, tmp_path):
    mesh, shape, maps = scene
    out = turntable(mesh, shape, maps, studio(), views=("front", "three_quarter"), hw=(32, 48), **FAST)
    paths = save_views(tmp_path / "sphere", out)
    assert [p.name for p in paths] == ["sphere_front.png", "sphere_three_quarter.png", "sphere_strip.png"]
    with Image.open(paths[-1]) as img:
        assert img.size == (96, 32)
    with Image.open(paths[0]) as img:
        assert img.size == (48, 32)
        pixels = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(pixels, out["srgb"][0], atol=1 / 255, rtol=0)
    linear = save_views(tmp_path / "lin", out["images"][0], names=["x"])
    assert [p.name for p in linear] == ["lin_x.png"]
    with pytest.raises(ValueError, match="names"):
        save_views(tmp_path / "bad", out, names=["only_one"])
