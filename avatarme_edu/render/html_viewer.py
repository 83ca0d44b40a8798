"""A self-contained HTML viewer: one file a student can e-mail, open offline and turn around.

The page (template: ``viewer_template.html`` next to this module) holds a small hand-written WebGL 1
renderer and all the data it needs, embedded as base64: vertex positions and UVs (float32),
triangle indices (uint32) and four PNG textures (diffuse albedo in sRGB, specular albedo, and the
specular and diffuse normals in OBJECT space). No network access, no three.js.

The viewer shades like the paper's renders: Lambert on the smooth diffuse normals N_D, normalised
Blinn-Phong with Schlick Fresnel on the detailed specular normals N_S, scaled by the specular albedo
(F0 = 0.056 A_S, the same mapping as :func:`avatarme_edu.render.export.export_glb`). Controls: drag
to orbit, wheel to zoom, sliders for the light's azimuth/elevation/intensity, checkboxes for the
diffuse and specular terms, and a menu to show each map on the surface.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from avatarme_edu.geometry.mesh import Mesh
from avatarme_edu.reflectance import ReflectanceMaps
from avatarme_edu.render.export import check_mesh_and_maps, png_bytes, viewer_textures

TEMPLATE = Path(__file__).with_name("viewer_template.html")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def viewer_data(mesh: Mesh, maps: ReflectanceMaps, shape=None, max_width: int | None = 2048) -> dict:
    """Everything the page embeds, as a JSON-ready dict of base64 strings and numbers."""
    check_mesh_and_maps(mesh, maps)
    tex = viewer_textures(mesh, maps, shape, max_width=max_width,
                          which=("diffuse", "specular", "specular_normals_object", "diffuse_normals_object"))
    v = mesh.vertices.detach().cpu().float().numpy()
    lo, hi = v.min(0), v.max(0)
    center = (lo + hi) / 2
    return {
        "n_vertices": int(v.shape[0]),
        "n_faces": int(mesh.n_faces),
        "positions": _b64(np.ascontiguousarray(v, dtype="<f4").tobytes()),
        "uvs": _b64(np.ascontiguousarray(mesh.uvs.detach().cpu().numpy(), dtype="<f4").tobytes()),
        "indices": _b64(np.ascontiguousarray(mesh.faces.detach().cpu().numpy(), dtype="<u4").tobytes()),
        "center": [float(x) for x in center],
        "radius": float(np.linalg.norm(v - center, axis=1).max()),
        "textures": {
            "diffuseAlbedo": _b64(png_bytes(tex["diffuse"])),
            "specularAlbedo": _b64(png_bytes(tex["specular"])),
            "specularNormals": _b64(png_bytes(tex["specular_normals_object"])),
            "diffuseNormals": _b64(png_bytes(tex["diffuse_normals_object"])),
        },
    }


def write_html_viewer(path: str | Path, mesh: Mesh, maps: ReflectanceMaps, title: str = "AvatarMe head",
                      shape=None, size: tuple[int, int] = (640, 480), max_width: int | None = 2048) -> Path:
    """Write a standalone HTML viewer of ``mesh`` with ``maps``; returns the path.

    ``size`` is the canvas ``(width, height)`` in pixels; ``max_width`` caps the texture width
    (paper-size 6144-texel maps would make a ~100 MB page); ``shape`` is the ShapeMaps the
    specular normals' tangent frame came from (baked from ``mesh`` if omitted).
    """
    width, height = (int(s) for s in size)
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise ValueError(f"size must be (width, height) with each in [16, 8192] pixels, got {size}")
    data = json.dumps(viewer_data(mesh, maps, shape, max_width), separators=(",", ":"))
    page = (TEMPLATE.read_text(encoding="utf-8")
            .replace("__TITLE__", html.escape(title))
            .replace("__WIDTH__", str(width)).replace("__HEIGHT__", str(height))
            .replace("__DATA__", data.replace("</", "<\\/")))  # JSON must not close the <script>
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from avatarme_edu.atomic import write_text  # the one atomic writer

    return write_text(path, page)
