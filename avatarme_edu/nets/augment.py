"""Training-time augmentation: show a network its input as the pipeline will hand it over.

The networks after de-lighting are trained on the light stage's *measured* diffuse albedo, but in
the pipeline they read δ's answer for a texture that was fitted at ``texture_hw`` and super-resolved
by ``sr_scale``. That albedo differs from the measured one in two ways a network can be taught to
expect:

* **no detail finer than the fitted texture's texels**: RCAN cannot invent pores that the photo did
  not resolve (at the cpu profile a texel of the 96x144 texture covers 4x4 map texels, about 2 mm,
  the size of the pores themselves);
* **a colour level that is a little off**: δ's white balance and exposure errors (the end-to-end
  table's albedo PSNR, ``results/end_to_end.md``).

:func:`pipeline_albedo` applies both to a random half of a batch. A network that reads pores from
A_D (ψ: pore size and age set the sebum, ``lightstage/skin_params.py``) then learns what to answer
when they are missing - the training set's expectation - instead of reading "no pores" as "dry skin".

Randomness comes from torch's global generator, which the training checkpoints save, so resume
stays exact.
"""

from __future__ import annotations

import torch

from avatarme_edu.imaging import downsample_masked, upsample_masked

#: Fraction of a batch whose albedo is made pipeline-like.
PIPELINE_FRACTION = 0.5
#: Spread of the per-channel log gain (about +-10 % colour level error).
GAIN_LOG_STD = 0.1


def lose_fine_detail(x: torch.Tensor, scale: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, C, H, W) -> (N, C, H, W)``: ``x`` area-averaged to a map ``scale`` times smaller and
    up-sampled back (bilinear), both over the valid texels of ``mask`` ``(N, H, W)`` bool when given, so
    the empty background does not bleed in - what survives a texture ``scale`` times smaller."""
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"patch {(h, w)} is not a multiple of the scale {scale}")
    masks = mask if mask is not None else torch.ones(x.shape[0], h, w, dtype=torch.bool)
    out = []
    for xi, mi in zip(x, masks):
        small, keep = downsample_masked(xi, mi, (h // scale, w // scale))
        out.append(upsample_masked(small, keep, mi))
    return torch.stack(out)


def pipeline_albedo(batch: dict, key: str, scale: int, mask_key: str = "mask") -> dict:
    """``batch`` with ``batch[key]`` ``(N, 3, P, P)`` in [0, 1] made pipeline-like (module docstring) for
    a random :data:`PIPELINE_FRACTION` of its patches; the others, and every other entry, unchanged."""
    x = batch[key].float()
    n = x.shape[0]
    chosen = torch.rand(n) < PIPELINE_FRACTION
    if not chosen.any():
        return batch
    mask = batch.get(mask_key)
    mask = mask.reshape(n, *x.shape[-2:]).bool() if torch.is_tensor(mask) else None
    gain = torch.exp(GAIN_LOG_STD * torch.randn(n, x.shape[1], 1, 1))  # drawn for all: the same draws per step
    degraded = lose_fine_detail(x[chosen], scale, mask[chosen] if mask is not None else None)
    out = dict(batch)
    out[key] = x.clone()
    out[key][chosen] = (degraded * gain[chosen]).clamp(0, 1)
    return out
