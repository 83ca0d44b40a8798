import math

import pytest
import torch
import torch.nn.functional as F

from avatarme_edu.optics.brdf import (SKIN_F0, SKIN_GGX_ALPHA, SKIN_PERCEPTUAL_ROUGHNESS, alpha_to_blinn_exponent,
                                      blinn_phong_lobe, fresnel_schlick, ggx_distribution, ggx_lobe, ggx_reflectance,
                                      roughness_to_alpha, smith_visibility)


def _hemisphere(n_theta=256, n_phi=256):
    """Midpoint directions over the upper hemisphere (+Z) and their solid angles."""
    theta = (torch.arange(n_theta, dtype=torch.float64) + 0.5) / n_theta * (math.pi / 2)
    phi = (torch.arange(n_phi, dtype=torch.float64) + 0.5) / n_phi * (2 * math.pi)
    th, ph = torch.meshgrid(theta, phi, indexing="ij")
    d = torch.stack([th.sin() * ph.cos(), th.sin() * ph.sin(), th.cos()], -1).reshape(-1, 3)
    w = (th.sin() * (math.pi / 2 / n_theta) * (2 * math.pi / n_phi)).reshape(-1)
    return d, w


def test_ggx_reflectance_is_reciprocal_non_negative_and_finite_at_grazing():
    g = torch.Generator().manual_seed(1)
    n = torch.tensor([0.0, 0.0, 1.0])
    l = F.normalize(torch.randn(200, 3, generator=g), dim=1)
    v = F.normalize(torch.randn(200, 3, generator=g), dim=1)
    l[:, 2], v[:, 2] = l[:, 2].abs(), v[:, 2].abs()
    h = F.normalize(l + v, dim=1)
    for smith in ("separable", "correlated"):
        def lobe(a, b):  # f(a -> b) * (n . a)
            return ggx_reflectance(a @ n, b @ n, h @ n, (b * h).sum(1), smith=smith)

        # f_s(l, v) = f_s(v, l): the BRDF (the lobe divided by its cosine) is symmetric
        assert torch.allclose(lobe(l, v) / (l @ n), lobe(v, l) / (v @ n), rtol=1e-4)
        assert (lobe(l, v) >= 0).all()
    grazing = ggx_reflectance(torch.tensor([0.0, 0.5, -0.2]), torch.tensor([0.5, 0.0, 0.3]),
                              torch.tensor([0.3, 0.3, 0.0]), torch.tensor([0.5, 0.5, 0.5]))
    assert torch.isfinite(grazing).all() and (grazing == 0).all()


def test_ggx_distribution_is_normalised_over_projected_area():
    # integral of D(h) (n.h) dh over the hemisphere = 1, for any alpha
    d, w = _hemisphere()
    for alpha in (0.2, 0.35, 0.8):
        total = (ggx_distribution(d[:, 2], alpha) * d[:, 2] * w).sum()
        assert float(total) == pytest.approx(1.0, abs=3e-3)


def test_white_furnace_head_on_shadowing_takes_a_little_more_with_the_separable_smith():
    # A lossless (F = 1) lobe seen head-on: without masking (G = 1) it would reflect the part of D whose
    # mirror directions stay above the horizon; Smith's masking-shadowing takes a few percent more.
    d, w = _hemisphere()
    v = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    h = F.normalize(d + v, dim=-1)
    unmasked = float((ggx_distribution(h[:, 2], SKIN_GGX_ALPHA) / 4 * w).sum())  # D G / (4 n.l n.v) n.l, G = 1
    albedo = {}
    for smith in ("correlated", "separable"):
        f = ggx_lobe(h[:, 2], d[:, 2], torch.ones_like(d[:, 2]), SKIN_GGX_ALPHA, smith) * d[:, 2]
        albedo[smith] = float((f * w).sum())
    assert 0.85 < unmasked < 0.95  # GGX's long tail: ~11 % of D reflects below the horizon at alpha 0.35
    assert 0.9 * unmasked < albedo["correlated"] < unmasked
    assert albedo["separable"] <= albedo["correlated"] + 1e-9  # separable Smith shadows more (or equal)
    assert albedo["separable"] == pytest.approx(albedo["correlated"], rel=0.02)  # head-on they nearly agree


def test_smith_visibility_forms_agree_when_either_direction_is_normal():
    c = torch.linspace(0.05, 1.0, 20)
    one = torch.ones_like(c)
    corr = smith_visibility(c, one, 0.35, "correlated")
    sep = smith_visibility(c, one, 0.35, "separable")
    assert torch.allclose(corr, sep, rtol=1e-5)  # with n.v = 1, G1(v) = 1 and both reduce to G1(l)
    with pytest.raises(ValueError, match="smith"):
        smith_visibility(c, one, 0.35, "uncorrelated")


def test_fresnel_and_roughness_conventions():
    assert float(fresnel_schlick(torch.tensor(1.0), SKIN_F0)) == pytest.approx(0.028)
    assert float(fresnel_schlick(torch.tensor(0.0), SKIN_F0)) == pytest.approx(1.0)
    assert SKIN_F0 == pytest.approx(((1.4 - 1) / (1.4 + 1)) ** 2, rel=0.01)
    # the renderer's default is a perceptual roughness: its alpha is its square, narrower than the stage's lobe
    assert roughness_to_alpha(SKIN_PERCEPTUAL_ROUGHNESS) == pytest.approx(0.2025)
    assert roughness_to_alpha(SKIN_PERCEPTUAL_ROUGHNESS) < SKIN_GGX_ALPHA
    # Walter et al.'s exponent for alpha, and the normalised lobe's peak (s + 8) / (8 pi)
    assert alpha_to_blinn_exponent(0.2) == pytest.approx(48.0)
    assert float(blinn_phong_lobe(torch.tensor(1.0), 48.0)) == pytest.approx(56.0 / (8 * math.pi))
    assert float(blinn_phong_lobe(torch.tensor(-0.5), 48.0)) == 0.0
