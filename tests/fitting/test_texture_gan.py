"""The texture GAN: the model interface, the committed weights, training (loss, exact resume, the split)."""

import json
import shutil

import pytest

from avatarme_edu.lightstage.dataset.records import seal
import torch

from avatarme_edu.fitting.texture_gan import (GANConfig, TextureGAN, default_weights_path, load_texture_gan,
                                              save_texture_gan, update_manifest)
from avatarme_edu.fitting.texture_data import load_textures
from avatarme_edu.fitting.texture_gan_train import TrainSettings, _new_state, main, train_step, train_texture_gan
from avatarme_edu.profiles import get_profile

TINY_HW = (24, 36)


def tiny_cfg() -> GANConfig:
    return GANConfig(texture_hw=TINY_HW, z_dim=8, w_dim=8, mapping_layers=2, channels=(8, 8), d_channels=(4, 8))


def with_random_styles(model: TextureGAN) -> TextureGAN:
    """Untrained styles start at zero (the latent has no say yet): give them random weights."""
    for layer in model.generator.layers:
        torch.nn.init.normal_(layer.style.weight, std=0.3)
    return model


@pytest.fixture(scope="module")
def tiny_profile():
    return get_profile("cpu", device="cpu").replace(map_hw=(96, 144), texture_hw=TINY_HW, patch_size=32)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, tiny_profile):
    """Identities 0..4 of the virtual light stage; identity 4 is held out."""
    from avatarme_edu.lightstage.dataset import make_dataset

    path = tmp_path_factory.mktemp("ls")
    make_dataset(5, 0, tiny_profile, path, progress=False, workers=0)
    return path


# ---- the model interface ---------------------------------------------------------------------


def test_decode_shapes_range_and_gradient():
    torch.manual_seed(0)
    model = with_random_styles(TextureGAN(tiny_cfg()))
    model.update_w_stats(256)
    for space, dim in (("w", 8), ("w+", 16)):
        model.latent_space = space
        assert model.latent_dim == dim and model.texture_hw == TINY_HW
        latent = (model.initial_latent(3) + 0.5 * torch.randn(3, dim)).requires_grad_(True)
        tex = model.decode(latent)
        assert tex.shape == (3, 3, *TINY_HW) and tex.dtype == torch.float32
        assert 0.0 <= float(tex.detach().min()) and float(tex.detach().max()) <= 1.0
        tex[:, 0].mean().backward()
        assert latent.grad.abs().sum() > 0  # differentiable in the latent
        with pytest.raises(ValueError, match="latent must be"):
            model.decode(torch.zeros(3, dim + 1))
    with pytest.raises(ValueError, match="unknown latent space"):
        model.latent_space = "z"


def test_latent_prior_zero_at_the_start_about_one_for_samples():
    torch.manual_seed(0)
    model = TextureGAN(tiny_cfg())
    model.update_w_stats(4096)
    assert float(model.latent_prior(model.initial_latent(2))) == pytest.approx(0.0, abs=1e-10)
    w = model.z_to_latent(torch.randn(2000, 8, generator=torch.Generator().manual_seed(1)))
    assert 0.9 < float(model.latent_prior(w.detach())) < 1.1  # standardised squares average to 1
    assert float(model.latent_prior(model.initial_latent(1) + 5 * model.w_std)) == pytest.approx(25.0, rel=1e-5)


def test_generator_starts_at_the_mean_texture():
    model = TextureGAN(tiny_cfg())
    mean = torch.rand(3, *TINY_HW) * 0.5 + 0.1
    model.generator.set_mean_texture(mean)
    for conv in model.generator.to_rgb:  # no deviation: the output is exactly the mean
        torch.nn.init.zeros_(conv.weight)
    assert torch.allclose(model.decode(model.initial_latent(2)), mean.expand(2, -1, -1, -1), atol=1e-6)


