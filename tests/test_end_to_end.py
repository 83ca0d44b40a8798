"""The end-to-end evaluation: held-out subjects' photos through the whole pipeline, against their truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from avatarme_edu.cli import main
from avatarme_edu.end_to_end import (DEGRADABLE, METHODS, degraded_weights, evaluate_end_to_end, results_table,
                                     truth_report)
from avatarme_edu.fitting.fit_stages import FitConfig
from avatarme_edu.nets.tasks import get_task
from avatarme_edu.nets.weights import WEIGHTS_DIR
from avatarme_edu.profiles import get_profile

REPO = Path(__file__).resolve().parents[1]


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
    kept: dict = {}
    r = evaluate_end_to_end([4, 29], cpu, fit_config=config, keep=kept)
    assert r["reconstructed"] == [4] and [f["seed"] for f in r["failed"]] == [29]
    # what `reconstruct --synthetic 4` writes into report.json: the same numbers as the table's end_to_end
    truth = truth_report(kept[4][1], 4, cpu)
    seed4 = r["per_seed"][0]
    assert truth["subject"] == 4 and truth["held_out"] and "training identity" not in truth["note"]
    for key, value in seed4["maps"]["end_to_end"].items():
        assert truth[key] == pytest.approx(value, abs=1e-3), key
    assert truth["render_psnr"] == pytest.approx(seed4["render_psnr"]["end_to_end"], abs=1e-3)
    assert truth["shape_error_mm"] == pytest.approx(seed4["shape_error_mm"], abs=1e-3)
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


@pytest.mark.slow
def test_reconstruct_a_synthetic_subject_reports_its_ground_truth(tmp_path, capsys):
    """``reconstruct --synthetic SEED``: a held-out subject's photo, with its numbers against the truth in
    report.json; ``--truth-subject`` scores a PHOTO of a subject, and says so when the networks trained on it."""
    out = tmp_path / "syn"
    assert main(["reconstruct", "--synthetic", "4", "--steps", "10", "--out", str(out), "--profile", "cpu",
                 "--device", "cpu", "--quiet"]) == 0
    assert "against the truth of subject 4: A_D" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    g = report["ground_truth"]
    assert g["subject"] == 4 and g["held_out"] and report["photo"] == "held-out virtual subject 4"
    assert 12 < g["diffuse_albedo_psnr"] < 40 and 15 < g["render_psnr"] < 45 and 0 < g["shape_error_mm"] < 5
    assert 0 < g["diffuse_normals_deg"] < 20 and 0 < g["specular_normals_deg"] < 20
    photo = REPO / "data_samples" / "photos" / "synthetic_0001_front.jpg"
    out2 = tmp_path / "sample"
    assert main(["reconstruct", str(photo), "--truth-subject", "1", "--steps", "10", "--out", str(out2),
                 "--profile", "cpu", "--device", "cpu", "--quiet"]) == 0
    g = json.loads((out2 / "report.json").read_text())["ground_truth"]
    assert g["subject"] == 1 and not g["held_out"] and "training identity" in g["note"]
    assert 12 < g["diffuse_albedo_psnr"] < 45


def test_reconstruct_truth_options_are_checked_before_any_work(tmp_path, capsys):
    out = tmp_path / "x"
    photo = str(REPO / "data_samples" / "photos" / "synthetic_0001_front.jpg")
    cases = [(["--synthetic", "3"], "3 is a training identity"),
             (["--synthetic", "4", photo], "give one of PHOTO, --sample NAME"),
             (["--sample", "astronaut", "--truth-subject", "2"], "--truth-subject goes with a PHOTO"),
             ([], "give one of PHOTO")]
    for extra, message in cases:
        assert main(["reconstruct", *extra, "--out", str(out), "--profile", "cpu", "--device", "cpu"]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (extra, err)
        assert not out.exists()
    with pytest.raises(SystemExit):  # argparse: not a seed
        main(["reconstruct", "--synthetic", "-1", "--out", str(out)])
