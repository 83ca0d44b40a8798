import pytest
import torch

from avatarme_edu.profiles import get_profile
from avatarme_edu.tiling import blend_weights, sample_patches, sliding_window, window_grid


# ---- window_grid --------------------------------------------------------------------------

def test_paper_grid_has_24_windows_flush_with_the_border():
    p = get_profile("paper", device="cpu")
    grid = window_grid(p.map_hw, p.window_size, p.window_stride)  # no 6144x4096 map is allocated
    assert len(grid) == 24
    tops = sorted({t for t, _ in grid})
    lefts = sorted({l for _, l in grid})
    assert tops == [0, 1024, 2048, 2560] and lefts == [0, 1024, 2048, 3072, 4096, 4608]


def test_cpu_grid_has_two_windows():
    p = get_profile("cpu", device="cpu")
    assert window_grid(p.map_hw, p.window_size, p.window_stride) == [(0, 0), (0, 192)]


@pytest.mark.parametrize("hw", [(5, 7), (40, 40), (41, 97), (100, 33)])
def test_grid_covers_every_texel_and_stays_inside(hw):
    window, stride = 16, 10
    grid = window_grid(hw, window, stride)
    cover = torch.zeros(max(hw[0], window), max(hw[1], window), dtype=torch.int64)
    for t, l in grid:
        assert t >= 0 and l >= 0
        assert t + window <= max(hw[0], window) and l + window <= max(hw[1], window)
        cover[t:t + window, l:l + window] += 1
    assert (cover[:hw[0], :hw[1]] >= 1).all()


def test_map_smaller_than_window_gets_one_window():
    assert window_grid((10, 20), 64, 32) == [(0, 0)]


@pytest.mark.parametrize("window,stride", [(0, 1), (16, 0), (16, 17), (16, -2), (16, 2.5)])
def test_grid_rejects_bad_arguments(window, stride):
    with pytest.raises(ValueError, match="window|stride"):
        window_grid((64, 64), window, stride)


# ---- blend_weights ------------------------------------------------------------------------

def test_blend_weights_positive_ramped_and_a_partition_of_unity():
    window, overlap = 32, 12
    w = blend_weights(window, overlap)
    assert w.shape == (32, 32) and w.dtype == torch.float32
    assert (w > 0).all() and w.max() == 1.0
    assert w[16, 16] == 1.0 and w[0, 16] < 0.05 and w[0, 0] < w[0, 16]
    # along one axis, the falling ramp of a window plus the rising ramp of its neighbour is 1
    row = w[16]
    stride = window - overlap
    assert torch.allclose(row[stride:] + row[:overlap], torch.ones(overlap), atol=1e-6)


def test_blend_weights_overlap_edge_cases():
    assert torch.equal(blend_weights(8, 0), torch.ones(8, 8))
    w = blend_weights(8, 8)  # ramps meet in the middle: symmetric and positive
    assert (w > 0).all() and torch.allclose(w, w.flip(0)) and torch.allclose(w, w.T)
    with pytest.raises(ValueError, match="overlap"):
        blend_weights(8, 9)


# ---- sliding_window -----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 40, 60), (2, 3, 37, 53), (3, 16, 16), (1, 5, 9), (3, 16, 70)])
def test_identity_is_reconstructed_exactly(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g)
    y = sliding_window(lambda t: t, x, window=16, stride=10, batch_size=3)
    assert y.shape == x.shape and y.device == x.device
    assert torch.allclose(y, x, atol=1e-6, rtol=0)


def test_channel_count_may_change_and_batching_does_not_matter():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 30, 45, generator=g)
    fn = lambda t: torch.cat([t, 2 * t, t * t], dim=1)  # noqa: E731 - pointwise, so exact
    y1 = sliding_window(fn, x, 16, 12, batch_size=1)
    y5 = sliding_window(fn, x, 16, 12, batch_size=5, progress=True)
    assert y1.shape == (2, 3, 30, 45)
    assert torch.allclose(y1, y5, atol=1e-6)
    assert torch.allclose(y1[:, 1:2], 2 * x, atol=1e-6) and torch.allclose(y1[:, 2:3], x * x, atol=1e-6)