def test_config_for_profiles():
    cpu = GANConfig.for_texture((96, 144))
    assert cpu.base_hw == (6, 9) and cpu.n_levels == 4 and len(cpu.d_channels) == 4
    paper = GANConfig.for_texture((384, 576))
    assert paper.base_hw == (6, 9) and paper.n_levels == 6
    with pytest.raises(ValueError, match="not divisible"):
        GANConfig(texture_hw=(25, 36), channels=(8, 8))


# ---- the committed weights --------------------------------------------------------------------


def test_committed_weights_load_and_sample_textures():
    profile = get_profile("cpu", device="cpu")
    model = load_texture_gan(profile)
    assert model.texture_hw == (96, 144) and model.latent_dim == model.cfg.w_dim
    tex = model.sample(8, torch.Generator().manual_seed(0))
    assert tex.shape == (8, 3, 96, 144)
    rgb = tex.mean((0, 2, 3))
    # skin in linear RGB under the wild lighting: red above green above blue, neither black nor white
    assert 0.05 < float(rgb[0]) < 0.6 and rgb[0] > rgb[1] > rgb[2]
    assert float(tex.std((2, 3)).min()) > 0.02  # every sample has structure (face, not a flat colour)
    assert float(tex.std(0).mean()) > 0.01  # and the samples differ from each other
    rec = json.loads((default_weights_path(profile).parent / "MANIFEST.json").read_text())["texture_gan"]
    assert rec["steps"] > 0 and rec["n_identities"] > 0 and "platform" in rec["machine"]
    assert rec["held_out_eval"]["psnr"]["GAN w"] > 20


def test_missing_or_mismatched_weights(tmp_path):
    profile = get_profile("cpu", device="cpu")
    with pytest.raises(FileNotFoundError, match="train-gan"):
        load_texture_gan(profile, tmp_path / "none.safetensors")
    f = save_texture_gan(TextureGAN(tiny_cfg()), tmp_path / "tiny.safetensors", {"note": "test"})
    with pytest.raises(ValueError, match=r"\(24, 36\) textures"):
        load_texture_gan(profile, f)
    assert isinstance(load_texture_gan(profile.replace(texture_hw=TINY_HW), f, latent_space="w+"), TextureGAN)


def test_update_manifest_keeps_other_entries(tmp_path):
    profile = get_profile("cpu", device="cpu")
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"rcan": {"steps": 5}}))
    update_manifest(profile, "texture_gan", {"steps": 3}, tmp_path)
    update_manifest(profile, "texture_gan", {"psnr": 30.0}, tmp_path)
    assert json.loads((tmp_path / "MANIFEST.json").read_text()) == {"rcan": {"steps": 5},
                                                                    "texture_gan": {"steps": 3, "psnr": 30.0}}
    update_manifest(profile, "texture_gan", {"steps": 4}, tmp_path, replace=True)  # new weights: old numbers go
    assert json.loads((tmp_path / "MANIFEST.json").read_text()) == {"rcan": {"steps": 5}, "texture_gan": {"steps": 4}}


# ---- data and training ---------------------------------------------------------------------


def test_held_out_identities_never_reach_training(tiny_data, tiny_profile, tmp_path):
    train = load_textures(tiny_data, "train", tiny_profile)
    held = load_textures(tiny_data, "held_out", tiny_profile)
    assert train["ids"] == [0, 1, 2, 3] and held["ids"] == [4]
    assert train["textures"].shape == (4, 3, *TINY_HW)
    # the held-out subject's maps are never opened for training: training works without them
    copy = tmp_path / "ls"
    shutil.copytree(tiny_data, copy)
    (copy / "subject_0004" / "neutral.safetensors").unlink()
    assert load_textures(copy, "train", tiny_profile)["ids"] == [0, 1, 2, 3]
    # and a dataset whose files call a held-out identity "train" is refused
    rec = json.loads((copy / "subject_0004" / "subject.json").read_text())
    manifest = json.loads((copy / "manifest.json").read_text())
    for s in manifest["subjects"]:
        s["split"] = "train"
    # re-sealed, so the manifest's own checksum passes and the split rule itself must refuse it
    (copy / "manifest.json").write_text(json.dumps(seal(manifest)))
    assert rec["split"] == "held_out"
    with pytest.raises(ValueError, match="refusing"):
        load_textures(copy, "train", tiny_profile)


