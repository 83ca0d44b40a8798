import pytest
import torch

from avatarme_edu.nets.losses import feature_matching_loss, lsgan_loss, masked_l1, masked_mse


def test_losses_have_their_textbook_values():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.ones(1, 2, 2, 2)
    mask = torch.tensor([[[True, False], [False, False]]])
    b[..., 1:, :] = 100.0  # outside the mask: must not count
    assert masked_l1(a, b, mask).item() == pytest.approx(1.0)
    b[..., 0, 0] = 3.0  # the one valid texel, both channels
    assert masked_l1(a, b, mask).item() == pytest.approx(3.0)
    assert masked_mse(a, b, mask).item() == pytest.approx(9.0)
    assert masked_mse(a, b).item() == pytest.approx(((b - a) ** 2).mean().item())
    scores = [[torch.zeros(1, 1, 3, 3)], [torch.ones(1, 1, 2, 2)]]
    assert lsgan_loss(scores, real=True).item() == pytest.approx(1.0)  # (1-0)^2 + (1-1)^2
    assert lsgan_loss(scores, real=False).item() == pytest.approx(1.0)  # 0 + 1
    fake = [[torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 1)]]
    real = [[torch.ones(1, 2), 3 * torch.ones(1, 2), torch.zeros(1, 1)]]
    assert feature_matching_loss(fake, real).item() == pytest.approx((1 + 3) * 4 / 2)
