"""Rasterisation: which triangle covers each pixel (or UV texel), and where inside it.

The same small rasteriser serves two purposes:

* :func:`rasterize_uv` draws the mesh *in its UV layout*. Each texel learns which triangle it lies
  in and its barycentric weights, so any per-vertex quantity (position, normal...) can be baked into
  a map with :func:`interpolate`.
* :func:`rasterize_image` draws the mesh *through a camera* with a depth buffer (the nearest surface
  wins), for rendering and fitting.

How it works (the way a GPU does it, written with tensors):

1. Vertex positions in pixel units are snapped to a fixed-point grid of 1/256 pixel, so the "is this
   pixel centre inside?" test is done with exact integer arithmetic.
2. For every triangle, the pixel centres inside its bounding box are enumerated as (triangle, pixel)
   pairs. Pairs are processed in chunks of bounded size, so memory stays bounded even for a
   6144x4096 map (or one huge triangle).
3. A pixel centre is inside when the three *edge functions* agree in sign. A centre that lies exactly
   on an edge shared by two triangles is given to one of them by the *top-left rule*, so a closed
   mesh has no cracks and no double coverage.
4. Each covered pixel keeps the triangle with the smallest key: depth then triangle index for images
   (z-buffer), the triangle index alone for UV layouts (which should not overlap).
5. Barycentric weights are computed once for the winners, in floating point from the unsnapped
   positions, so they are differentiable with respect to vertex positions. In images they are
   *perspective-correct*: weights interpolate linearly on the 3D triangle, not on its 2D shadow.

No near-plane clipping: triangles with a vertex behind (or almost at) the camera are dropped, which
is fine for a head viewed from outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from avatarme_edu.geometry.mesh import Mesh
from avatarme_edu.imaging import check_hw

if TYPE_CHECKING:  # the camera module is only needed for type hints here
    from avatarme_edu.geometry.camera import Camera

SUBPIXEL_BITS = 8  # fixed-point precision of vertex positions: 1/256 pixel, as in GPU rasterisers
_ONE = 1 << SUBPIXEL_BITS
_HALF = _ONE // 2
_GUARD_PIXELS = 1 << 20  # triangles reaching further off-screen are dropped (keeps int64 products exact)
_NEAR = 1e-6  # metres; vertices closer to the camera plane than this drop their triangle
_EMPTY = torch.iinfo(torch.int64).max
DEFAULT_CHUNK = 1 << 21  # (triangle, pixel) pairs per chunk: ~0.3 GB of temporaries


@dataclass
class Fragments:
    """The result of rasterisation: for each pixel / texel, the covering triangle and where in it.

    ``face_index``: ``(H, W)`` int64, -1 where nothing covers the pixel.
    ``barycentric``: ``(H, W, 3)`` float32 weights of the face's three vertices (sum to 1; zero
    where empty). Perspective-correct for images.
    ``depth``: ``(H, W)`` float32 camera-space depth in metres (image rasterisation only), ``inf``
    where empty; ``None`` for UV rasterisation.
    """

    face_index: torch.Tensor
    barycentric: torch.Tensor
    depth: torch.Tensor | None = None

    @property
    def mask(self) -> torch.Tensor:
        """``(H, W)`` bool, True where a triangle covers the pixel."""
        return self.face_index >= 0

    @property
    def hw(self) -> tuple[int, int]:
        return (int(self.face_index.shape[0]), int(self.face_index.shape[1]))


# ---------------------------------------------------------------------------------------------
# public functions


def rasterize_uv(mesh: Mesh, hw: tuple[int, int], chunk: int = DEFAULT_CHUNK) -> Fragments:
    """Rasterise ``mesh`` in its UV layout into an ``(H, W)`` grid of texels.

    Texel ``(row, col)`` samples the UV point ``((col + 0.5) / W, (row + 0.5) / H)``. Runs on the
    device of ``mesh``; ``chunk`` bounds the number of (triangle, texel) pairs held at once.
    """
    h, w = check_hw(hw)
    _check_chunk(chunk)
    scale = torch.tensor([w, h], dtype=mesh.uvs.dtype, device=mesh.uvs.device)
    xy = (mesh.uvs * scale)[mesh.faces]  # (F, 3, 2) texel units, v down like rows
    face_index = _cover(xy.detach(), None, (h, w), chunk)
    bary, _ = _barycentrics(face_index, xy, None, chunk)
    return Fragments(face_index, bary, None)


def rasterize_image(mesh: Mesh, camera: "Camera", chunk: int = DEFAULT_CHUNK) -> Fragments:
    """Rasterise ``mesh`` through ``camera`` with a depth buffer: at each pixel the nearest surface wins.

    Both faces of a triangle are drawn (no back-face culling); on a closed mesh the z-buffer hides
    the back. Barycentrics and depth are perspective-correct and differentiable with respect to
    ``mesh.vertices`` (the choice of covering triangle is not).
    """
    _check_chunk(chunk)
    xy, z = camera.project(mesh.vertices)
    tri_xy, tri_z = xy[mesh.faces], z[mesh.faces]  # (F, 3, 2), (F, 3)
    face_index = _cover(tri_xy.detach(), tri_z.detach(), camera.hw, chunk)
    bary, depth = _barycentrics(face_index, tri_xy, tri_z, chunk)
    return Fragments(face_index, bary, depth)


def interpolate(fragments: Fragments, attributes: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex ``attributes`` ``(V, C)`` over the fragments -> ``(C, H, W)``.

    Each covered pixel gets ``sum_k barycentric[k] * attributes[faces[face_index, k]]``; uncovered
    pixels get zeros. Differentiable with respect to ``attributes`` and the barycentrics.
    """
    if attributes.ndim != 2:
        raise ValueError(f"attributes must be (V, C), got {tuple(attributes.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    h, w = fragments.hw
    face = fragments.face_index.reshape(-1)
    mask = face >= 0
    if mask.any() and int(face.max()) >= faces.shape[0]:
        raise ValueError(f"fragments refer to face {int(face.max())} but faces has only {faces.shape[0]} rows")
    faces = faces.to(face.device)
    attributes = attributes.to(face.device)
    if mask.any() and int(faces.max()) >= attributes.shape[0]:
        raise ValueError(f"faces refer to vertex {int(faces.max())} but attributes has {attributes.shape[0]} rows")
    bary = fragments.barycentric.reshape(-1, 3).to(attributes.dtype)
    parts = []
    for s in range(0, face.numel(), DEFAULT_CHUNK):  # chunks keep 6144x4096 maps within memory
        f, m = face[s:s + DEFAULT_CHUNK], mask[s:s + DEFAULT_CHUNK]
        corner = faces[f.clamp_min(0)]  # (P, 3) vertex ids; face 0 stands in for empty pixels
        lam = bary[s:s + DEFAULT_CHUNK]
        out = (lam[:, 0:1] * attributes[corner[:, 0]] + lam[:, 1:2] * attributes[corner[:, 1]]
               + lam[:, 2:3] * attributes[corner[:, 2]])
        parts.append(torch.where(m[:, None], out, torch.zeros_like(out)))
    out = torch.cat(parts) if parts else bary.new_zeros(0, attributes.shape[1])
    return out.transpose(0, 1).reshape(-1, h, w)


def dilate(map: torch.Tensor, mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Pad a UV map beyond its charts: fill up to ``pixels`` texels outside ``mask`` from valid ones.

    ``map``: ``(C, H, W)`` (or ``(N, C, H, W)``); ``mask``: ``(H, W)`` bool. Each step grows the
    valid region by one texel (8-neighbourhood), giving every new texel the mean of its valid
    neighbours, so new texels carry the values of the chart border next to them. Texels inside
    ``mask`` and those further than ``pixels`` away are returned unchanged. Why: bilinear lookups
    and mip-maps near a UV seam read texels just outside the chart; without padding they would
    bleed the background colour into the surface.
    """
    if map.ndim not in (3, 4):
        raise ValueError(f"map must be (C, H, W) or (N, C, H, W), got {tuple(map.shape)}")
    if mask.shape != map.shape[-2:]:
        raise ValueError(f"mask must be (H, W) = {tuple(map.shape[-2:])}, got {tuple(mask.shape)}")
    if int(pixels) != pixels or pixels < 0:
        raise ValueError(f"pixels must be a non-negative integer, got {pixels}")
    x = map[None] if map.ndim == 3 else map
    valid = mask.to(device=x.device, dtype=torch.bool)[None, None]
    out = torch.where(valid, x, torch.zeros_like(x))
    for _ in range(int(pixels)):
        weight = valid.to(x.dtype)
        # sum of valid neighbours / count of valid neighbours (the 1/9 of avg_pool cancels)
        total = F.avg_pool2d(out * weight, 3, stride=1, padding=1)
        count = F.avg_pool2d(weight, 3, stride=1, padding=1)
        grow = (count > 0) & ~valid
        if not grow.any():
            break
        out = torch.where(grow, total / count.clamp_min(1e-12), out)
        valid = valid | grow
    out = torch.where(valid, out, x)  # beyond the padding: leave the input as it was
    return out[0] if map.ndim == 3 else out


# ---------------------------------------------------------------------------------------------
# the rasteriser proper


def _cover(xy: torch.Tensor, z: torch.Tensor | None, hw: tuple[int, int], chunk: int) -> torch.Tensor:
    """Which face covers each pixel centre: ``(H, W)`` int64, -1 for none.

    ``xy``: ``(F, 3, 2)`` float pixel coordinates of each face's corners. ``z``: ``(F, 3)`` depths
    (then the nearest face wins) or ``None`` (then the lowest face index wins).
    """
    h, w = hw
    device = xy.device
    n_faces = xy.shape[0]
    if n_faces >= 2**31:
        raise ValueError("meshes with 2^31 or more faces are not supported")
    buffer = torch.full((h * w,), _EMPTY, dtype=torch.int64, device=device)
    if n_faces == 0:
        return buffer.view(h, w).fill_(-1)

    keep = torch.isfinite(xy).all(-1).all(-1) & (xy.abs() < _GUARD_PIXELS).all(-1).all(-1)
    if z is not None:
        keep &= (z > _NEAR).all(-1)
    p = torch.round(torch.where(keep[:, None, None], xy, torch.zeros_like(xy)).double() * _ONE).long()
    zz = z.float() if z is not None else None
    # Make every triangle "positive" (edge functions >= 0 inside) by swapping two corners of the
    # negative ones: UV charts may be mirrored, and image triangles may face away.
    area = _edge(p[:, 0], p[:, 1], p[:, 2])
    flip = area < 0
    order = torch.where(flip[:, None], torch.tensor([0, 2, 1], device=device), torch.tensor([0, 1, 2], device=device))
    p = torch.gather(p, 1, order[:, :, None].expand(-1, -1, 2))
    if zz is not None:
        zz = torch.gather(zz, 1, order)
    area = area.abs()
    keep &= area > 0  # degenerate (zero-area) triangles cover nothing

    # Bounding box of pixel centres: centre of column x is at (x + 0.5) pixels.
    lo, hi = p.min(1).values, p.max(1).values  # (F, 2)
    first = -torch.div(-(lo - _HALF), _ONE, rounding_mode="floor")  # ceil
    last = torch.div(hi - _HALF, _ONE, rounding_mode="floor")
    first = torch.maximum(first, torch.zeros_like(first))
    last = torch.minimum(last, torch.tensor([w - 1, h - 1], device=device))
    span = (last - first + 1).clamp_min(0)
    count = span[:, 0] * span[:, 1] * keep
    faces = torch.nonzero(count).squeeze(1)
    if faces.numel() == 0:
        return buffer.view(h, w).fill_(-1)
    p, first, width, count, area = p[faces], first[faces], span[faces, 0], count[faces], area[faces]
    zz = zz[faces] if zz is not None else None
    end = torch.cumsum(count, 0)
    start = end - count
    total = int(end[-1])
    # One row per triangle, gathered once per pair: where its box starts, its width, the first
    # pair's number, and its three edge functions as E = A col + B row + C (in pixel indices).
    edge_a, edge_b, edge_c = _edge_coefficients(p)
    info = torch.cat([first, width[:, None], start[:, None], edge_a, edge_b, edge_c], 1)  # (F', 13)

    for s in range(0, total, chunk):
        pair = torch.arange(s, min(s + chunk, total), device=device)
        t = torch.searchsorted(end, pair, right=True)  # which triangle each pair belongs to
        row_info = info[t]
        local = pair - row_info[:, 3]
        row = torch.div(local, row_info[:, 2], rounding_mode="floor")
        col = row_info[:, 0] + (local - row * row_info[:, 2])
        row = row + row_info[:, 1]
        e = row_info[:, 4:7] * col[:, None] + row_info[:, 7:10] * row[:, None] + row_info[:, 10:13]
        inside = (e >= 0).all(1)
        t, pixel = t[inside], (row * w + col)[inside]
        if zz is not None:
            # Perspective-correct depth: 1/z interpolates linearly in screen space.
            lam = e[inside].to(torch.float64) / area[t, None].to(torch.float64)
            depth = (1.0 / (lam / zz[t]).sum(-1)).float()
            # Positive float32 bit patterns sort like the floats, so (depth, face) packs into one
            # int64 key and a single scatter-min is the z-buffer (ties go to the lower face index).
            key = (depth.view(torch.int32).long() << 32) | faces[t]
        else:
            key = faces[t]
        buffer.scatter_reduce_(0, pixel, key, reduce="amin")

    hit = buffer != _EMPTY
    face_index = torch.where(hit, buffer & 0xFFFFFFFF, torch.full_like(buffer, -1))
    return face_index.view(h, w)


def _edge(a: torch.Tensor, b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Edge function: twice the signed area of (a, b, p); positive when p is on the inner side."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


def _edge_coefficients(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edge functions of positive triangles ``p`` ``(F, 3, 2)`` (fixed point) as integer planes.

    Edge k runs from corner k+1 to corner k+2. For the pixel centre of ``(row, col)``, at
    ``(col * ONE + HALF, row * ONE + HALF)`` in fixed point, ``E_k = A_k col + B_k row + C_k``, each
    ``(F, 3)`` int64. The top-left rule is folded into ``C``: with y down and E >= 0 inside, a "top"
    edge is horizontal going right and a "left" edge goes up. A centre exactly on such an edge is
    inside (E = 0 passes); on other edges it is not (C is lowered by 1), so a centre on an edge shared
    by two triangles is drawn exactly once.
    """
    s = p[:, [1, 2, 0]]
    d = p[:, [2, 0, 1]] - s
    a = -d[..., 1]  # E(P) = d.x (P.y - s.y) - d.y (P.x - s.x)
    b = d[..., 0]
    c = -(a * s[..., 0] + b * s[..., 1])
    top_left = (d[..., 1] < 0) | ((d[..., 1] == 0) & (d[..., 0] > 0))
    return a * _ONE, b * _ONE, c + (a + b) * _HALF - (~top_left).long()


def _barycentrics(face_index: torch.Tensor, xy: torch.Tensor, z: torch.Tensor | None,
                  chunk: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Barycentric weights ``(H, W, 3)`` (and depth ``(H, W)`` when ``z`` is given) of the winners.

    Computed in floating point from the unsnapped corners, so gradients reach ``xy`` and ``z``.
    """
    h, w = face_index.shape
    device = face_index.device
    dtype = torch.float32
    flat = face_index.reshape(-1)
    covered = torch.nonzero(flat >= 0).squeeze(1)
    bary = torch.zeros(h * w, 3, dtype=dtype, device=device)
    depth = torch.full((h * w,), float("inf"), dtype=dtype, device=device) if z is not None else None
    # Per face, centre = a + l1 (b - a) + l2 (c - a) solves to l1, l2 = affine functions of
    # (centre - a); measuring from corner a keeps the float error small. Differentiable in xy.
    xy = xy.to(dtype)
    e1, e2 = xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0]
    den = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    den = torch.where(den == 0, torch.ones_like(den), den)  # degenerate faces never win a pixel
    coef = torch.stack([xy[:, 0, 0], xy[:, 0, 1], e2[:, 1] / den, -e2[:, 0] / den, -e1[:, 1] / den, e1[:, 0] / den], 1)
    if z is not None:
        coef = torch.cat([coef, 1.0 / z.to(dtype)], 1)  # (F, 9) with the corners' 1/depth
    for s in range(0, covered.numel(), chunk):
        pix = covered[s:s + chunk]
        k = coef[flat[pix]]
        dx = (pix % w).to(dtype) + 0.5 - k[:, 0]
        dy = torch.div(pix, w, rounding_mode="floor").to(dtype) + 0.5 - k[:, 1]
        l1 = k[:, 2] * dx + k[:, 3] * dy
        l2 = k[:, 4] * dx + k[:, 5] * dy
        lam = torch.stack([1.0 - l1 - l2, l1, l2], -1)
        if z is not None:
            # Screen-space weights -> weights on the 3D triangle: divide by corner depth, renormalise.
            q = lam * k[:, 6:9]
            inv_depth = q.sum(-1)
            lam = q / inv_depth[:, None]
            depth.index_put_((pix,), 1.0 / inv_depth)
        bary.index_put_((pix,), lam)  # autograd records the write
    return bary.view(h, w, 3), (depth.view(h, w) if depth is not None else None)


def _check_chunk(chunk: int) -> None:
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer number of pairs, got {chunk}")
