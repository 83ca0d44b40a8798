import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from avatarme_edu.cli import main
from avatarme_edu.geometry.mesh import read_obj
from avatarme_edu.maps_io import load_map


def test_demo_writes_a_consistent_subject(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", "--profile", "cpu", "--device", "cpu", "--map-size", "96x144", "--out", str(out)]) == 0
    mesh = read_obj(out / "head.obj")
    assert mesh.n_vertices > 10_000 and mesh.n_faces > 20_000
    normals = load_map(out / "shape_maps" / "normals_object.png", "normal")
    assert normals.shape == (3, 96, 144)
    exact = load_file(str(out / "shape_maps" / "shape_maps.safetensors"))
    mask = exact["mask"].bool()
    # the 16-bit PNG holds the same normals as the exact tensors
    assert (normals[:, mask] - exact["normals_object"][:, mask]).abs().max() < 1e-3
    assert torch.allclose(exact["normals_object"][:, mask].norm(dim=0), torch.ones(int(mask.sum())), atol=1e-4)
    for name in ("uv_maps.png", "reflectance.png", "head_views.png", "window_grid.png",
                 "export/avatar.obj", "export/avatar.html"):
        assert (out / name).stat().st_size > 10_000, name
    from PIL import Image

    assert Image.open(out / "renders" / "turntable_front.png").size == (96, 96)  # renders follow --map-size
    albedo = load_map(out / "reflectance" / "diffuse_albedo.png", "color")
    assert albedo.shape == (3, 96, 144) and 0.02 < float(albedo[:, mask].mean()) < 0.9
    assert (out / "export" / "avatar.glb").read_bytes()[:4] == b"glTF"
    assert "map_Kd avatar_diffuse.png" in (out / "export" / "avatar.mtl").read_text()
    assert not list(out.rglob("*.part*"))
    assert "wrote" in capsys.readouterr().out


def test_same_seed_same_head(tmp_path):
    from avatarme_edu.geometry.head import load_eduhead

    head = load_eduhead("cpu")
    a = head.mesh(head.sample_identity(torch.Generator().manual_seed(5)))
    b = head.mesh(head.sample_identity(torch.Generator().manual_seed(5)))
    c = head.mesh(head.sample_identity(torch.Generator().manual_seed(6)))
    assert torch.equal(a.vertices, b.vertices) and not torch.equal(a.vertices, c.vertices)


def test_head_command_exports_an_expression(tmp_path):
    path = tmp_path / "smile.obj"
    assert main(["head", "--seed", "2", "--expression", "smile", "--device", "cpu", "--out", str(path)]) == 0
    assert read_obj(path).n_faces > 20_000


@pytest.mark.parametrize("argv, message", [
    (["head", "--expression", "wink", "--device", "cpu"], "unknown expression 'wink'"),
    (["profile", "--device", "tpu"], "valid devices"),
])
def test_bad_parameters_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_map_size_and_profile_are_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--map-size", "100x100"])
    assert "W:H = 3:2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--profile", "laptop"])
    assert "invalid choice" in capsys.readouterr().err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "avatarme_edu.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "demo" in result.stdout and "head" in result.stdout


def test_dataset_command_writes_a_split_dataset(tmp_path, capsys, monkeypatch):
    import json

    monkeypatch.setenv("AVATARME_DEVICE", "cpu")
    out = tmp_path / "ls"
    assert main(["dataset", "5", "--profile", "cpu", "--out", str(out), "--workers", "0"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    held_out = [s["id"] for s in manifest["subjects"] if s["split"] == "held_out"]
    assert held_out == [4] and len(manifest["subjects"]) == 5
    assert main(["dataset", "2", "--expressions", "wink", "--out", str(tmp_path / "x")]) == 2
    assert "unknown expression(s) wink" in capsys.readouterr().err


def test_capture_command_reports_the_recovery(capsys):
    assert main(["capture", "--device", "cpu", "--map-size", "48x72"]) == 0
    out = capsys.readouterr().out
    psnr = float(next(line for line in out.splitlines() if line.startswith("diffuse_albedo_psnr")).split()[1])
    assert 20 < psnr < 60  # the paper formulas: good but not exact (the floor has no lights)


def test_output_folder_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["demo", "--device", "cpu", "--map-size", "48x72", "--out", str(blocker)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert not list(tmp_path.glob(".tmp-*"))
