"""Tiling: random training patches, and a blended sliding window for inference.

AvatarMe trains its image-to-image networks on small patches (512x512 in the paper) but must produce
huge maps (6144x4096). At test time it runs the fully-convolutional networks on larger windows
(1536x1536) that slide over the map with a stride of 1024, so neighbouring windows overlap by 512
texels. Where they overlap, the two answers are blended with weights that fade out towards each
window's edge, which hides the seams that a plain "cut and paste" would leave.

Four tools live here:

* :func:`window_grid`   - where the windows go (the last row/column sits flush with the border);
* :func:`blend_weights` - the fade-out weights of one window;
* :func:`sliding_window` - run a network window by window and assemble the blended result;
* :func:`sample_patches` - random aligned training patches from the valid (masked) region.

Sizes: cpu profile 576x384 maps, 384 windows, stride 256 (2 windows); paper 6144x4096 maps,
1536 windows, stride 1024 (6 x 4 = 24 windows).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from avatarme_edu.imaging import check_hw


# --------------------------------------------------------------------------------------------
# Where the windows go
# --------------------------------------------------------------------------------------------

def _is_int(v) -> bool:
    """True for Python and numpy/torch integers (anything with ``__index__``), False for bools."""
    return hasattr(v, "__index__") and not isinstance(v, bool)


def _check_window_stride(window: int, stride: int) -> tuple[int, int]:
    if not _is_int(window) or window <= 0:
        raise ValueError(f"window must be a positive integer number of texels, got {window!r}")
    if not _is_int(stride) or not 0 < stride <= window:
        raise ValueError(f"stride must be an integer in [1, window={window}], got {stride!r} "
                         "(a stride larger than the window would leave gaps)")
    return int(window), int(stride)


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window start offsets along one axis of length ``size``; the last one is flush with the end."""
    if size <= window:
        return [0]  # one window; the sliding window pads the map up to the window size
    starts = list(range(0, size - window, stride))
    starts.append(size - window)  # flush with the border, so no texel is left uncovered
    return starts


