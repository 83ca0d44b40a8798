"""UV baking of shape maps: the mesh's geometry written into its UV layout, texel by texel.

AvatarMe's networks see the shape through maps in the texture's UV layout:

* ``position``: object-space position of the surface point under each texel (metres);
* ``normals_object`` (N_O): the shape normals in object space (interpolated vertex normals);
* ``normals_tangent`` (N_T): the same normals expressed in a tangent frame (T, B, N);
* ``depth`` (D_O): how far forward the point is, in [0, 1].

The tangent frame comes from a *smoothed* copy of the mesh. Why: the specular-normal network takes
N_T and adds fine detail. If the frame used the mesh's own normal, N_T would be (0, 0, 1) everywhere
and carry no shape at all. Against a Laplacian-smoothed base surface (same topology, so same UVs;
see :func:`smooth_vertices`), N_T holds the mid-frequency shape - nose, lips, eye sockets - and the
networks' fine detail lives in the same frame.

Frame conventions (right-handed, +Z out of the surface, like OpenGL-style normal maps):

* N: unit normal of the smoothed surface;
* T: the direction of increasing u (dP/du), projected onto the tangent plane (Gram-Schmidt);
* B = N x T. Where the chart is not mirrored, B points towards *decreasing* v, i.e. *up* the map
  (v runs down like image rows), so a normal map's green channel means "up the texture".

A tangent-space vector ``(x, y, z)`` is the object-space vector ``x T + y B + z N``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatarme_edu.geometry.mesh import Mesh, vertex_normals, weld_index
from avatarme_edu.geometry.raster import Fragments, interpolate, rasterize_uv
from avatarme_edu.imaging import check_map, unit_vectors

DEFAULT_SMOOTH_ITERATIONS = 4
SMOOTH_SCALE = 0.02  # metres averaged over by each smoothing step (a nose is ~3 cm wide)


@dataclass
class ShapeMaps:
    """Shape maps in one shared UV layout; every map is ``(C, H, W)`` float32 and zero outside ``mask``."""

    position: torch.Tensor  # (3, H, W) object-space position, metres
    normals_object: torch.Tensor  # (3, H, W) N_O, unit shape normals, object space
    tangent: torch.Tensor  # (3, H, W) T of the smoothed base surface
    bitangent: torch.Tensor  # (3, H, W) B = N x T
    base_normal: torch.Tensor  # (3, H, W) N of the smoothed base surface
    normals_tangent: torch.Tensor  # (3, H, W) N_T = N_O in (T, B, N)
    depth: torch.Tensor  # (1, H, W) D_O in [0, 1], 1 = furthest forward (+Z); see bake_shape_maps
    mask: torch.Tensor  # (H, W) bool, texels covered by the UV layout

    @property
    def hw(self) -> tuple[int, int]:
        return (int(self.mask.shape[0]), int(self.mask.shape[1]))

    def to(self, device) -> "ShapeMaps":
        return ShapeMaps(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def bake_shape_maps(mesh: Mesh, hw: tuple[int, int],
                    smooth_iterations: int = DEFAULT_SMOOTH_ITERATIONS, *,
                    smooth_scale: float = SMOOTH_SCALE,
                    fragments: Fragments | None = None) -> ShapeMaps:
    """Bake the shape maps of ``mesh`` at UV size ``hw = (H, W)``.

    The base surface of the tangent frame is ``mesh`` after ``smooth_iterations`` heat-diffusion
    steps of ``smooth_scale`` metres each (:func:`smooth_vertices`); together they blur over roughly
    ``smooth_scale * sqrt(2 * smooth_iterations)`` (~6 cm by default), so the nose, lips and eye
    sockets stay in N_T while the overall head shape goes into the frame. 0 iterations gives the mesh
    itself, and then N_T = (0, 0, 1) everywhere. ``fragments``: a :func:`rasterize_uv` result for
    this mesh and ``hw``, to reuse.

    Depth D_O: the object-space z coordinate (towards the face's viewing direction +Z), scaled over
    the covered texels to [0, 1]: 1 at the frontmost point (nose tip), 0 at the backmost.
    """
    if int(smooth_iterations) != smooth_iterations or smooth_iterations < 0:
        raise ValueError(f"smooth_iterations must be a non-negative integer, got {smooth_iterations}")
    if fragments is None:
        fragments = rasterize_uv(mesh, hw)
    elif fragments.depth is not None or tuple(fragments.hw) != tuple(hw):
        raise ValueError(f"fragments must come from rasterize_uv at hw={tuple(hw)}")
    mask = fragments.mask
    verts, faces = mesh.vertices.detach().float(), mesh.faces
    keep = mask[None].to(verts.dtype)

    position = interpolate(fragments, verts, faces)
    normals_object = unit_vectors(interpolate(fragments, vertex_normals(verts, faces), faces)) * keep

    base = smooth_vertices(verts, faces, int(smooth_iterations), smooth_scale)
    base_normal = unit_vectors(interpolate(fragments, vertex_normals(base, faces), faces))
    dp_du = interpolate(fragments, vertex_tangents(base, faces, mesh.uvs), faces)
    # Gram-Schmidt: keep the part of dP/du that lies in the tangent plane.
    tangent = dp_du - (dp_du * base_normal).sum(0, keepdim=True) * base_normal
    # Where u does not move the surface (a collapsed UV edge), any tangent keeps the frame valid.
    fallback = torch.linalg.cross(base_normal, _axis_least_aligned(base_normal), dim=0)
    weak = tangent.norm(dim=0, keepdim=True) < 1e-6 * dp_du.norm(dim=0, keepdim=True).amax().clamp_min(1e-30)
    tangent = unit_vectors(torch.where(weak, fallback, tangent)) * keep
    base_normal = base_normal * keep
    bitangent = torch.linalg.cross(base_normal, tangent, dim=0)

    maps = ShapeMaps(position, normals_object, tangent, bitangent, base_normal,
                     torch.zeros_like(position), _depth(position[2:3], mask), mask)
    maps.normals_tangent = object_to_tangent(normals_object, maps)
    return maps


def object_to_tangent(normals_object: torch.Tensor, maps: ShapeMaps) -> torch.Tensor:
    """``(3, H, W)`` object-space vectors -> the same vectors in each texel's (T, B, N) frame.

    The frame is orthonormal, so this is three dot products; zero outside ``maps.mask``.
    """
    check_map("normals_object", normals_object, 3, maps.hw)
    out = torch.stack([(normals_object * maps.tangent).sum(0),
                       (normals_object * maps.bitangent).sum(0),
                       (normals_object * maps.base_normal).sum(0)])
    return out * maps.mask.to(out.dtype)


def tangent_to_object(normals_tangent: torch.Tensor, maps: ShapeMaps) -> torch.Tensor:
    """``(3, H, W)`` tangent-space vectors ``(x, y, z)`` -> object space ``x T + y B + z N``.

    The inverse of :func:`object_to_tangent` (the frame is orthonormal); zero outside ``maps.mask``.
    """
    check_map("normals_tangent", normals_tangent, 3, maps.hw)
    out = (normals_tangent[0:1] * maps.tangent + normals_tangent[1:2] * maps.bitangent
           + normals_tangent[2:3] * maps.base_normal)
    return out * maps.mask.to(out.dtype)


# ---------------------------------------------------------------------------------------------
# per-vertex helpers


def smooth_vertices(vertices: torch.Tensor, faces: torch.Tensor, iterations: int,
                    scale: float = SMOOTH_SCALE) -> torch.Tensor:
    """Laplacian smoothing by heat diffusion: ``iterations`` implicit steps of
    ``(M + scale^2 L) x_next = M x`` with the cotangent Laplace-Beltrami operator ``L`` and the lumped
    vertex areas ``M`` of the input surface. ``(V, 3)`` -> ``(V, 3)``.

    Each step averages the surface over roughly ``scale`` metres, whatever the triangle sizes.
    Why not the simple "move each vertex towards the mean of its neighbours" (umbrella) rule: its
    reach is counted in *edges*, so on an unevenly meshed surface it drags vertices sideways and
    smooths dense regions less than sparse ones. On a UV sphere that bends the base normals by
    several degrees; the cotangent operator keeps a sphere a (slightly smaller) sphere. Implicit
    steps are stable for any ``scale``.

    Seam duplicates are welded first (both copies move together and the surface stays closed);
    vertices on the mesh boundary (e.g. an open neck) stay put. Negative cotangent weights (obtuse
    triangles) are clamped to zero so the smoothing never overshoots. The sparse solve runs on the
    CPU with SciPy (a one-off per mesh, tens of milliseconds); the result is returned on the input's
    device.
    """
    if int(iterations) != iterations or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations}")
    if not scale > 0:
        raise ValueError(f"scale must be a positive length in metres, got {scale}")
    if iterations == 0:
        return vertices.clone()
    import numpy as np
    import scipy.sparse as sparse
    from scipy.sparse.linalg import splu

    weld = weld_index(vertices)
    n = int(weld.max()) + 1
    x = torch.zeros(n, 3, dtype=torch.float64).index_copy_(0, weld.cpu(), vertices.detach().cpu().double())
    f = weld.cpu()[faces.cpu()]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]  # collapsed at welded poles
    a, b, c = x[f[:, 0]], x[f[:, 1]], x[f[:, 2]]
    double_area = torch.linalg.cross(b - a, c - a, dim=1).norm(dim=1)
    ok = double_area > 1e-30
    f, a, b, c, double_area = f[ok], a[ok], b[ok], c[ok], double_area[ok]

    # cot of the angle at each corner; it weighs the opposite edge: w_ij = (cot alpha + cot beta) / 2
    cot = torch.stack([((b - a) * (c - a)).sum(1), ((c - b) * (a - b)).sum(1), ((a - c) * (b - c)).sum(1)], 1)
    weight = (0.5 * cot / double_area[:, None]).clamp_min(0.0)
    i = torch.cat([f[:, 1], f[:, 2], f[:, 0]])  # edge opposite corner 0 is (1, 2), and so on
    j = torch.cat([f[:, 2], f[:, 0], f[:, 1]])
    w = torch.cat([weight[:, 0], weight[:, 1], weight[:, 2]]).numpy()
    adjacency = sparse.coo_matrix((np.concatenate([w, w]), (torch.cat([i, j]).numpy(), torch.cat([j, i]).numpy())),
                                  shape=(n, n)).tocsr()  # duplicates (the two faces of an edge) are summed
    laplacian = sparse.diags(np.asarray(adjacency.sum(1)).ravel()) - adjacency
    mass = np.bincount(f.reshape(-1).numpy(), np.repeat(double_area.numpy() / 6.0, 3), minlength=n)  # area / 3

    # Boundary vertices (on an edge used by one face) and stray vertices stay where they are.
    uses = sparse.coo_matrix((np.ones(len(i)), (torch.minimum(i, j).numpy(), torch.maximum(i, j).numpy())),
                             shape=(n, n)).tocsr().tocoo()  # faces per edge
    pinned = np.zeros(n, dtype=bool)
    pinned[uses.row[uses.data == 1]] = True
    pinned[uses.col[uses.data == 1]] = True
    pinned |= mass <= 0
    free = sparse.diags((~pinned).astype(np.float64))
    system = free @ (sparse.diags(mass) + scale**2 * laplacian) + sparse.diags(pinned.astype(np.float64))
    # The matrix is diagonally dominant, so LU needs no pivoting, and its pattern is symmetric:
    # a minimum-degree ordering of A + A^T keeps the factors small (~4x faster than the defaults).
    solver = splu(system.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
    rhs_mass = np.where(pinned, 1.0, mass)[:, None]
    xs = x.numpy()
    for _ in range(int(iterations)):
        xs = solver.solve(rhs_mass * xs)
    out = torch.from_numpy(xs)[weld.cpu()]
    return out.to(device=vertices.device, dtype=vertices.dtype)


def vertex_tangents(vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor) -> torch.Tensor:
    """``(V, 3)`` per-vertex dP/du (not normalised), averaged over the faces around each vertex.

    On a face with edges ``e1, e2`` and UV edges ``(du1, dv1), (du2, dv2)``:
    ``dP/du = (e1 dv2 - e2 dv1) / det`` with ``det = du1 dv2 - du2 dv1``. Summing
    ``(e1 dv2 - e2 dv1) sign(det)`` weights each face by its UV area |det| and skips degenerate ones.
    Seam duplicates are *not* welded: each side of a seam has its own UV direction.
    """
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    ta, tb, tc = (uvs[faces[:, k]].to(vertices.dtype) for k in range(3))
    e1, e2 = b - a, c - a
    d1, d2 = tb - ta, tc - ta
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    dp_du = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * torch.sign(det)[:, None]
    out = torch.zeros_like(vertices)
    for k in range(3):
        out.index_add_(0, faces[:, k], dp_du)
    return out


def _axis_least_aligned(n: torch.Tensor) -> torch.Tensor:
    """Per texel, the coordinate axis most perpendicular to ``n`` ``(3, H, W)``."""
    return F.one_hot(n.abs().argmin(0), 3).permute(2, 0, 1).to(n.dtype)


def _depth(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(1, H, W)`` z scaled over the masked texels to [0, 1] (1 = frontmost); zero outside."""
    if not mask.any():
        return torch.zeros_like(z)
    inside = z[0][mask]
    lo, hi = inside.min(), inside.max()
    d = (z - lo) / (hi - lo).clamp_min(1e-12)
    return d.clamp(0, 1) * mask.to(z.dtype)
