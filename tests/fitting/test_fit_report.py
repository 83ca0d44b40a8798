"""The texture blend: the smooth colour correction and the seam measure."""

import torch

from avatarme_edu.fitting.fit_report import seam_ratio, seam_ratio_sources, smooth_fill


def _two_sources():
    """A photo texture with fine detail on the left, a model texture 0.2 darker and smoother everywhere."""
    g = torch.Generator().manual_seed(0)
    h, w = 48, 72
    xs = torch.linspace(0, 1, w)[None, None].expand(3, h, w)
    photo = 0.5 + 0.1 * xs + 0.02 * torch.rand(3, h, w, generator=g)
    model = 0.3 + 0.1 * xs
    weight = torch.zeros(h, w)
    weight[:, :30] = 1.0
    weight[:, 30:38] = torch.linspace(1, 0, 10)[1:9]  # a feathered band
    return photo, model, weight


def test_smooth_fill_keeps_known_values_low_frequency_and_fills_the_rest():
    values = torch.zeros(1, 40, 60)
    values[:, :, :20] = 0.3
    known = torch.zeros(40, 60)
    known[:, :20] = 1
    out = smooth_fill(values, known)
    assert torch.allclose(out[:, 5:35, 3:15], torch.full_like(out[:, 5:35, 3:15], 0.3), atol=1e-3)
    assert torch.allclose(out[:, :, 50:], torch.full_like(out[:, :, 50:], 0.3), atol=1e-3)  # far: the known mean
    assert float(smooth_fill(values, torch.zeros(40, 60)).abs().max()) == 0.0


def test_the_colour_correction_removes_the_step_the_feather_leaves():
    photo, model, weight = _two_sources()
    feather = weight * photo + (1 - weight) * model
    corrected = model + smooth_fill(photo - model, (weight > 0.5).float())
    blended = weight * photo + (1 - weight) * corrected
    step, clean = seam_ratio(feather, weight), seam_ratio(blended, weight)
    assert step > 2.0  # a 0.2 step spread over 8 texels is a visible edge
    # no more than the sources' own detail in the band: the boundary adds nothing
    assert clean < 1.1 * seam_ratio_sources(photo, corrected, weight) + 0.1 and clean < 0.6 * step
