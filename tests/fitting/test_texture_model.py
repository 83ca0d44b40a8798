"""The PCA texture model: fitting, decoding, the protocol, safetensors round trip, the default choice."""

import torch

from avatarme_edu.fitting.texture_model import (PCATextureModel, TextureModel, default_texture_model, fit_pca,
                                                load_pca_texture_model, load_texture_model)
from avatarme_edu.profiles import get_profile


def _low_rank_textures(n=12, hw=(6, 9), rank=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, 3 * hw[0] * hw[1], generator=g) * 0.05
    z = torch.randn(n, rank, generator=g)
    return (0.5 + z @ basis).reshape(n, 3, *hw)


def test_pca_reconstructs_textures_in_its_span_and_round_trips(tmp_path):
    x = _low_rank_textures()
    model = fit_pca(x, 3)
    assert isinstance(model, TextureModel) and model.latent_dim == 3 and model.texture_hw == (6, 9)
    z = model.encode(x)
    assert torch.allclose(model.decode(z), x, atol=1e-5)  # 3 components span rank-3 data exactly
    assert torch.allclose(model.decode(model.initial_latent(1))[0], x.mean(0), atol=1e-6)
    assert torch.allclose(z.std(0), torch.ones(3), atol=0.05)  # latents in standard deviations
    assert float(model.latent_prior(z)) > float(model.latent_prior(model.initial_latent(1)))
    path = model.save(tmp_path / "pca.safetensors")
    again = PCATextureModel.load(path)
    assert torch.allclose(again.decode(z), model.decode(z), atol=2e-3)  # components stored as float16
    assert not list(tmp_path.glob("*.part"))


def test_decode_is_differentiable():
    model = fit_pca(_low_rank_textures(), 3)
    z = torch.zeros(1, 3, requires_grad=True)
    model.decode(z).sum().backward()
    assert z.grad.abs().sum() > 0


def test_stored_cpu_model_and_default_choice(capsys):
    profile = get_profile("cpu", device="cpu")
    model = load_pca_texture_model(profile)
    assert model.texture_hw == tuple(profile.texture_hw) and model.latent_dim >= 10
    mean = model.decode(model.initial_latent(1))[0]
    assert 0.05 < float(mean.mean()) < 0.8  # a plausible linear-RGB skin texture
    assert model.resized((24, 36)).decode(model.initial_latent(1)).shape == (1, 3, 24, 36)
    chosen = default_texture_model(profile)
    if isinstance(chosen, PCATextureModel):  # no GAN weights yet: PCA, and it says so
        assert "PCA" in capsys.readouterr().err
    try:
        load_texture_model(profile, "neither")
    except ValueError as err:
        assert "gan" in str(err) and "pca" in str(err)
    else:
        raise AssertionError("an unknown texture model kind must be refused")
