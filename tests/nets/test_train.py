import json
import math

import pytest
import torch
from safetensors.torch import load_file

from avatarme_edu.nets.tasks import get_task
from avatarme_edu.nets.train import RCAN_CLIP_NORM, Trainer, lr_factor, train
from avatarme_edu.nets.weights import load_weights
from avatarme_edu.profiles import get_profile


@pytest.mark.parametrize("name", ["sr", "delight", "specular_normals"])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(name, tiny, make_batch):
    task = get_task(name)
    trainer = Trainer(task, tiny, seed=0, lr=3e-3)
    b = make_batch(n=2, p=16, seed=5)
    if task.is_normals:  # detail normals lie within a few degrees of the shape normals, as in the data
        n = b["normals_tangent"] + 0.05 * torch.randn(b["normals_tangent"].shape, generator=torch.Generator().manual_seed(2))
        b["specular_normals"] = n / n.norm(dim=1, keepdim=True)
    before = trainer.losses(b)["l1"].item()
    for _ in range(30):  # RCAN starts at bicubic (global skip): its loss falls slower at first
        trainer.step(b)
    after = trainer.losses(b)["l1"].item()
    assert after < 0.8 * before, (before, after)


def test_rcan_clips_a_gradient_spike_and_logs_its_norm(tiny, make_batch):
    trainer = Trainer(get_task("sr"), tiny, seed=0, lr=2e-3)
    b = make_batch(n=2, p=16, seed=5)
    calm = trainer.step(b)
    assert 0 < calm["grad_norm"] < RCAN_CLIP_NORM  # an ordinary batch passes unclipped
    spike = trainer.step(dict(b, texture_low=b["texture_low"] * 1000))  # a batch far outside the data
    assert spike["grad_norm"] > 100 * RCAN_CLIP_NORM
    applied = torch.sqrt(sum((p.grad ** 2).sum() for p in trainer.G.parameters()))
    assert applied <= RCAN_CLIP_NORM * 1.0001  # what Adam was given


