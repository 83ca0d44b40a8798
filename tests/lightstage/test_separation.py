import torch

from avatarme_edu.lightstage.separation import lobe_albedo


def test_lobe_albedo_is_about_f0_frontally_and_rises_at_grazing_views():
    r = lobe_albedo(torch.tensor([1.0, 0.5, 0.2]))
    assert 0.75 * 0.028 < r[0].item() < 0.028
    assert r[0] < r[1] < r[2]
