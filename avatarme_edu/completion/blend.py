"""Blending a reconstructed face into a head model: where (the blend weight), the geometry, the maps.

Steps 1, 3 and 4 of :mod:`avatarme_edu.completion.transfer` (see its docstring): every EduHead mesh
shares one topology and UV layout, so the transfer is a blend with a weight that is 1 on the face and
0 on the rest of the head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from avatarme_edu.geometry.mesh import Mesh, weld_index
from avatarme_edu.geometry.raster import interpolate, rasterize_uv
from avatarme_edu.geometry.uv_bake import object_to_tangent, tangent_to_object
from avatarme_edu.imaging import channel_dot, gaussian_blur, smoothstep
from avatarme_edu.reflectance import ReflectanceMaps
from avatarme_edu.render.shading import sample_uv

DEFAULT_BLEND_WIDTH = 0.05  # width of the seam band (and of the mask's feathering), a fraction of the map width


ALIGN_MODES = ("similarity", "rigid", "none")


FEATHER_WORK_WIDTH = 576  # the feathering blur runs on a grid at most this wide (it is smooth)


def _smooth_map(x: torch.Tensor, width: float) -> torch.Tensor:
    """Gaussian blur of an ``(H, W)`` map with sigma ``width / 2`` (a fraction of the map width).

    The result is smooth, so it is computed on a grid at most :data:`FEATHER_WORK_WIDTH` wide and
    interpolated back (cheap at the paper's 6144 x 4096).
    """
    h, w = x.shape
    factor = max(1, math.ceil(w / FEATHER_WORK_WIDTH))
    small = F.avg_pool2d(x[None, None], factor, ceil_mode=True) if factor > 1 else x[None, None]
    blurred = gaussian_blur(small, 0.5 * width * w / factor, border="replicate")
    if factor > 1:
        blurred = F.interpolate(blurred, size=(h, w), mode="bilinear", align_corners=False)
    return blurred[0, 0]


def _check_width(width: float) -> None:
    if not (math.isfinite(width) and 0.0 <= width <= 0.5):
        raise ValueError(f"width must be a fraction of the map width in [0, 0.5], got {width}")


def feather_mask(mask: torch.Tensor, width: float = DEFAULT_BLEND_WIDTH) -> torch.Tensor:
    """A soft version of a validity mask that fades to 0 *at* its edge: ``(H, W)`` float32 in [0, 1].

    ``mask`` ``(H, W)`` bool; ``width`` the fade's width as a fraction of the map width (UV units,
    so the same at any resolution). The mask is blurred with a Gaussian of sigma ``width / 2``; at
    a straight edge the blur is 0.5, a sigma or two inside it is ~1, so ``smoothstep(0.5, 0.98,
    blur)`` is 0 on the edge and 1 about ``width`` inside. Outside the mask the result is 0.
    Why fade *inside*: a reconstruction is least reliable at the edge of its data, so it should
    hand over to the head model before that edge, not after it.
    """
    if mask.ndim != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be an (H, W) bool tensor, got {tuple(mask.shape)} {mask.dtype}")
    _check_width(width)
    m = mask.float()
    if width * mask.shape[1] < 1.0 or bool(mask.all()):
        return m
    return smoothstep(0.5, 0.98, _smooth_map(m, width)) * m


def _snap(w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Round weights within ``eps`` of 0 or 1 to exactly 0 or 1 (interpolation leaves 0.9999999)."""
    w = torch.where(w > 1.0 - eps, torch.ones_like(w), w)
    return torch.where(w < eps, torch.zeros_like(w), w)


