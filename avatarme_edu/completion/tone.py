"""Skin-tone matching for head-model transfer: the head model's skin shifted to the face's tone.

Step 2 of :mod:`avatarme_edu.completion.transfer`: the mean and spread of the diffuse albedo of both
heads in a ring of bare-skin texels along the face border (the same texels, thanks to the shared UV
layout), and a transform that gives the head the face's statistics there - by default in **log**
space, where a change of pigment concentration is a shift (Beer-Lambert).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatarme_edu.reflectance import ReflectanceMaps

TONE_SPACES = ("log", "linear", "none")


LOG_EPS = 1e-3  # log(albedo + eps): a black texel stays finite


MAX_TONE_GAIN = 2.0  # std matching may scale contrast by at most this factor (or 1 / it)


MIN_RING_TEXELS = 32  # fewer texels than this make unreliable statistics: widen the ring


RING_BAND = (0.2, 0.999)  # the ring: texels whose blend weight lies in this range...


NON_SKIN_LIMIT = 0.1  # ...and that are no more than this much hair, brow, eye, lip or ear


@dataclass
class SkinTone:
    """Per-channel statistics of an albedo over a region: ``mean`` and ``std`` ``(C,)`` in ``space``
    (``"log"``: of ``log(albedo + LOG_EPS)``; ``"linear"``: of the albedo itself), over ``count``
    texels; ``linear_mean`` ``(C,)`` is always the plain mean albedo (for reading)."""

    mean: torch.Tensor
    std: torch.Tensor
    linear_mean: torch.Tensor
    count: int
    space: str

    def __repr__(self) -> str:
        fmt = lambda t: "(" + ", ".join(f"{float(x):.3f}" for x in t) + ")"  # noqa: E731
        return (f"SkinTone(space={self.space!r}, mean={fmt(self.mean)}, std={fmt(self.std)}, "
                f"linear_mean={fmt(self.linear_mean)}, count={self.count})")


def _to_space(x: torch.Tensor, space: str) -> torch.Tensor:
    return torch.log(x.clamp_min(0.0) + LOG_EPS) if space == "log" else x


def _from_space(x: torch.Tensor, space: str) -> torch.Tensor:
    return (torch.exp(x) - LOG_EPS) if space == "log" else x


def _check_space(space: str) -> None:
    if space not in ("log", "linear"):
        raise ValueError(f"space must be 'log' or 'linear', got {space!r}")


def skin_tone_stats(maps, region_mask: torch.Tensor, space: str = "log") -> SkinTone:
    """Mean and standard deviation of an albedo over ``region_mask``, per channel.

    ``maps``: a :class:`~avatarme_edu.reflectance.ReflectanceMaps` (its diffuse albedo, restricted to
    its mask) or a ``(C, H, W)`` albedo map; ``region_mask``: ``(H, W)`` bool; ``space``: ``"log"``
    or ``"linear"`` (see the module docstring). Raises ``ValueError`` for an empty region.
    """
    _check_space(space)
    if isinstance(maps, ReflectanceMaps):
        image, valid = maps.diffuse_albedo, maps.mask
    else:
        image, valid = maps, None
    if not torch.is_tensor(image) or image.ndim != 3:
        raise ValueError(f"expected ReflectanceMaps or a (C, H, W) map, got {type(maps).__name__}")
    if region_mask.dtype != torch.bool or tuple(region_mask.shape) != tuple(image.shape[1:]):
        raise ValueError(f"region_mask must be an {tuple(image.shape[1:])} bool tensor, "
                         f"got {tuple(region_mask.shape)} {region_mask.dtype}")
    where = region_mask.to(image.device)
    if valid is not None:
        where = where & valid.to(image.device)
    n = int(where.sum())
    if n == 0:
        raise ValueError("region_mask selects no valid texels; skin tone statistics need at least one")
    x = image[:, where].double()  # (C, n)
    y = _to_space(x, space)
    return SkinTone(mean=y.mean(1).float(), std=y.std(1, correction=0).float(), linear_mean=x.mean(1).float(),
                    count=n, space=space)


def tone_transform(source: SkinTone, target: SkinTone, match_std: bool = True,
                   max_gain: float = MAX_TONE_GAIN) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gain, shift)`` ``(C,)`` so that ``gain * y + shift`` maps ``source`` statistics onto ``target``'s.

    ``y`` is the albedo in the statistics' space. With ``match_std`` the gain is
    ``target.std / source.std`` clamped to ``[1 / max_gain, max_gain]`` (a ring full of freckles
    should not blow up the contrast of a whole head), else 1. The shift then moves the mean exactly.
    """
    if source.space != target.space:
        raise ValueError(f"source and target statistics are in different spaces: {source.space!r}, {target.space!r}")
    if not max_gain >= 1.0:
        raise ValueError(f"max_gain must be >= 1, got {max_gain}")
    if match_std:
        gain = (target.std / source.std.clamp_min(1e-8)).clamp(1.0 / max_gain, max_gain)
    else:
        gain = torch.ones_like(source.mean)
    return gain, target.mean - gain * source.mean


def match_skin_tone(image: torch.Tensor, source: SkinTone, target: SkinTone, match_std: bool = True,
                    max_gain: float = MAX_TONE_GAIN) -> torch.Tensor:
    """Shift an albedo map ``(C, H, W)`` whose statistics are ``source`` so they become ``target``'s.

    Per channel, in the statistics' space: ``y' = gain * y + shift`` (:func:`tone_transform`); the
    result is clipped to [0, 1]. In log space this multiplies the albedo by ``exp(shift)`` (times a
    contrast change): "more or less pigment", never a negative reflectance.
    """
    gain, shift = tone_transform(source, target, match_std, max_gain)
    y = _to_space(image, source.space)
    out = _from_space(gain.to(image).view(-1, 1, 1) * y + shift.to(image).view(-1, 1, 1), source.space)
    return out.clamp(0.0, 1.0)


def tone_ring(alpha: torch.Tensor, valid: torch.Tensor, non_skin: torch.Tensor | None = None,
              band: tuple[float, float] = RING_BAND) -> torch.Tensor:
    """``(H, W)`` bool: where to compare skin tones - the bare-skin texels of the seam band.

    The band is where ``band[0] <= alpha <= band[1]`` (both heads contribute there, so a tone
    difference would show) inside ``valid``; ``non_skin`` ``(H, W)`` in [0, 1] (hair, brows,
    beard, eyes, lips, ears) removes texels above :data:`NON_SKIN_LIMIT`. When that leaves fewer
    than :data:`MIN_RING_TEXELS`, the ring widens to every skin texel with ``alpha > 0``, then to
    every such texel; it may be empty when the face has no valid texel at all.
    """
    skin = valid if non_skin is None else valid & (non_skin <= NON_SKIN_LIMIT)
    ring = skin & (alpha >= band[0]) & (alpha <= band[1])
    for wider in (skin & (alpha > 0), valid & (alpha > 0)):
        if int(ring.sum()) >= MIN_RING_TEXELS:
            break
        ring = wider
    return ring
