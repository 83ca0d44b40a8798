import pytest
import torch

from avatarme_edu.color import luminance
from avatarme_edu.nets.tasks import TASKS, batch_mask, build_network, get_task, network_input, network_target
from avatarme_edu.profiles import get_profile


def test_inputs_are_the_papers_maps_in_order(make_batch):
    b = make_batch()
    x = network_input(get_task("delight"), b)
    assert x.shape == (2, 4, 16, 16)
    assert torch.equal(x[:, :3], b["texture"] * 2 - 1) and torch.equal(x[:, 3:], b["depth"] * 2 - 1)
    x = network_input(get_task("specular_normals"), b)
    assert torch.allclose(x[:, :1], luminance(b["diffuse_albedo"]) * 2 - 1)
    assert torch.equal(x[:, 1:], b["normals_tangent"])
    x = network_input(get_task("diffuse_normals"), b)
    assert torch.equal(x[:, 1:], b["normals_object"])
    assert network_input(get_task("delight_no_shape"), b).shape[1] == 3
    assert torch.equal(network_input(get_task("delight_normals_input"), b)[:, 3:], b["normals_object"])
    assert torch.equal(network_input(get_task("sr"), b), b["texture_low"])
    assert torch.equal(network_target(get_task("specular_albedo"), b), b["specular_albedo"])
    assert batch_mask(get_task("sr"), b).shape == (2, 16, 16)


def test_declared_channels_match_what_the_batch_gives(make_batch):
    b = make_batch()
    for task in TASKS.values():
        assert network_input(task, b).shape[1] == task.in_channels
        assert network_target(task, b).shape[1] == task.out_channels


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_network_maps_its_input_to_its_target_shape(name, make_batch):
    p = get_profile("cpu", device="cpu")
    task = get_task(name)
    b = make_batch(p=32, r=p.sr_scale)
    torch.manual_seed(0)
    with torch.no_grad():
        y = build_network(task, p)(network_input(task, b))
    assert y.shape == network_target(task, b).shape
    if task.is_normals:
        assert torch.allclose(y.norm(dim=1), torch.ones(2, 32, 32), atol=1e-5)


def test_missing_map_and_unknown_task_are_named(make_batch):
    b = make_batch()
    del b["depth"]
    with pytest.raises(ValueError, match="needs the map 'depth'"):
        network_input(get_task("delight"), b)
    with pytest.raises(ValueError, match="unknown network 'relight'"):
        get_task("relight")
