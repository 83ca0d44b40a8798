"""Will it fit? Memory and disk estimates, checked before a command starts working.

A paper-size subject on a laptop CPU, or ``--map-size 20000x30000``, used to run for minutes and then
die in the allocator. The estimates here are linear in the number of map texels, measured as peak
resident memory (``ru_maxrss``) of one single-threaded process making subjects at 384x576 and
768x1152 (``benchmarks``-style probe, cpu profile; see the numbers beside each constant), with a
margin on top. They are estimates: a refusal says what was estimated and what would fit.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from avatarme_edu.profiles import Profile

MB = 1 << 20
# make_subject + wild texture + float16 write: 218 MB at 384x576, 684 MB at 768x1152 -> ~700 B/texel
SUBJECT_BYTES_PER_TEXEL = 800
SUBJECT_FIXED_BYTES = 300 * MB  # EduHead, the UV rasteriser's buffers, the interpreter's own growth
# capture + both separations on top of the subject: +250 MB fixed, images and separations per texel
CAPTURE_BYTES_PER_TEXEL = 500
CAPTURE_FIXED_BYTES = 300 * MB
USABLE_FRACTION = 0.8  # leave the rest of the machine to the system and to the estimate's error


def subject_memory(map_hw: tuple[int, int]) -> int:
    """Peak bytes to make and write one subject (all its expressions share the skin) at ``map_hw``."""
    h, w = map_hw
    return SUBJECT_FIXED_BYTES + SUBJECT_BYTES_PER_TEXEL * int(h) * int(w)


def capture_memory(map_hw: tuple[int, int]) -> int:
    """Peak bytes of ``avatarme-edu capture`` (a subject, its 8 photographs, two separations)."""
    h, w = map_hw
    return subject_memory(map_hw) + CAPTURE_FIXED_BYTES + CAPTURE_BYTES_PER_TEXEL * int(h) * int(w)


def available_memory(device: str | torch.device) -> int:
    """Bytes free now on ``device``: GPU memory for CUDA, else the machine's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(estimate, profile: Profile, what: str, processes: int = 1) -> None:
    """Refuse (``MemoryError``, one line) work at ``profile.map_hw`` that will not fit.

    ``estimate``: ``map_hw -> bytes`` per process (:func:`subject_memory`, :func:`capture_memory`).
    The message says how much was estimated and available, and what would fit: the largest 3:2
    ``--map-size`` under the limit, the cpu profile, fewer workers or a GPU.
    """
    have = available_memory(profile.torch_device)
    processes = max(1, processes)
    budget = USABLE_FRACTION * have / processes
    total = estimate(profile.map_hw) * processes
    if total <= USABLE_FRACTION * have:
        return
    side = 0
    while estimate((side + 16, (side + 16) * 3 // 2)) <= budget:  # the largest 3:2 map, multiple of 16
        side += 16
    where = f"{profile.device} ({'GPU' if profile.torch_device.type == 'cuda' else 'RAM'})"
    hints = [f"--map-size {side}x{side * 3 // 2}" if side >= 16 else None,
             "--profile cpu" if profile.name != "cpu" else None,
             "fewer --workers" if processes > 1 else None,
             "a GPU with more memory"]
    raise MemoryError(f"{what} needs about {total / 2**30:.1f} GiB but {where} has {have / 2**30:.1f} GiB "
                      f"available; try {' or '.join(h for h in hints if h)}")


def check_disk(path: str | os.PathLike, need: int, what: str) -> None:
    """Refuse (``OSError`` naming the folder, one line) writing ``need`` bytes where they will not fit."""
    p = Path(path)
    while not p.exists() and p.parent != p:
        p = p.parent
    free = shutil.disk_usage(p).free
    if need > free:
        raise OSError(28, f"{what} need about {need / 2**30:.2f} GiB on disk but only "
                          f"{free / 2**30:.2f} GiB is free there", str(path))