@pytest.mark.parametrize("name", ["sr", "diffuse_normals", "specular_albedo"])  # ψ: with its augmentation
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, name, tiny, batch_source):
    task, p, batches = get_task(name), tiny, batch_source
    full = train(task, p, batches(), tmp_path / "full", 6, seed=3, checkpoint_every=2, progress=False)
    train(task, p, batches(), tmp_path / "half", 3, seed=3, checkpoint_every=3, progress=False)
    # the interrupted run goes on to 6 steps from its checkpoint at step 3
    resumed = train(task, p, batches(), tmp_path / "half", 6, seed=3, resume=True, checkpoint_every=2,
                    progress=False)
    a = load_file(str(tmp_path / "full" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "half" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        if not k.startswith("rng/"):
            assert torch.equal(a[k], b[k]), k
    assert [e["loss"] for e in full["entries"]] == [e["loss"] for e in resumed["entries"]]
    assert len(resumed["entries"]) == 6
    log = json.loads((tmp_path / "half" / "log.json").read_text())
    assert [e["step"] for e in log["entries"]] == [1, 2, 3, 4, 5, 6]
    net = load_weights(tmp_path / "half" / f"{name}.safetensors", name, p)
    assert sum(v.numel() for v in net.state_dict().values()) > 0


def test_the_cosine_schedule_falls_to_zero_and_an_interrupted_run_resumes_exactly(tmp_path, tiny, batch_source):
    import itertools

    assert lr_factor("constant", 7, 10) == 1.0
    assert [lr_factor("cosine", s, 10) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine"):
        train(get_task("sr"), tiny, batch_source(), tmp_path / "bad", 2, lr_schedule="step", progress=False)
    assert not (tmp_path / "bad").exists()  # refused before any work
    task, p, batches = get_task("sr"), tiny, batch_source
    full = train(task, p, batches(), tmp_path / "full", 6, seed=3, checkpoint_every=2, progress=False,
                 lr_schedule="cosine")
    # a run of 6 steps that dies after step 3 (its source runs dry), then resumed: the same schedule
    with pytest.raises(ValueError, match="ended after 3 batches"):
        train(task, p, lambda: itertools.islice(batches()(), 3), tmp_path / "half", 6, seed=3, checkpoint_every=3,
              progress=False, lr_schedule="cosine")
    train(task, p, batches(), tmp_path / "half", 6, seed=3, resume=True, progress=False, lr_schedule="cosine")
    a = load_file(str(tmp_path / "full" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "half" / "checkpoint.safetensors"))
    for k in a:
        if not k.startswith("rng/"):
            assert torch.equal(a[k], b[k]), k
    constant = train(task, p, batches(), tmp_path / "constant", 6, seed=3, progress=False)
    assert constant["entries"][0]["loss"] == full["entries"][0]["loss"]  # same first step (factor 1)
    assert constant["entries"][-1]["loss"] != full["entries"][-1]["loss"]  # then the rates differ
    assert full["lr_schedule"] == "cosine"


def test_resume_is_exact_when_the_loader_draws_from_torchs_generator_as_it_starts(tmp_path, tiny, batch_source):
    # DataLoader draws a seed from torch's global generator when its iterator starts; ψ's augmentation
    # draws from it at every step, so a resumed run must not let the restarted loader shift those draws
    def drawing_source():
        make = batch_source()

        def start():
            torch.rand(1)
            yield from make()
        return start

    task, p = get_task("specular_albedo"), tiny
    train(task, p, drawing_source(), tmp_path / "full", 4, seed=1, checkpoint_every=4, progress=False)
    train(task, p, drawing_source(), tmp_path / "half", 2, seed=1, checkpoint_every=2, progress=False)
    train(task, p, drawing_source(), tmp_path / "half", 4, seed=1, resume=True, checkpoint_every=4, progress=False)
    a, b = (load_file(str(tmp_path / d / "specular_albedo.safetensors")) for d in ("full", "half"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_run_into_the_same_folder_is_refused_and_resume_needs_a_checkpoint(tmp_path, tiny, batch_source):
    task, p, batches = get_task("specular_albedo"), tiny, batch_source
    train(task, p, batches(), tmp_path, 1, progress=False)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(task, p, batches(), tmp_path, 1, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(task, p, batches(), tmp_path / "empty", 2, resume=True, progress=False)
    with pytest.raises(ValueError, match="is a checkpoint of 'specular_albedo'"):
        train(get_task("delight"), p, batches(), tmp_path, 2, resume=True, progress=False)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """Five cpu-profile identities: 0-3 train, 4 held out."""
    from avatarme_edu.lightstage.dataset import make_dataset

    path = tmp_path_factory.mktemp("ls")
    make_dataset(5, 0, get_profile("cpu", device="cpu"), path, progress=False, workers=0)
    return path


def _parse(argv):
    import argparse

    from avatarme_edu.nets.train_command import add_train_parser

    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.slow
def test_train_command_on_a_light_stage_dataset(tmp_path, small_dataset, capsys):
    out = tmp_path / "run"
    args = _parse(["train", "specular_albedo", "--profile", "cpu", "--device", "cpu", "--data", str(small_dataset),
                   "--out", str(out), "--steps", "2", "--batch-size", "1", "--val-every", "2", "--val-patches", "2",
                   "--checkpoint-every", "1"])
    assert args.func(args) == 0
    log = json.loads((out / "log.json").read_text())
    assert log["info"]["train_identities"] == [0, 1, 2, 3]
    val = [e["val"] for e in log["entries"] if "val" in e][0]
    assert 0 < val["psnr"] < 60 and 0 < val["ssim"] <= 1
    assert (out / "val_000002.png").is_file()
    net = load_weights(out / "specular_albedo.safetensors", "specular_albedo", get_profile("cpu", device="cpu"))
    assert net.config["in_channels"] == 5  # the diffuse albedo, its grey detail and the training mean map (the UV prior)
    assert (out / "training_means.safetensors").is_file()  # the prior goes with the weights
    assert "held-out" in capsys.readouterr().out
    args = _parse(["train", "sr", "--profile", "paper", "--device", "cpu", "--data", str(small_dataset),
                   "--out", str(tmp_path / "sr")])
    with pytest.raises(ValueError, match="the dataset has map_hw=\\[384, 576\\].* profile 'paper'"):
        args.func(args)
    args = _parse(["train", "sr", "--variant", "no_shape", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="--variant is for delight only"):
        args.func(args)


def test_standalone_command_reports_bad_input_in_one_line(tmp_path, capsys):
    from avatarme_edu.nets.train_command import main

    assert main(["sr", "--profile", "cpu", "--steps", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["train: error: --steps must be at least 1, got 0"]


# ---- end to end on a real (tiny) light-stage dataset ---------------------------------------------

@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Identities 0-4 (4 held out) at 96x144 maps with a 24x36 texture (x4), neutral only."""
    from avatarme_edu.lightstage.dataset import make_dataset

    p = get_profile("cpu", device="cpu").replace(
        map_hw=(96, 144), texture_hw=(24, 36), patch_size=16, rcan_groups=1, rcan_blocks=1, rcan_channels=8,
        rcan_reduction=4, gen_ngf=4, gen_downsample=2, gen_blocks=1)
    path = tmp_path_factory.mktemp("ls")
    make_dataset(5, 0, p, path, progress=False, workers=1)
    return p, path


@pytest.mark.parametrize("name, sr_scale", [("sr", 4), ("sr", 2), ("specular_normals", 4)])
def test_training_on_a_dataset_writes_weights_log_and_held_out_numbers(tmp_path, tiny_dataset, name, sr_scale):
    from avatarme_edu.nets.tasks import SR_PAIRS
    from avatarme_edu.nets.train_command import train_from_dataset

    p, data = tiny_dataset
    p = p.replace(sr_scale=sr_scale)  # x2 of 24x36 is 48x72, not the 96x144 maps: the paper's case
    task = get_task(name)
    log = train_from_dataset(task, p, data, tmp_path, 3, batch_size=2, val_every=3, val_patches=2,
                             checkpoint_every=2, progress=False)
    if sr_scale == 2:
        assert log["task"] == "sr" and log["info"]["batch_size"] == 2
    assert log["steps_done"] == 3 and log["info"]["train_identities"] == [0, 1, 2, 3]
    losses = [e["loss"] for e in log["entries"] if "loss" in e]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    val = [e["val"] for e in log["entries"] if "val" in e][-1]
    numbers = [val["angular_error_deg"]["mean"]] if task.is_normals else [val["psnr"], val["ssim"]]
    assert all(torch.isfinite(torch.tensor(numbers)))
    if task.is_normals:  # the residual generator starts at the shape normals: a fraction of a degree to a few
        assert 0 < val["angular_error_deg"]["mean"] < 20
    else:  # RCAN starts at bicubic: a blurry texture, well above 15 dB against the sharp one
        assert val["psnr"] > 15
    assert json.loads((tmp_path / "log.json").read_text())["steps_done"] == 3
    assert (tmp_path / "val_000003.png").is_file()
    net = load_weights(tmp_path / f"{name}.safetensors", name, p)
    if sr_scale == 2:  # it learnt the texture at sr_hw: x2 of a 24x36 texture is 48x72
        assert SR_PAIRS.target == "texture_sr"
        assert tuple(net(torch.rand(1, 3, 24, 36)).shape) == (1, 3, 48, 72)


def test_max_minutes_stops_early_and_the_weights_say_where(tmp_path, tiny, batch_source):
    from avatarme_edu.nets.weights import read_weights_info

    log = train(get_task("sr"), tiny, batch_source(), tmp_path, 1000, max_minutes=1e-9, progress=False)
    assert log["steps_done"] == 1
    assert read_weights_info(tmp_path / "sr.safetensors")["info"]["steps"] == 1


def test_the_saved_weights_are_the_moving_average_of_the_trained_ones(tmp_path, tiny, batch_source):
    from avatarme_edu.nets.train import EMA_DECAY, Trainer

    task = get_task("diffuse_normals")
    trainer = Trainer(task, tiny, seed=0, lr=1e-2)
    b = next(iter(batch_source()()))
    first = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    trainer.step(b)
    decay = min(EMA_DECAY, 2 / 11)  # the warm-up's first step
    for k, v in trainer.G_ema.state_dict().items():
        assert torch.allclose(v, decay * first[k] + (1 - decay) * trainer.G.state_dict()[k], atol=1e-6), k
    train(task, tiny, batch_source(), tmp_path, 3, progress=False)
    saved = load_weights(tmp_path / "diffuse_normals.safetensors", task, tiny)
    ckpt = load_file(str(tmp_path / "checkpoint.safetensors"))
    ema = {k.split("/", 2)[2]: v for k, v in ckpt.items() if k.startswith("model/G_ema/")}
    assert ema, sorted(ckpt)[:5]
    for k, v in saved.state_dict().items():
        assert torch.equal(v, ema[k]), k


def test_normalise_level_trains_psi_on_every_subject_at_one_level(tmp_path, tiny_dataset, monkeypatch):
    from avatarme_edu.lightstage.dataset import PatchDataset, patch_loader
    from avatarme_edu.lightstage.dataset.read import load_maps
    from avatarme_edu.nets import specular_level
    from avatarme_edu.nets.specular_level import face_log_level, normalise_levels, subject_levels
    from avatarme_edu.nets.train_command import train_from_dataset

    p, data = tiny_dataset
    task = get_task("specular_albedo")
    levels = subject_levels(PatchDataset(data, "train", p, keys=task.keys))
    assert sorted(levels) == [(i, "neutral") for i in range(4)]
    m = load_maps(data / "subject_0002")
    assert levels[(2, "neutral")] == pytest.approx(face_log_level(m["specular_albedo"], m["mask"]), abs=1e-6)
    assert len(set(round(v, 4) for v in levels.values())) == 4  # the subjects differ in level
    # a patch of subject i is scaled by exp(reference - level_i), one gain per patch
    batch = next(iter(patch_loader(data, "train", p, 4, keys=task.keys, seed=1, n_batches=1)))
    out = normalise_levels(batch, levels, -3.0)
    for k, (i, e) in enumerate(zip(batch["subject_id"].tolist(), batch["expression"])):
        gain = out["specular_albedo"][k] / batch["specular_albedo"][k].clamp_min(1e-6)
        valid = batch["specular_albedo"][k] > 1e-3
        want = math.exp(-3.0 - levels[(i, e)])
        assert gain[valid] == pytest.approx(torch.full_like(gain[valid], want), rel=1e-4)
    with pytest.raises(KeyError, match="no level for subject-expressions"):
        normalise_levels(batch, {}, 0.0)
    # training sees only normalised targets; the log keeps the level they were brought to
    seen = []
    real = specular_level.normalise_levels
    monkeypatch.setattr(specular_level, "normalise_levels", lambda b, lv, ref: seen.append(ref) or real(b, lv, ref))
    log = train_from_dataset(task, p, data, tmp_path / "psi", 2, batch_size=2, val_every=2, val_patches=2,
                             progress=False, normalise_level=True)
    reference = sum(levels.values()) / len(levels)
    assert log["info"]["level_normalised_to"] == pytest.approx(reference)
    assert len(seen) == 3 and all(r == pytest.approx(reference) for r in seen)  # 2 training batches + validation
    with pytest.raises(ValueError, match="--normalise-level is for specular_albedo, not sr"):
        train_from_dataset(get_task("sr"), p, data, tmp_path / "sr", 2, progress=False, normalise_level=True)


@pytest.mark.parametrize("name", ["sr", "delight"])  # plain L1, and the GAN with its discriminator
def test_bf16_training_lowers_the_loss_and_keeps_float32_weights(tmp_path, name, tiny, make_batch, batch_source):
    task = get_task(name)
    trainer = Trainer(task, tiny, seed=0, lr=3e-3, precision="bf16")
    b = make_batch(n=2, p=16, seed=5)
    before = trainer.losses(b)["l1"].item()
    for _ in range(30):
        out = trainer.step(b)
    assert all(math.isfinite(v) for v in out.values())
    assert trainer.losses(b)["l1"].item() < 0.8 * before
    assert all(p.dtype == torch.float32 for p in trainer.G.parameters())
    log = train(task, tiny, batch_source(), tmp_path / "run", 2, precision="bf16", progress=False)
    assert log["precision"] == "bf16"
    assert {t.dtype for t in load_file(str(tmp_path / "run" / f"{task.name}.safetensors")).values()} == {torch.float32}
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        Trainer(task, tiny, precision="fp16")


def test_the_squared_pixel_loss_trains_rcan_and_is_refused_beside_a_discriminator(tmp_path, tiny, make_batch,
                                                                                   batch_source):
    from avatarme_edu.nets.losses import masked_mse
    from avatarme_edu.nets.tasks import batch_mask, network_input, network_target

    task = get_task("sr")
    b = make_batch(n=2, p=16, seed=5)
    trainer = Trainer(task, tiny, seed=0, lr=3e-3, pixel_loss="l2")

    def squared_error():
        with torch.no_grad():
            return masked_mse(trainer.G(network_input(task, b)), network_target(task, b), batch_mask(task, b)).item()

    before = squared_error()
    out = trainer.step(b)
    assert out["loss"] == out["l2"] and out["l2"] == pytest.approx(before, rel=1e-5)  # the loss is the MSE
    for _ in range(30):
        trainer.step(b)
    assert squared_error() < 0.7 * before
    # the same start and batch with L1 takes another path
    l1 = Trainer(task, tiny, seed=0, lr=3e-3)
    l1.step(b)
    trainer2 = Trainer(task, tiny, seed=0, lr=3e-3, pixel_loss="l2")
    trainer2.step(b)
    assert not all(torch.equal(p, q) for p, q in zip(l1.G.parameters(), trainer2.G.parameters()))
    log = train(task, tiny, batch_source(), tmp_path / "run", 2, pixel_loss="l2", progress=False)
    assert log["pixel_loss"] == "l2" and "l2" in log["entries"][0]
    with pytest.raises(ValueError, match="pixel_loss must be one of l1, l2"):
        Trainer(task, tiny, pixel_loss="huber")
    with pytest.raises(ValueError, match="trains with pix2pixHD's L1 term"):
        Trainer(get_task("delight"), tiny, pixel_loss="l2")


def test_machine_description_names_the_cpu_threads_and_torch(tiny):
    from avatarme_edu.nets.train_command import machine_description

    text = machine_description(tiny)
    assert f"{torch.get_num_threads()} torch threads" in text and torch.__version__ in text
