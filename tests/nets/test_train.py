import json

import pytest
import torch
from safetensors.torch import load_file

from avatarme_edu.nets.tasks import get_task
from avatarme_edu.nets.train import Trainer, train
from avatarme_edu.nets.weights import load_weights
from avatarme_edu.profiles import get_profile


@pytest.mark.parametrize("name", ["sr", "delight", "specular_normals"])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(name, tiny, make_batch):
    task = get_task(name)
    trainer = Trainer(task, tiny, seed=0, lr=3e-3)
    b = make_batch(n=2, p=16, seed=5)
    before = trainer.losses(b)["l1"].item()
    for _ in range(30):  # RCAN starts at bicubic (global skip): its loss falls slower at first
        trainer.step(b)
    after = trainer.losses(b)["l1"].item()
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("name", ["sr", "diffuse_normals"])
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

    from avatarme_edu.nets.train import add_train_parser

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
    assert net.config["in_channels"] == 3
    assert "held-out" in capsys.readouterr().out
    args = _parse(["train", "sr", "--profile", "paper", "--device", "cpu", "--data", str(small_dataset),
                   "--out", str(tmp_path / "sr")])
    with pytest.raises(ValueError, match="needs \\(texture, x8 texture"):
        args.func(args)
    args = _parse(["train", "sr", "--variant", "no_shape", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="--variant is for delight only"):
        args.func(args)


def test_standalone_command_reports_bad_input_in_one_line(tmp_path, capsys):
    from avatarme_edu.nets.train import main

    assert main(["sr", "--profile", "cpu", "--steps", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["train: error: --steps must be at least 1, got 0"]
