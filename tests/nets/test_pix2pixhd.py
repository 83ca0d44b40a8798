import pytest
import torch

from avatarme_edu.nets.pix2pixhd import (
    GlobalGenerator,
    MultiscaleDiscriminator,
    discriminator_from_profile,
    generator_from_profile,
)
from avatarme_edu.profiles import get_profile


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def expected_generator_params(c_in, c_out, ngf, n_down, n_blocks):
    """pix2pixHD's global generator written out (instance norm without affine parameters)."""
    conv = lambda a, b, k: a * b * k * k + b  # noqa: E731  (ConvTranspose2d has the same count)
    total = conv(c_in, ngf, 7) + conv(ngf, c_out, 7)
    for i in range(n_down):
        c = ngf * 2 ** i
        total += conv(c, 2 * c, 3) + conv(2 * c, c, 3)  # down, and the matching transposed conv up
    return total + n_blocks * 2 * conv(ngf * 2 ** n_down, ngf * 2 ** n_down, 3)


@pytest.mark.slow
def test_paper_global_generator_has_about_182m_parameters():
    p = get_profile("paper", device="cpu")
    g = generator_from_profile(p, 3, 3)
    expected = expected_generator_params(3, 3, 64, 4, 9)
    assert expected == 182_443_267
    assert n_params(g) == expected
    assert abs(n_params(g) - 182e6) / 182e6 < 0.01


@pytest.mark.parametrize("name,hw", [("cpu", (16, 24)), ("paper", (32, 48))])
@pytest.mark.slow
def test_generator_shapes_and_ranges_on_both_profiles(name, hw):
    p = get_profile(name, device="cpu")
    torch.manual_seed(0)
    x = torch.rand(2, 4, *hw) * 2 - 1
    g = generator_from_profile(p, 4, 3, output="unit_vectors")  # one paper-size net (0.7 GB) is enough
    with torch.no_grad():
        normals = g(x)
        g.output = "unit_interval"  # same layers, the albedo head
        albedo = g(x)
        spec = generator_from_profile(p.replace(gen_ngf=4), 3, 1)(x[:, :3])
    assert normals.shape == albedo.shape == (2, 3, *hw) and spec.shape == (2, 1, *hw)
    assert torch.allclose(normals.norm(dim=1), torch.ones(2, *hw), atol=1e-5)
    assert albedo.min() >= 0 and albedo.max() <= 1 and spec.min() >= 0 and spec.max() <= 1
    assert albedo.std() > 0 and normals.std() > 0


def test_generator_takes_sizes_that_are_not_a_multiple_of_the_down_sampling():
    torch.manual_seed(0)
    g = GlobalGenerator(3, 3, ngf=4, n_down=3, n_blocks=1)
    with torch.no_grad():
        assert g(torch.rand(1, 3, 13, 21)).shape == (1, 3, 13, 21)


@pytest.mark.parametrize("name", ["cpu", "paper"])
def test_multiscale_discriminator_features_and_scores(name):
    p = get_profile(name, device="cpu")
    d = discriminator_from_profile(p, 7)
    with torch.no_grad():
        out = d(torch.rand(1, 7, 64, 64))
    assert len(out) == p.n_discriminators == 2
    assert [len(s) for s in out] == [5, 5]  # 4 feature layers + the score map
    assert out[0][-1].shape[1] == 1
    assert out[1][-1].shape[-1] < out[0][-1].shape[-1]  # the second scale sees a half-size input
    if name == "paper":
        assert out[0][0].shape[1] == 64  # ndf 64


def test_unit_vectors_head_needs_three_channels():
    with pytest.raises(ValueError, match="3 output channels"):
        GlobalGenerator(3, 1, ngf=4, n_down=1, n_blocks=1, output="unit_vectors")
    with pytest.raises(ValueError, match="unknown output head"):
        GlobalGenerator(3, 3, ngf=4, n_down=1, n_blocks=1, output="sigmoid")
    assert isinstance(MultiscaleDiscriminator(3, 8, 3, 1).scales[0], torch.nn.Module)


@pytest.mark.parametrize("output, shortcut", [("unit_interval", False), ("unit_vectors", True)])
def test_a_residual_generator_starts_as_its_input_map_and_can_move_away(output, shortcut):
    from avatarme_edu.nets.pix2pixhd import GlobalGenerator

    torch.manual_seed(0)
    g = GlobalGenerator(4, 3, ngf=4, n_down=2, n_blocks=1, output=output, residual=1, shortcut=shortcut)
    x = torch.rand(2, 4, 20, 28) * 2 - 1
    if output == "unit_vectors":
        x[:, 1:] = torch.nn.functional.normalize(x[:, 1:], dim=1)
        base = x[:, 1:]
    else:
        base = 0.5 * (x[:, 1:] + 1)
    assert torch.allclose(g(x), base, atol=1e-6)
    (g(x) - base).square().sum().backward()  # zero now, but every path gets a gradient from a nonzero loss
    loss = (g(x)[:, 0] - 0.3).abs().mean()
    g.zero_grad()
    loss.backward()
    last = g.shortcut[1].weight.grad if shortcut else g.model[-1].weight.grad
    assert last.abs().sum() > 0
    assert g.config.get("shortcut", False) is shortcut and g.config["residual"] == 1


def test_the_global_branch_learns_a_per_window_offset_that_instance_norm_hides():
    """Target: the input map raised by the window's own contrast (as a face's oiliness raises its
    whole specular map, with the clue spread over the window). Instance norm hides the contrast from the
    decoder; the un-normalised global branch sees it. Both start as the input map (zero-initialised)."""
    def batch(g):
        contrast = torch.rand(8, 1, 1, 1, generator=g) * 0.8 + 0.1
        x = (torch.rand(8, 1, 32, 32, generator=g) * 2 - 1) * contrast  # the input map, encoded 2x - 1
        base = 0.5 * (x + 1)
        return x, base + 0.5 * (contrast - 0.5)

    losses = {}
    for branch in (False, True):
        torch.manual_seed(0)
        net = GlobalGenerator(1, 1, ngf=8, n_down=2, n_blocks=1, residual=0, global_branch=branch)
        x, y = batch(torch.Generator().manual_seed(1))
        assert torch.allclose(net(x), 0.5 * (x + 1), atol=1e-6)  # starts as the input map either way
        assert net.config.get("global_branch", False) is branch
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(2)
        for _ in range(150):
            x, y = batch(g)
            loss = (net(x) - y).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        x, y = batch(torch.Generator().manual_seed(3))
        with torch.no_grad():
            losses[branch] = float((net(x) - y).abs().mean())
    assert losses[True] < 0.5 * losses[False], losses