def window_grid(hw: tuple[int, int], window: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners ``(top, left)`` of the windows that cover an ``(H, W)`` map, row by row.

    Windows step by ``stride``; the last row and column are moved back so they end exactly on the
    map border. A side shorter than the window gets a single window at 0 (:func:`sliding_window`
    pads the map by reflection and crops the result back).

    >>> len(window_grid((4096, 6144), 1536, 1024))   # the paper's maps: 4 rows x 6 columns
    24
    >>> window_grid((384, 576), 384, 256)             # the cpu profile
    [(0, 0), (0, 192)]
    """
    h, w = check_hw(hw)
    window, stride = _check_window_stride(window, stride)
    rows = _starts(h, window, stride)
    cols = _starts(w, window, stride)
    return [(top, left) for top in rows for left in cols]


# --------------------------------------------------------------------------------------------
# Blending
# --------------------------------------------------------------------------------------------

def blend_weights(window: int, overlap: int, device=None) -> torch.Tensor:
    """``(window, window)`` float32 weights, 1 in the middle, fading towards the edges.

    Along each axis the weight rises over the first ``overlap`` texels with a raised-cosine ramp
    ``0.5 - 0.5 cos(pi (i + 0.5) / overlap)`` and falls the same way over the last ``overlap``.
    The ramp never reaches 0 (so every texel of a window counts a little, even at the map border),
    and a rising ramp plus the falling ramp of the neighbour shifted by ``window - overlap`` sum
    to exactly 1, so overlapping windows cross-fade without a visible seam. ``overlap = 0`` gives
    all ones (plain tiling).
    """
    if not _is_int(window) or window <= 0:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if not _is_int(overlap) or not 0 <= overlap <= window:
        raise ValueError(f"overlap must be an integer in [0, window={window}], got {overlap!r}")
    i = torch.arange(window, dtype=torch.float64, device=device)
    ramp = torch.ones(window, dtype=torch.float64, device=device)
    if overlap > 0:
        up = 0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / overlap)
        down = up.flip(0)
        ramp = torch.where(i < overlap, up, ramp)
        # min() handles overlap > window / 2, where the rising and falling ramps meet in the middle
        ramp = torch.minimum(ramp, torch.where(i >= window - overlap, down, torch.ones_like(down)))
    return torch.outer(ramp, ramp).to(torch.float32)


def _reflect_index(size: int, target: int, device) -> torch.Tensor:
    """Indices ``0..target-1`` folded back into ``0..size-1`` like a mirror (works for any target)."""
    idx = torch.arange(target, device=device)
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = idx % period
    return torch.where(idx >= size, period - idx, idx)


def _pad_to(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Reflect-pad ``(N, C, H, W)`` at the bottom/right up to ``hw``. Unlike ``F.pad(mode='reflect')``
    this works when the pad is larger than the map (it keeps mirroring)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(hw):
        return x
    x = x.index_select(-2, _reflect_index(h, hw[0], x.device))
    return x.index_select(-1, _reflect_index(w, hw[1], x.device))


def sliding_window(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, window: int,
                   stride: int, progress: bool = False, batch_size: int = 1) -> torch.Tensor:
    """Apply ``fn`` to overlapping windows of ``x`` and blend the answers into one map.

    Args:
        fn: maps a batch of windows ``(B, C, window, window)`` to ``(B, C_out, window, window)``;
            the channel count may change (e.g. grey albedo in, normals out). Wrap the call in
            ``torch.no_grad()`` for inference to save memory.
        x: ``(C, H, W)`` or ``(N, C, H, W)`` map, any size (also smaller than a window).
        window, stride: window side and step in texels (``profile.window_size``,
            ``profile.window_stride``); the overlap is ``window - stride``.
        progress: show a tqdm progress bar over the calls to ``fn``.
        batch_size: at most this many windows go to ``fn`` in one call.

    Returns:
        ``(C_out, H, W)`` or ``(N, C_out, H, W)`` on ``x.device``: each texel is the weighted mean
        of the answers of all windows that cover it, weights from :func:`blend_weights`. With the
        identity as ``fn`` the result equals ``x`` up to float rounding.

    Memory: besides ``x`` it holds the output accumulator, one ``(H, W)`` weight sum, a padded copy
    of ``x`` only when ``x`` is smaller than a window, and ``batch_size`` windows.
    """
    window, stride = _check_window_stride(window, stride)
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    unbatched = x.ndim == 3
    if unbatched:
        x = x.unsqueeze(0)
    n, _, h, w = x.shape
    # A side shorter than the window is mirrored up to the window size and cropped back at the end.
    hp, wp = max(h, window), max(w, window)
    xp = _pad_to(x, (hp, wp))

    corners = window_grid((hp, wp), window, stride)
    weights = blend_weights(window, window - stride, device=x.device)
    weight_sum = torch.zeros((hp, wp), dtype=torch.float32, device=x.device)
    for top, left in corners:
        weight_sum[top:top + window, left:left + window] += weights

    # Every (image, window) pair is one job; jobs go to fn in batches of batch_size.
    jobs = [(i, top, left) for i in range(n) for top, left in corners]
    batches = [jobs[k:k + batch_size] for k in range(0, len(jobs), batch_size)]
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc=f"sliding window ({len(corners)} windows x {n})", unit="call")

    out = None
    for batch in batches:
        crops = torch.stack([xp[i, :, top:top + window, left:left + window] for i, top, left in batch])
        y = fn(crops)
        if not torch.is_tensor(y) or y.ndim != 4 or y.shape[0] != len(batch) or \
                tuple(y.shape[-2:]) != (window, window):
            shape = tuple(y.shape) if torch.is_tensor(y) else type(y).__name__
            raise ValueError(f"fn must return (B={len(batch)}, C_out, {window}, {window}), got {shape}")
        y = y.to(x.device)
        if out is None:
            dtype = y.dtype if y.is_floating_point() else torch.float32
            out = torch.zeros((n, y.shape[1], hp, wp), dtype=dtype, device=x.device)
        wts = weights.to(out.dtype)
        for (i, top, left), yi in zip(batch, y):
            out[i, :, top:top + window, left:left + window] += yi * wts

    out = out / weight_sum.to(out.dtype)
    out = out[:, :, :h, :w]
    return out[0] if unbatched else out


# --------------------------------------------------------------------------------------------
# Training patches
# --------------------------------------------------------------------------------------------

def _valid_counts(mask: torch.Tensor, p: int) -> torch.Tensor:
    """Number of valid texels in every ``p x p`` patch, indexed by the patch's top-left corner.

    Uses an integral image (summed-area table): any box sum is four look-ups.
    Returns ``(H - p + 1, W - p + 1)`` int64.
    """
    s = mask.to(torch.int64).cumsum(0).cumsum(1)
    s = torch.nn.functional.pad(s, (1, 0, 1, 0))  # s[r, c] = valid texels above-left of (r, c)
    return s[p:, p:] - s[:-p, p:] - s[p:, :-p] + s[:-p, :-p]


def sample_patches(maps: dict[str, torch.Tensor], mask: torch.Tensor, patch_size: int, n: int,
                   generator: torch.Generator, min_valid: float = 0.5
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Random ``patch_size`` crops from the surface region, the same crop from every map.

    Args:
        maps: name -> ``(C, H, W)`` tensor; all maps share the UV layout (and the mask's ``H, W``).
            Channel counts and dtypes may differ (e.g. texture (3,...), specular albedo (1,...)).
        mask: ``(H, W)`` bool, texels that belong to the surface.
        patch_size: side of the square patches (``profile.patch_size``).
        n: number of patches.
        generator: the only source of randomness; the same seed gives the same patches.
        min_valid: a crop is accepted if at least this fraction of its texels is valid.

    Returns:
        ``(patches, corners)``: ``patches[name]`` is ``(n, C, patch_size, patch_size)`` and
        ``corners`` is ``(n, 2)`` int64 ``(top, left)`` of each patch, on the maps' device. Corners
        are drawn uniformly (with replacement) among all accepted positions.
    """
    if not maps:
        raise ValueError("maps is empty; give at least one (C, H, W) map to crop")
    if mask.ndim != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be an (H, W) bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    h, w = mask.shape
    for name, m in maps.items():
        if m.ndim != 3 or tuple(m.shape[1:]) != (h, w):
            raise ValueError(f"map {name!r} must be (C, {h}, {w}) like the mask, got {tuple(m.shape)}")
    if not _is_int(patch_size) or not 0 < patch_size <= min(h, w):
        raise ValueError(f"patch_size must be an integer in [1, {min(h, w)}] for {h}x{w} maps, "
                         f"got {patch_size!r}")
    if not _is_int(n) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not 0.0 <= min_valid <= 1.0:
        raise ValueError(f"min_valid must be a fraction in [0, 1], got {min_valid!r}")

    counts = _valid_counts(mask, patch_size)
    needed = math.ceil(min_valid * patch_size * patch_size - 1e-9)
    accepted = torch.nonzero((counts >= needed).flatten()).squeeze(1)
    if accepted.numel() == 0:
        best = counts.max().item() / patch_size ** 2
        raise ValueError(f"no {patch_size}x{patch_size} patch with at least {min_valid:.0%} valid texels "
                         f"fits in the mask (the best place has {best:.1%}); lower min_valid or "
                         f"patch_size, or check the mask")

    # Draw on the generator's device (a CPU generator cannot drive CUDA sampling), then move.
    pick = torch.randint(accepted.numel(), (n,), generator=generator, device=generator.device)
    flat = accepted[pick.to(accepted.device)]
    ncols = counts.shape[1]
    corners = torch.stack([flat // ncols, flat % ncols], dim=1)

    device = next(iter(maps.values())).device
    corners_list = corners.tolist()
    p = patch_size
    patches = {name: torch.stack([m[:, t:t + p, l:l + p] for t, l in corners_list])
               for name, m in maps.items()}
    return patches, corners.to(device)
