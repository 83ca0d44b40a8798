"""Draw an EduHead (or any Mesh) with matplotlib - no GPU renderer needed.

Lambert shading from smooth vertex normals (averaged per triangle), back faces culled, painter's
algorithm (matplotlib's depth sort) after a coarse z-buffer drops hidden triangles. Good enough to
see a head's shape in a notebook; the real renderer lives in :mod:`avatarme_edu.render`.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.collections import PolyCollection
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from avatarme_edu.geometry.mesh import Mesh

VIEWS = {"front": 0.0, "three_quarter": 35.0, "side": 90.0, "left": 90.0, "right": -90.0, "back": 180.0}


def plot_head(mesh: Mesh, ax=None, view: str | float = "front", colors=None, light=(0.4, 0.5, 1.0),
              elevation: float = 5.0):
    """Shade ``mesh`` and draw it into a matplotlib 3-D axis; returns the axis.

    ``view``: "front" (camera on +Z), "three_quarter" (35 deg towards the subject's left), "side",
    "right", "back", or an azimuth in degrees (0 = front, + turns the camera towards +X).
    ``colors``: optional ``(V, 3)`` RGB in [0, 1] (display-ready), averaged per triangle.
    ``light``: direction towards the light in camera coordinates (x right, y up, z towards the viewer).
    """
    if isinstance(view, str):
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)} or an azimuth in degrees")
        azimuth = VIEWS[view]
    else:
        azimuth = float(view)
    if ax is None:
        fig = plt.figure(figsize=(5, 5))
        ax = fig.add_subplot(projection="3d")
    v = mesh.vertices.detach().cpu().double().numpy()
    f = mesh.faces.detach().cpu().numpy()
    m64 = mesh.with_vertices(mesh.vertices.detach().cpu().double())
    n = m64.face_normals().numpy()
    vn = m64.vertex_normals().numpy()
    # camera frame: azimuth turns about +Y, elevation tilts down from above
    az, el = np.radians(azimuth), np.radians(elevation)
    view_dir = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])  # towards camera
    right = np.array([np.cos(az), 0.0, -np.sin(az)])
    up = np.cross(view_dir, right)
    lx, ly, lz = light
    light_dir = lx * right + ly * up + lz * view_dir
    light_dir /= np.linalg.norm(light_dir)
    keep = (n @ view_dir > 0.0) & _front_most(v, f, right, up, view_dir)
    # Gouraud-like: light the vertices (smooth normals), give each triangle the mean of its three
    vertex_shade = 0.15 + 0.85 * np.clip(vn @ light_dir, 0.0, 1.0)
    shade = vertex_shade[f[keep]].mean(1)
    if colors is None:
        base = np.array([0.85, 0.72, 0.62])[None]
    else:
        c = torch.as_tensor(colors).detach().cpu().double().numpy()
        base = c[f[keep]].mean(1)
    rgb = np.clip(base * shade[:, None], 0.0, 1.0)
    # matplotlib's 3-D axes have z up: plot (x, -z, y) so the head stands upright
    tri = v[f[keep]][..., [0, 2, 1]] * np.array([1.0, -1.0, 1.0])
    coll = Poly3DCollection(tri, facecolors=rgb, edgecolors=rgb, linewidths=0.5)  # edges hide seams
    ax.add_collection3d(coll)
    centre = v.mean(0)
    half = 0.5 * (v.max(0) - v.min(0)).max()
    c3 = np.array([centre[0], -centre[2], centre[1]])
    ax.set_xlim(c3[0] - half, c3[0] + half)
    ax.set_ylim(c3[1] - half, c3[1] + half)
    ax.set_zlim(c3[2] - half, c3[2] + half)
    ax.set_box_aspect((1, 1, 1), zoom=1.35)
    ax.view_init(elev=elevation, azim=-90.0 + azimuth)
    ax.set_proj_type("ortho")
    ax.set_axis_off()
    return ax


def plot_uv_layout(faces: torch.Tensor, uvs: torch.Tensor, weights: torch.Tensor | None = None, ax=None,
                   size_hw: tuple[int, int] = (384, 576), label: str = "face"):
    """Draw the UV triangles (v down, like the texture image) and shade a region's weights.

    ``faces`` (F, 3), ``uvs`` (V, 2), ``weights`` (V,) in [0, 1] (e.g. the ``face`` region).
    Axes are in texels of a ``size_hw`` map, so triangle sizes read directly in texels.
    """
    h, w = size_hw
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 6))
    uv = uvs.detach().cpu().double().numpy() * np.array([w, h])
    f = faces.detach().cpu().numpy()
    if weights is None:
        colours = np.full((len(f), 3), 0.92)
    else:
        wt = torch.as_tensor(weights).detach().cpu().double().numpy()[f].mean(1)[:, None]
        colours = (1 - wt) * np.array([0.92, 0.92, 0.92]) + wt * np.array([0.95, 0.55, 0.45])
    ax.add_collection(PolyCollection(uv[f], facecolors=colours, edgecolors=(0.3, 0.3, 0.3, 0.35), linewidths=0.15))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)  # v down, like image rows
    ax.set_aspect("equal")
    ax.set_xlabel("u (texels)")
    ax.set_ylabel("v (texels)")
    if weights is not None:
        ax.set_title(f"UV layout, {label} region shaded")
    return ax


def _front_most(v: np.ndarray, f: np.ndarray, right, up, view_dir, cells: int = 400, tol: float = 0.012) -> np.ndarray:
    """Faces not hidden behind others: a coarse z-buffer of the vertices and face centres.

    matplotlib draws polygons in depth order of their centres, which goes wrong where small
    triangles lie behind large ones (under the chin, behind the ears); hidden faces are dropped.
    """
    cam = np.stack([v @ right, v @ up, v @ view_dir], -1)  # depth grows towards the camera
    cen = cam[f].mean(1)
    pts = np.concatenate([cam, cen])
    lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
    scale = (cells - 1) / max(float((hi - lo).max()), 1e-9)

    def cell(p):
        ij = np.floor((p[:, :2] - lo) * scale).astype(int)
        return ij[:, 0] * cells + ij[:, 1]

    zbuf = np.full(cells * cells, -np.inf)
    np.maximum.at(zbuf, cell(pts), pts[:, 2])
    return cen[:, 2] >= zbuf[cell(cen)] - tol

