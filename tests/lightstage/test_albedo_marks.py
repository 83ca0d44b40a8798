import pytest
import torch

from avatarme_edu.lightstage.albedo_marks import DEPTH_RANGE, albedo_marks, draw_marks
from avatarme_edu.lightstage.fresh_lows import patch_key


def _batch(n=12, side=64, seed=0):
    """A de-lighting batch: a lit texture = albedo x a smooth light, under the patch loader's names."""
    g = torch.Generator().manual_seed(seed)
    albedo = 0.2 + 0.5 * torch.rand(n, 3, 1, 1, generator=g).expand(n, 3, side, side).clone()
    light = 0.5 + torch.linspace(0, 1, side).view(1, 1, 1, side).expand(n, 1, side, side)
    return {"texture": albedo * light, "diffuse_albedo": albedo, "mask": torch.ones(n, side, side, dtype=torch.bool),
            "subject_id": torch.arange(n), "expression": ["smile"] * n,
            "corner": torch.stack([torch.arange(n) * 4, torch.ones(n, dtype=torch.int64)], 1)}


def test_marks_are_sparse_dark_and_darker_in_blue():
    for seed in range(6):
        m = draw_marks((96, 96), torch.Generator().manual_seed(seed))
        assert m.shape == (3, 96, 96) and float(m.max()) <= 1.0 and float(m.min()) > 0.0
        marked = m[1] < 0.97
        assert 0.01 < float(marked.float().mean()) < 0.35  # sparse: most of the skin untouched
        assert float(m[1].min()) < 1 - 0.7 * DEPTH_RANGE[0]  # and dark somewhere
        assert bool((m[2][marked] <= m[0][marked] + 1e-6).all())  # blue absorbed most
    a = draw_marks((64, 64), torch.Generator().manual_seed(3))
    assert torch.equal(a, draw_marks((64, 64), torch.Generator().manual_seed(3)))
    assert not torch.equal(a, draw_marks((64, 64), torch.Generator().manual_seed(4)))


def test_marks_darken_texture_and_albedo_alike_so_the_light_is_unchanged():
    batch = _batch()
    out = albedo_marks(0.5)(batch)
    changed = [n for n in range(12) if not torch.equal(out["texture"][n], batch["texture"][n])]
    chosen = [n for n in range(12) if ((patch_key(n, "smile", batch["corner"][n]) >> 10) % 1000) / 1000 < 0.5]
    assert changed == chosen and 0 < len(chosen) < 12  # which ones: the patch's own key decides
    for n in chosen:
        assert float(out["diffuse_albedo"][n].min()) < float(batch["diffuse_albedo"][n].min()) - 0.02
        light_before = batch["texture"][n] / batch["diffuse_albedo"][n]
        light_after = out["texture"][n] / out["diffuse_albedo"][n]
        assert torch.allclose(light_after, light_before, rtol=1e-5)  # E = T / A: what δ must find
    assert torch.equal(albedo_marks(0.5)(batch)["texture"], out["texture"])  # a resumed run draws the same
    assert torch.equal(albedo_marks(0.0)(batch)["texture"], batch["texture"])
    everything = albedo_marks(1.0)(batch)
    assert all(not torch.equal(everything["texture"][n], batch["texture"][n]) for n in range(12))
    assert out["mask"] is batch["mask"] and albedo_marks(0.5).training_only


def test_marks_scale_with_the_map_width():
    """At the paper profile's 6144-wide maps a mark covers as many mm as at the cpu profile's 576."""
    small = draw_marks((256, 256), torch.Generator().manual_seed(1), scale=1.0)
    large = draw_marks((256, 256), torch.Generator().manual_seed(1), scale=4.0)

    def edges(m):  # how often the mark's edge is crossed along the rows: fewer for wider marks
        return float((m[1, :, 1:] - m[1, :, :-1]).abs().sum())
    assert edges(large) < 0.6 * edges(small)


def test_a_share_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"in \[0, 1\], got -0.1"):
        albedo_marks(-0.1)


def test_the_train_command_takes_albedo_marks_for_delight_only(tmp_path, capsys):
    from avatarme_edu.nets.train_command import main

    assert main(["sr", "--albedo-marks", "0.5", "--out", str(tmp_path / "r"), "--profile", "cpu"]) == 2
    assert "--albedo-marks is for delight only" in capsys.readouterr().err
    assert main(["delight", "--albedo-marks", "2", "--out", str(tmp_path / "r"), "--profile", "cpu"]) == 2
    assert "must be a share in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
