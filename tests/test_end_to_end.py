"""The end-to-end evaluation: held-out subjects' photos through the whole pipeline, against their truth."""

from __future__ import annotations

import json
import math

import pytest
import torch

from avatarme_edu.cli import main
from avatarme_edu.end_to_end import DEGRADABLE, METHODS, degraded_weights, evaluate_end_to_end, results_table
from avatarme_edu.fitting.fit_stages import FitConfig
from avatarme_edu.nets.tasks import get_task
from avatarme_edu.nets.weights import WEIGHTS_DIR
from avatarme_edu.profiles import get_profile


@pytest.fixture(scope="module")
def cpu():
    return get_profile("cpu", "cpu")


def test_training_identities_are_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "e2e.json"
    assert main(["evaluate", "--end-to-end", "--seeds", "4", "3", "--profile", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3 are training identities" in err[0] and not out.exists()
    assert main(["evaluate", "--steps", "5", "--out", str(out)]) == 2
    assert "--steps belongs to --end-to-end" in capsys.readouterr().err


def test_degraded_weights_spoil_one_network_only(tmp_path, cpu):
    from avatarme_edu.stages import load_network, pipeline_networks

    out = degraded_weights("delight", tmp_path / "w", cpu, noise=0.5)
    name = pipeline_networks(cpu)["delight"]  # the de-lighter the pipeline runs: δ(T̂) at the cpu profile
    assert name == "delight_no_shape"
    src = WEIGHTS_DIR / "cpu"
    for f in src.iterdir():
        same = (out / f.name).read_bytes() == f.read_bytes()
        assert same == (f.name != f"{name}.safetensors"), f.name
    a, b = load_network(name, cpu), load_network(name, cpu, out / f"{name}.safetensors")
    x = torch.rand(1, get_task(name).in_channels, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x), atol=1e-3)
    with pytest.raises(ValueError, match="unknown stage"):
        degraded_weights("fit", tmp_path / "w2", cpu)
    assert set(DEGRADABLE) == {"sr", "delight", "specular_albedo", "specular_normals", "diffuse_normals"}


@pytest.mark.slow
def test_end_to_end_on_a_held_out_seed_and_a_failed_one(cpu):
    # seed 29's photo is one neither of dlib's detectors (HOG, then the CNN) finds a face in: a
    # failure, counted, not averaged
    config = FitConfig(full_steps=10)
    r = evaluate_end_to_end([4, 29], cpu, fit_config=config)
    assert r["reconstructed"] == [4] and [f["seed"] for f in r["failed"]] == [29]
    assert "no face found" in r["failed"][0]["failed"]
    mean = r["mean"]["maps"]
    assert list(mean) == list(METHODS)
    for method, rows in mean.items():
        for row, value in rows.items():
            if not (method == "true_albedo" and row == "diffuse_albedo_psnr"):
                assert value is not None and math.isfinite(value), (method, row)
    # with the true shape, the normals are far closer than from the fitted shape
    assert mean["true_albedo"]["diffuse_normals_deg"] < mean["end_to_end"]["diffuse_normals_deg"]
    # the render of the true maps' own chain beats the end-to-end render
    assert r["mean"]["render_psnr"]["true_albedo"] > r["mean"]["render_psnr"]["end_to_end"]
    assert 10 < r["mean"]["texture"]["fitted_psnr"] < 60 and 0 < r["mean"]["shape_error_mm"] < 10
    table = results_table(r)
    assert all(m in table for m in METHODS) and "Failed: seed 29" in table
    json.dumps(r, allow_nan=False)  # JSON-safe