def test_blending_is_a_weighted_mean_of_overlapping_windows():
    # fn answers a constant per window (its call number): inside one window only that constant
    # appears, and in an overlap the value lies between the neighbours and varies smoothly.
    calls = []

    def fn(t):
        calls.append(1)
        return torch.full_like(t, float(len(calls)))

    y = sliding_window(fn, torch.zeros(1, 16, 40), window=16, stride=12)  # windows at 0, 12, 24
    assert len(calls) == 3
    row = y[0, 8]
    assert torch.allclose(row[:4], torch.ones(4)) and torch.allclose(row[-4:], torch.full((4,), 3.0))
    assert (row[1:] - row[:-1] >= -1e-6).all()  # monotone cross-fade, no jump back
    assert (row[1:] - row[:-1]).max() < 0.9  # ... and no hard seam


def test_sliding_window_rejects_bad_input():
    with pytest.raises(ValueError, match="x must be"):
        sliding_window(lambda t: t, torch.zeros(8, 8), 4, 2)
    with pytest.raises(ValueError, match="fn must return"):
        sliding_window(lambda t: t[:, :, :2], torch.zeros(1, 8, 8), 4, 2)
    with pytest.raises(ValueError, match="batch_size"):
        sliding_window(lambda t: t, torch.zeros(1, 8, 8), 4, 2, batch_size=0)


# ---- sample_patches -----------------------------------------------------------------------

def _maps_and_mask(h=48, w=72):
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    coords = torch.stack([yy, xx]).float()  # each texel knows where it is
    maps = {"texture": torch.cat([coords, torch.zeros(1, h, w)]), "spec": coords[:1] * 0.5}
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[10:40, 20:60] = True
    return maps, mask


def test_patches_are_aligned_valid_and_deterministic():
    maps, mask = _maps_and_mask()
    p = 16
    out, corners = sample_patches(maps, mask, p, 20, torch.Generator().manual_seed(3), min_valid=0.75)
    assert out["texture"].shape == (20, 3, p, p) and out["spec"].shape == (20, 1, p, p)
    assert corners.shape == (20, 2) and corners.dtype == torch.int64
    for k, (t, l) in enumerate(corners.tolist()):
        # the same crop in every map, at the reported corner
        assert out["texture"][k, 0, 0, 0] == t and out["texture"][k, 1, 0, 0] == l
        assert torch.equal(out["spec"][k, 0], out["texture"][k, 0] * 0.5)
        assert mask[t:t + p, l:l + p].float().mean() >= 0.75
    again, corners2 = sample_patches(maps, mask, p, 20, torch.Generator().manual_seed(3), min_valid=0.75)
    assert torch.equal(corners, corners2) and torch.equal(out["texture"], again["texture"])
    _, other = sample_patches(maps, mask, p, 20, torch.Generator().manual_seed(4), min_valid=0.75)
    assert not torch.equal(corners, other)


def test_patches_can_reach_the_whole_valid_region():
    maps, mask = _maps_and_mask()
    _, corners = sample_patches(maps, mask, 8, 400, torch.Generator().manual_seed(0), min_valid=1.0)
    assert corners[:, 0].min() == 10 and corners[:, 0].max() == 40 - 8
    assert corners[:, 1].min() == 20 and corners[:, 1].max() == 60 - 8


def test_clear_error_when_no_patch_fits():
    maps, mask = _maps_and_mask()
    with pytest.raises(ValueError, match="no 40x40 patch"):
        sample_patches(maps, mask, 40, 1, torch.Generator().manual_seed(0), min_valid=0.9)
    with pytest.raises(ValueError, match="patch_size"):
        sample_patches(maps, mask, 100, 1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="like the mask"):
        sample_patches({"bad": torch.zeros(3, 10, 10)}, mask, 4, 1, torch.Generator())
    with pytest.raises(ValueError, match="bool"):
        sample_patches(maps, mask.float(), 4, 1, torch.Generator())
