"""pix2pixHD's training losses: least-squares GAN, discriminator feature matching, and L1 to the target.

* **LSGAN** (Mao et al. 2017): the discriminator regresses real patches to 1 and fake ones to 0; the
  generator pushes its fakes towards 1. Squared errors give smoother gradients than the log loss.
* **Feature matching** (weight 10 in pix2pixHD): L1 between the discriminator's intermediate
  features of the real and the fake pair, at every layer and scale - the generator must match the
  statistics the discriminator looks at, which steadies GAN training.
* **L1 to the target**, over valid texels only: the pixel-wise anchor (AvatarMe's maps have ground
  truth texel for texel, so this term does most of the work at small training budgets).

pix2pixHD's VGG perceptual loss is left out: it needs ImageNet weights, which cannot be downloaded
here. The feature-matching loss is the download-free stand-in that pix2pixHD itself ships. Measured on
δ(T̂) (``results/reflectance_training.md``): trained 30 minutes with L1 alone instead, its held-out A_D is
0.6-1.0 dB lower - the adversarial terms pay for their cost per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FEATURE_MATCHING_WEIGHT = 10.0


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over valid texels: ``pred, target (N, C, H, W)``, ``mask (N, H, W)`` bool or None."""
    return _masked_mean((pred - target).abs(), mask)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over valid texels (shapes as :func:`masked_l1`): what PSNR measures."""
    return _masked_mean((pred - target) ** 2, mask)


def _masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of a per-texel error ``(N, C, H, W)`` over the texels where ``mask (N, H, W)`` holds."""
    if mask is None:
        return err.mean()
    m = mask.unsqueeze(1).to(err.dtype)
    return (err * m).sum() / (m.sum() * err.shape[1]).clamp_min(1.0)


def lsgan_loss(scores: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    """Least-squares GAN loss of a multi-scale discriminator's output (last feature of each scale),
    summed over the scales as in pix2pixHD."""
    target = 1.0 if real else 0.0
    return sum(F.mse_loss(s[-1], torch.full_like(s[-1], target)) for s in scores)


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD's feature matching: L1(fake, real) of every intermediate feature (the scores excluded),
    weighted ``4 / n_layers_with_features / n_scales`` as in the original (weight 1 per layer for
    3-layer PatchGANs, averaged over scales). Multiply by :data:`FEATURE_MATCHING_WEIGHT`."""
    total = fake[0][0].new_zeros(())
    for f_scale, r_scale in zip(fake, real):
        n = len(f_scale) - 1
        for f, r in zip(f_scale[:-1], r_scale[:-1]):
            total = total + F.l1_loss(f, r.detach()) * (4.0 / n / len(fake))
    return total
