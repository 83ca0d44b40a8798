import json
import math

import pytest
import torch

from avatarme_edu import stages
from avatarme_edu.nets.specular_level import (
    GRID, STATISTICS, _ridge_solution, face_log_level, fit_level_head, level_features, load_level_head, set_level,
)
from avatarme_edu.nets.specular_level_train import identity_row, train_level_head, training_ids
from avatarme_edu.nets.tasks import build_network, get_task
from avatarme_edu.nets.weights import save_weights

HW = (48, 72)


def skin(pores: float, seed: int = 0, hw=HW) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat skin albedo ``(3, H, W)`` with pore floors darkened by the fraction ``pores``, and its mask."""
    g = torch.Generator().manual_seed(seed)
    floors = (torch.rand(hw, generator=g) < 0.15).float()
    albedo = torch.tensor([0.5, 0.35, 0.25]).view(3, 1, 1) * (1 - pores * floors)
    mask = torch.ones(hw, dtype=torch.bool)
    mask[:, : hw[1] // 6] = False  # the first column of cells holds no valid texel
    return albedo * mask, mask


def test_features_are_cell_means_of_each_statistic_and_see_the_pores_depth():
    albedo, mask = skin(0.3)
    f = level_features(albedo, mask)
    assert f.dtype == torch.float64 and f.shape == (len(STATISTICS) * (GRID[0] * GRID[1] + 1),)
    cells = f.view(-1, len(STATISTICS))
    assert torch.all(cells[0] == 0) and torch.all(cells[6] == 0)  # cells without valid texels
    # the log grey level of the valid cells is the log of the albedo's grey level over them
    gray = albedo.double().mean(0)
    assert float(cells[1, 5]) == pytest.approx(float(torch.log(gray[:12, 12:24] + 0.01).mean()), abs=1e-9)
    # deeper floors: more relief energy and a darker dark part, at both scales
    deeper = level_features(*skin(0.6)).view(-1, len(STATISTICS))[-1]
    whole = cells[-1]
    assert deeper[0] > 2 * whole[0] and deeper[3] > 2 * whole[3]
    assert deeper[1] < whole[1] < 0 and deeper[4] < whole[4] < 0
    with pytest.raises(ValueError, match="no valid texel"):
        level_features(albedo, torch.zeros(HW, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        level_features(albedo[:1], mask)


def test_set_level_gives_the_map_the_level_it_is_asked_for():
    spec = torch.rand(1, *HW) * 0.3 + 0.05
    mask = torch.rand(HW) > 0.3
    out = set_level(spec, mask, -1.7)
    assert face_log_level(out, mask) == pytest.approx(-1.7, abs=1e-6)
    assert torch.allclose(out / spec, out[0, 0, 0] / spec[0, 0, 0])  # one gain: the pattern is kept
    assert float(set_level(spec, mask, 3.0).max()) == 1.0  # clipped to [0, 1]


def test_leave_one_out_by_the_hat_matrix_equals_refitting_without_each_identity():
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(12, 4, generator=g, dtype=torch.float64), torch.randn(12, generator=g, dtype=torch.float64)
    _, loo = _ridge_solution(z, y, 0.5)
    for i in range(12):
        keep = torch.arange(12) != i
        w, _ = _ridge_solution(z[keep], y[keep], 0.5)
        assert float(loo[i]) == pytest.approx(float(y[i] - w[0] - z[i] @ w[1:]), abs=1e-9)


def test_the_fit_recovers_a_linear_level_and_chooses_the_ridge_by_leave_one_out(tmp_path):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200, 30, generator=g, dtype=torch.float64) * torch.linspace(0.1, 5, 30, dtype=torch.float64)
    y = -1.2 + 0.3 * x[:, 0] / 0.1 - 0.05 * x[:, 29] / 5 + 0.01 * torch.randn(200, generator=g, dtype=torch.float64)
    head, r2 = fit_level_head(x, y, HW)
    assert r2[head.ridge] == max(r2.values()) > 0.99
    fresh = torch.randn(50, 30, generator=g, dtype=torch.float64) * torch.linspace(0.1, 5, 30, dtype=torch.float64)
    truth = -1.2 + 0.3 * fresh[:, 0] / 0.1 - 0.05 * fresh[:, 29] / 5
    assert torch.allclose(head.predict_features(fresh), truth, atol=0.05)
    # saved and read back exactly; a file of something else is refused
    back = load_level_head(head.save(tmp_path / "head.safetensors", {"note": "test"}))
    assert back.map_hw == HW and back.ridge == head.ridge and torch.equal(back.coef, head.coef)
    assert torch.equal(back.predict_features(fresh), head.predict_features(fresh))
    task = get_task("specular_albedo")
    save_weights(build_network(task, _tiny()), tmp_path / "psi.safetensors", task, _tiny())
    with pytest.raises(ValueError, match="not a specular level head"):
        load_level_head(tmp_path / "psi.safetensors")
    with pytest.raises(FileNotFoundError, match="train-specular-level"):
        load_level_head(tmp_path / "missing.safetensors")


def _tiny():
    from avatarme_edu.profiles import get_profile

    return get_profile("cpu", device="cpu").replace(map_hw=HW, patch_size=16, window_size=48, window_stride=32,
                                                     gen_ngf=4, gen_downsample=2, gen_blocks=1)


def test_the_stage_sets_psi_s_level_from_the_head_and_only_where_asked(tmp_path):
    profile = _tiny()
    task = get_task("specular_albedo")
    torch.manual_seed(0)
    save_weights(build_network(task, profile), tmp_path / "psi.safetensors", task, profile)
    means = {"specular_albedo_map": torch.full((1, *HW), 0.3), "diffuse_albedo_colour": torch.tensor([0.5, 0.35, 0.25])}
    albedo, mask = skin(0.4, hw=HW)
    g = torch.Generator().manual_seed(3)
    x = torch.stack([level_features(*skin(0.1 + 0.5 * float(torch.rand(1, generator=g)), seed=i)) for i in range(20)])
    energy = x[:, -len(STATISTICS)]
    head, _ = fit_level_head(x, -1.5 + 0.2 * (energy - energy.mean()) / energy.std(), HW)  # follows the relief
    plain = stages.specular_albedo(albedo, profile, tmp_path / "psi.safetensors", mask, means, level_head=False)
    levelled = stages.specular_albedo(albedo, profile, tmp_path / "psi.safetensors", mask, means, level_head=head)
    assert face_log_level(levelled, mask) == pytest.approx(head.predict(albedo, mask), abs=1e-5)
    assert face_log_level(levelled, mask) != pytest.approx(face_log_level(plain, mask), abs=1e-3)
    # the default: the committed head is for the cpu maps (384x576), not these, so ψ alone
    default = stages.specular_albedo(albedo, profile, tmp_path / "psi.safetensors", mask, means)
    assert torch.equal(default, plain)
    # a head beside the weights file is the default, as the training means are
    head.save(tmp_path / "specular_level.safetensors")
    beside = stages.specular_albedo(albedo, profile, tmp_path / "psi.safetensors", mask, means)
    assert torch.equal(beside, levelled)
    with pytest.raises(ValueError, match="fitted on"):
        head.predict(torch.nn.functional.pad(albedo, (0, 8)), torch.nn.functional.pad(mask, (0, 8)))


def test_training_identities_only(tmp_path):
    assert training_ids(2, 5) == [2, 3, 5, 6, 7]
    with pytest.raises(ValueError, match="held out"):
        identity_row(9, _tiny())
    with pytest.raises(ValueError, match="at least 3 identities"):  # refused before a folder is made
        train_level_head(tmp_path / "run", _tiny(), identities=2, progress=False)
    assert not (tmp_path / "run").exists()


def test_the_command_paints_fits_and_resumes(tmp_path):
    profile = _tiny().replace(map_hw=(96, 144))
    log = train_level_head(tmp_path, profile, identities=5, first_id=0, progress=False, command="test")
    rows = (tmp_path / "rows.jsonl").read_text().splitlines()
    assert [json.loads(r)["id"] for r in rows] == [0, 1, 2, 3, 5]
    assert log["identities"] == 5 and log["curve_by_identities"][-1]["identities"] == 5 and log["wall_s"] > 0
    head = load_level_head(tmp_path / "specular_level.safetensors")
    assert head.map_hw == (96, 144) and math.isfinite(head.intercept)
    # a second run finds every identity painted: the same rows, the same head
    again = train_level_head(tmp_path, profile, identities=5, first_id=0, progress=False, command="test")
    assert (tmp_path / "rows.jsonl").read_text().splitlines() == rows and again["loo_r2"] == log["loo_r2"]
    assert torch.equal(load_level_head(tmp_path / "specular_level.safetensors").coef, head.coef)
