import json

import pytest
import torch

from avatarme_edu import cascade, stages
from avatarme_edu.nets.tasks import build_network, get_task
from avatarme_edu.nets.weights import save_weights
from avatarme_edu.profiles import get_profile


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Identities 0-4 (4 held out) at 96x144 maps with a 24x36 texture, and a random tiny RCAN for it."""
    from avatarme_edu.lightstage.dataset import make_dataset

    p = get_profile("cpu", device="cpu").replace(
        map_hw=(96, 144), texture_hw=(24, 36), patch_size=16, window_size=64, window_stride=48, rcan_groups=1,
        rcan_blocks=1, rcan_channels=8, rcan_reduction=4, gen_ngf=4, gen_downsample=2, gen_blocks=1)
    root = tmp_path_factory.mktemp("cascade")
    make_dataset(5, 0, p, root / "data", progress=False, workers=1)
    torch.manual_seed(0)
    net = build_network(get_task("sr"), p)
    with torch.no_grad():  # RCAN starts as bicubic (zero last layer): give it an answer of its own
        for w in net.parameters():
            w.add_(0.05 * torch.randn_like(w))
    sr = save_weights(net, root / "sr.safetensors", get_task("sr"), p)
    return p, root / "data", sr


def test_the_textures_are_the_pipelines_super_resolution(tiny_data):
    from safetensors import safe_open

    from avatarme_edu.lightstage.dataset import PatchDataset

    p, data, sr = tiny_data
    textures = cascade.super_resolved_textures(data, p, sr, progress=False)
    entries = [e for split in ("train", "held_out") for e in PatchDataset(data, split, p).entries]
    assert sorted(textures) == sorted((e.id, e.expression) for e in entries) and len(textures) == 5
    e = entries[0]
    with safe_open(str(e.file), framework="pt") as f:
        low, sharp = f.get_tensor("texture_low").float(), f.get_tensor("texture").float()
    got = textures[(e.id, e.expression)]
    assert got.shape == (3, 96, 144)
    assert torch.equal(got, stages.super_resolve(low, p, sr))  # exactly what the pipeline computes
    assert not torch.allclose(got, sharp, atol=1e-2)  # and not the light stage's sharp texture


def test_each_patch_gets_the_same_crop_of_rcans_texture():
    g = torch.Generator().manual_seed(0)
    textures = {(1, "neutral"): torch.rand(3, 40, 60, generator=g), (2, "smile"): torch.rand(3, 40, 60, generator=g)}
    batch = {"texture": torch.zeros(2, 3, 8, 8), "diffuse_albedo": torch.ones(2, 3, 8, 8),
             "subject_id": torch.tensor([2, 1]), "expression": ["smile", "neutral"],
             "corner": torch.tensor([[4, 10], [0, 52]])}
    out = cascade.rcan_textures(textures)(batch)
    assert torch.equal(out["texture"][0], textures[(2, "smile")][:, 4:12, 10:18])
    assert torch.equal(out["texture"][1], textures[(1, "neutral")][:, 0:8, 52:60])
    assert out["diffuse_albedo"] is batch["diffuse_albedo"] and torch.equal(batch["texture"], torch.zeros(2, 3, 8, 8))


def test_training_on_rcans_textures_records_which_rcan(tmp_path, tiny_data):
    from avatarme_edu.nets.manifest import run_record
    from avatarme_edu.nets.train_command import train_from_dataset

    p, data, sr = tiny_data
    transform, info = cascade.rcan_texture_input(data, p, sr, progress=False)
    seen = []

    def spy(batch):  # what the trainer is handed
        out = transform(batch)
        seen.append(out["texture"])
        return out

    log = train_from_dataset(get_task("delight_no_shape"), p, data, tmp_path, 2, batch_size=2, val_every=2,
                             val_patches=2, checkpoint_every=2, progress=False, info=info, batch_transform=spy)
    assert log["steps_done"] == 2 and len(seen) == 3  # two training batches and the validation batch
    assert log["info"]["texture_input"] == "rcan" and len(log["info"]["sr_weights_sha256"]) == 64
    record = run_record(tmp_path)
    assert record["texture_input"] == "rcan" and record["sr_weights_sha256"] == info["sr_weights_sha256"]
    assert json.loads((tmp_path / "log.json").read_text())["info"]["texture_input"] == "rcan"


def test_texture_input_is_refused_where_it_does_not_apply(tmp_path, capsys):
    from avatarme_edu.cli import main
    from avatarme_edu.nets.train_command import main as nets_main

    assert main(["train", "sr", "--texture-input", "rcan", "--out", str(tmp_path / "a")]) == 2
    assert "--texture-input is for delight only, not sr" in capsys.readouterr().err
    assert nets_main(["delight", "--texture-input", "rcan", "--out", str(tmp_path / "b")]) == 2
    assert "use `avatarme-edu train`" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
