import pytest
import torch
import torch.nn.functional as F

from avatarme_edu.lightstage import noise


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def corr(a, b):
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_smooth_noise_has_unit_variance_and_the_asked_feature_size():
    n = noise.smooth_noise((256, 384), 8.0, gen())
    assert n.shape == (256, 384)
    assert abs(float(n.mean())) < 0.15
    assert 0.85 < float(n.std()) < 1.15
    # neighbours are alike, texels a few periods apart are not
    assert corr(n[:, :-1], n[:, 1:]) > 0.95
    assert abs(corr(n[:, :-24], n[:, 24:])) < 0.2


def test_smooth_noise_is_the_same_field_at_two_resolutions():
    # a lattice fixed in physical units: the fine map, averaged 2x2, is the coarse map
    coarse = noise.smooth_noise((64, 96), 6.0, gen(3))
    fine = noise.smooth_noise((128, 192), 12.0, gen(3))
    down = F.avg_pool2d(fine[None, None], 2)[0, 0]
    assert corr(coarse, down) > 0.99


def test_fractal_noise_leaves_out_octaves_the_map_cannot_hold():
    coarse = noise.fractal_noise((64, 96), 16.0, gen(1), octaves=5)
    fine = noise.fractal_noise((128, 192), 32.0, gen(1), octaves=5)
    assert corr(coarse, F.avg_pool2d(fine[None, None], 2)[0, 0]) > 0.95
    # the fine map holds one more octave: more small-scale energy
    def roughness(x):
        return float((x[:, 1:] - x[:, :-1]).std())
    assert roughness(fine) > 0 and roughness(coarse) > 0
    # stretched noise: features longer along columns than along rows
    streaks = noise.fractal_noise((128, 128), (2.0, 16.0), gen(2), octaves=2)
    assert corr(streaks[:, :-4], streaks[:, 4:]) > corr(streaks[:-4], streaks[4:]) + 0.3


def test_noise_is_deterministic_per_seed():
    a = noise.fractal_noise((32, 48), 6.0, gen(5))
    b = noise.fractal_noise((32, 48), 6.0, gen(5))
    c = noise.fractal_noise((32, 48), 6.0, gen(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(noise.as_generator(7).initial_seed() * torch.ones(1), 7 * torch.ones(1))


def test_jittered_spots_count_density_and_range():
    spots = noise.jittered_spots((120, 120), 10.0, 1.5, gen(), amp_spread=0.0, size_spread=0.0)
    assert float(spots.min()) >= 0 and float(spots.max()) <= 1
    # one spot per 10x10 cell: count local maxima close to 1
    peaks = (spots == F.max_pool2d(spots[None, None], 5, 1, 2)[0, 0]) & (spots > 0.7)
    assert 120 <= int(peaks.sum()) <= 150  # 144 cells (a peak on a cell border may count twice)
    assert float(noise.jittered_spots((60, 60), 10.0, 1.5, gen(), density=0.0).max()) == 0.0
    # a density map: spots only where it is 1 (up to a spot's reach past the border)
    dens = torch.zeros(120, 120)
    dens[:, 60:] = 1.0
    half = noise.jittered_spots((120, 120), 10.0, 1.5, gen(), density=dens)
    assert float(half[:, :52].max()) < 1e-3 and float(half[:, 60:].max()) > 0.9


def test_jittered_spots_land_on_the_same_places_at_two_resolutions():
    coarse = noise.jittered_spots((60, 90), 6.0, 1.5, gen(4))
    fine = noise.jittered_spots((120, 180), 12.0, 3.0, gen(4))
    assert corr(coarse, F.avg_pool2d(fine[None, None], 2)[0, 0]) > 0.9


def test_cell_edges_are_zero_on_borders_and_positive_inside():
    e = noise.cell_edges((96, 96), 12.0, gen())
    assert float(e.min()) >= 0 and float(e.min()) < 0.02
    assert 0.1 < float(e.mean()) < 0.8
    assert float(e.max()) > 0.4


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="period"):
        noise.smooth_noise((8, 8), 0.0, gen())
    with pytest.raises(ValueError, match="hw"):
        noise.smooth_noise((0, 8), 2.0, gen())
    with pytest.raises(ValueError, match="radius"):
        noise.jittered_spots((8, 8), 4.0, -1.0, gen())
    with pytest.raises(ValueError, match="density map"):
        noise.jittered_spots((8, 8), 4.0, 1.0, gen(), density=torch.ones(4, 4))
    with pytest.raises(ValueError, match="generator"):
        noise.as_generator("seed")
