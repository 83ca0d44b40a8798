import pytest
import torch

from avatarme_edu.nets.augment import PIPELINE_FRACTION, lose_fine_detail, pipeline_albedo


def test_losing_fine_detail_keeps_what_a_smaller_texture_holds_and_drops_the_rest():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = (0.5 + 0.3 * torch.sin(xx / 8) * torch.cos(yy / 9)).expand(1, 3, 32, 32)
    pores = 0.05 * (torch.rand(1, 3, 32, 32, generator=g) - 0.5)
    out = lose_fine_detail(smooth + pores, 4)
    assert out.shape == (1, 3, 32, 32)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    kept = lose_fine_detail(smooth, 4)
    assert (kept - smooth)[inner].abs().max() < 0.03  # the shape survives
    assert (out - kept)[inner].abs().mean() < 0.3 * pores[inner].abs().mean()  # the pores do not
    with pytest.raises(ValueError, match="multiple of the scale"):
        lose_fine_detail(torch.rand(1, 3, 30, 32), 4)


def test_losing_detail_under_a_mask_does_not_bleed_the_background_in():
    x = torch.full((1, 3, 16, 16), 0.6)
    m = torch.zeros(1, 16, 16, dtype=torch.bool)
    m[:, :, :6] = True  # the valid edge runs through a 4x4 block
    out = lose_fine_detail(x * m[:, None], 4, m)
    assert torch.allclose(out[:, :, 2:-2, :4], torch.full_like(out[:, :, 2:-2, :4], 0.6), atol=1e-5)
    assert (out[:, :, :, 6:] == 0).all()


def test_pipeline_albedo_changes_about_half_the_patches_and_nothing_else():
    a = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    batch = {"diffuse_albedo": a, "mask": torch.ones(64, 16, 16, dtype=torch.bool), "corner": torch.zeros(64, 2)}
    torch.manual_seed(0)  # the global generator, which training checkpoints save
    out = pipeline_albedo(batch, "diffuse_albedo", 4)
    changed = (out["diffuse_albedo"] != a).flatten(1).any(1)
    assert abs(changed.float().mean().item() - PIPELINE_FRACTION) < 0.2
    assert torch.equal(out["diffuse_albedo"][~changed], a[~changed]) and out["corner"] is batch["corner"]
    assert out["diffuse_albedo"].min() >= 0 and out["diffuse_albedo"].max() <= 1
    torch.manual_seed(0)
    assert torch.equal(pipeline_albedo(batch, "diffuse_albedo", 4)["diffuse_albedo"], out["diffuse_albedo"])
