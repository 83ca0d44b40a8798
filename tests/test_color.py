import pytest
import torch
from kornia.color import linear_rgb_to_rgb, rgb_to_linear_rgb

from avatarme_edu.color import XYZ_TO_LINEAR_SRGB, cie_cmf, linear_to_srgb, luminance, srgb_to_linear


def test_srgb_curve_matches_kornias_and_round_trips():
    # ours takes any shape (a grey map, one colour); kornia's needs (..., 3, H, W): on RGB they agree
    x = torch.rand(2, 3, 8, 9, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(linear_to_srgb(x), linear_rgb_to_rgb(x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(srgb_to_linear(x), rgb_to_linear_rgb(x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-5, rtol=1e-5)
    assert float(linear_to_srgb(torch.tensor(0.214))) == pytest.approx(0.5, abs=2e-3)
    assert linear_to_srgb(torch.tensor([-1.0, 2.0])).tolist() == [0.0, pytest.approx(1.0)]  # clipped


def test_colour_matching_functions_give_white_for_an_equal_energy_spectrum():
    lam = torch.arange(380.0, 781.0, 1.0, dtype=torch.float64)
    cmf = cie_cmf(lam)
    assert cmf.shape == (3, lam.numel())
    assert int(lam[cmf[1].argmax()]) in range(550, 560)  # the eye is most sensitive near 555 nm
    xyz = cmf.sum(1)
    x, y = float(xyz[0] / xyz.sum()), float(xyz[1] / xyz.sum())
    assert (x, y) == pytest.approx((1 / 3, 1 / 3), abs=0.01)  # illuminant E
    rgb = torch.tensor(XYZ_TO_LINEAR_SRGB, dtype=torch.float64) @ (xyz / xyz[1])
    assert float(luminance(rgb.view(3, 1, 1))) == pytest.approx(1.0, abs=0.01)
