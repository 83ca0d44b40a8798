"""Procedural noise for skin maps: smooth noise, fractal noise, jittered spots, cell edges, blur.

Every function here works on whole maps at once with torch on the maps' device (no Python loop
per texel), so the same code makes a 576x384 map on a laptop and a 6144x4096 map on a GPU.

Two ideas make a subject look the same at every resolution:

* **Lattices are physical.** Each noise has a lattice *period in texels*; callers pass
  ``period = feature size in mm / texel size in mm``. The number of lattice cells over the map is
  then the same at 576x384 and 6144x4096, so the same random numbers land on the same places of
  the face; a finer map only shows them sharper.
* **Random numbers come from a generator, small tables only.** The random tables (one number per
  lattice cell, never one per texel) are drawn on the generator's device and then moved to the
  maps' device, so a CPU ``torch.Generator`` gives the same subject on a CPU and on a GPU.

Coordinates: texel ``(row, col)`` has its centre at ``(row + 0.5, col + 0.5)`` in texel units;
a lattice with period ``p`` has node ``i`` at ``(i + 0.5) * p`` (nodes sit at cell centres).
"""

from __future__ import annotations

import math

import torch

from avatarme_edu.imaging import check_hw

# Work per chunk in the spot and cell functions (texels x neighbours, or spots x stamp texels):
# bounds temporary memory at 6144x4096 to a few hundred MB.
_CHUNK_TEXELS = 1 << 21


def as_generator(generator: torch.Generator | int) -> torch.Generator:
    """A ``torch.Generator`` from a generator (returned as is) or an int seed (a new CPU generator)."""
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        from avatarme_edu.seeds import check_seed  # the one seed rule

        return torch.Generator().manual_seed(check_seed(generator))
    raise ValueError(f"generator must be a torch.Generator or an int seed, got {type(generator).__name__}")


def split_generator(generator: torch.Generator, n: int) -> list[torch.Generator]:
    """``n`` independent child generators on the parent's device, seeded from the parent.

    Each part of a subject (pores, freckles, wrinkles...) gets its own child, so adding random
    draws to one part never changes the others.
    """
    seeds = torch.randint(0, 2**62, (n,), generator=generator, device=generator.device)
    return [torch.Generator(device=generator.device).manual_seed(int(s)) for s in seeds.tolist()]


def rand(shape, generator: torch.Generator, device) -> torch.Tensor:
    """Uniform [0, 1) float32 table drawn on the generator's device, returned on ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def randn(shape, generator: torch.Generator, device) -> torch.Tensor:
    """Standard normal float32 table drawn on the generator's device, returned on ``device``."""
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def _check_period(period) -> tuple[float, float]:
    if isinstance(period, (int, float)):
        period = (period, period)
    py, px = float(period[0]), float(period[1])
    if not (py > 0 and px > 0 and math.isfinite(py) and math.isfinite(px)):
        raise ValueError(f"period must be positive texel sizes (py, px), got {period}")
    return py, px


