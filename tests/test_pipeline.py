"""``reconstruct`` (one photo -> Avatar) and ``write_avatar`` / ``avatarme-edu reconstruct`` on the
bundled astronaut photo, with the committed cpu weights: shapes, files, exact values, the identity
check, and a real mid-write failure leaving nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avatarme_edu.atomic import TMP_PREFIX
from avatarme_edu.maps_io import load_photo, load_tensors
from avatarme_edu.pipeline import STAGES, Avatar, photo_pose_render, reconstruct
from avatarme_edu.pipeline_io import check_out, sample_photo, write_avatar
from avatarme_edu.profiles import get_profile
from avatarme_edu.reflectance import MAP_NAMES

PHOTOS = Path(__file__).resolve().parents[1] / "data_samples" / "photos"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def avatar() -> Avatar:
    torch.manual_seed(0)
    return reconstruct(sample_photo("astronaut"), "cpu", progress=False)


def test_the_sample_is_package_data_and_the_same_photo_as_the_samples():
    path = sample_photo("astronaut")
    assert "avatarme_edu" in path.parts and path.is_file()
    assert path.read_bytes() == (PHOTOS / "astronaut.jpg").read_bytes()


def test_reconstruct_gives_every_map_at_the_profile_size(avatar):
    p = get_profile("cpu", "cpu")
    h, w = p.map_hw
    assert tuple(avatar.texture.shape) == (3, *p.texture_hw) and tuple(avatar.texture_sr.shape) == (3, h, w)
    for maps in (avatar.maps, avatar.head_maps):
        assert maps.hw == (h, w)
        mask = maps.mask.bool()
        for name in MAP_NAMES:
            m = getattr(maps, name)
            assert torch.isfinite(m).all(), name
        assert 0 <= float(maps.diffuse_albedo.min()) and float(maps.diffuse_albedo.max()) <= 1
        for name in ("diffuse_normals", "specular_normals"):
            norm = getattr(maps, name).norm(dim=0)[mask]
            assert torch.allclose(norm, torch.ones_like(norm), atol=1e-3), name
    # the completed head is the face's maps where the blend weight is 1, EduHead's where it is 0
    face, rest = avatar.blend >= 1 - 1e-6, (avatar.blend <= 1e-6) & avatar.head_maps.mask.bool()
    assert face.float().mean() > 0.1 and rest.float().mean() > 0.1
    assert torch.allclose(avatar.head_maps.diffuse_albedo[:, face], avatar.maps.diffuse_albedo[:, face], atol=1e-6)
    assert (avatar.head_maps.diffuse_albedo[:, rest] - avatar.maps.diffuse_albedo[:, rest]).abs().mean() > 0.01
    assert avatar.head_mesh.n_vertices == avatar.mesh.n_vertices  # one topology


def test_report_times_every_stage(avatar):
    t = avatar.report["time_s"]
    assert set(STAGES) <= set(t) and all(t[s] >= 0 for s in STAGES)
    assert abs(t["total"] - sum(t[s] for s in STAGES)) < 0.05
    assert avatar.report["profile"] == "cpu" and avatar.report["device"] == "cpu"
    assert avatar.report["networks"]["delight"] == "delight_no_shape.safetensors"  # the cpu profile's δ(T̂)
    assert avatar.report["weights"] == "committed"
    assert avatar.report["versions"]["torch"] == torch.__version__


def test_the_render_is_closer_to_the_astronaut_than_to_another_person(avatar):
    """dlib's descriptor: the head rendered in the photo's pose, under new light, against the astronaut
    and against Obama and Biden. The pipeline's output must look more like the person photographed."""
    from avatarme_edu.fitting.fit_report import dlib_distance
    from avatarme_edu.fitting.landmarks import detect_face

    render, _ = photo_pose_render((avatar.head_mesh, avatar.head_shape, avatar.head_maps), avatar.fit)
    own = avatar.report["identity"]["distance"]
    assert own is not None and avatar.report["identity"]["found_by"] == "dlib detection"
    others = []
    for name in ("obama_2012", "biden_2010"):
        photo = load_photo(PHOTOS / f"{name}.jpg")
        others.append(dlib_distance(photo, detect_face(photo).landmarks, render)[0])
    assert own < min(others), (own, others)


