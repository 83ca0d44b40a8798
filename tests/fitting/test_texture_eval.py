"""Held-out evaluation of texture models: PCA baseline, latent fitting, the samples figure."""

import pytest
import torch

from avatarme_edu.fitting.texture_eval import (evaluate_held_out, fit_latent, pca_basis, pca_reconstruct,
                                               plot_texture_samples)
from avatarme_edu.fitting.texture_gan import GANConfig, TextureGAN
from avatarme_edu.metrics import psnr


def tiny_model(seed=0) -> TextureGAN:
    torch.manual_seed(seed)
    model = TextureGAN(GANConfig(texture_hw=(24, 36), z_dim=8, w_dim=8, mapping_layers=2, channels=(8, 8),
                                 d_channels=(4, 8)))
    model.generator.set_mean_texture(torch.full((3, 24, 36), 0.3))
    for layer in model.generator.layers:  # untrained styles start at zero: give the latent a say
        torch.nn.init.normal_(layer.style.weight, std=0.3)
    for conv in model.generator.to_rgb:
        torch.nn.init.normal_(conv.weight, std=0.3)
    model.update_w_stats(512)
    return model.requires_grad_(False)


def test_pca_is_exact_in_its_span_and_a_projection_outside():
    g = torch.Generator().manual_seed(0)
    train = torch.rand(6, 3, 4, 6, generator=g)
    mean, basis = pca_basis(train, 100)
    assert basis.shape == (5, 3, 4, 6)  # 6 textures span 5 directions around their mean
    flat = basis.reshape(5, -1)
    assert torch.allclose(flat @ flat.T, torch.eye(5), atol=1e-5)
    assert torch.allclose(pca_reconstruct(mean, basis, train), train, atol=1e-5)
    other = torch.rand(2, 3, 4, 6, generator=g)
    rec = pca_reconstruct(mean, basis, other)
    residual = (other - rec).reshape(2, -1)
    assert torch.allclose(residual @ flat.T, torch.zeros(2, 5), atol=1e-5)  # the error is orthogonal to the span
    with pytest.raises(ValueError, match="at least 2"):
        pca_basis(train[:1], 3)


def test_fit_latent_recovers_a_texture_of_the_model():
    model = tiny_model()
    target_latent = model.z_to_latent(torch.randn(2, 8, generator=torch.Generator().manual_seed(5)))
    target = model.decode(target_latent)
    start = psnr(model.decode(model.initial_latent(2)), target)
    _, rec = fit_latent(model, target, steps=150, lr=0.05)
    assert psnr(rec, target) > start + 10  # the fit finds (nearly) the texture's latent


def test_evaluate_held_out_reports_both_models():
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    tex = model.sample(7, g)
    masks = torch.ones(7, 24, 36, dtype=torch.bool)
    train = {"textures": tex[:5], "masks": masks[:5], "ids": [0, 1, 2, 3, 5]}
    held = {"textures": tex[5:], "masks": masks[5:], "ids": [4, 9]}
    out = evaluate_held_out(model, train, held, steps=60)
    assert set(out["psnr"]) == {"mean texture", "PCA 4", "GAN w", "GAN w+"}
    assert out["dims"] == {"mean texture": 0, "PCA 4": 4, "GAN w": 8, "GAN w+": 16}
    # the held-out textures were made by this very GAN: fitting its latent beats the mean texture
    assert out["psnr"]["GAN w"] > out["psnr"]["mean texture"] + 3
    with pytest.raises(ValueError, match="share identities"):
        evaluate_held_out(model, train, {**held, "ids": [4, 5]}, steps=1)


def test_plot_texture_samples_draws_samples_and_walks():
    fig = plot_texture_samples(tiny_model(), n_samples=3, n_interp=4)
    axes = fig.get_axes()
    assert len(axes) == 3 * 4 and sum(len(ax.images) for ax in axes) == 3 + 2 * 4
    first = axes[4].images[0].get_array()  # the first walk goes somewhere: its two ends differ
    last = axes[7].images[0].get_array()
    assert first.shape == (24, 36, 3) and abs(first - last).max() > 0
    with pytest.raises(ValueError, match="n_interp"):
        plot_texture_samples(tiny_model(), n_interp=1)