def _bspline_weights(n_texels: int, period: float, n_nodes: int, device) -> torch.Tensor:
    """``(n_texels, n_nodes)`` cubic B-spline weights from lattice nodes to texel centres.

    Rows are scaled to unit sum of squares, so interpolated white noise has unit variance at every
    texel (plain B-spline weights would make it ~5% weaker between nodes than on them).
    """
    t = (torch.arange(n_texels, device=device, dtype=torch.float32) + 0.5) / period - 0.5 + 1.0  # +1: pad node
    i0 = torch.floor(t)
    f = t - i0
    # uniform cubic B-spline basis for the 4 nodes i0-1 .. i0+2
    w = torch.stack([(1 - f) ** 3 / 6, (3 * f**3 - 6 * f**2 + 4) / 6, (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6,
                     f**3 / 6], dim=1)
    w = w / w.pow(2).sum(1, keepdim=True).sqrt()
    idx = (i0.long().unsqueeze(1) + torch.arange(-1, 3, device=device)).clamp(0, n_nodes - 1)
    out = torch.zeros(n_texels, n_nodes, device=device, dtype=torch.float32)
    out.scatter_add_(1, idx, w)
    return out


def smooth_noise(hw, period, generator: torch.Generator, device=None) -> torch.Tensor:
    """Smooth random field ``(H, W)`` float32, zero mean, unit variance, features ~``period`` texels.

    White noise on a lattice, interpolated with a cubic B-spline. The interpolation is separable, so
    the whole map is two matrix products: ``Wy @ G @ Wx.T`` (``G`` the lattice of random numbers).
    ``period`` is ``(py, px)`` texels between lattice nodes (a float, or a pair for stretched noise).
    """
    H, W = check_hw(hw)
    py, px = _check_period(period)
    device = torch.device(device) if device is not None else generator.device
    ny, nx = math.ceil(H / py) + 3, math.ceil(W / px) + 3  # +3: the spline reaches 1 node left, 2 right
    grid = randn((ny, nx), generator, device)
    wy = _bspline_weights(H, py, ny, device)
    wx = _bspline_weights(W, px, nx, device)
    return wy @ grid @ wx.T


def fractal_noise(hw, period, generator: torch.Generator, device=None, octaves: int = 4,
                  gain: float = 0.5, min_period: float = 1.5) -> torch.Tensor:
    """Fractal (fBm) noise ``(H, W)``: octaves of :func:`smooth_noise`, each half the period.

    Octaves finer than ``min_period`` texels are left out (the map cannot hold them), so a coarse
    map is the blurred version of a fine one. The sum is divided by the std of the *full* octave
    stack, so amplitudes mean the same thing at every resolution (roughly unit std).
    """
    if octaves < 1:
        raise ValueError(f"octaves must be >= 1, got {octaves}")
    if not 0 < gain < 1:
        raise ValueError(f"gain must be in (0, 1), got {gain}")
    py, px = _check_period(period)
    gens = split_generator(generator, octaves)  # one child per octave: skipping one changes no other
    total, norm = None, 0.0
    for k in range(octaves):
        amp = gain**k
        norm += amp * amp
        s = 2.0**k
        if min(py, px) / s < min_period:
            continue
        layer = amp * smooth_noise(hw, (py / s, px / s), gens[k], device)
        total = layer if total is None else total + layer
    if total is None:
        H, W = check_hw(hw)
        return torch.zeros(H, W, device=device if device is not None else generator.device)
    return total / math.sqrt(norm)


def _gather_map(m: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    H, W = m.shape
    r = rows.round().long().clamp(0, H - 1)
    c = cols.round().long().clamp(0, W - 1)
    return m.reshape(-1)[r * W + c]


def jittered_spots(hw, period, radius: float, generator: torch.Generator, device=None, *,
                   density: torch.Tensor | float = 1.0, size: torch.Tensor | float = 1.0,
                   size_spread: float = 0.3, amp_spread: float = 0.3, jitter: float = 0.9,
                   stretch: float = 1.0) -> torch.Tensor:
    """Round spots ``(H, W)`` in [0, 1]: one candidate spot per lattice cell (a jittered grid).

    Each cell of a lattice with ``period`` texels holds one spot candidate at a random place in the
    cell. A candidate is kept with probability ``density`` (a float, or an ``(H, W)`` map read at the
    spot centre, so density varies by face region); its radius is ``radius * size`` texels
    (``size`` likewise a float or a map) times a random factor ``exp(size_spread * N(0,1))``, and its
    strength ``exp(amp_spread * N(0,1))``, capped at 1. The profile is a Gaussian,
    ``strength * exp(-(d / r)^2)``; where spots overlap the strongest one wins (no pile-up).
    ``stretch`` > 1 makes spots longer down the rows (e.g. hair stubble).

    Spots are *splatted*: each kept spot writes a small square of texels around its centre (out to
    2.6 radii, where the Gaussian is below 0.1 %) with a scatter-max, so the cost grows with the
    number of spots, not with the number of texels times neighbours.
    """
    H, W = check_hw(hw)
    py, px = _check_period(period)
    if radius <= 0:
        raise ValueError(f"radius must be > 0 texels, got {radius}")
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter must be in [0, 1], got {jitter}")
    if stretch <= 0:
        raise ValueError(f"stretch must be > 0, got {stretch}")
    device = torch.device(device) if device is not None else generator.device
    for m, name in ((density, "density"), (size, "size")):
        if isinstance(m, torch.Tensor) and tuple(m.shape) != (H, W):
            raise ValueError(f"{name} map must be ({H}, {W}), got {tuple(m.shape)}")
    ny, nx = math.ceil(H / py), math.ceil(W / px)
    table = rand((5, ny, nx), generator, device).reshape(5, -1)  # jitter y, jitter x, keep, size, strength
    iy = torch.arange(ny, device=device, dtype=torch.float32).repeat_interleave(nx)
    ix = torch.arange(nx, device=device, dtype=torch.float32).repeat(ny)
    sy = (iy + 0.5 + (table[0] - 0.5) * jitter) * py  # spot centres, texels
    sx = (ix + 0.5 + (table[1] - 0.5) * jitter) * px

    def normal(u):  # one uniform -> one standard normal (inverse CDF), clipped to +-2.5
        return (math.sqrt(2) * torch.erfinv(u.clamp(1e-6, 1 - 1e-6) * 2 - 1)).clamp(-2.5, 2.5)

    dens = _gather_map(density, sy, sx) if isinstance(density, torch.Tensor) else density
    r = radius * torch.exp(size_spread * normal(table[3]))
    r = r * (_gather_map(size, sy, sx) if isinstance(size, torch.Tensor) else size)
    amp = torch.exp(amp_spread * normal(table[4])).clamp(max=1.0)
    keep = (table[2] < dens) & (sy < H) & (sx < W)
    sy, sx, r, amp = sy[keep], sx[keep], r[keep], amp[keep]

    out = torch.zeros(H * W, device=device)
    if sy.numel() == 0:
        return out.view(H, W)
    # Small spots need small stamps: sort by radius and stamp each of a few groups at its own size.
    order = torch.argsort(r)
    sy, sx, r, amp = sy[order], sx[order], r[order], amp[order]
    n = sy.numel()
    bounds = sorted({0, n} | {n * k // 8 for k in range(1, 8)} | {n - max(1, n // 50)})
    for g0, g1 in zip(bounds[:-1], bounds[1:]):
        r_max = float(r[g1 - 1])
        reach_y = math.ceil(2.6 * r_max * stretch) + 1
        reach_x = math.ceil(2.6 * r_max) + 1
        oy = torch.arange(-reach_y, reach_y + 1, device=device)
        ox = torch.arange(-reach_x, reach_x + 1, device=device)
        oy, ox = (t.flatten() for t in torch.meshgrid(oy, ox, indexing="ij"))
        per_chunk = max(1, _CHUNK_TEXELS // oy.numel())
        for s0 in range(g0, g1, per_chunk):
            s1 = min(g1, s0 + per_chunk)
            cy, cx, rr = sy[s0:s1, None], sx[s0:s1, None], r[s0:s1, None]
            rows = torch.floor(cy).long() + oy  # (spots, stamp texels)
            cols = torch.floor(cx).long() + ox
            d2 = (((rows + 0.5) - cy) / (rr * stretch)) ** 2 + (((cols + 0.5) - cx) / rr) ** 2
            val = amp[s0:s1, None] * torch.exp(-d2)
            ok = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W) & (d2 < 6.8)
            out.scatter_reduce_(0, (rows * W + cols)[ok], val[ok], reduce="amax")
    return out.view(H, W)


def cell_edges(hw, period, generator: torch.Generator, device=None, jitter: float = 0.9) -> torch.Tensor:
    """Distance to the nearest cell border of a jittered Voronoi pattern ``(H, W)``, in periods.

    ``F2 - F1`` (second-nearest minus nearest feature-point distance, Worley 1996) is 0 on the
    borders between cells and grows towards the cell centres: the polygonal network of fine
    furrows on skin (the "skin lines" that surround small plateaus) is a blurred ``F2 - F1 < w``.
    """
    H, W = check_hw(hw)
    py, px = _check_period(period)
    device = torch.device(device) if device is not None else generator.device
    ny, nx = math.ceil(H / py) + 2, math.ceil(W / px) + 2
    table = rand((2, ny, nx), generator, device)
    jy, jx = (table[0] - 0.5) * jitter, (table[1] - 0.5) * jitter
    out = torch.zeros(H, W, device=device)
    cols = torch.arange(W, device=device, dtype=torch.float32) + 0.5
    rows_per_chunk = max(1, _CHUNK_TEXELS // W)
    for r0 in range(0, H, rows_per_chunk):
        rows = torch.arange(r0, min(H, r0 + rows_per_chunk), device=device, dtype=torch.float32) + 0.5
        yy, xx = torch.meshgrid(rows / py, cols / px, indexing="ij")  # in periods
        cy, cx = torch.floor(yy).long() + 1, torch.floor(xx).long() + 1
        f1 = torch.full_like(yy, 1e9)
        f2 = torch.full_like(yy, 1e9)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                iy, ix = (cy + dy).clamp(0, ny - 1), (cx + dx).clamp(0, nx - 1)
                flat = iy * nx + ix
                d = torch.hypot(yy - ((iy - 1).float() + 0.5 + jy.reshape(-1)[flat]),
                                xx - ((ix - 1).float() + 0.5 + jx.reshape(-1)[flat]))
                f2 = torch.minimum(f2, torch.maximum(f1, d))
                f1 = torch.minimum(f1, d)
        out[r0:r0 + rows.shape[0]] = f2 - f1
    return out