def test_training_steps_lower_the_reconstruction_loss(tiny_data, tiny_profile):
    data = load_textures(tiny_data, "train", tiny_profile)
    settings = TrainSettings(batch_size=4, r1_every=2, seed=0)
    state = _new_state(tiny_cfg(), data["textures"], data["masks"], settings)
    losses = [train_step(state, data["textures"], data["masks"], settings)["rec_l1"] for _ in range(40)]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert state.step == 40


def test_resume_equals_uninterrupted_run(tiny_data, tiny_profile, tmp_path):
    from safetensors.torch import load_file

    settings = TrainSettings(steps=6, batch_size=2, r1_every=2, checkpoint_every=3, log_every=1, seed=3)
    cfg = tiny_cfg()
    full = train_texture_gan(tiny_data, tmp_path / "a", tiny_profile, settings, cfg, progress=False)
    train_texture_gan(tiny_data, tmp_path / "b", tiny_profile, TrainSettings(**{**settings.__dict__, "steps": 3}),
                      cfg, progress=False)
    resumed = train_texture_gan(tiny_data, tmp_path / "b", tiny_profile, settings, cfg, progress=False)
    assert full["steps"] == resumed["steps"] == 6 and full["n_identities"] == 4
    a = load_file(str(tmp_path / "a" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = json.loads((tmp_path / "b" / "log.json").read_text())["records"]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    # another configuration in the same folder is refused, not silently mixed
    with pytest.raises(ValueError, match="other settings"):
        train_texture_gan(tiny_data, tmp_path / "b", tiny_profile, TrainSettings(**{**settings.__dict__,
                                                                                     "rec_weight": 1.0}),
                          cfg, progress=False)


def test_command_line_reports_a_bad_dataset_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path), "--out", str(tmp_path / "o"), "--profile", "cpu", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0]


def test_second_stage_starts_from_a_checkpoint_with_decaying_rates(tiny_data, tiny_profile, tmp_path):
    from safetensors.torch import load_file

    cfg = tiny_cfg()
    first = TrainSettings(steps=2, batch_size=2, checkpoint_every=1, seed=1)
    train_texture_gan(tiny_data, tmp_path / "a", tiny_profile, first, cfg, progress=False)
    second = TrainSettings(steps=4, batch_size=2, checkpoint_every=1, seed=2, lr_decay_steps=4)
    out = train_texture_gan(tiny_data, tmp_path / "b", tiny_profile, second, cfg, progress=False,
                            init_from=tmp_path / "a" / "checkpoint.safetensors")
    assert out["init_from"].endswith("checkpoint.safetensors") and out["steps"] == 4
    assert out["init_from_run"]["step"] == 2 and out["init_from_run"]["settings"]["seed"] == 1
    # the last step ran at a quarter of the learning rate (1 of the last 4 steps left)
    b = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    assert b["model.generator.const"].shape == (1, 8, 6, 9)
    data = load_textures(tiny_data, "train", tiny_profile)
    state = _new_state(cfg, data["textures"], data["masks"], second)
    state.step = 3
    train_step(state, data["textures"], data["masks"], second)
    assert state.opt_g.param_groups[0]["lr"] == pytest.approx(second.lr_g / 4)
    with pytest.raises(ValueError, match="other config"):
        other = GANConfig(texture_hw=TINY_HW, z_dim=8, w_dim=8, mapping_layers=1, channels=(8, 8), d_channels=(4, 8))
        train_texture_gan(tiny_data, tmp_path / "c", tiny_profile, second, other, progress=False,
                          init_from=tmp_path / "a" / "checkpoint.safetensors")
