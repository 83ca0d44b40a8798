"""In-the-wild textures: determinism, baked light, low/high alignment, shadows, camera pieces."""

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from avatarme_edu.color import luminance
from avatarme_edu.lightstage.subjects import make_subject
from avatarme_edu.lightstage.wild import (
    WildParams,
    blackbody_rgb,
    jpeg_round_trip,
    sample_wild_params,
    tone_curve,
    wild_texture,
)


@pytest.fixture(scope="module")
def subject(tiny):
    return make_subject(3, tiny)


@pytest.fixture(scope="module")
def wild(subject, tiny):
    return wild_texture(subject, tiny, torch.Generator().manual_seed(5))


def test_same_generator_same_texture(subject, tiny, wild):
    again = wild_texture(subject, tiny, torch.Generator().manual_seed(5))
    assert torch.equal(again.low, wild.low) and torch.equal(again.high, wild.high)
    assert again.params == wild.params
    other = wild_texture(subject, tiny, torch.Generator().manual_seed(6))
    assert other.params != wild.params and not torch.allclose(other.high, wild.high)


def test_shapes_ranges_and_masks(subject, tiny, wild):
    assert wild.high.shape == (3, 96, 144) and wild.low.shape == (3, 24, 36)
    assert wild.mask_low.shape == (24, 36) and wild.mask_low.dtype == torch.bool
    for t, m in ((wild.high, wild.mask), (wild.low, wild.mask_low)):
        assert t.min() >= 0 and t.max() <= 1 and (t[:, ~m] == 0).all()
    assert torch.equal(wild.mask, subject.mask)
    for v in (wild.sun_visibility, wild.occlusion):
        assert v.shape == (1, 96, 144) and v.min() >= 0 and v.max() <= 1


def test_texture_has_baked_light_but_follows_the_albedo(subject, tiny, wild):
    face = (subject.regions["face"] > 0.5) & subject.mask
    albedo = subject.reflectance.diffuse_albedo[:, face]
    tex = wild.high[:, face]
    # not an albedo: the shading changes the texture far more than the albedo's own texel-to-texel ratio
    ratio = luminance(tex.T.reshape(-1, 3, 1, 1)).flatten() / luminance(albedo.T.reshape(-1, 3, 1, 1)).flatten()
    assert ratio.std() / ratio.mean() > 0.1
    # but it is this albedo that is lit: the same light and camera on a flat grey albedo give a texture
    # that is darker exactly where the subject's albedo is above that grey (the camera's exposure and
    # colour balance meter the light, not the skin, and its tone curve is monotone)
    grey = 0.3
    flat = dataclasses.replace(subject.reflectance,
                               diffuse_albedo=torch.full_like(subject.reflectance.diffuse_albedo, grey) * subject.mask)
    clean = dataclasses.replace(wild.params, blur_sigma=0.0, shot_noise=0.0, read_noise=0.0, jpeg_quality=95)
    lit = wild_texture(subject, tiny, 0, params=clean)
    lit_grey = wild_texture(dataclasses.replace(subject, reflectance=flat), tiny, 0, params=clean)
    assert lit.exposure == lit_grey.exposure and lit.white_balance == lit_grey.white_balance
    a = subject.reflectance.diffuse_albedo[:, face] - grey
    t = lit.high[:, face] - lit_grey.high[:, face]
    clear = (a.abs() > 0.02) & (lit.high[:, face] < 0.99) & (lit_grey.high[:, face] < 0.99)
    agree = (torch.sign(a) == torch.sign(t))[clear].float().mean()
    assert clear.float().mean() > 0.5 and agree > 0.99, float(agree)


def test_low_is_the_high_texture_down_sampled(subject, tiny):
    g = torch.Generator().manual_seed(9)
    clean = dataclasses.replace(sample_wild_params(torch.Generator().manual_seed(1)), blur_sigma=0.0,
                                shot_noise=0.0, read_noise=0.0, jpeg_quality=95)
    w = wild_texture(subject, tiny, g, params=clean)
    m = w.mask.float()[None]
    down = F.avg_pool2d((w.high * m)[None], 4)[0] / F.avg_pool2d(m[None], 4)[0].clamp_min(1e-6)
    ok = w.mask_low
    err = (down - w.low).abs()[:, ok].mean()
    assert err < 0.01  # only the JPEG (quality 95) separates them
    shifted = (down.roll(1, dims=2) - w.low).abs()[:, ok].mean()
    assert shifted > 2 * err  # and they are aligned texel for texel

    noisy = wild_texture(subject, tiny, torch.Generator().manual_seed(9),
                         params=dataclasses.replace(clean, read_noise=0.02))
    assert (noisy.low - w.low).abs()[:, ok].mean() > 0.005
    assert torch.equal(noisy.high, w.high)  # noise belongs to the low-resolution fit only


def test_params_serialise_and_are_plausible(wild):
    p = wild.params
    assert WildParams.from_dict(json.loads(json.dumps(p.as_dict()))) == p
    kinds = {sample_wild_params(torch.Generator().manual_seed(s)).kind for s in range(30)}
    assert kinds == {"outdoor", "indoor", "overcast"}
    assert abs(math.hypot(*p.sun_direction) - 1) < 1e-6
    assert 1 <= p.jpeg_quality <= 95 and wild.exposure > 0


def test_tone_curve_jpeg_and_colour_temperature():
    x = torch.linspace(0, 4, 200)
    y = tone_curve(x, white=2.0, contrast=0.2)
    assert y[0] == 0 and torch.isclose(y[100:].max(), torch.tensor(1.0)) and (y.diff() >= -1e-7).all()
    img = torch.rand(3, 1, 1).expand(3, 32, 48).clone() * 0.8 + 0.1
    assert (jpeg_round_trip(img, 95) - img).abs().max() < 0.02
    white, warm = blackbody_rgb(6500), blackbody_rgb(3000)
    assert max(abs(c - 1) for c in white) < 0.1
    assert warm[0] > warm[1] > warm[2]
    with pytest.raises(ValueError):
        blackbody_rgb(500)
    with pytest.raises(ValueError):
        jpeg_round_trip(img, 0)


def test_size_mismatch_raises(subject, tiny):
    with pytest.raises(ValueError, match="map_hw"):
        wild_texture(subject, tiny.replace(map_hw=(48, 72)), 0)
