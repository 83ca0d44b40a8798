"""EduHead part 2: the fixed template - one grid of ray directions, triangles and UVs for every head.

Every EduHead is the same grid of ``(GRID_ROWS + 1) x (GRID_COLS + 1)`` vertices. Vertex ``(r, c)``
has the UV coordinate ``(u, v) = (c / GRID_COLS, r / GRID_ROWS)`` and a direction seen from the head
centre, ``azimuth(u)`` around the vertical axis and ``elevation(v)`` above the horizon:

* ``u`` runs around the head: 0 and 1 meet at the back of the head (the seam nobody looks at), 0.5 is
  the middle of the face, ``u > 0.5`` the subject's left (+X) - so the UV map looks like the face seen
  from the front;
* ``v`` runs down: 0 is the crown, 1 the bottom of the neck stump. Both are poles: the whole row
  is one point, duplicated per column, so the mesh is closed (the neck has a flat bottom).

Both angles go through a monotone warp that gives the face more texels: the texel density per
degree is 3x that of the back of the head inside the face window (azimuth within +-70 deg,
elevation from under the chin to the hairline) and 5x in its middle (eyes, nose, mouth); the ears
get 2.5x. The face window takes 62 % of ``u`` and 84 % of ``v``; the ``face`` region of
:mod:`~avatarme_edu.geometry.regions` covers 53 % of the texels of the map. On the face, grid
vertices are about 1.5 mm apart (2 mm median edge), on the back of the head about 6 mm. A
576x384 map gives each triangle about 3.9 texels.

The mapping from angles to UV is monotone in each coordinate, so UV triangles never fold. Only
half of each cell in the two pole rows is used (the other triangle would join two copies of the
pole), so the triangles cover 99.2 % of the map.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

GRID_ROWS = 128  # cells down the head (v); 129 vertex rows
GRID_COLS = 224  # cells around the head (u); 225 vertex columns, the last duplicates the first (seam)

# Texel density per degree, relative to the back of the head (1): windows in azimuth / elevation
# (degrees, seen from RAY_CENTRE), each with its gain; the density is the largest gain that applies.
AZIMUTH_WINDOWS = (
    ((-70.0, 70.0), 3.0, 12.0),  # the face, ear to ear
    ((-40.0, 40.0), 5.0, 12.0),  # its middle: eyes, nose, mouth
    ((80.0, 112.0), 2.5, 8.0),  # the left ear
    ((-112.0, -80.0), 2.5, 8.0),  # the right ear
)
ELEVATION_WINDOWS = (
    ((-62.0, 48.0), 3.0, 12.0),  # under the chin .. hairline
    ((-50.0, 22.0), 5.0, 10.0),  # chin .. brows
)
ELEVATION_TOP_DEG = 90.0  # crown (a pole: the top row is one point, duplicated)
ELEVATION_BOTTOM_DEG = -90.0  # the flat bottom of the neck stump (a pole, like the crown)
RAY_CENTRE = (0.0, -0.015, 0.0)  # the head centre all rays start from (m)


def _smooth_window(x: np.ndarray, lo: float, hi: float, soft: float) -> np.ndarray:
    """1 inside [lo, hi], 0 outside, with smooth (cosine) shoulders ``soft`` wide."""
    def ramp(t):
        t = np.clip(t, 0.0, 1.0)
        return 0.5 - 0.5 * np.cos(np.pi * t)
    return ramp((x - (lo - soft)) / soft) * ramp(((hi + soft) - x) / soft)


@lru_cache(maxsize=2)
def _warp_table(axis: str, n: int = 36001):
    """Angles (deg) and their normalised cumulative texel density: a monotone map angle -> [0, 1]."""
    if axis == "azimuth":
        angles, windows = np.linspace(-180.0, 180.0, n), AZIMUTH_WINDOWS
    else:
        angles, windows = np.linspace(ELEVATION_BOTTOM_DEG, ELEVATION_TOP_DEG, n), ELEVATION_WINDOWS
    density = np.ones_like(angles)
    for (lo, hi), gain, soft in windows:
        density = np.maximum(density, 1.0 + (gain - 1.0) * _smooth_window(angles, lo, hi, soft))
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(angles))])
    return angles, cum / cum[-1]


def azimuth_of_u(u: np.ndarray) -> np.ndarray:
    """Azimuth in degrees (0 = the face, +90 = the subject's left, +-180 = back) for ``u`` in [0, 1]."""
    ang, cum = _warp_table("azimuth")
    return np.interp(u, cum, ang)


def u_of_azimuth(az_deg: np.ndarray) -> np.ndarray:
    ang, cum = _warp_table("azimuth")
    return np.interp(az_deg, ang, cum)


def elevation_of_v(v: np.ndarray) -> np.ndarray:
    """Elevation in degrees (90 = crown, negative below the horizon) for ``v`` in [0, 1] (down)."""
    ang, cum = _warp_table("elevation")
    return np.interp(1.0 - v, cum, ang)


def v_of_elevation(el_deg: np.ndarray) -> np.ndarray:
    ang, cum = _warp_table("elevation")
    return 1.0 - np.interp(el_deg, ang, cum)


def grid_index(row: int, col: int) -> int:
    """Vertex id of grid vertex ``(row, col)``."""
    return row * (GRID_COLS + 1) + col


@lru_cache(maxsize=1)
def _template_numpy():
    rows, cols = GRID_ROWS, GRID_COLS
    v = np.arange(rows + 1) / rows
    u = np.arange(cols + 1) / cols
    el = np.radians(elevation_of_v(v))
    az = np.radians(azimuth_of_u(u))
    el[0], el[-1] = math.pi / 2, -math.pi / 2  # exact poles
    ee, aa = np.meshgrid(el, az, indexing="ij")
    dirs = np.stack([np.cos(ee) * np.sin(aa), np.sin(ee), np.cos(ee) * np.cos(aa)], -1)
    dirs[0] = [0.0, 1.0, 0.0]  # every top-row duplicate is the same crown direction
    dirs[-1] = [0.0, -1.0, 0.0]  # and every bottom-row duplicate the same neck-bottom direction
    dirs[:, -1] = dirs[:, 0]  # the seam's duplicates share exact directions
    vv, uu = np.meshgrid(v, u, indexing="ij")
    uvs = np.stack([uu, vv], -1)

    idx = np.arange((rows + 1) * (cols + 1)).reshape(rows + 1, cols + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    # Counter-clockwise seen from outside (see module docstring of mesh.py). At the poles one
    # triangle of each cell would join two copies of the pole point: degenerate, so left out.
    lower = np.stack([a, c, d], -1)[:-1].reshape(-1, 3)
    upper = np.stack([a, d, b], -1)[1:].reshape(-1, 3)
    faces = np.concatenate([lower, upper])

    # weld: index of the first copy of every vertex (crown duplicates -> (0, 0), seam -> column 0)
    weld = idx.copy()
    weld[:, -1] = idx[:, 0]
    weld[0, :] = idx[0, 0]
    weld[-1, :] = idx[-1, 0]
    return dirs.reshape(-1, 3), uvs.reshape(-1, 2), faces, weld.reshape(-1)


def template_directions(device=None) -> torch.Tensor:
    """``(V, 3)`` float32 unit directions of the template rays (before any identity warp)."""
    return torch.tensor(_template_numpy()[0], dtype=torch.float32, device=device)


def template_uvs(device=None) -> torch.Tensor:
    """``(V, 2)`` float32 UVs in [0, 1], v down (mesh.py conventions)."""
    return torch.tensor(_template_numpy()[1], dtype=torch.float32, device=device)


def template_faces(device=None) -> torch.Tensor:
    """``(F, 3)`` int64 triangles, counter-clockwise seen from outside."""
    return torch.tensor(_template_numpy()[2], dtype=torch.int64, device=device)


def template_weld(device=None) -> torch.Tensor:
    """``(V,)`` int64: for each vertex the id of its first copy (seam and crown duplicates share one)."""
    return torch.tensor(_template_numpy()[3], dtype=torch.int64, device=device)


def n_vertices() -> int:
    return (GRID_ROWS + 1) * (GRID_COLS + 1)