def test_identity_check_takes_the_reports_light_by_default_and_another_when_given(avatar):
    from avatarme_edu.pipeline import identity_check
    from avatarme_edu.render.lights import SHEnvironment

    head = (avatar.head_mesh, avatar.head_shape, avatar.head_maps)
    assert identity_check(head, avatar.fit)["distance"] == avatar.report["identity"]["distance"]
    uniform = [SHEnvironment.uniform(intensity=1.0)]
    lit, _ = photo_pose_render(head, avatar.fit)
    flat, _ = photo_pose_render(head, avatar.fit, lights=uniform)
    assert (lit - flat).abs().max() > 0.05  # another light, another rendering
    d = identity_check(head, avatar.fit, lights=uniform)["distance"]
    assert d is not None and d != avatar.report["identity"]["distance"]


def _png(path: Path) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert arr is not None, path
    return arr


def test_write_avatar_writes_full_size_maps_exact_values_and_a_report(avatar, tmp_path):
    out = write_avatar(avatar, tmp_path / "out", photo_name="astronaut.jpg")
    h, w = avatar.profile.map_hw
    for folder in ("maps", "head_maps"):
        assert _png(out / folder / "diffuse_albedo.png").shape == (h, w, 3)
        assert _png(out / folder / "diffuse_albedo.png").dtype == np.uint8
        for name in ("diffuse_normals", "specular_normals"):
            arr = _png(out / folder / f"{name}.png")
            assert arr.shape == (h, w, 3) and arr.dtype == np.uint16, name
        assert _png(out / folder / "specular_albedo.png").dtype == np.uint16
    exact = load_tensors(out / "maps.safetensors")
    for name in MAP_NAMES:
        assert torch.equal(exact[f"face/{name}"], getattr(avatar.maps, name).cpu())
        assert torch.equal(exact[f"head/{name}"], getattr(avatar.head_maps, name).cpu())
    assert torch.equal(exact["texture_sr"], avatar.texture_sr.cpu())
    assert _png(out / "texture" / "fitted.png").shape[:2] == tuple(avatar.profile.texture_hw)
    assert _png(out / "texture" / "super_resolved.png").shape[:2] == (h, w)
    for rel in ("export/face/face.obj", "export/head/head.obj", "export/face.glb", "export/head.glb",
                "export/head.html", "fit/mesh.obj", "fit/overlay.png", "renders/turntable_front.png",
                "renders/relight_outdoor_sun.png", "renders/photo_vs_render_strip.png"):
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0, rel
    assert (out / "export" / "head.glb").read_bytes()[:4] == b"glTF"
    report = json.loads((out / "report.json").read_text())
    assert report["photo"] == "astronaut.jpg" and set(STAGES) <= set(report["time_s"])
    assert report["identity"]["distance"] == avatar.report["identity"]["distance"]
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*")), "temporary folders left behind"


def test_existing_out_is_refused_and_overwrite_replaces_only_a_previous_reconstruction(avatar, tmp_path):
    out = write_avatar(avatar, tmp_path / "out")
    with pytest.raises(ValueError, match="already exists and is not empty"):
        write_avatar(avatar, out)
    before = (out / "report.json").stat().st_mtime_ns
    write_avatar(avatar, out, overwrite=True)  # a previous reconstruction and nothing else: replaced
    assert (out / "report.json").stat().st_mtime_ns != before
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a previous reconstruction"):
        write_avatar(avatar, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_avatar(avatar, empty) / "report.json").is_file()  # an empty folder is taken
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*"))


def test_a_failure_while_writing_leaves_no_folder(avatar, tmp_path):
    # a real failure half-way: the last map holds NaN, which save_map refuses after earlier files are written
    bad = dataclasses.replace(avatar.head_maps, specular_normals=avatar.head_maps.specular_normals.clone())
    bad.specular_normals[0, 10, 10] = float("nan")
    broken = dataclasses.replace(avatar, head_maps=bad)
    with pytest.raises(ValueError, match="NaN"):
        write_avatar(broken, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    # and replacing a previous reconstruction keeps the old one when the new one fails
    out = write_avatar(avatar, tmp_path / "out")
    with pytest.raises(ValueError, match="NaN"):
        write_avatar(broken, out, overwrite=True)
    assert json.loads((out / "report.json").read_text())["time_s"] == avatar.report["time_s"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_check_out_refuses_a_file_and_an_unwritable_place(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("keep")
    with pytest.raises(ValueError, match="is a file"):
        check_out(f)
    with pytest.raises(OSError):
        check_out(f / "below_a_file")
    assert f.read_text() == "keep"
