import pytest
import torch

from avatarme_edu.nets.tasks import build_network, get_task
from avatarme_edu.nets.weights import default_weights_path, load_weights, read_weights_info, save_weights
from avatarme_edu.profiles import get_profile


def test_round_trip_rebuilds_the_same_network(tmp_path):
    p = get_profile("cpu", device="cpu")
    task = get_task("specular_normals")
    torch.manual_seed(1)
    net = build_network(task, p)
    path = save_weights(net, tmp_path / "n.safetensors", task, p, info={"steps": 3})
    info = read_weights_info(path)
    assert info["task"] == "specular_normals" and info["profile"] == "cpu" and info["in_channels"] == 5
    assert info["info"] == {"steps": 3}
    back = load_weights(path, "specular_normals", p)
    x = torch.randn(1, 5, 24, 24)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), back(x))
    assert not list(tmp_path.glob(".tmp-*"))


def test_mismatches_are_one_clear_line(tmp_path):
    p = get_profile("cpu", device="cpu")
    task = get_task("delight")
    path = save_weights(build_network(task, p), tmp_path / "d.safetensors", task, p)
    with pytest.raises(ValueError, match="network 'delight' of profile 'cpu' with 7 input channels; expected "
                                         "'delight_no_shape'"):
        load_weights(path, "delight_no_shape")
    with pytest.raises(ValueError, match="expected 'delight' of profile 'paper'"):
        load_weights(path, "delight", get_profile("paper", device="cpu"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        read_weights_info(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        read_weights_info(tmp_path / "none.safetensors")


def test_default_path_is_per_profile_and_task():
    path = default_weights_path("sr", "cpu")
    assert path.parts[-4:] == ("data", "weights", "cpu", "sr.safetensors")
