"""Super-resolution pairs degraded afresh: a new low texture for a training patch, every time.

The dataset stores one fitted-size texture per subject-expression (:func:`~avatarme_edu.lightstage.wild.degrade`
of its sharp texture: one blur, one JPEG quality, one draw of sensor noise). Trained on those alone, RCAN
meets the same 336 degradations (48 identities x 7 expressions) over and over, the noise texel for texel,
and can learn them rather than how to undo a blur it has not seen. Blind super-resolution practice
(BSRGAN, Real-ESRGAN) degrades the sharp image anew for each sample. :func:`fresh_lows` does so for a
``share`` of the patches: the patch's sharp texture through the same ``degrade`` (area down-sampling,
Gaussian blur, shot and read noise, a JPEG round trip) with parameters drawn from the wild texture's own
ranges (:data:`~avatarme_edu.lightstage.wild.DEGRADATION_RANGES`). The rest keep the stored pair, whose
JPEG grid and blur were applied to the whole map.

Which patches, and their parameters, follow from the patch itself (identity, expression, corner): a
resumed run draws the same, and the validation batch stays one fixed batch.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatarme_edu.lightstage.wild import DEGRADATION_RANGES, degrade


@dataclass(frozen=True)
class Degradation:
    """The four losses of a low-resolution fit (the fields :func:`degrade` reads)."""

    blur_sigma: float  # Gaussian blur, texels of the low texture
    shot_noise: float  # noise variance per unit signal
    read_noise: float  # noise standard deviation
    jpeg_quality: int  # Pillow's 1-95


def patch_key(subject_id: int, expression: str, corner) -> int:
    """A 32-bit number that names one patch (CRC-32 of identity, expression and corner)."""
    t, l = (int(v) for v in corner)
    return zlib.crc32(f"{int(subject_id)} {expression} {t} {l}".encode())


def draw_degradation(generator: torch.Generator) -> Degradation:
    """Uniform in :data:`DEGRADATION_RANGES` (four draws from ``generator``, in the fields' order)."""
    u = torch.rand(4, generator=generator).tolist()
    lo_hi = [DEGRADATION_RANGES[k] for k in ("blur_sigma", "shot_noise", "read_noise", "jpeg_quality")]
    v = [a + (b - a) * t for (a, b), t in zip(lo_hi, u)]
    return Degradation(v[0], v[1], v[2], int(round(v[3])))


def fresh_lows(share: float, target: str = "texture"):
    """A ``batch -> batch`` function for super-resolution batches: a ``share`` of the patches get a new
    ``texture_low`` ``(3, p, p)``, degraded afresh from the patch's sharp ``batch[target]`` ``(3, P, P)``
    (``texture``; ``texture_sr`` for the paper profile's pairs, whose mask comes from ``mask_low``).
    The batch must carry ``subject_id``, ``expression`` and ``corner`` (the patch loader's)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the share of freshly degraded patches must be in [0, 1], got {share}")

    def transform(batch: dict) -> dict:
        low = batch["texture_low"].clone()
        side = low.shape[-1]
        for n in range(low.shape[0]):
            key = patch_key(batch["subject_id"][n], batch["expression"][n], batch["corner"][n])
            if (key % 1000) / 1000 >= share:
                continue
            high = batch[target][n].float()
            if "mask" in batch and tuple(batch["mask"].shape[-2:]) == tuple(high.shape[-2:]):
                mask = batch["mask"][n]
            else:  # the paper profile's pairs: the mask at the fitted size, brought to the target's
                mask = F.interpolate(batch["mask_low"][n].float().reshape(1, 1, side, side),
                                     size=tuple(high.shape[-2:]), mode="nearest")[0, 0]
            g = torch.Generator().manual_seed(key)
            degraded, _ = degrade(high, mask.reshape(high.shape[-2:]).bool(), (side, side), draw_degradation(g), g)
            low[n] = degraded.to(low)
        return {**batch, "texture_low": low}

    return transform
