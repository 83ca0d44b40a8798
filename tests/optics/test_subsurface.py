"""Texture-space subsurface scattering: d'Eon & Luebke's sum of Gaussians, sized in millimetres."""

import torch

from avatarme_edu.geometry.texels import local_texel_size_mm
from avatarme_edu.optics.subsurface import SKIN_DIFFUSION_PROFILE, subsurface_blur


def test_subsurface_blur_conserves_energy_and_widens_red_more_than_blue():
    h, w, texel = 64, 64, 0.5  # mm: the widest Gaussian (sigma 2.7 mm ~ 5.4 texels, 3 sigma) fits inside
    irradiance = torch.zeros(3, h, w)
    irradiance[:, 32, 32] = 1.0
    mask = torch.ones(h, w, dtype=torch.bool)
    out = subsurface_blur(irradiance, mask, (texel, texel))
    torch.testing.assert_close(out.sum(dim=(1, 2)), torch.ones(3), atol=1e-3, rtol=1e-3)
    yy, xx = torch.meshgrid(torch.arange(h) - 32.0, torch.arange(w) - 32.0, indexing="ij")
    spread = (out * (xx**2 + yy**2)).sum(dim=(1, 2)) / out.sum(dim=(1, 2))  # mean squared radius, texels^2
    # The profile's variance per colour: sum_i w_i * 2 var_i (two axes), in texels^2.
    weights = torch.tensor([wgt for _, wgt in SKIN_DIFFUSION_PROFILE])
    variances = torch.tensor([v for v, _ in SKIN_DIFFUSION_PROFILE])
    expected = (weights * 2 * variances[:, None]).sum(0) / texel**2
    torch.testing.assert_close(spread, expected, rtol=0.05, atol=0.2)
    assert spread[0] > 5 * spread[1] > 5 * spread[2]


def test_subsurface_blur_keeps_flat_field_flat_and_ignores_background():
    h, w = 40, 40
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[8:32, 5:30] = True
    irradiance = torch.full((3, h, w), 0.8)
    irradiance[:, ~mask] = 50.0  # garbage outside the mask must not leak in
    out = subsurface_blur(irradiance, mask, (0.3, 0.3))
    torch.testing.assert_close(out[:, mask], torch.full_like(out[:, mask], 0.8), atol=1e-5, rtol=1e-5)
    assert (out[:, ~mask] == 0).all()


def test_stretch_aware_blur_does_not_carry_red_light_into_a_stretched_shadow():
    # Rows 15 mm apart: the widest red Gaussian (sigma 2.7 mm) is far below one row, so a shadow edge
    # between rows must stay dark; with one typical texel size (0.5 mm) it would bleed red rows deep.
    rows = (torch.arange(24, dtype=torch.float32) + 0.5) * 0.015
    cols = (torch.arange(36, dtype=torch.float32) + 0.5) * 0.0005
    yy, xx = torch.meshgrid(-rows, cols, indexing="ij")
    position = torch.stack([xx, yy, torch.zeros_like(xx)])  # like EduHead's neck in UV
    mask = torch.ones(24, 36, dtype=torch.bool)
    irradiance = torch.zeros(3, 24, 36)
    irradiance[:, :12] = 1.0
    local = local_texel_size_mm(position, mask)
    out = subsurface_blur(irradiance, mask, (0.5, 0.5), texel_map_mm=local)
    assert float(out[0, 12:].max()) < 1e-3
    naive = subsurface_blur(irradiance, mask, (0.5, 0.5))
    assert float(naive[0, 13].min()) > 0.05  # what the old, uniform blur did: red light ~30 mm into the shadow
    # along the rows (0.5 mm columns) the stretch-aware blur still scatters, and a flat field stays flat
    flat = subsurface_blur(torch.full((3, 24, 36), 0.7), mask, (0.5, 0.5), texel_map_mm=local)
    torch.testing.assert_close(flat, torch.full_like(flat, 0.7), atol=1e-5, rtol=1e-5)
    spot = torch.zeros(3, 24, 36)
    spot[:, 12, 18] = 1.0
    row = subsurface_blur(spot, mask, (0.5, 0.5), texel_map_mm=local)
    assert float(row[0, 12, 18 + 4]) > 0.01 and float(row[2, 12, 18 + 4]) < 1e-3
    torch.testing.assert_close(row.sum(dim=(1, 2)), torch.ones(3), atol=2e-3, rtol=2e-3)
