"""Training patches through torch.utils.data: seeded per item, any worker count, SR pairs."""

import pytest
import torch
import torch.nn.functional as F

from avatarme_edu.lightstage import dataset as ds
from avatarme_edu.maps_io import load_tensors

# every test here reads a dataset that a fixture writes first (seconds): slow
pytestmark = pytest.mark.slow


def test_dataloader_workers_give_the_same_batches(small_data, tiny):
    data = ds.PatchDataset(small_data, "train", tiny, length=16, seed=5)
    one = list(torch.utils.data.DataLoader(data, batch_size=8, num_workers=0))
    two = list(torch.utils.data.DataLoader(data, batch_size=8, num_workers=2))
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert torch.equal(a["corner"], b["corner"]) and torch.equal(a["texture"], b["texture"])
    assert a["texture"].dtype == torch.float32 and a["texture"].shape == (8, 3, 16, 16)
    data.set_epoch(1)
    other = next(iter(torch.utils.data.DataLoader(data, batch_size=8)))
    assert not torch.equal(other["corner"], one[0]["corner"])  # a new epoch draws new patches


def test_patch_loader_yields_n_batches_on_the_profile_device(small_data, tiny):
    batches = list(ds.patch_loader(small_data, "train", tiny, 4, seed=0, n_batches=3, keys=("texture",)))
    assert len(batches) == 3 and all(b["texture"].device == tiny.torch_device for b in batches)
    assert set(torch.cat([b["subject_id"] for b in batches]).tolist()) <= {0, 1, 2, 3, 5}


@pytest.fixture(scope="module")
def odd(tiny, tmp_path_factory):
    """A 15x24 fitted texture under 48x72 maps: 48 / 15 is not whole, like 4096 / 384 in the paper profile."""
    prof = tiny.replace(texture_hw=(15, 24), sr_scale=2, patch_size=12)  # sr_hw (30, 48)
    path = tmp_path_factory.mktemp("odd") / "ls"
    ds.make_dataset(2, 0, prof, path, progress=False, workers=0)
    return prof, path


def test_super_resolution_pairs_where_the_ratio_is_not_whole(odd):
    prof, path = odd
    with pytest.raises(ValueError, match="whole multiple"):
        ds.PatchDataset(path, "train", prof, keys=("texture", "texture_low"))
    data = ds.PatchDataset(path, "train", prof, keys=ds.SR_KEYS, length=6, seed=2)
    q, s = prof.patch_size // prof.sr_scale, prof.sr_scale
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=6)))
    assert batch["texture_low"].shape == (6, 3, q, q) and batch["texture_sr"].shape == (6, 3, q * s, q * s)
    for i in range(6):
        maps = load_tensors(path / f"subject_{int(batch['subject_id'][i]):04d}" / "neutral.safetensors")
        t, l = batch["corner"][i].tolist()  # at texture_hw
        assert torch.equal(batch["texture_low"][i], maps["texture_low"][:, t:t + q, l:l + q].float())
        # the target is the whole sharp texture resized to sr_hw, cropped: computed here on a crop
        full = F.interpolate(maps["texture"].float()[None], size=prof.sr_hw, mode="bilinear", align_corners=False)[0]
        want = full[:, t * s:(t + q) * s, l * s:(l + q) * s]
        assert (batch["texture_sr"][i] - want).abs().max() < 1e-5


def test_corners_follow_the_rule_and_draw_of_sample_patches(small_data, tiny):
    # the loader caches the accepted corners per file; the corner must be the one
    # tiling.sample_patches draws from the same generator state
    from avatarme_edu.tiling import sample_patches

    data = ds.PatchDataset(small_data, "train", tiny, keys=("texture", "texture_low", "mask_low"), length=10, seed=9)
    r = tiny.map_hw[0] // tiny.texture_hw[0]
    for i in range(10):
        item = data[i]
        g = torch.Generator().manual_seed((9 * 0x9E3779B1 + i) % (2**63 - 1))
        e = data.entries[int(torch.randint(len(data.entries), (1,), generator=g))]
        m = load_tensors(e.file)["mask_low"].bool()
        _, corner = sample_patches({"m": m[None]}, m, tiny.patch_size // r, 1, g, 0.5)
        assert item["corner"].tolist() == (corner[0] * r).tolist() and int(item["subject_id"]) == e.id
        assert item["mask_low"].float().mean() >= 0.5
