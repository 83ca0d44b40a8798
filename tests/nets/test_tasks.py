import pytest
import torch

from avatarme_edu.color import luminance
from avatarme_edu.nets.tasks import LOG_DETAIL_FLOOR, LOG_DETAIL_STD, LOG_SCALE, TASKS, add_priors, gray_detail, batch_mask, build_network, get_task, network_input, network_target
from avatarme_edu.profiles import get_profile


def test_inputs_are_the_papers_maps_in_order(make_batch):
    b = make_batch()
    x = network_input(get_task("delight"), b)
    assert x.shape == (2, 7, 16, 16)
    assert torch.equal(x[:, :3], b["texture"] * 2 - 1) and torch.equal(x[:, 3:4], b["depth"] * 2 - 1)
    # and the texture's log: 0 -> -1, 0.1 -> 0.04, 1 -> 1 (light and exposure multiply: in the log they add)
    assert torch.allclose(x[:, 4:], 1 + torch.log(b["texture"] + LOG_DETAIL_FLOOR) / LOG_SCALE)
    edges = network_input(get_task("delight"), dict(b, texture=torch.tensor([0.0, 0.1, 1.0]).view(1, 3, 1, 1).expand(2, 3, 16, 16)))
    assert torch.allclose(edges[0, 4:, 0, 0], torch.tensor([-1.0, 0.0414, 1.0043]), atol=1e-3)
    x = network_input(get_task("specular_normals"), b)
    gray = luminance(b["diffuse_albedo"]) * 2 - 1
    assert torch.allclose(x[:, :1], gray)
    # the grey detail: log gray minus its blur, at unit spread; a constant grey has none
    log_gray = torch.log(luminance(b["diffuse_albedo"]) + LOG_DETAIL_FLOOR)
    assert torch.equal(x[:, 1:2], gray_detail(log_gray, b["mask"], LOG_DETAIL_STD))  # its meaning: the tests below
    flat = dict(b, diffuse_albedo=torch.full_like(b["diffuse_albedo"], 0.3))
    assert network_input(get_task("specular_normals"), flat)[:, 1].abs().max() < 1e-5
    assert torch.equal(x[:, 2:], b["normals_tangent"])
    x = network_input(get_task("diffuse_normals"), b)
    assert torch.equal(x[:, 2:], b["normals_object"])
    x = network_input(get_task("specular_albedo"), b)
    assert torch.equal(x[:, :3], b["diffuse_albedo"] * 2 - 1)
    assert torch.equal(x[:, 3:4], gray_detail(log_gray, b["mask"], LOG_DETAIL_STD))  # pores and lines: the sebum
    assert torch.equal(x[:, 4:], b["specular_albedo_prior"] * 2 - 1)
    x_d = network_input(get_task("delight"), b)
    assert torch.equal(network_input(get_task("delight_no_shape"), b), torch.cat([x_d[:, :3], x_d[:, 4:]], 1))
    x_n = network_input(get_task("delight_normals_input"), b)
    assert torch.equal(x_n[:, 3:6], b["normals_object"]) and torch.equal(x_n[:, 6:], x_d[:, 4:])
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


def test_priors_are_cut_where_each_patch_lies():
    task = get_task("specular_albedo")
    assert "specular_albedo_prior" not in task.keys and task.priors == ("specular_albedo_prior",)
    prior = torch.arange(20 * 30, dtype=torch.float32).reshape(1, 20, 30)
    b = {"diffuse_albedo": torch.rand(2, 3, 4, 4), "specular_albedo": torch.rand(2, 1, 4, 4),
         "corner": torch.tensor([[0, 0], [5, 7]])}
    out = add_priors(task, b, {"specular_albedo_map": prior})
    assert torch.equal(out["specular_albedo_prior"][1, 0], prior[0, 5:9, 7:11])
    assert torch.equal(out["specular_albedo_prior"][0, 0], prior[0, :4, :4])
    whole = add_priors(task, {"diffuse_albedo": torch.rand(1, 3, 20, 30)}, {"specular_albedo_map": prior})
    assert torch.equal(whole["specular_albedo_prior"][0], prior)
    with pytest.raises(ValueError, match="use the means of the profile"):
        add_priors(task, {"diffuse_albedo": torch.rand(1, 3, 10, 30)}, {"specular_albedo_map": prior})


def test_grey_detail_ignores_the_border_of_the_mask():
    gray = torch.full((1, 1, 24, 24), 0.4)
    mask = torch.zeros(1, 24, 24, dtype=torch.bool)
    mask[:, :, :12] = True
    gray[0, 0][~mask[0]] = -1.0  # the empty background, as 2 * 0 - 1
    gray[0, 0, 6, 5] = 0.2  # one dark pore inside
    plain, masked = gray_detail(gray), gray_detail(gray, mask)
    assert plain[0, 0, 6, 11].abs() > 5  # unmasked, the border reads as a deep groove
    assert masked[0, 0, 14:, 8:12].abs().max() < 1e-4 and masked[0, 0][~mask[0]].abs().max() == 0
    assert masked[0, 0, 6, 5] < -2  # the pore is still there, at unit spread


def test_specular_albedo_reads_the_relative_detail_whatever_the_skin_tone():
    # a pore floor darkens the albedo by a fraction: the log detail is the same on light and dark skin,
    # where the plain detail shrinks with the albedo
    task = get_task("specular_albedo")
    albedo = torch.full((1, 3, 24, 24), 0.6)
    albedo[..., 10, 10] *= 0.7  # one pore, 30 % darker
    mask = torch.ones(1, 24, 24, dtype=torch.bool)
    prior = torch.full((1, 1, 24, 24), 0.3)
    light = network_input(task, {"diffuse_albedo": albedo, "mask": mask, "specular_albedo_prior": prior})
    dark = network_input(task, {"diffuse_albedo": albedo / 6, "mask": mask, "specular_albedo_prior": prior})
    pore_light, pore_dark = light[0, 3, 10, 10], dark[0, 3, 10, 10]
    assert pore_light < -2 and abs(pore_dark / pore_light - 1) < 0.1
    plain_light, plain_dark = (gray_detail(luminance(a) * 2 - 1, mask)[0, 0, 10, 10] for a in (albedo, albedo / 6))
    assert plain_dark / plain_light < 0.2