def face_blend_weights(mesh: Mesh, face_weight: torch.Tensor, face_mask: torch.Tensor,
                  blend_width: float = DEFAULT_BLEND_WIDTH, fragments=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The blend weight "how much of the reconstruction", per texel and per vertex.

    ``mesh``: any mesh of the shared topology (only its faces and UVs are used); ``face_weight``:
    ``(V,)`` soft face region in [0, 1] (EduHead's ``vertex_regions()["face"]``); ``face_mask``:
    ``(H, W)`` bool, texels where the reconstruction has data; ``blend_width``: a fraction of the
    map width; ``fragments``: a :func:`~avatarme_edu.geometry.raster.rasterize_uv` result to reuse.

    1. The face region is rasterised into UV and blurred (sigma ``blend_width / 2``): the region is
       soft, but in places (around the ears, under the jaw) it falls from 1 to 0 within a few
       millimetres - a visible seam. After the blur no transition is narrower than the blend width.
    2. It is multiplied by the feathered mask (:func:`feather_mask`), so the weight is 0 wherever
       the reconstruction has no data and fades out before the edge of the data.

    Returns ``(alpha, vertex_weight)``: ``alpha`` ``(H, W)`` float32 in [0, 1]; ``vertex_weight``
    ``(V,)`` = ``alpha`` looked up at each vertex's UV (seam and pole copies of a vertex get their
    mean, so the mesh cannot tear). Both are exactly 1 deep in the face and exactly 0 away from it.
    """
    v = mesh.n_vertices
    if face_weight.shape != (v,):
        raise ValueError(f"face_weight must be (V,) = ({v},), got {tuple(face_weight.shape)}")
    if not bool(((face_weight >= 0) & (face_weight <= 1)).all()):
        raise ValueError("face_weight must lie in [0, 1]")
    _check_width(blend_width)
    hw = tuple(face_mask.shape)
    if fragments is None:
        fragments = rasterize_uv(mesh, hw)
    device = face_mask.device
    region = interpolate(fragments, face_weight.float().to(device)[:, None], mesh.faces.to(device))[0]
    if blend_width * hw[1] >= 1.0:
        region = _smooth_map(region.clamp(0, 1), blend_width)
    alpha = _snap(region.clamp(0, 1) * feather_mask(face_mask, blend_width))
    w = sample_uv(alpha[None], mesh.uvs.to(device).T[:, :, None])[0, :, 0]
    # One weight per welded vertex (seam and pole copies), so copies move together.
    weld = weld_index(mesh.vertices.detach()).to(device)
    total = torch.zeros(int(weld.max()) + 1, device=device).index_add_(0, weld, w)
    count = torch.zeros_like(total).index_add_(0, weld, torch.ones_like(w))
    w = (total / count)[weld]
    return alpha, _snap(w.clamp(0, 1))


def check_same_layout(a: Mesh, b: Mesh) -> None:
    if a.n_vertices != b.n_vertices or a.faces.shape != b.faces.shape or not torch.equal(
            a.faces.cpu(), b.faces.cpu()) or not torch.allclose(a.uvs.cpu(), b.uvs.cpu(), atol=1e-6):
        raise ValueError("head transfer needs two meshes of the same topology and UV layout (EduHead meshes): "
                         f"got {a.n_vertices} and {b.n_vertices} vertices or different faces/UVs")


def similarity_transform(source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                         mode: str = "similarity") -> tuple[float, torch.Tensor, torch.Tensor]:
    """The weighted least-squares ``(scale, rotation (3, 3), translation (3,))`` taking ``source``
    ``(V, 3)`` onto ``target`` ``(V, 3)``: ``target ~ scale * rotation @ source + translation``.

    Umeyama's closed form (1991): centre both point sets on their weighted means, take the SVD of
    the weighted cross-covariance ``U S V^T``; the rotation is ``U D V^T`` with ``D = diag(1, 1,
    det(U V^T))`` (never a mirror), the scale ``trace(S D) / weighted variance of source``.
    ``mode``: ``"similarity"``, ``"rigid"`` (scale 1) or ``"none"`` (identity).
    """
    if mode not in ALIGN_MODES:
        raise ValueError(f"mode must be one of {ALIGN_MODES}, got {mode!r}")
    device = source.device
    eye = torch.eye(3, dtype=source.dtype, device=device)
    zero = torch.zeros(3, dtype=source.dtype, device=device)
    if mode == "none":
        return 1.0, eye, zero
    w = weights.double().to(device)
    if not bool((w >= 0).all()) or float(w.sum()) <= 0:
        raise ValueError("alignment weights must be >= 0 with a positive sum")
    w = w / w.sum()
    s, t = source.detach().double(), target.detach().double().to(device)
    mu_s, mu_t = (w[:, None] * s).sum(0), (w[:, None] * t).sum(0)
    sc, tc = s - mu_s, t - mu_t
    cov = (w[:, None] * tc).T @ sc  # (3, 3) sum_i w_i t_i s_i^T
    u, sv, vt = torch.linalg.svd(cov)
    d = torch.ones(3, dtype=cov.dtype, device=device)
    d[2] = torch.sign(torch.linalg.det(u @ vt))
    rotation = u @ torch.diag(d) @ vt
    scale = float((sv * d).sum() / (w * (sc * sc).sum(1)).sum()) if mode == "similarity" else 1.0
    translation = mu_t - scale * rotation @ mu_s
    return scale, rotation.to(source.dtype), translation.to(source.dtype)


def _neighbour_weights(weld: torch.Tensor, faces: torch.Tensor,
                       vertices: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbour weights between welded vertex ids, as ``(i, j, w)``: vertex ``i`` listens to vertex
    ``j`` with weight ``w`` (``(E,)`` each; the weights of each ``i`` sum to 1; an edge shared by two
    faces appears twice, and the two weights add up).

    With ``vertices`` the weights are the cotangent weights ``(cot a + cot b) / 2`` of each edge
    (negative contributions of obtuse corners clamped to 0), so an average over neighbours is an
    average over the *surface*: a vertex of a long, thin triangle listens to its near neighbour,
    not to the far one. Without ``vertices``, every neighbour counts the same (the "umbrella").
    """
    n = int(weld.max()) + 1
    f = weld[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]  # collapsed at welded poles
    i = torch.cat([f[:, 1], f[:, 2], f[:, 0]])  # the edge opposite corner 0 is (1, 2), and so on
    j = torch.cat([f[:, 2], f[:, 0], f[:, 1]])
    if vertices is None:
        edges = torch.unique(torch.sort(torch.stack([i, j], 1), dim=1).values, dim=0)  # each edge once
        i, j = edges[:, 0], edges[:, 1]
        w = torch.ones(i.shape[0], dtype=torch.float64, device=weld.device)
    else:
        x = torch.zeros(n, 3, dtype=torch.float64, device=weld.device).index_copy_(0, weld, vertices.double())
        a, b, c = x[f[:, 0]], x[f[:, 1]], x[f[:, 2]]
        double_area = torch.linalg.cross(b - a, c - a, dim=1).norm(dim=1).clamp_min(1e-30)
        cot = torch.stack([((b - a) * (c - a)).sum(1), ((c - b) * (a - b)).sum(1), ((a - c) * (b - c)).sum(1)], 1)
        w = (0.5 * cot / double_area[:, None]).clamp_min(0.0).T.reshape(-1)
        w = w + 1e-3 * w.mean()  # no vertex without neighbours, even around a run of obtuse corners
    rows, cols, w = torch.cat([i, j]), torch.cat([j, i]), torch.cat([w, w])
    total = torch.zeros(n, dtype=torch.float64, device=weld.device).index_add_(0, rows, w)
    return rows, cols, (w / total.clamp_min(1e-300)[rows]).float()


def relax_offsets(offsets: torch.Tensor, faces: torch.Tensor, band: torch.Tensor, iterations: int = 50,
                  step: float = 0.5, weld: torch.Tensor | None = None,
                  vertices: torch.Tensor | None = None) -> torch.Tensor:
    """Laplacian relaxation of per-vertex offsets ``(V, 3)`` inside ``band`` ``(V,)`` bool.

    Each step moves every band vertex's offset ``step`` of the way towards the weighted mean offset
    of its neighbours (cotangent weights of ``vertices`` ``(V, 3)`` when given, else equal weights,
    see :func:`_neighbour_weights`). Vertices outside the band hold still, so they act as the
    boundary condition and the band converges towards the smoothest (harmonic) fill between them.
    Offsets are smoothed rather than positions, so the head's own shape is never flattened - only
    the *change* that blends the face in. ``weld`` ``(V,)``: ids shared by seam copies (default:
    all vertices distinct).
    """
    if int(iterations) != iterations or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer, got {iterations}")
    if not 0.0 < step <= 1.0:
        raise ValueError(f"step must be in (0, 1], got {step}")
    if iterations == 0 or not bool(band.any()):
        return offsets.clone()
    device = offsets.device
    v = offsets.shape[0]
    weld = torch.arange(v, device=device) if weld is None else weld.to(device)
    n = int(weld.max()) + 1
    count = torch.zeros(n, device=device).index_add_(0, weld, torch.ones(v, device=device))
    o = torch.zeros(n, 3, device=device).index_add_(0, weld, offsets.float()) / count[:, None]
    moving = torch.zeros(n, dtype=torch.bool, device=device)
    moving[weld[band.to(device)]] = True
    i, j, w = _neighbour_weights(weld, faces.to(device), vertices)
    w = w[:, None]
    gain = step * moving.float()[:, None]  # 0 outside the band: those offsets hold still
    for _ in range(int(iterations)):
        mean = torch.zeros_like(o).index_add_(0, i, w * o[j])
        o = o + gain * (mean - o)
    return o[weld].to(offsets.dtype)


def blend_geometry(face_mesh: Mesh, head_mesh: Mesh, vertex_weight: torch.Tensor, relax_iterations: int = 50,
                   align: str = "similarity") -> tuple[Mesh, dict]:
    """Blend two meshes of one topology: the face where ``vertex_weight`` is 1, the head where it is 0.

    1. Align the head to the face (:func:`similarity_transform`, weighted by ``vertex_weight``).
    2. Offsets ``o = vertex_weight * (face - aligned head)``, relaxed in the band ``0 < weight < 1``
       (:func:`relax_offsets`); vertices ``head + o``, and exactly the face's vertices where the
       weight is 1.

    Returns ``(mesh, info)`` with ``info``: ``scale``, ``rotation``, ``translation`` (head -> face),
    ``aligned_head`` (the head mesh after step 1) and ``band`` ``(V,)`` bool.
    """
    check_same_layout(face_mesh, head_mesh)
    device = face_mesh.vertices.device
    pf = face_mesh.vertices.detach().float()
    ph = head_mesh.vertices.detach().float().to(device)
    w = vertex_weight.float().to(device)
    if w.shape != (pf.shape[0],):
        raise ValueError(f"vertex_weight must be (V,) = ({pf.shape[0]},), got {tuple(w.shape)}")
    if not bool((w > 0).any()):
        raise ValueError("vertex_weight is 0 everywhere: the face mask covers no part of the face region")
    scale, rotation, translation = similarity_transform(ph, pf, w, align)
    ph = scale * ph @ rotation.T + translation
    band = (w > 0) & (w < 1)
    weld = weld_index(ph)
    offsets = relax_offsets(w[:, None] * (pf - ph), face_mesh.faces, band, relax_iterations, weld=weld, vertices=ph)
    vertices = torch.where((w >= 1)[:, None], pf, ph + offsets)
    info = {"scale": scale, "rotation": rotation, "translation": translation,
            "aligned_head": Mesh(ph, head_mesh.faces.to(device), head_mesh.uvs.to(device)), "band": band}
    return Mesh(vertices, face_mesh.faces, face_mesh.uvs), info


def flipped_faces(mesh: Mesh, reference: Mesh, min_cos: float = 0.0) -> torch.Tensor:
    """``(F,)`` bool: faces of ``mesh`` whose normal turned by more than ``acos(min_cos)`` from the
    same face of ``reference`` (a fold in a blend shows up as a face that points the other way)."""
    check_same_layout(mesh, reference)
    a, b = mesh.face_normals(), reference.face_normals().to(mesh.vertices.device)
    area_ok = (b.norm(dim=-1) > 0.5) & (a.norm(dim=-1) > 0.5)  # degenerate (pole) faces have no normal
    return area_ok & ((a * b).sum(-1) < min_cos)


def rotate_between(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Apply to ``v`` the smallest rotation that takes unit vector ``a`` to unit vector ``b``.

    All ``(3, H, W)`` (or ``(3, ...)``). Rodrigues' formula with ``k = a x b`` (sin times the axis)
    and ``c = a . b``: ``v c + k x v + k (k . v) / (1 + c)``. Used to carry a normal map from one
    shape to another: a pore that tilted 5 degrees from shape ``a`` tilts 5 degrees from shape ``b``.
    (For ``a = -b`` the rotation is undefined; those texels keep ``v``.)
    """
    c = channel_dot(a, b, dim=0)
    k = torch.linalg.cross(a, b, dim=0)
    out = v * c + torch.linalg.cross(k, v, dim=0) + k * channel_dot(k, v, dim=0) / (1.0 + c).clamp_min(1e-6)
    return torch.where(c > -0.999, out, v)


def blend_maps(face_maps: ReflectanceMaps, head_maps: ReflectanceMaps, alpha: torch.Tensor, face_shape,
               head_shape, out_shape, head_rotation: torch.Tensor | None = None) -> ReflectanceMaps:
    """Mix two heads' maps with ``alpha`` ``(H, W)`` (1 = face) onto the blended shape ``out_shape``.

    ``face_shape`` / ``head_shape`` / ``out_shape``: the :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps`
    of the face mesh, the (unaligned) head mesh and the blended mesh; ``head_rotation`` ``(3, 3)``:
    the alignment's rotation (the head's object-space normals turn with it).

    Albedos: ``alpha * face + (1 - alpha) * head``. Normals: both sources to object space, carried
    from their shape normal N_O towards the blended shape's N_O (:func:`rotate_between`; the face's
    by ``1 - alpha`` of the way, the head's by ``alpha``), mixed, normalised; the specular normals
    then go back into ``out_shape``'s tangent frame. Where ``alpha`` is 1 (0) the albedos are the
    face's (head's) exactly. The mask is the head's (the complete layout). Everything is zero outside it.
    """
    device = alpha.device
    hw = tuple(alpha.shape)
    for name, m in (("face_maps", face_maps), ("head_maps", head_maps)):
        if tuple(m.hw) != hw:
            raise ValueError(f"{name} are {m.hw} but alpha is {hw}; all maps must share one size")
    for name, s in (("face_shape", face_shape), ("head_shape", head_shape), ("out_shape", out_shape)):
        if tuple(s.hw) != hw:
            raise ValueError(f"{name} is {s.hw} but the maps are {hw}; bake the shape maps at the maps' size")
    face_maps, head_maps = face_maps.to(device), head_maps.to(device)
    face_shape, head_shape, out_shape = face_shape.to(device), head_shape.to(device), out_shape.to(device)
    a = alpha[None]
    face_ok = (face_maps.mask & (alpha > 0))[None]
    mask = head_maps.mask & out_shape.mask
    keep = mask[None].float()

    def clean(x):  # texels without face data never reach the mix (they may hold NaN or garbage)
        return torch.where(face_ok, x, torch.zeros_like(x))

    def mix(f, h):
        return torch.where(a >= 1, f, torch.where(a <= 0, h, a * f + (1 - a) * h))

    diffuse_albedo = mix(clean(face_maps.diffuse_albedo), head_maps.diffuse_albedo) * keep
    specular_albedo = mix(clean(face_maps.specular_albedo), head_maps.specular_albedo) * keep

    rot = torch.eye(3, device=device) if head_rotation is None else head_rotation.float().to(device)

    def turn(x):  # object-space (3, H, W) vectors through the head's alignment rotation
        return torch.einsum("ij,jhw->ihw", rot, x)

    # Carry each source's normals towards the blended shape: fully where the other source dominates,
    # not at all where this source is used alone (there the surface is this source's own; only the
    # interpolated vertex normals next to the band moved), so the face's maps stay exact at alpha = 1.
    n_out = out_shape.normals_object
    n_face = face_shape.normals_object
    n_head = turn(head_shape.normals_object)
    to_face = F.normalize(n_face + (1 - a) * (n_out - n_face), dim=0, eps=1e-12)
    to_head = F.normalize(n_head + a * (n_out - n_head), dim=0, eps=1e-12)
    nd_face = rotate_between(n_face, to_face, clean(face_maps.diffuse_normals))
    nd_head = rotate_between(n_head, to_head, turn(head_maps.diffuse_normals))
    ns_face = rotate_between(n_face, to_face, clean(tangent_to_object(face_maps.specular_normals, face_shape)))
    ns_head = rotate_between(n_head, to_head, turn(tangent_to_object(head_maps.specular_normals, head_shape)))
    diffuse_normals = F.normalize(mix(nd_face, nd_head), dim=0, eps=1e-12) * keep
    specular_object = F.normalize(mix(ns_face, ns_head), dim=0, eps=1e-12)
    specular_normals = F.normalize(object_to_tangent(specular_object, out_shape), dim=0, eps=1e-12) * keep
    return ReflectanceMaps(diffuse_albedo=diffuse_albedo, specular_albedo=specular_albedo,
                           diffuse_normals=diffuse_normals, specular_normals=specular_normals, mask=mask)
