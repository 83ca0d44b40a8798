"""`avatarme-edu evaluate --fit`: held-out subjects fitted, scored against the mean head; training ids refused."""

import json

import pytest

from avatarme_edu.evaluation import main


def test_a_training_identity_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "fit.json"
    assert main(["--fit", "--seeds", "4", "3", "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "seed 3 is a training identity" in err and "Traceback" not in err
    assert not out.exists() and not out.with_suffix(".md").exists()


def test_bad_fit_steps_are_one_line(tmp_path, capsys):
    assert main(["--fit", "--seeds", "4", "--fit-steps", "0", "5", "--device", "cpu",
                 "--out", str(tmp_path / "f.json")]) == 2
    assert "--fit-steps" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_section_writes_numbers_and_baselines(tmp_path):
    out = tmp_path / "fit.json"
    assert main(["--fit", "--seeds", "4", "--fit-steps", "20", "3", "--profile", "cpu", "--device", "cpu",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["seeds"] == [4] and result["fitted"] == 1 and result["failed"] == 0
    row = result["per_seed"][0]
    for key in ("shape_error_mm", "identity_shape_error_mm", "shape_error_mean_head_mm", "landmark_error_px",
                "landmark_error_mean_head_px", "texture_psnr_face_db", "texture_psnr_mean_texture_db"):
        assert key in row and row[key] == result["mean"][key]
    # plausible sizes: a head-sized shape error is mm, not m; textures are not noise
    assert 0.2 < row["shape_error_mm"] < 6 and 0.2 < row["shape_error_mean_head_mm"] < 6
    assert 0.2 < row["identity_shape_error_mm"] < 6
    assert 0 < row["landmark_error_px"] < 30 and 0 < row["landmark_error_mean_head_px"] < 30
    # the photo's texels make the fitted texture beat the mean texture even after a short fit
    assert row["texture_psnr_face_db"] > row["texture_psnr_mean_texture_db"] + 3
    md = out.with_suffix(".md").read_text()
    assert "avatarme-edu evaluate --fit --profile cpu --device cpu --seeds 4 --fit-steps 20 3" in md and "| shape error" in md


@pytest.mark.slow
def test_with_the_true_landmarks_the_fitted_shape_beats_the_mean_head():
    # what the fit makes of perfect landmarks (results/fit_oracle.md: 0.45 mm against 1.58 mm for the mean
    # head, better on 16 of 16 held-out seeds; seed 19: 0.31 against 1.89); with dlib's landmarks on these
    # renders it does not, and the results say so
    from avatarme_edu.fitting.synthetic import evaluate_fit
    from avatarme_edu.profiles import get_profile

    result = evaluate_fit([19], get_profile("cpu", "cpu"), oracle_landmarks=True)
    row = result["per_seed"][0]
    assert result["landmarks"] == "oracle (true)"
    assert row["shape_error_mm"] < 0.5 * row["shape_error_mean_head_mm"]
    assert row["landmark_error_px"] < 1.0 and row["pose_error_deg"] < 3.0
