import json

import pytest
import torch
import torch.nn.functional as F

from avatarme_edu.lightstage.fresh_lows import Degradation, draw_degradation, fresh_lows, patch_key
from avatarme_edu.lightstage.wild import DEGRADATION_RANGES, degrade, sample_wild_params
from avatarme_edu.profiles import get_profile


def _batch(n=12, side=32, r=4, seed=0):
    """A super-resolution batch of smooth random textures under the patch loader's names."""
    g = torch.Generator().manual_seed(seed)
    coarse = max(2, side // 16)  # features a few low texels wide, as skin's colour is
    high = F.interpolate(torch.rand(n, 3, coarse, coarse, generator=g), size=(side, side), mode="bilinear",
                         align_corners=False)
    mask = torch.ones(n, side, side, dtype=torch.bool)
    mask[:, :, : side // 4] = False  # a strip outside the UV layout
    return {"texture": high, "mask": mask, "texture_low": F.interpolate(high, scale_factor=1 / r, mode="area"),
            "subject_id": torch.arange(n), "expression": ["neutral"] * n,
            "corner": torch.stack([torch.arange(n) * 8, torch.zeros(n, dtype=torch.int64)], 1)}


def test_the_ranges_are_the_wild_textures_own():
    params = [sample_wild_params(s) for s in range(200)]
    for name, (lo, hi) in DEGRADATION_RANGES.items():
        values = [getattr(p, name) for p in params]
        assert lo <= min(values) and max(values) <= hi and max(values) - min(values) > 0.8 * (hi - lo)
    draws = [draw_degradation(torch.Generator().manual_seed(s)) for s in range(200)]
    for name, (lo, hi) in DEGRADATION_RANGES.items():
        values = [getattr(d, name) for d in draws]
        assert lo <= min(values) and max(values) <= hi and max(values) - min(values) > 0.8 * (hi - lo)
    assert all(isinstance(d.jpeg_quality, int) for d in draws)


def test_a_share_of_patches_get_a_fresh_low_texture_made_by_degrade():
    batch = _batch()
    out = fresh_lows(0.5)(batch)
    changed = [n for n in range(12) if not torch.equal(out["texture_low"][n], batch["texture_low"][n])]
    chosen = [n for n in range(12) if (patch_key(n, "neutral", batch["corner"][n]) % 1000) / 1000 < 0.5]
    assert changed == chosen and 0 < len(chosen) < 12  # which ones: the patch's own key decides
    n = chosen[0]
    key = patch_key(n, "neutral", batch["corner"][n])
    g = torch.Generator().manual_seed(key)
    expected, _ = degrade(batch["texture"][n], batch["mask"][n], (8, 8), draw_degradation(g), g)
    assert torch.equal(out["texture_low"][n], expected)  # exactly the wild texture's degradation
    assert (out["texture_low"][n][:, :, :2] == 0).all()  # nothing outside the mask
    assert out["texture"] is batch["texture"] and out["mask"] is batch["mask"]  # the target stays
    again = fresh_lows(0.5)(batch)  # a resumed run, or the validation batch, draws the same
    assert torch.equal(again["texture_low"], out["texture_low"])
    assert torch.equal(fresh_lows(0.0)(batch)["texture_low"], batch["texture_low"])
    assert len([n for n in range(12) if not torch.equal(fresh_lows(1.0)(batch)["texture_low"][n],
                                                        batch["texture_low"][n])]) == 12


def test_a_fresh_low_texture_is_blurred_noisy_and_near_the_area_average():
    batch = _batch(n=4, side=64)
    out = fresh_lows(1.0)(batch)
    area = F.interpolate(batch["texture"], size=(16, 16), mode="area")
    inside = batch["mask"][:, None, ::4, ::4].expand_as(area)
    err = (out["texture_low"] - area)[inside].abs().mean()
    assert 0.001 < err < 0.08  # the same texture (its texels spread by ~0.3), with a fit's losses


def test_the_paper_profiles_pairs_take_the_mask_at_the_fitted_size():
    batch = _batch(n=3, side=64, r=8)
    batch["texture_sr"] = batch.pop("texture")
    batch["mask_low"] = batch.pop("mask")[:, ::8, ::8]
    out = fresh_lows(1.0, target="texture_sr")(batch)
    assert out["texture_low"].shape == (3, 3, 8, 8) and torch.isfinite(out["texture_low"]).all()
    assert (out["texture_low"][:, :, :, :2] == 0).all()


def test_a_share_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        fresh_lows(1.5)
    assert Degradation(0.5, 1e-3, 2e-3, 80).jpeg_quality == 80


@pytest.mark.slow
def test_the_train_command_records_the_share_and_refuses_it_beside_other_networks(tmp_path, monkeypatch):
    import argparse

    from avatarme_edu.lightstage.dataset import make_dataset
    from avatarme_edu.nets.manifest import run_record
    from avatarme_edu.nets.train_command import add_train_parser

    p = get_profile("cpu", device="cpu").replace(
        map_hw=(96, 144), texture_hw=(24, 36), patch_size=16, rcan_groups=1, rcan_blocks=1, rcan_channels=8,
        rcan_reduction=4)
    make_dataset(5, 0, p, tmp_path / "data", progress=False, workers=1)
    monkeypatch.setattr("avatarme_edu.profiles.get_profile", lambda *a, **k: p)  # the tiny dataset's sizes
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))

    def run(*extra):
        args = parser.parse_args(["train", *extra, "--profile", "cpu", "--device", "cpu", "--data",
                                  str(tmp_path / "data"), "--steps", "2", "--batch-size", "2", "--val-every", "2",
                                  "--val-patches", "2", "--checkpoint-every", "2"])
        return args.func(args)

    with pytest.raises(ValueError, match="--fresh-lows is for sr only, not delight"):
        run("delight", "--fresh-lows", "0.5", "--out", str(tmp_path / "d"))
    with pytest.raises(ValueError, match=r"--fresh-lows must be a share in \[0, 1\], got 2.0"):
        run("sr", "--fresh-lows", "2", "--out", str(tmp_path / "s"))
    assert run("sr", "--fresh-lows", "0.5", "--out", str(tmp_path / "sr")) == 0
    log = json.loads((tmp_path / "sr" / "log.json").read_text())
    assert log["info"]["fresh_lows"] == 0.5 and log["steps_done"] == 2
    assert run_record(tmp_path / "sr")["fresh_lows"] == 0.5
