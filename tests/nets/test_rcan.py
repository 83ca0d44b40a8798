import pytest
import torch

from avatarme_edu.nets.rcan import RCAN, ChannelAttention, rcan_from_profile
from avatarme_edu.profiles import get_profile


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def expected_rcan_params(scale, groups, blocks, c, r, c_in=3, c_out=3):
    """RCAN's parameter count written out layer by layer (3x3 convs with bias)."""
    conv = lambda a, b, k=3: a * b * k * k + b  # noqa: E731
    ca = conv(c, c // r, 1) + conv(c // r, c, 1)
    rcab = 2 * conv(c, c) + ca
    group = blocks * rcab + conv(c, c)
    stages = {2: 1, 4: 2, 8: 3}[scale]
    return conv(c_in, c) + groups * group + conv(c, c) + stages * conv(c, 4 * c) + conv(c, c_out)


def test_paper_rcan_x8_has_the_published_15_7m_parameters():
    p = get_profile("paper", device="cpu")
    net = rcan_from_profile(p)
    expected = expected_rcan_params(8, 10, 20, 64, 16)
    assert expected == 15_740_067
    assert n_params(net) == expected
    assert abs(n_params(net) - 15.7e6) / 15.7e6 < 0.01


def test_shapes_on_both_profiles_at_tiny_sizes():
    for name, hw in (("cpu", (6, 10)), ("paper", (3, 5))):
        p = get_profile(name, device="cpu")
        torch.manual_seed(0)
        net = rcan_from_profile(p).eval()
        x = torch.rand(2, 3, *hw)
        with torch.no_grad():
            y = net(x)
        s = p.sr_scale
        assert y.shape == (2, 3, hw[0] * s, hw[1] * s)
        assert torch.isfinite(y).all()


def test_channel_attention_scales_each_channel_by_a_weight_in_0_1():
    torch.manual_seed(0)
    ca = ChannelAttention(16, 4)
    x = torch.rand(1, 16, 5, 5) + 0.1
    w = ca(x) / x
    per_channel = w[0].flatten(1)
    assert torch.allclose(per_channel, per_channel[:, :1].expand_as(per_channel), atol=1e-6)
    assert (w > 0).all() and (w < 1).all()


def test_bad_scale_and_reduction_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        RCAN(3, 1, 1, 8, 2)
    with pytest.raises(ValueError, match="multiple of reduction"):
        RCAN(2, 1, 1, 10, 4)


def test_cpu_rcan_starts_at_bicubic_and_paper_rcan_is_the_published_one():
    x = torch.rand(1, 3, 6, 9)
    cpu = rcan_from_profile(get_profile("cpu", device="cpu"))
    assert cpu.global_skip and not rcan_from_profile(get_profile("paper", device="cpu")).global_skip
    bicubic = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(cpu(x), bicubic, atol=1e-6)  # untrained: exactly the bicubic up-sampling
        cpu.tail[0].bias.fill_(0.1)  # the one-shot up-sampler: conv, then pixel shuffle
        assert torch.allclose(cpu(x), bicubic + 0.1, atol=1e-6)  # trained: bicubic plus what it adds
    with pytest.raises(ValueError, match="global skip"):
        RCAN(2, 1, 1, 8, 4, in_channels=3, out_channels=1, global_skip=True)


def test_the_one_shot_up_sampler_puts_each_sub_pixel_channel_at_its_own_place():
    # ESPCN's sub-pixel conv: channel c * s * s + i * s + j of the conv lands at (y * s + i, x * s + j)
    net = RCAN(4, 1, 1, 8, 4, upsampler="one_shot")
    staged = RCAN(4, 1, 1, 8, 4, upsampler="staged")
    assert net.config["upsampler"] == "one_shot" and len(net.upsample) == 0 and len(staged.upsample) == 4
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in staged.parameters())
    with torch.no_grad():
        conv = net.tail[0]
        conv.weight.zero_(), conv.bias.zero_()
        conv.bias[1 * 16 + 2 * 4 + 3] = 1.0  # green, sub-pixel row 2, column 3
        y = net(torch.rand(1, 3, 5, 7))
    assert y.shape == (1, 3, 20, 28)
    expected = torch.zeros(1, 3, 20, 28)
    expected[0, 1, 2::4, 3::4] = 1.0
    assert torch.equal(y, expected)
    with pytest.raises(ValueError, match="upsampler"):
        RCAN(4, 1, 1, 8, 4, upsampler="bilinear")
