"""Exports for other programs: Wavefront OBJ + MTL + PNG maps, and binary glTF 2.0 (``.glb``).

AvatarMe's promise is that its maps are *render-ready*: any renderer can use them. This module
writes them in the two formats that Blender, MeshLab, three.js, Babylon.js and game engines read.

Which PNG holds what (all share the mesh's UV layout; rows are image rows, ``v`` down):

* ``*_diffuse.png``  diffuse albedo A_D, 8-bit **sRGB** (viewers decode colour textures as sRGB);
* ``*_specular.png`` specular albedo A_S, 8-bit, **linear** grey (it is a strength, not a colour);
* ``*_normal.png``   specular normals N_S as an 8-bit tangent-space normal map in the **mesh's own
  tangent frame** (see below), ``rgb = n * 0.5 + 0.5``;
* ``raw/``           the four maps and the mask exactly as the pipeline holds them (16-bit normals,
  :mod:`avatarme_edu.maps_io`), for anyone who wants to re-use them without conversion loss.

The normal map: our N_S live in the tangent frame of a *smoothed* copy of the shape
(:mod:`avatarme_edu.geometry.uv_bake`), which no other program knows. glTF viewers and Blender
expect a tangent-space map in the frame of the mesh they draw: T along +u, N the interpolated vertex
normal, B = N x T pointing *up the image* (towards -v; the "OpenGL", green-up convention that glTF
specifies). So we convert once, texel by texel::

    N_S (smoothed tangent) --tangent_to_object--> object space --dot with T, B, N of the mesh--> export

An object-space map would be exact too, but neither glTF nor MTL can say "object space". The glb
carries the per-vertex tangents we baked with (``TANGENT``, with handedness ``w``), so a viewer uses
exactly our frame; OBJ viewers compute their own tangents from the same UVs and normals, which for a
smooth mesh agree with ours to within a few degrees. The diffuse normals N_D cannot be expressed in a
standard material (one normal map per material), so they travel in ``raw/`` only.

Specular albedo in glTF: the metallic-roughness model has no specular map, so we use the
``KHR_materials_specular`` extension: ``specularTexture`` (alpha channel) = A_S. With
``KHR_materials_ior`` ``ior = 1.4`` (skin) the dielectric reflectance at normal incidence is
F0 = ((1.4 - 1) / (1.4 + 1))^2 = 0.028, and ``specularColorFactor = 2`` makes a typical A_S of 0.5
(the middle of the 0.2-0.6 range of light-stage captures) reflect exactly that textbook value:
F0(texel) = 0.028 * 2 * A_S. Roughness is constant (:data:`~avatarme_edu.optics.brdf.SKIN_PERCEPTUAL_ROUGHNESS`); metallic is 0.
Viewers without the extensions still show the diffuse albedo, normal map and a plain dielectric sheen.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avatarme_edu.atomic import TMP_PREFIX, move_into, write_bytes
from avatarme_edu.color import linear_to_srgb
from avatarme_edu.geometry.mesh import Mesh, vertex_normals, write_obj
from avatarme_edu.optics.brdf import SKIN_IOR, SKIN_PERCEPTUAL_ROUGHNESS
from avatarme_edu.reflectance import ReflectanceMaps
from avatarme_edu.geometry.raster import dilate, interpolate, rasterize_uv
from avatarme_edu.geometry.uv_bake import bake_shape_maps, tangent_to_object, vertex_tangents
from avatarme_edu.maps_io import save_map
from avatarme_edu.reflectance import MAP_KINDS, MAP_NAMES

SPECULAR_COLOR_FACTOR = 2.0  # A_S = 0.5 -> F0 = 0.028, see the module docstring
PAD_TEXELS = 8  # texels of padding around UV charts, so mip-maps and bilinear lookups see skin


# ----------------------------------------------------------------------------------------------
# The mesh's own tangent frame (what glTF calls TANGENT) and the maps re-expressed in it
# ----------------------------------------------------------------------------------------------

def gltf_tangents(mesh: Mesh) -> torch.Tensor:
    """Per-vertex tangents of the mesh's own UV frame, ``(V, 4)`` float32 (glTF's ``TANGENT``).

    ``xyz``: dP/du around the vertex (:func:`avatarme_edu.geometry.uv_bake.vertex_tangents`), made
    orthogonal to the vertex normal and unit length. ``w`` is +1 or -1 and gives the bitangent
    ``B = w * (N x T)``, which must point *up the image* (towards -v). Because our v runs down, a
    chart that is not mirrored has clockwise UV triangles (negative signed UV area) and gets
    ``w = +1``; a mirrored chart gets ``w = -1``. On smooth meshes this agrees with MikkTSpace.
    """
    v, f, uv = mesh.vertices.detach().float(), mesh.faces, mesh.uvs.to(mesh.vertices.device).float()
    n = vertex_normals(v, f)
    du = vertex_tangents(v, f, uv)
    t = du - n * (n * du).sum(-1, keepdim=True)  # Gram-Schmidt: into the tangent plane
    # Where dP/du vanishes (the pole of a sphere) any direction in the tangent plane will do.
    for axis in ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]):
        other = torch.linalg.cross(n, torch.tensor(axis, device=v.device).expand_as(n), dim=-1)
        bad = (t.norm(dim=-1, keepdim=True) <= 1e-6 * du.norm(dim=-1, keepdim=True).clamp_min(1e-20))
        t = torch.where(bad, other, t)
    t = torch.nn.functional.normalize(t, dim=-1)
    d1, d2 = uv[f[:, 1]] - uv[f[:, 0]], uv[f[:, 2]] - uv[f[:, 0]]
    signed_area = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    vote = torch.zeros(len(v), device=v.device)
    for k in range(3):
        vote.index_add_(0, f[:, k], -torch.sign(signed_area))
    w = torch.where(vote < 0, -1.0, 1.0).to(v.dtype)
    return torch.cat([t, w[:, None]], dim=-1)


def mesh_tangent_frame(mesh: Mesh, hw: tuple[int, int]):
    """The mesh's own tangent frame per texel: ``T, B, N`` each ``(3, H, W)`` and the ``(H, W)`` mask.

    Interpolates vertex normals and :func:`gltf_tangents` over the UV layout (as a viewer's
    shader does over a triangle) and makes them orthonormal; ``B = w * (N x T)``.
    """
    frags = rasterize_uv(mesh, hw)
    attrs = torch.cat([vertex_normals(mesh.vertices, mesh.faces), gltf_tangents(mesh)], dim=-1)
    a = interpolate(frags, attrs, mesh.faces)
    n = torch.nn.functional.normalize(a[0:3], dim=0)
    t = a[3:6] - n * (n * a[3:6]).sum(0, keepdim=True)
    t = torch.nn.functional.normalize(t, dim=0)
    w = torch.where(a[6:7] < 0, -1.0, 1.0).to(n.dtype)
    b = torch.linalg.cross(n, t, dim=0) * w
    return t, b, n, frags.mask


def specular_normals_object(mesh: Mesh, maps: ReflectanceMaps, shape=None) -> torch.Tensor:
    """N_S brought from the smoothed-shape tangent frame into object space, ``(3, H, W)``.

    ``shape`` is the :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps` the maps were made with;
    when omitted it is baked here from ``mesh`` with uv_bake's default smoothing.
    """
    if shape is None:
        shape = bake_shape_maps(mesh, maps.hw)
    if tuple(shape.mask.shape) != maps.hw:
        raise ValueError(f"shape maps are {tuple(shape.mask.shape)} but the reflectance maps are {maps.hw}; "
                         "bake the shape at the maps' size")
    return tangent_to_object(maps.specular_normals, shape)


def object_to_mesh_tangent(normals_object: torch.Tensor, frame) -> torch.Tensor:
    """Object-space normals ``(3, H, W)`` expressed in a per-texel frame ``(T, B, N, mask)``.

    Texels outside the mask become the unperturbed normal ``(0, 0, 1)``.
    """
    t, b, n, mask = frame
    out = torch.stack([(normals_object * t).sum(0), (normals_object * b).sum(0), (normals_object * n).sum(0)])
    out = torch.nn.functional.normalize(out, dim=0)
    flat = torch.tensor([0.0, 0.0, 1.0], dtype=out.dtype, device=out.device).view(3, 1, 1)
    return torch.where(mask[None], out, flat)


# ----------------------------------------------------------------------------------------------
# 8-bit textures shared by the exports and the viewers
# ----------------------------------------------------------------------------------------------

def viewer_textures(mesh: Mesh, maps: ReflectanceMaps, shape=None, max_width: int | None = None,
                    which=("diffuse", "specular", "normal", "specular_normals_object",
                           "diffuse_normals_object")) -> dict[str, np.ndarray]:
    """The maps as 8-bit images ``(H, W, C)`` uint8, ready for PNG, padded around the UV charts.

    ``diffuse``: sRGB ``(H, W, 3)``; ``specular``: linear grey ``(H, W, 1)``; ``normal``: N_S in the
    mesh's own tangent frame (module docstring); ``specular_normals_object`` and
    ``diffuse_normals_object``: N_S and N_D in object space (what our own viewers shade with).
    Normals are stored as ``n * 0.5 + 0.5``. ``max_width`` shrinks large maps (area average) so a
    viewer file stays small; ``which`` picks the textures to compute.
    """
    unknown = set(which) - {"diffuse", "specular", "normal", "specular_normals_object", "diffuse_normals_object"}
    if unknown:
        raise ValueError(f"unknown texture names {sorted(unknown)}")
    if max_width is not None and max_width < 8:
        raise ValueError(f"max_width must be >= 8 texels or None, got {max_width}")
    mesh = mesh.to(maps.mask.device)  # the UV rasteriser and the maps must share a device
    mask = maps.mask.bool()
    out: dict[str, torch.Tensor] = {}
    if "diffuse" in which:
        out["diffuse"] = linear_to_srgb(maps.diffuse_albedo)
    if "specular" in which:
        out["specular"] = maps.specular_albedo.clamp(0, 1)
    if "diffuse_normals_object" in which:
        out["diffuse_normals_object"] = maps.diffuse_normals
    if "specular_normals_object" in which or "normal" in which:
        ns_obj = specular_normals_object(mesh, maps, shape)
        if "specular_normals_object" in which:
            out["specular_normals_object"] = ns_obj
        if "normal" in which:
            out["normal"] = object_to_mesh_tangent(ns_obj, mesh_tangent_frame(mesh, maps.hw))
    pad = max(PAD_TEXELS, maps.hw[1] // 256)  # wider maps get more padding for their extra mip levels
    result = {}
    for name, m in out.items():
        m = dilate(m.float(), mask, pad)
        if "normal" in name:
            m = torch.nn.functional.normalize(m, dim=0)
            m = torch.where((m.norm(dim=0) > 0.5)[None], m, torch.tensor([0.0, 0.0, 1.0], device=m.device).view(3, 1, 1))
            m = m * 0.5 + 0.5
        if max_width is not None and m.shape[-1] > max_width:
            h = max(1, round(m.shape[-2] * max_width / m.shape[-1]))
            m = torch.nn.functional.interpolate(m[None], size=(h, max_width), mode="area")[0]
        result[name] = (m.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return result


def png_bytes(image: np.ndarray) -> bytes:
    """``(H, W, C)`` uint8 with C in {1, 3, 4} -> PNG file bytes."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected (H, W, 1|3|4) uint8, got {image.shape} {image.dtype}")
    buf = io.BytesIO()
    # Pillow picks the mode from the array: (H, W) -> L (grey), (H, W, 3) -> RGB, (H, W, 4) -> RGBA
    Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def check_mesh_and_maps(mesh: Mesh, maps: ReflectanceMaps) -> None:
    """Raise ``ValueError`` unless ``mesh`` is a :class:`Mesh` with faces and ``maps`` are ReflectanceMaps."""
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be an avatarme_edu Mesh, got {type(mesh).__name__}")
    if not isinstance(maps, ReflectanceMaps):
        raise ValueError(f"maps must be ReflectanceMaps, got {type(maps).__name__}")
    if mesh.n_faces == 0:
        raise ValueError("mesh has no faces")


# ----------------------------------------------------------------------------------------------
# OBJ + MTL + PNG
# ----------------------------------------------------------------------------------------------

def export_obj(out_dir: str | Path, mesh: Mesh, maps: ReflectanceMaps, name: str = "avatar",
               shape=None) -> dict[str, Path]:
    """Write ``out_dir/`` with ``name.obj``, ``name.mtl``, three PNG textures, ``raw/`` maps, a README.

    Returns the paths by role: ``obj, mtl, readme, diffuse, specular, normal`` and ``raw_<map name>``.
    The folder is written under a temporary name next to ``out_dir`` and renamed at the end, so a
    failure leaves nothing half-written; an existing ``out_dir`` is replaced.
    ``shape``: the ShapeMaps the maps were made with (baked from ``mesh`` if omitted).
    """
    check_mesh_and_maps(mesh, maps)
    if not name or any(c in name for c in '/\\:*?"<>| '):
        raise ValueError(f"name must be a plain file stem without spaces or path separators, got {name!r}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tex = viewer_textures(mesh, maps, shape, which=("diffuse", "specular", "normal"))
    rel = {"obj": f"{name}.obj", "mtl": f"{name}.mtl", "diffuse": f"{name}_diffuse.png",
           "specular": f"{name}_specular.png", "normal": f"{name}_normal.png"}
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{out_dir.name}-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes a private folder; the export is an ordinary one
        write_obj(tmp / rel["obj"], mesh.to("cpu"), material=rel["mtl"])
        (tmp / rel["mtl"]).write_text(_mtl_text(name, rel))
        rel["readme"] = "README.txt"
        (tmp / rel["readme"]).write_text(_readme_text(name, maps.hw))
        for role in ("diffuse", "specular", "normal"):
            (tmp / rel[role]).write_bytes(png_bytes(tex[role]))
        (tmp / "raw").mkdir()
        for map_name in MAP_NAMES:
            rel[f"raw_{map_name}"] = f"raw/{map_name}.png"
            save_map(tmp / rel[f"raw_{map_name}"], getattr(maps, map_name), MAP_KINDS[map_name])
        rel["raw_mask"] = "raw/mask.png"
        save_map(tmp / rel["raw_mask"], maps.mask, "mask")
        move_into(tmp, out_dir)  # file by file: a user's own files in out_dir stay
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {role: out_dir / r for role, r in rel.items()}


def _mtl_text(name: str, rel: dict[str, str]) -> str:
    return "\n".join([
        f"# avatarme-edu material for {name}.obj",
        "# map_Kd: diffuse albedo (sRGB); map_Ks: specular albedo (linear grey);",
        "# map_Bump: tangent-space normal map of the specular normals (mesh's own frame, +Y up,",
        "#           as Blender and glTF expect); raw/ holds the maps at full precision.",
        "newmtl skin",
        "Ka 0.000 0.000 0.000",
        "Kd 1.000 1.000 1.000",
        "Ks 1.000 1.000 1.000",
        "Ns 40.0",  # Blinn-Phong exponent matching SKIN_ROUGHNESS roughly
        "d 1.0",
        "illum 2",
        f"map_Kd {rel['diffuse']}",
        f"map_Ks {rel['specular']}",
        f"map_Bump -bm 1.0 {rel['normal']}",
        "",
    ])


def _readme_text(name: str, hw: tuple[int, int]) -> str:
    h, w = hw
    return f"""{name}: a head exported by avatarme-edu (AvatarMe, Lattas et al. CVPR 2020)

{name}.obj            the mesh: metres, +Y up, the face looks towards +Z; one UV per vertex
{name}.mtl            its material "skin", naming the three textures below
{name}_diffuse.png    diffuse albedo, 8-bit sRGB, {w}x{h}
{name}_specular.png   specular albedo, 8-bit linear grey (a strength, not a colour)
{name}_normal.png     specular normals as a tangent-space normal map in the mesh's own frame
                      (x along +u, y up the image, z out of the surface; rgb = n * 0.5 + 0.5)
raw/                  the maps as the pipeline holds them: diffuse_albedo (8-bit sRGB),
                      specular_albedo (16-bit grey), diffuse_normals (16-bit, OBJECT space),
                      specular_normals (16-bit, tangent space of the smoothed shape), mask
"""


# ----------------------------------------------------------------------------------------------
# binary glTF 2.0, written by hand: a JSON scene description + one binary buffer
# ----------------------------------------------------------------------------------------------

_FLOAT, _UINT = 5126, 5125  # glTF accessor component types
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP_TO_EDGE = 9729, 9987, 33071


def export_glb(path: str | Path, mesh: Mesh, maps: ReflectanceMaps, shape=None,
               max_width: int | None = None) -> Path:
    """Write ``mesh`` and ``maps`` as one binary glTF 2.0 file; returns its path.

    Vertex attributes POSITION, NORMAL, TANGENT, TEXCOORD_0 and uint32 indices; a
    metallic-roughness material (baseColorTexture = diffuse albedo in sRGB, normalTexture = N_S in
    the mesh's tangent frame, KHR_materials_specular / KHR_materials_ior for the specular albedo);
    the three PNGs are embedded in the binary buffer. ``max_width`` shrinks the textures.
    Written beside and renamed (:mod:`avatarme_edu.atomic`), so no half-written file is left.
    """
    check_mesh_and_maps(mesh, maps)
    path = Path(path)
    if path.suffix.lower() != ".glb":
        raise ValueError(f"path must end in .glb, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tex = viewer_textures(mesh, maps, shape, max_width=max_width, which=("diffuse", "specular", "normal"))
    spec = tex["specular"]
    specular_rgba = np.concatenate([np.repeat(spec, 3, axis=2), spec], axis=2)  # the extension reads alpha

    m = mesh.to("cpu")
    positions = m.vertices.detach().float().numpy()
    normals = vertex_normals(m.vertices, m.faces).detach().float().numpy()
    tangents = gltf_tangents(m).detach().float().numpy()
    uvs = m.uvs.detach().float().numpy()  # glTF's UV origin is the image's top-left, like ours
    indices = m.faces.detach().numpy().astype(np.uint32).reshape(-1)

    blob = bytearray()
    views, accessors = [], []

    def add_view(data: bytes, target: int | None = None) -> int:
        while len(blob) % 4:  # every view starts 4-byte aligned
            blob.append(0)
        view = {"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        blob.extend(data)
        views.append(view)
        return len(views) - 1

    def add_accessor(array: np.ndarray, kind: str, target: int, component: int, bounds: bool = False) -> int:
        acc = {"bufferView": add_view(np.ascontiguousarray(array).tobytes(), target),
               "componentType": component, "count": int(array.shape[0]), "type": kind}
        if bounds:
            acc["min"] = [float(x) for x in array.min(0)]
            acc["max"] = [float(x) for x in array.max(0)]
        accessors.append(acc)
        return len(accessors) - 1

    attributes = {
        "POSITION": add_accessor(positions, "VEC3", _ARRAY_BUFFER, _FLOAT, bounds=True),
        "NORMAL": add_accessor(normals, "VEC3", _ARRAY_BUFFER, _FLOAT),
        "TANGENT": add_accessor(tangents, "VEC4", _ARRAY_BUFFER, _FLOAT),
        "TEXCOORD_0": add_accessor(uvs, "VEC2", _ARRAY_BUFFER, _FLOAT),
    }
    index_accessor = add_accessor(indices, "SCALAR", _ELEMENT_ARRAY_BUFFER, _UINT)
    images = [{"bufferView": add_view(png_bytes(img)), "mimeType": "image/png", "name": n}
              for n, img in (("diffuse_albedo", tex["diffuse"]), ("specular_normals", tex["normal"]),
                             ("specular_albedo", specular_rgba))]
    gltf = {
        "asset": {"version": "2.0", "generator": "avatarme-edu"},
        "extensionsUsed": ["KHR_materials_specular", "KHR_materials_ior"],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "avatar"}],
        "meshes": [{"name": "avatar", "primitives": [
            {"attributes": attributes, "indices": index_accessor, "material": 0, "mode": 4}]}],
        "materials": [{
            "name": "skin",
            "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}, "metallicFactor": 0.0,
                                     "roughnessFactor": SKIN_PERCEPTUAL_ROUGHNESS},
            "normalTexture": {"index": 1},
            "extensions": {
                "KHR_materials_specular": {"specularTexture": {"index": 2},
                                           "specularColorFactor": [SPECULAR_COLOR_FACTOR] * 3},
                "KHR_materials_ior": {"ior": SKIN_IOR},
            },
        }],
        "samplers": [{"magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR,
                      "wrapS": _CLAMP_TO_EDGE, "wrapT": _CLAMP_TO_EDGE}],
        "images": images,
        "textures": [{"sampler": 0, "source": i} for i in range(len(images))],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
    }
    return write_bytes(path, _glb_bytes(gltf, bytes(blob)))


def _glb_bytes(gltf: dict, blob: bytes) -> bytes:
    """The GLB container: 12-byte header, a JSON chunk (space-padded), a BIN chunk (zero-padded)."""
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return (struct.pack("<4sII", b"glTF", 2, total)
            + struct.pack("<I4s", len(js), b"JSON") + js
            + struct.pack("<I4s", len(blob), b"BIN\0") + blob)
