import math

import numpy as np
import pytest
import torch

from avatarme_edu.metrics import angular_error, angular_error_map, psnr, ssim, ssim_map


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---- PSNR ---------------------------------------------------------------------------------

def test_psnr_of_constant_offset_is_20_db():
    x = _rand(3, 16, 24) * 0.8
    assert psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-5)
    assert psnr(x, x) == math.inf
    # data_range scales the peak: the same error on [0, 255] data is 20 + 20 log10(255) dB
    assert psnr(255 * (x + 0.1), 255 * x, data_range=255.0) == pytest.approx(20.0, abs=1e-4)


def test_psnr_ignores_masked_texels_and_accepts_batches():
    x = _rand(2, 3, 16, 24)
    y = x + 0.1
    mask = torch.zeros(16, 24, dtype=torch.bool)
    mask[4:12, 5:20] = True
    y[..., ~mask] = 5.0  # huge errors outside the mask do not count
    assert psnr(y, x, mask) == pytest.approx(20.0, abs=1e-5)
    assert psnr(y, x) < 0  # ... but they do without it


def test_psnr_rejects_mismatches():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="mask must be"):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4), torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="no valid texels"):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4), torch.zeros(4, 4, dtype=torch.bool))


# ---- SSIM ---------------------------------------------------------------------------------

def _ssim_numpy(x, y, mask, L=1.0):
    """Direct per-texel loop: Gaussian-weighted statistics over the valid texels of each window."""
    k = np.arange(11) - 5
    g = np.exp(-0.5 * (k / 1.5) ** 2)
    g /= g.sum()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    h, w = mask.shape
    values = []
    for ch in range(x.shape[0]):
        for i in range(h):
            for j in range(w):
                if not mask[i, j]:
                    continue
                wsum = sx = sy = sxx = syy = sxy = 0.0
                for di in range(-5, 6):
                    for dj in range(-5, 6):
                        r, c = i + di, j + dj
                        if 0 <= r < h and 0 <= c < w and mask[r, c]:
                            wt = g[di + 5] * g[dj + 5]
                            a, b = x[ch, r, c], y[ch, r, c]
                            wsum += wt
                            sx += wt * a
                            sy += wt * b
                            sxx += wt * a * a
                            syy += wt * b * b
                            sxy += wt * a * b
                mx, my = sx / wsum, sy / wsum
                vx, vy, cv = sxx / wsum - mx * mx, syy / wsum - my * my, sxy / wsum - mx * my
                values.append((2 * mx * my + c1) * (2 * cv + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_of_identical_maps_is_one_and_falls_with_noise():
    x = _rand(3, 24, 36)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    noise = torch.randn(3, 24, 36, generator=torch.Generator().manual_seed(1))
    scores = [ssim((x + s * noise).clamp(0, 1), x) for s in (0.01, 0.05, 0.2)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_ssim_matches_a_direct_numpy_loop_with_and_without_mask():
    x = _rand(2, 9, 14, seed=2)
    y = (x + 0.1 * torch.randn(2, 9, 14, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    mask = torch.ones(9, 14, dtype=torch.bool)
    assert ssim(y, x) == pytest.approx(_ssim_numpy(y.numpy(), x.numpy(), mask.numpy()), abs=1e-10)
    mask[:, :4] = False
    mask[6:, 10:] = False
    assert ssim(y, x, mask) == pytest.approx(_ssim_numpy(y.numpy(), x.numpy(), mask.numpy()), abs=1e-10)


def test_ssim_background_does_not_leak_through_the_mask():
    x = _rand(1, 20, 30)
    mask = torch.zeros(20, 30, dtype=torch.bool)
    mask[:, :15] = True
    y = x.clone()
    y[..., ~mask] = torch.rand(1, 300, generator=torch.Generator().manual_seed(9))
    assert ssim(y, x, mask) == pytest.approx(1.0, abs=1e-12)  # differences only in the background
    assert ssim_map(y, x, mask).shape == (1, 20, 30)
    b = torch.stack([x, y])
    assert ssim(b, b) == pytest.approx(1.0, abs=1e-12)


# ---- angular error ------------------------------------------------------------------------

def _normals_in_yz_plane(h, w, seed=0):
    phi = (torch.rand(h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 0.5) * 2
    return torch.stack([torch.zeros_like(phi), torch.sin(phi), torch.cos(phi)])


def _rotate_about_x(n, degrees):
    t = math.radians(degrees)
    r = torch.tensor([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]],
                     dtype=torch.float64)
    return torch.einsum("ij,jhw->ihw", r, n)


@pytest.mark.parametrize("degrees", [0.01, 5.0, 30.0, 120.0])
def test_angular_error_of_a_known_rotation_is_that_angle(degrees):
    n = _normals_in_yz_plane(8, 12)
    m = _rotate_about_x(n, degrees) * 3.0  # not unit on purpose: only directions count
    err = angular_error(m, n)
    for key in ("mean", "median", "rmse"):
        assert err[key] == pytest.approx(degrees, rel=1e-4)
    amap = angular_error_map(m, n)
    assert amap.shape == (8, 12) and torch.allclose(amap, torch.full((8, 12), degrees, dtype=torch.float32), rtol=1e-4)


def test_angular_error_statistics_and_mask():
    n = _normals_in_yz_plane(2, 2)
    m = torch.cat([_rotate_about_x(n[:, :1, :], 1.0), _rotate_about_x(n[:, 1:, :], 3.0)], dim=1)
    err = angular_error(m, n)  # two texels at 1 degree and two at 3
    assert err["mean"] == pytest.approx(2.0, rel=1e-5)
    assert err["median"] == pytest.approx(2.0, rel=1e-5)
    assert err["rmse"] == pytest.approx(math.sqrt(5.0), rel=1e-5)
    mask = torch.tensor([[True, True], [False, False]])
    assert angular_error(m, n, mask)["mean"] == pytest.approx(1.0, rel=1e-5)
    assert angular_error_map(m, n, mask)[1].abs().max() == 0
    batch = angular_error_map(torch.stack([m, n]), torch.stack([n, n]))
    assert batch.shape == (2, 2, 2) and batch[1].abs().max() < 1e-5
    with pytest.raises(ValueError, match="3 channels"):
        angular_error(torch.ones(2, 2, 2), torch.ones(2, 2, 2))


def test_masked_ssim_equals_kornias_standard_ssim_where_the_whole_window_is_valid():
    # our SSIM is a normalised convolution so it can skip invalid texels; away from borders and holes it
    # must be exactly the standard SSIM of a kept library (kornia, 11-tap Gaussian window, sigma 1.5)
    from kornia.metrics import ssim as kornia_ssim

    a, b = _rand(1, 2, 40, 50, seed=3), _rand(1, 2, 40, 50, seed=4) * 0.5 + _rand(1, 2, 40, 50, seed=3) * 0.5
    ours = ssim_map(a, b)[..., 5:-5, 5:-5]
    theirs = kornia_ssim(a.double(), b.double(), 11, padding="valid")
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
