import pytest
import torch

from avatarme_edu.profiles import PROFILE_NAMES, choose_device, get_profile


def test_cpu_profile_sizes_follow_the_design():
    p = get_profile("cpu", device="cpu")
    assert p.texture_hw == (96, 144) and p.map_hw == (384, 576)
    assert p.sr_hw == (384, 576)  # x4 of the fitted texture reaches the map size directly
    assert (p.patch_size, p.window_size) == (128, 384)


def test_paper_profile_has_published_sizes():
    p = get_profile("paper", device="cpu")
    assert p.texture_hw == (384, 576) and p.sr_scale == 8 and p.sr_hw == (3072, 4608)
    assert p.map_hw == (4096, 6144)
    assert (p.patch_size, p.window_size) == (512, 1536)
    assert (p.rcan_groups, p.rcan_blocks, p.rcan_channels, p.rcan_reduction) == (10, 20, 64, 16)
    assert (p.gen_ngf, p.gen_downsample, p.gen_blocks) == (64, 4, 9)


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_uv_layout_is_three_by_two(name):
    p = get_profile(name, device="cpu")
    for h, w in (p.texture_hw, p.map_hw, p.sr_hw):
        assert w * 2 == h * 3


def test_selection_order(monkeypatch):
    monkeypatch.setenv("AVATARME_PROFILE", "paper")
    monkeypatch.setenv("AVATARME_DEVICE", "cpu")
    assert get_profile().name == "paper"  # environment
    assert get_profile("cpu").name == "cpu"  # argument wins
    monkeypatch.delenv("AVATARME_PROFILE")
    expected = "paper" if torch.cuda.is_available() else "cpu"
    assert get_profile().name == expected  # CUDA presence decides last
    assert get_profile().device == "cpu"


def test_invalid_names_list_the_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match="valid profiles are: cpu, paper"):
        get_profile("laptop")
    monkeypatch.setenv("AVATARME_PROFILE", "gpu")
    with pytest.raises(ValueError, match="'gpu'.*cpu, paper"):
        get_profile()
    with pytest.raises(ValueError, match="valid devices"):
        choose_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_request_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        choose_device("cuda")


def test_replace_keeps_the_rest():
    p = get_profile("cpu", device="cpu").replace(map_hw=(96, 144))
    assert p.map_hw == (96, 144) and p.window_size == 384
