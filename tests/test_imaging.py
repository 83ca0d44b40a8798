import math

import pytest
import torch

from avatarme_edu.imaging import (channel_dot, check_hw, check_map, downsample_masked, gaussian_blur, interp, smoothstep,
                                  unit_vectors, upsample_masked)
from avatarme_edu.lightstage import noise


def test_gaussian_blur_spreads_an_impulse_by_sigma_on_each_axis():
    x = torch.zeros(1, 65, 65)
    x[0, 32, 32] = 1.0
    b = gaussian_blur(x, (3.0, 1.5))[0]  # (along rows, along columns)
    assert abs(float(b.sum()) - 1.0) < 1e-4
    r = torch.arange(65, dtype=torch.float32) - 32
    assert math.sqrt(float((b.sum(1) * r**2).sum())) == pytest.approx(3.0, rel=0.03)
    assert math.sqrt(float((b.sum(0) * r**2).sum())) == pytest.approx(1.5, rel=0.03)
    # narrower than MIN_SIGMA: the identity
    assert torch.equal(gaussian_blur(x, 0.2), x)


def test_borders_differ_only_at_the_edge():
    x = torch.ones(1, 1, 20, 30)
    assert torch.allclose(gaussian_blur(x, 2.0, border="reflect"), x)
    assert torch.allclose(gaussian_blur(x, 2.0, border="replicate"), x)
    zero = gaussian_blur(x, 2.0, border="constant")
    # a corner sees half of each 1-D kernel plus half its centre tap: (0.5 + g(0) / 2)^2
    half = 0.5 + 0.5 / (math.sqrt(2 * math.pi) * 2.0)
    assert float(zero[0, 0, 0, 0]) == pytest.approx(half**2, abs=2e-3)
    assert float(zero[0, 0, 10, 15]) == pytest.approx(1.0, abs=1e-5)
    # a kernel wider than a tiny map is cut to the map (reflect padding cannot reach further)
    tiny = torch.full((1, 2, 3), 0.4)
    assert torch.allclose(gaussian_blur(tiny, 5.0), tiny)


def test_masked_blur_is_a_normalised_convolution():
    mask = torch.zeros(40, 60, dtype=torch.bool)
    mask[5:35, 10:50] = True
    const = torch.full((2, 40, 60), 0.7) * mask
    out = gaussian_blur(const, 4.0, mask)
    assert torch.allclose(out[:, mask], torch.full_like(out[:, mask], 0.7), atol=1e-5)
    assert float(out[:, ~mask].abs().max()) == 0.0


def test_the_wide_blur_shortcut_agrees_with_the_direct_blur():
    img = noise.smooth_noise((96, 96), 4.0, torch.Generator().manual_seed(1))
    wide = gaussian_blur(img, 10.0, downsample_wide=True)
    direct = gaussian_blur(gaussian_blur(img, 7.9), math.sqrt(10.0**2 - 7.9**2))
    assert float((wide - direct)[10:-10, 10:-10].abs().max()) < 0.05 * float(direct.abs().max()) + 1e-3


def test_smoothstep_ramps_from_zero_to_one():
    x = torch.tensor([-1.0, 0.0, 0.25, 0.5, 1.0, 2.0])
    assert smoothstep(0.0, 1.0, x).tolist() == pytest.approx([0, 0, 0.15625, 0.5, 1, 1])
    assert smoothstep(1.0, 0.0, x).tolist() == pytest.approx([1, 1, 0.84375, 0.5, 0, 0])  # reversed edges


def test_bad_input_raises_one_clear_line():
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(torch.zeros(4, 4), -1.0)
    with pytest.raises(ValueError, match="border"):
        gaussian_blur(torch.zeros(4, 4), 1.0, border="wrap")
    with pytest.raises(ValueError, match="mask"):
        gaussian_blur(torch.zeros(4, 4), 1.0, mask=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"albedo must be \(3, 4, 5\)"):
        check_map("albedo", torch.zeros(1, 4, 5), 3, (4, 5))
    with pytest.raises(ValueError, match="floating-point"):
        check_map("albedo", torch.zeros(3, 4, 5, dtype=torch.int64), 3, (4, 5))


def test_interp_is_piecewise_linear_and_clamped():
    x = torch.tensor([-1.0, 0.0, 0.5, 1.5, 2.0, 9.0])
    assert interp(x, (0.0, 1.0, 2.0), (10.0, 20.0, 0.0)).tolist() == pytest.approx([10, 10, 15, 10, 0, 0])
    assert interp(x, (0.0, 1.0, 2.0), (10.0, 20.0, 0.0)).dtype == torch.float32


def test_unit_vectors_and_channel_dot_work_along_the_channel_axis():
    v = torch.zeros(2, 3, 4, 5)
    v[:, 0] = 3.0
    v[:, 1] = 4.0
    v[1, :, 0, 0] = 0.0  # a zero vector stays zero
    u = unit_vectors(v)
    assert torch.allclose(u[0, :, 1, 1], torch.tensor([0.6, 0.8, 0.0]))
    assert torch.equal(u[1, :, 0, 0], torch.zeros(3))
    d = channel_dot(u[0], torch.tensor([1.0, 1.0, 0.0]).view(3, 1, 1), dim=0)
    assert d.shape == (1, 4, 5) and torch.allclose(d, torch.full((1, 4, 5), 1.4))


def test_masked_down_and_up_sampling_average_only_valid_texels():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, :4] = True
    x = torch.where(mask, torch.tensor(2.0), torch.tensor(100.0))[None]  # background must not leak in
    small, keep = downsample_masked(x, mask, (4, 4))
    assert keep[:, :2].all() and not keep[:, 2:].any()
    assert torch.allclose(small[0, keep], torch.tensor(2.0))
    back = upsample_masked(small, keep, mask)
    assert torch.allclose(back[0, mask], torch.tensor(2.0), atol=1e-5) and float(back[0, ~mask].abs().max()) == 0.0


def test_check_hw_takes_positive_whole_numbers_only():
    assert check_hw((384, 576)) == (384, 576)
    assert check_hw(torch.tensor([4, 6])) == (4, 6)  # tensors and numpy ints are whole numbers too
    for bad in ((0, 5), (4.5, 6), (True, 3), (4,), "ab", None):
        with pytest.raises(ValueError, match=r"hw must be a pair \(H, W\) of positive integers"):
            check_hw(bad)
