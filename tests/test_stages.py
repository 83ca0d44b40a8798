import pytest
import torch
from torch import nn

from avatarme_edu import stages
from avatarme_edu.nets.tasks import LOG_DETAIL_FLOOR, LOG_SCALE, build_network, get_task, network_input
from avatarme_edu.nets.weights import save_weights
from avatarme_edu.profiles import get_profile

# tiny networks and a 32-texel window, so the tests run in a blink
TINY = dict(texture_hw=(8, 12), sr_scale=4, map_hw=(32, 48), window_size=32, window_stride=16, patch_size=16,
            rcan_groups=1, rcan_blocks=1, rcan_channels=8, rcan_reduction=4, gen_ngf=4, gen_downsample=2,
            gen_blocks=1)


def tiny_profile(**changes):
    return get_profile("cpu", device="cpu").replace(**{**TINY, **changes})


class FakeShape:
    """The fields of ShapeMaps the stages read."""

    def __init__(self, hw, seed=0):
        g = torch.Generator().manual_seed(seed)
        n = torch.nn.functional.normalize(torch.randn(3, *hw, generator=g), dim=0)
        self.normals_object, self.normals_tangent = n, n.flip(0)
        self.depth = torch.rand(1, *hw, generator=g)
        self.mask = torch.ones(hw, dtype=torch.bool)
        self.mask[:3] = False
        self.hw = hw


def net(name, p, seed=0):
    torch.manual_seed(seed)
    return build_network(get_task(name), p).eval()


def test_one_window_equals_the_whole_map_forward_pass():
    """Where the map fits in one window the sliding window must give the plain forward pass (1e-6)."""
    p = tiny_profile(map_hw=(32, 32), texture_hw=(8, 8))
    shape = FakeShape((32, 32))
    g = torch.Generator().manual_seed(1)
    texture_low, texture, albedo = torch.rand(3, 8, 8, generator=g), torch.rand(3, 32, 32, generator=g), \
        torch.rand(3, 32, 32, generator=g)
    m = shape.mask
    with torch.no_grad():
        sr = net("sr", p)
        assert torch.allclose(stages.super_resolve(texture_low, p, sr), sr(texture_low[None])[0].clamp(0, 1), atol=1e-6)
        d = net("delight", p)
        log_texture = 1 + torch.log(texture + LOG_DETAIL_FLOOR) / LOG_SCALE
        whole = d(torch.cat([texture * 2 - 1, shape.depth * 2 - 1, log_texture])[None])[0] * m
        assert torch.allclose(stages.delight(texture, shape, p, d, variant="depth"), whole, atol=1e-6)
        s = net("specular_albedo", p)
        prior = torch.rand(1, 32, 32, generator=g)
        psi_in = network_input(get_task("specular_albedo"), {"diffuse_albedo": albedo[None],
                                                             "specular_albedo_prior": prior[None]})
        whole = s(psi_in)[0]
        assert torch.allclose(stages.specular_albedo(albedo, p, s, means={"specular_albedo_map": prior}), whole,
                              atol=1e-6)
        for name, stage, key, normals in (
                ("specular_normals", stages.specular_normals, "normals_tangent", shape.normals_tangent),
                ("diffuse_normals", stages.diffuse_normals, "normals_object", shape.normals_object)):
            n = net(name, p)
            whole = n(network_input(get_task(name), {"diffuse_albedo": albedo[None], key: normals[None]}))[0] * m
            got = stage(albedo, shape, p, n)
            assert torch.allclose(got, whole, atol=1e-6)
            assert torch.allclose(got.norm(dim=0)[m], torch.ones(int(m.sum())), atol=1e-5)
            assert (got[:, ~m] == 0).all()


def test_many_windows_equal_the_whole_map_for_a_pointwise_network():
    """With 1x1 convolutions every window sees what the whole map sees: the blending must be exact (1e-6),
    including RCAN's fold of each x4 answer into channels at the input's size."""
    p = tiny_profile(map_hw=(32, 88), texture_hw=(8, 22), window_size=16, window_stride=8)
    torch.manual_seed(0)
    sr = nn.Sequential(nn.Conv2d(3, 48, 1), nn.PixelShuffle(4)).eval()
    x = torch.rand(3, 8, 22)
    with torch.no_grad():
        assert torch.allclose(stages.super_resolve(x, p, sr), sr(x[None])[0].clamp(0, 1), atol=1e-6)
        spec = nn.Sequential(nn.Conv2d(5, 1, 1), nn.Sigmoid()).eval()
        a, prior = torch.rand(3, 32, 88), torch.rand(1, 32, 88)
        got = stages.specular_albedo(a, p, spec, means={"specular_albedo_map": prior})
        # the input is encoded on the whole map, then cut into windows
        x = network_input(get_task("specular_albedo"), {"diffuse_albedo": a[None], "specular_albedo_prior": prior[None]})
        assert torch.allclose(got, spec(x)[0], atol=1e-6)
        # with a mask (the encoding takes any grey detail inside it, as the training patches do)
        m = torch.zeros(32, 88, dtype=torch.bool)
        m[4:28, 10:70] = True
        got = stages.specular_albedo(a, p, spec, mask=m, means={"specular_albedo_map": prior})
        x = network_input(get_task("specular_albedo"), {"diffuse_albedo": a[None], "specular_albedo_prior": prior[None],
                                                        "mask": m[None]})
        assert torch.allclose(got, spec(x)[0] * m, atol=1e-6)


