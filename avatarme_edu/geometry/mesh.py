"""Triangle meshes with one UV coordinate per vertex, and OBJ input/output.

Conventions (docs/design.md section 2):

* ``vertices``: ``(V, 3)`` float32, metres, head centred near the origin, +Y up, the face looks
  towards +Z (so a camera on +Z sees the face, OpenGL style).
* ``faces``: ``(F, 3)`` int64, counter-clockwise seen from outside, so cross products point out.
* ``uvs``: ``(V, 2)`` float32 in [0, 1]; ``u`` runs along the map width, ``v`` runs *down* the
  map like image rows, so texel ``(row, col)`` of an ``(H, W)`` map has its centre at
  ``u = (col + 0.5) / W``, ``v = (row + 0.5) / H``.

One UV per vertex keeps every consumer simple (rasterisers, pythreejs buffers, glTF). Where the UV
layout has a seam, the seam's vertices are duplicated; :func:`vertex_normals` welds duplicates by
position so shading stays smooth across the seam.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch


@dataclass
class Mesh:
    """A triangle mesh with per-vertex UVs. See the module docstring for conventions."""

    vertices: torch.Tensor  # (V, 3) float32
    faces: torch.Tensor  # (F, 3) int64
    uvs: torch.Tensor  # (V, 2) float32

    def __post_init__(self):
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"vertices must be (V, 3), got {tuple(self.vertices.shape)}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3), got {tuple(self.faces.shape)}")
        if self.uvs.shape != (self.vertices.shape[0], 2):
            raise ValueError(f"uvs must be (V, 2) = ({self.vertices.shape[0]}, 2), got {tuple(self.uvs.shape)}")

    @property
    def n_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    def with_vertices(self, vertices: torch.Tensor) -> "Mesh":
        """The same topology and UVs with new positions (e.g. another identity or expression)."""
        return replace(self, vertices=vertices)

    def to(self, device) -> "Mesh":
        return Mesh(self.vertices.to(device), self.faces.to(device), self.uvs.to(device))

    def face_normals(self) -> torch.Tensor:
        """``(F, 3)`` unit normals of the faces."""
        return torch.nn.functional.normalize(_face_cross(self.vertices, self.faces), dim=-1)

    def vertex_normals(self) -> torch.Tensor:
        """``(V, 3)`` unit normals: area-weighted face normals, welded across UV seams."""
        return vertex_normals(self.vertices, self.faces)


def _face_cross(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return torch.linalg.cross(b - a, c - a, dim=-1)  # length = 2 x area, so sums are area-weighted


def weld_index(vertices: torch.Tensor) -> torch.Tensor:
    """``(V,)`` int64: one id per distinct position, shared by seam duplicates."""
    _, inverse = torch.unique(vertices, dim=0, return_inverse=True)
    return inverse


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals ``(V, 3)``; vertices at the same position share one normal."""
    weld = weld_index(vertices)
    cross = _face_cross(vertices, faces)
    acc = torch.zeros(int(weld.max()) + 1, 3, dtype=vertices.dtype, device=vertices.device)
    for k in range(3):
        acc.index_add_(0, weld[faces[:, k]], cross)
    return torch.nn.functional.normalize(acc[weld], dim=-1)


def write_obj(path: str | Path, mesh: Mesh, material: str | None = None, normals: bool = True) -> Path:
    """Write ``mesh`` as Wavefront OBJ with UVs (and normals).

    OBJ's ``vt`` has v pointing *up*, so ``1 - v`` is written. ``material`` names an ``.mtl`` file
    written next to it (by :mod:`avatarme_edu.render.export`), used with material ``skin``.
    The file is written to a temporary name and renamed, so no half-written OBJ is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    v = mesh.vertices.detach().cpu().double().numpy()
    uv = mesh.uvs.detach().cpu().double().numpy()
    f = mesh.faces.detach().cpu().numpy() + 1
    lines = ["# avatarme-edu mesh", f"# {len(v)} vertices, {len(f)} faces"]
    if material:
        lines += [f"mtllib {material}", "usemtl skin"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    lines += [f"vt {s:.6f} {1.0 - t:.6f}" for s, t in uv]
    if normals:
        n = vertex_normals(mesh.vertices.detach().cpu(), mesh.faces.cpu()).double().numpy()
        lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in n]
        lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}" for a, b, c in f]
    else:
        lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in f]
    from avatarme_edu.atomic import write_text  # the one atomic writer

    return write_text(path, "\n".join(lines) + "\n")


def read_obj(path: str | Path) -> Mesh:
    """Read an OBJ written by :func:`write_obj` (one ``vt`` per ``v``; ``f`` with ``v/vt[/vn]``)."""
    verts, uvs, faces = [], [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:4]])
        elif parts[0] == "vt":
            uvs.append([float(parts[1]), 1.0 - float(parts[2])])
        elif parts[0] == "f":
            idx = [p.split("/") for p in parts[1:4]]
            if any(len(i) > 1 and i[1] and i[0] != i[1] for i in idx):
                raise ValueError(f"{path}: faces with separate position and UV indices are not supported")
            faces.append([int(i[0]) - 1 for i in idx])
    if len(uvs) != len(verts):
        raise ValueError(f"{path}: expected one 'vt' per 'v', found {len(uvs)} and {len(verts)}")
    return Mesh(torch.tensor(verts, dtype=torch.float32), torch.tensor(faces, dtype=torch.int64),
                torch.tensor(uvs, dtype=torch.float32))


def uv_sphere(rows: int = 32, cols: int = 48, radius: float = 0.1) -> Mesh:
    """A UV sphere in this module's conventions: a small stand-in mesh for tests and examples.

    The seam is at the back (-Z); ``u`` runs around the sphere, ``v`` from the top pole down.
    """
    v = (torch.arange(rows + 1, dtype=torch.float32) / rows)
    u = (torch.arange(cols + 1, dtype=torch.float32) / cols)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    theta = vv * torch.pi  # polar angle from +Y
    phi = (uu - 0.5) * 2 * torch.pi  # azimuth, 0 at +Z (the front)
    ring = torch.sin(theta)
    ring[0], ring[-1] = 0.0, 0.0  # exact poles, so pole duplicates weld
    pos = torch.stack([ring * torch.sin(phi), torch.cos(theta), ring * torch.cos(phi)], -1)
    pos[:, -1] = pos[:, 0]  # the seam's duplicates share exact positions
    vertices = (pos * radius).reshape(-1, 3)
    uvs = torch.stack([uu, vv], -1).reshape(-1, 2)
    idx = torch.arange((rows + 1) * (cols + 1)).reshape(rows + 1, cols + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    # counter-clockwise seen from outside: a (top-left), c (bottom-left), d (bottom-right), and a, d, b.
    # The top row's (a, d, b) and the bottom row's (a, c, d) would be degenerate at the poles: skip them.
    lower = torch.stack([a, c, d], -1)[:-1].reshape(-1, 3)
    upper = torch.stack([a, d, b], -1)[1:].reshape(-1, 3)
    return Mesh(vertices, torch.cat([lower, upper]), uvs)