def test_super_resolve_resamples_to_the_map_size_like_the_paper():
    p = tiny_profile(map_hw=(40, 60))  # 8x12 x4 = 32x48, then resampled to 40x60
    out = stages.super_resolve(torch.rand(3, 8, 12), p, net("sr", p))
    assert out.shape == (3, 40, 60) and out.min() >= 0 and out.max() <= 1
    assert stages.super_resolve(torch.rand(3, 8, 12), p, net("sr", p), resample=False).shape == (3, 32, 48)


def test_weights_from_a_file_and_clear_errors(tmp_path):
    p = tiny_profile()
    shape = FakeShape((32, 48))
    n = net("diffuse_normals", p)
    path = save_weights(n, tmp_path / "dn.safetensors", get_task("diffuse_normals"), p)
    albedo = torch.rand(3, 32, 48)
    assert torch.equal(stages.diffuse_normals(albedo, shape, p, path), stages.diffuse_normals(albedo, shape, p, n))
    with pytest.raises(ValueError, match="expected 'specular_normals'"):
        stages.specular_normals(albedo, shape, p, path)
    with pytest.raises(FileNotFoundError, match="avatarme-edu train delight --variant no_shape --profile cpu"):
        stages.delight(torch.rand(3, 32, 48), None, p, tmp_path / "nothing.safetensors", variant="no_shape")
    with pytest.raises(ValueError, match="share one UV layout"):
        stages.diffuse_normals(torch.rand(3, 16, 24), shape, p, n)
    with pytest.raises(ValueError, match=r"must be a \(3, H, W\) map"):
        stages.specular_albedo(torch.rand(1, 32, 48), p, n)
    with pytest.raises(ValueError, match="unknown delight variant"):
        stages.delight(torch.rand(3, 32, 48), shape, p, n, variant="position")


def test_the_profile_chooses_the_pipelines_delighter(tmp_path):
    """δ(T̂) at the cpu profile (it beat δ(T̂, D_O) on held-out maps), the paper's δ(T̂, D_O) at paper."""
    p = tiny_profile()
    assert p.delight_variant == "no_shape" and get_profile("paper", device="cpu").delight_variant == "depth"
    assert stages.pipeline_networks(p)["delight"] == "delight_no_shape"
    assert stages.pipeline_networks(p.replace(delight_variant="depth"))["delight"] == "delight"
    shape, texture = FakeShape((32, 48)), torch.rand(3, 32, 48)
    no_shape, depth = net("delight_no_shape", p), net("delight", p)
    with torch.no_grad():
        assert torch.equal(stages.delight(texture, shape, p, no_shape), stages.delight(texture, shape, p, no_shape,
                                                                                       variant="no_shape"))
        assert torch.equal(stages.delight(texture, shape, p.replace(delight_variant="depth"), depth),
                           stages.delight(texture, shape, p, depth, variant="depth"))
    depth_file = save_weights(depth, tmp_path / "delight.safetensors", get_task("delight"), p)
    with pytest.raises(ValueError, match="expected 'delight_no_shape'"):
        stages.delight(texture, shape, p, depth_file)  # a δ(T̂, D_O) file where the profile wants δ(T̂)
    with pytest.raises(ValueError, match="unknown delight_variant 'albedo'"):
        stages.pipeline_networks(p.replace(delight_variant="albedo"))


def test_missing_committed_weights_say_how_to_train_them():
    p = tiny_profile().replace(name="nowhere")  # no committed weights for this profile name
    with pytest.raises(FileNotFoundError, match="no committed weights for 'specular_albedo'.*avatarme-edu train "
                                                "specular_albedo --profile nowhere"):
        stages.specular_albedo(torch.rand(3, 32, 48), p)
