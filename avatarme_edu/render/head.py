"""Head-model transfer: the reconstructed face on a complete head.

AvatarMe reconstructs the *face*; to show a whole person it "transfers the face's shape and maps
onto a complete head model". Because every EduHead mesh shares one topology and one UV layout, this
transfer is not a registration problem at all - vertex ``i`` of the reconstruction *is* vertex ``i``
of the head model, texel ``(row, col)`` of one map *is* that texel of the other. So the transfer is
a **blend** of two heads, with a weight that is 1 on the face, 0 on the rest of the head and soft in
between. What makes a blend look seamless is the subject of this module:

1. **Where** (:func:`blend_weights`). EduHead's soft ``face`` region (per vertex, in [0, 1]) says
   where the face is. A reconstruction may cover less than that (a cropped photo, a self-occluded
   cheek), so a ``face_mask`` ``(H, W)`` says which texels hold data; it is *feathered*
   (:func:`feather_mask`, ``blend_width`` wide) so the weight also fades out towards the edge of the
   data. The same weight is rasterised into UV (``alpha`` per texel, for the maps) and sampled at the
   vertices (``vertex_weight``, for the geometry).
2. **Skin tone** (:func:`skin_tone_stats`, :func:`match_skin_tone`). The head model's skin belongs
   to somebody else. We measure the mean and standard deviation of the diffuse albedo of *both*
   heads in a ring of bare-skin texels along the face border - the same texels, thanks to the shared
   layout - and shift the head's whole albedo so that its statistics there equal the face's. By
   default in **log** space: pigments absorb light exponentially (Beer-Lambert), so a different
   melanin or blood concentration multiplies the albedo; a shift of log-albedo is a change of
   "how much pigment", and it keeps albedo positive. The same is done to the specular albedo.
3. **Geometry** (:func:`blend_geometry`). The head model is first aligned to the face (a weighted
   similarity transform - scale, rotation, translation - fitted on the face vertices; shared
   topology gives the correspondences for free). Then every vertex moves by ``vertex_weight`` times
   the face's offset from the head, and in the transition band the offsets are relaxed with a few
   Laplacian (neighbour-averaging) steps, so no ridge or step marks the seam. The neighbours are
   weighted by the cotangent weights of the surface: the template's triangles are long and thin
   under the chin, and equal weights there would drag offsets sideways and fold triangles.
4. **Maps** (:func:`blend_maps`). Albedos are mixed linearly with ``alpha`` (a mix of reflectances).
   Normals are *directions on a surface*: each source's normals are first carried from its own
   shape onto the blended shape (rotated by the rotation between the two shape normals), then mixed
   in object space and normalised; the specular normals go back to the blended mesh's tangent frame.

:func:`transfer_to_head` runs all four steps. Map conventions are those of
:mod:`avatarme_edu.reflectance`: ``(C, H, W)`` float32, diffuse albedo linear RGB, diffuse normals in
object space, specular normals in the tangent space of :mod:`avatarme_edu.geometry.uv_bake`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatarme_edu.geometry.mesh import Mesh, weld_index
from avatarme_edu.reflectance import ReflectanceMaps

DEFAULT_BLEND_WIDTH = 0.05  # width of the seam band (and of the mask's feathering), a fraction of the map width
TONE_SPACES = ("log", "linear", "none")
ALIGN_MODES = ("similarity", "rigid", "none")
LOG_EPS = 1e-3  # log(albedo + eps): a black texel stays finite
MAX_TONE_GAIN = 2.0  # std matching may scale contrast by at most this factor (or 1 / it)
MIN_RING_TEXELS = 32  # fewer texels than this make unreliable statistics: widen the ring
RING_BAND = (0.2, 0.999)  # the ring: texels whose blend weight lies in this range...
NON_SKIN_REGIONS = ("scalp", "brows", "beard", "eyes", "lips", "mouth_interior", "ears")
NON_SKIN_LIMIT = 0.1  # ...and that are no more than this much hair, brow, eye, lip or ear
FEATHER_WORK_WIDTH = 576  # the feathering blur runs on a grid at most this wide (it is smooth)


# ----------------------------------------------------------------------------------------------
# 1. Where: the blend weight
# ----------------------------------------------------------------------------------------------


def _smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)``; the map's edges are extended (replicated)."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    # Replicate padding is limited to the input size; clamp the radius to it (tiny maps).
    ry, rx = min(radius, x.shape[-2] - 1), min(radius, x.shape[-1] - 1)
    kx, ky = k[radius - rx:radius + rx + 1], k[radius - ry:radius + ry + 1]
    x = F.conv2d(F.pad(x, (rx, rx, 0, 0), mode="replicate"), (kx / kx.sum()).view(1, 1, 1, -1).expand(c, 1, 1, -1),
                 groups=c)
    x = F.conv2d(F.pad(x, (0, 0, ry, ry), mode="replicate"), (ky / ky.sum()).view(1, 1, -1, 1).expand(c, 1, -1, 1),
                 groups=c)
    return x


def _smooth_map(x: torch.Tensor, width: float) -> torch.Tensor:
    """Gaussian blur of an ``(H, W)`` map with sigma ``width / 2`` (a fraction of the map width).

    The result is smooth, so it is computed on a grid at most :data:`FEATHER_WORK_WIDTH` wide and
    interpolated back (cheap at the paper's 6144 x 4096).
    """
    h, w = x.shape
    factor = max(1, math.ceil(w / FEATHER_WORK_WIDTH))
    small = F.avg_pool2d(x[None, None], factor, ceil_mode=True) if factor > 1 else x[None, None]
    blurred = _blur(small, 0.5 * width * w / factor)
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
    return _smoothstep(0.5, 0.98, _smooth_map(m, width)) * m


def _snap(w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Round weights within ``eps`` of 0 or 1 to exactly 0 or 1 (interpolation leaves 0.9999999)."""
    w = torch.where(w > 1.0 - eps, torch.ones_like(w), w)
    return torch.where(w < eps, torch.zeros_like(w), w)


def blend_weights(mesh: Mesh, face_weight: torch.Tensor, face_mask: torch.Tensor,
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
    from avatarme_edu.geometry.raster import interpolate, rasterize_uv
    from avatarme_edu.render.shading import sample_uv

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


# ----------------------------------------------------------------------------------------------
# 2. Skin tone
# ----------------------------------------------------------------------------------------------


@dataclass
class SkinTone:
    """Per-channel statistics of an albedo over a region: ``mean`` and ``std`` ``(C,)`` in ``space``
    (``"log"``: of ``log(albedo + LOG_EPS)``; ``"linear"``: of the albedo itself), over ``count``
    texels; ``linear_mean`` ``(C,)`` is always the plain mean albedo (for reading)."""

    mean: torch.Tensor
    std: torch.Tensor
    linear_mean: torch.Tensor
    count: int
    space: str

    def __repr__(self) -> str:
        fmt = lambda t: "(" + ", ".join(f"{float(x):.3f}" for x in t) + ")"  # noqa: E731
        return (f"SkinTone(space={self.space!r}, mean={fmt(self.mean)}, std={fmt(self.std)}, "
                f"linear_mean={fmt(self.linear_mean)}, count={self.count})")


def _to_space(x: torch.Tensor, space: str) -> torch.Tensor:
    return torch.log(x.clamp_min(0.0) + LOG_EPS) if space == "log" else x


def _from_space(x: torch.Tensor, space: str) -> torch.Tensor:
    return (torch.exp(x) - LOG_EPS) if space == "log" else x


def _check_space(space: str) -> None:
    if space not in ("log", "linear"):
        raise ValueError(f"space must be 'log' or 'linear', got {space!r}")


def skin_tone_stats(maps, region_mask: torch.Tensor, space: str = "log") -> SkinTone:
    """Mean and standard deviation of an albedo over ``region_mask``, per channel.

    ``maps``: a :class:`~avatarme_edu.reflectance.ReflectanceMaps` (its diffuse albedo, restricted to
    its mask) or a ``(C, H, W)`` albedo map; ``region_mask``: ``(H, W)`` bool; ``space``: ``"log"``
    or ``"linear"`` (see the module docstring). Raises ``ValueError`` for an empty region.
    """
    _check_space(space)
    if isinstance(maps, ReflectanceMaps):
        image, valid = maps.diffuse_albedo, maps.mask
    else:
        image, valid = maps, None
    if not torch.is_tensor(image) or image.ndim != 3:
        raise ValueError(f"expected ReflectanceMaps or a (C, H, W) map, got {type(maps).__name__}")
    if region_mask.dtype != torch.bool or tuple(region_mask.shape) != tuple(image.shape[1:]):
        raise ValueError(f"region_mask must be an {tuple(image.shape[1:])} bool tensor, "
                         f"got {tuple(region_mask.shape)} {region_mask.dtype}")
    where = region_mask.to(image.device)
    if valid is not None:
        where = where & valid.to(image.device)
    n = int(where.sum())
    if n == 0:
        raise ValueError("region_mask selects no valid texels; skin tone statistics need at least one")
    x = image[:, where].double()  # (C, n)
    y = _to_space(x, space)
    return SkinTone(mean=y.mean(1).float(), std=y.std(1, correction=0).float(), linear_mean=x.mean(1).float(),
                    count=n, space=space)


def tone_transform(source: SkinTone, target: SkinTone, match_std: bool = True,
                   max_gain: float = MAX_TONE_GAIN) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gain, shift)`` ``(C,)`` so that ``gain * y + shift`` maps ``source`` statistics onto ``target``'s.

    ``y`` is the albedo in the statistics' space. With ``match_std`` the gain is
    ``target.std / source.std`` clamped to ``[1 / max_gain, max_gain]`` (a ring full of freckles
    should not blow up the contrast of a whole head), else 1. The shift then moves the mean exactly.
    """
    if source.space != target.space:
        raise ValueError(f"source and target statistics are in different spaces: {source.space!r}, {target.space!r}")
    if not max_gain >= 1.0:
        raise ValueError(f"max_gain must be >= 1, got {max_gain}")
    if match_std:
        gain = (target.std / source.std.clamp_min(1e-8)).clamp(1.0 / max_gain, max_gain)
    else:
        gain = torch.ones_like(source.mean)
    return gain, target.mean - gain * source.mean


def match_skin_tone(image: torch.Tensor, source: SkinTone, target: SkinTone, match_std: bool = True,
                    max_gain: float = MAX_TONE_GAIN) -> torch.Tensor:
    """Shift an albedo map ``(C, H, W)`` whose statistics are ``source`` so they become ``target``'s.

    Per channel, in the statistics' space: ``y' = gain * y + shift`` (:func:`tone_transform`); the
    result is clipped to [0, 1]. In log space this multiplies the albedo by ``exp(shift)`` (times a
    contrast change): "more or less pigment", never a negative reflectance.
    """
    gain, shift = tone_transform(source, target, match_std, max_gain)
    y = _to_space(image, source.space)
    out = _from_space(gain.to(image).view(-1, 1, 1) * y + shift.to(image).view(-1, 1, 1), source.space)
    return out.clamp(0.0, 1.0)


def tone_ring(alpha: torch.Tensor, valid: torch.Tensor, non_skin: torch.Tensor | None = None,
              band: tuple[float, float] = RING_BAND) -> torch.Tensor:
    """``(H, W)`` bool: where to compare skin tones - the bare-skin texels of the seam band.

    The band is where ``band[0] <= alpha <= band[1]`` (both heads contribute there, so a tone
    difference would show) inside ``valid``; ``non_skin`` ``(H, W)`` in [0, 1] (hair, brows,
    beard, eyes, lips, ears) removes texels above :data:`NON_SKIN_LIMIT`. When that leaves fewer
    than :data:`MIN_RING_TEXELS`, the ring widens to every skin texel with ``alpha > 0``, then to
    every such texel; it may be empty when the face has no valid texel at all.
    """
    skin = valid if non_skin is None else valid & (non_skin <= NON_SKIN_LIMIT)
    ring = skin & (alpha >= band[0]) & (alpha <= band[1])
    for wider in (skin & (alpha > 0), valid & (alpha > 0)):
        if int(ring.sum()) >= MIN_RING_TEXELS:
            break
        ring = wider
    return ring


# ----------------------------------------------------------------------------------------------
# 3. Geometry
# ----------------------------------------------------------------------------------------------


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
    _check_same_layout(face_mesh, head_mesh)
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
    _check_same_layout(mesh, reference)
    a, b = mesh.face_normals(), reference.face_normals().to(mesh.vertices.device)
    area_ok = (b.norm(dim=-1) > 0.5) & (a.norm(dim=-1) > 0.5)  # degenerate (pole) faces have no normal
    return area_ok & ((a * b).sum(-1) < min_cos)


# ----------------------------------------------------------------------------------------------
# 4. Maps
# ----------------------------------------------------------------------------------------------


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(0, keepdim=True)


def rotate_between(a: torch.Tensor, b: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Apply to ``v`` the smallest rotation that takes unit vector ``a`` to unit vector ``b``.

    All ``(3, H, W)`` (or ``(3, ...)``). Rodrigues' formula with ``k = a x b`` (sin times the axis)
    and ``c = a . b``: ``v c + k x v + k (k . v) / (1 + c)``. Used to carry a normal map from one
    shape to another: a pore that tilted 5 degrees from shape ``a`` tilts 5 degrees from shape ``b``.
    (For ``a = -b`` the rotation is undefined; those texels keep ``v``.)
    """
    c = _dot(a, b)
    k = torch.linalg.cross(a, b, dim=0)
    out = v * c + torch.linalg.cross(k, v, dim=0) + k * _dot(k, v) / (1.0 + c).clamp_min(1e-6)
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
    from avatarme_edu.geometry.uv_bake import object_to_tangent, tangent_to_object

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


# ----------------------------------------------------------------------------------------------
# The head model's own maps, and the whole transfer
# ----------------------------------------------------------------------------------------------


def head_model_maps(head_mesh: Mesh, hw: tuple[int, int], skin=None, seed: int = 0, head=None,
                    fragments=None):
    """Skin maps for a head-model mesh, so the transfer has a complete head to put the face on.

    Painted by the virtual light stage's skin model (:func:`~avatarme_edu.lightstage.skin.skin_reflectance`)
    with ``skin`` (a :class:`~avatarme_edu.lightstage.skin.SkinParams`; default: the average
    parameters: medium skin, short brown hair) and ``seed``. ``head``: the EduHead model (for its regions).
    Returns ``(ReflectanceMaps, ShapeMaps)`` at ``hw`` on the mesh's device.
    """
    from avatarme_edu.geometry.raster import rasterize_uv
    from avatarme_edu.geometry.uv_bake import bake_shape_maps
    from avatarme_edu.lightstage.skin import SkinParams, skin_reflectance, texel_size_mm
    from avatarme_edu.lightstage.subjects import bake_regions, reflectance_from_skin

    device = head_mesh.vertices.device
    if head is None:
        from avatarme_edu.geometry.head import load_eduhead

        head = load_eduhead(device=device)
    if fragments is None:
        fragments = rasterize_uv(head_mesh, hw)
    shape = bake_shape_maps(head_mesh, hw, fragments=fragments)
    regions = bake_regions(fragments, head_mesh.faces, head.vertex_regions())
    texel = texel_size_mm(shape.mask, shape.position, regions)
    params = SkinParams() if skin is None else skin
    skin_maps = skin_reflectance(regions, shape.mask, params, int(seed), texel_mm=texel)
    return reflectance_from_skin(skin_maps, shape), shape


@dataclass
class HeadTransferInfo:
    """What :func:`transfer_to_head` did, for figures and checks.

    * ``alpha`` ``(H, W)`` float: the UV blend weight (1 = reconstruction, 0 = head model);
    * ``vertex_weight`` ``(V,)``: the geometry blend weight; ``band`` ``(V,)`` bool: relaxed vertices;
    * ``ring`` ``(H, W)`` bool: the texels where skin tones were compared;
    * ``tone_face``, ``tone_head``, ``tone_head_matched``: :class:`SkinTone` of the diffuse albedo in
      the ring (``None`` when ``tone_space="none"``); ``gain``, ``shift`` ``(3,)`` the tone transform;
    * ``head_mesh``: the head model after alignment; ``head_maps``: its maps after tone matching;
      ``shape``: the :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps` of the result (to render it);
    * ``scale``, ``rotation`` ``(3, 3)``, ``translation`` ``(3,)``: the head -> face alignment;
    * ``max_offset_mm``: the largest distance a vertex moved from the aligned head.
    """

    alpha: torch.Tensor
    vertex_weight: torch.Tensor
    band: torch.Tensor
    ring: torch.Tensor
    tone_face: SkinTone | None
    tone_head: SkinTone | None
    tone_head_matched: SkinTone | None
    gain: torch.Tensor
    shift: torch.Tensor
    head_mesh: Mesh
    head_maps: ReflectanceMaps
    shape: object
    scale: float
    rotation: torch.Tensor
    translation: torch.Tensor
    max_offset_mm: float


def _check_same_layout(a: Mesh, b: Mesh) -> None:
    if a.n_vertices != b.n_vertices or a.faces.shape != b.faces.shape or not torch.equal(
            a.faces.cpu(), b.faces.cpu()) or not torch.allclose(a.uvs.cpu(), b.uvs.cpu(), atol=1e-6):
        raise ValueError("head transfer needs two meshes of the same topology and UV layout (EduHead meshes): "
                         f"got {a.n_vertices} and {b.n_vertices} vertices or different faces/UVs")


def transfer_to_head(face_mesh: Mesh, face_maps: ReflectanceMaps, head_mesh: Mesh | None = None,
                     head_maps: ReflectanceMaps | None = None, profile=None,
                     blend_width: float = DEFAULT_BLEND_WIDTH, face_mask: torch.Tensor | None = None, *,
                     face_weight: torch.Tensor | None = None, tone_space: str = "log", match_std: bool = True,
                     align: str = "similarity", relax_iterations: int = 50, face_shape=None, head_shape=None,
                     head=None, head_skin=None, seed: int = 0) -> tuple[Mesh, ReflectanceMaps, HeadTransferInfo]:
    """Put a reconstructed face (shape and maps) on a complete head model.

    Args:
        face_mesh: the reconstruction, an EduHead-topology :class:`Mesh` (e.g. a fitted identity
            and expression); only its face region is used.
        face_maps: its :class:`ReflectanceMaps` ``(H, W)``.
        head_mesh: the head model (default: EduHead's mean head, neutral).
        head_maps: the head model's maps at ``(H, W)`` (default: :func:`head_model_maps` with
            ``head_skin`` and ``seed``).
        profile: a :class:`~avatarme_edu.profiles.Profile`; its device is used (default: the device
            of ``face_maps``).
        blend_width: feathering of the face mask's edge, a fraction of the UV width (0 to 0.5).
        face_mask: ``(H, W)`` bool, texels where the reconstruction is valid (default
            ``face_maps.mask``; always and-ed with it). A cropped or half-masked face blends only there.
        face_weight: ``(V,)`` soft face region in [0, 1] (default EduHead's ``vertex_regions()["face"]``).
        tone_space: ``"log"`` (default), ``"linear"`` or ``"none"`` (no skin tone matching).
        match_std: match the standard deviation too, not only the mean.
        align: ``"similarity"`` (default), ``"rigid"`` or ``"none"``: how the head is fitted to the face.
        relax_iterations: Laplacian relaxation steps of the geometry in the seam band.
        face_shape / head_shape: :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps` of the two meshes
            at ``(H, W)`` if already baked (e.g. ``subject.shape``), else baked here.
        head: the EduHead model (default :func:`~avatarme_edu.geometry.head.load_eduhead`).
        head_skin, seed: the :class:`~avatarme_edu.lightstage.skin.SkinParams` and seed the default
            head maps are painted with (ignored when ``head_maps`` is given).

    Returns:
        ``(mesh, maps, info)``: the complete head (EduHead topology), its maps ``(H, W)`` and a
        :class:`HeadTransferInfo`. Where ``info.alpha`` is 1 the maps equal the face's (albedos
        exactly; normals as the same object-space directions) and the vertices equal the face's;
        where it is 0 they are the (aligned, tone-matched) head model's.
    """
    from avatarme_edu.geometry.raster import rasterize_uv
    from avatarme_edu.geometry.uv_bake import bake_shape_maps

    if not isinstance(face_mesh, Mesh):
        raise ValueError(f"face_mesh must be a Mesh, got {type(face_mesh).__name__}")
    if not isinstance(face_maps, ReflectanceMaps):
        raise ValueError(f"face_maps must be ReflectanceMaps, got {type(face_maps).__name__}")
    if tone_space not in TONE_SPACES:
        raise ValueError(f"tone_space must be one of {TONE_SPACES}, got {tone_space!r}")
    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
    device = profile.torch_device if profile is not None else face_maps.mask.device
    hw = tuple(face_maps.hw)

    needs_head = head_mesh is None or head_maps is None or face_weight is None
    if head is None and needs_head:
        from avatarme_edu.geometry.head import load_eduhead

        head = load_eduhead(device=device)
    face_mesh = Mesh(face_mesh.vertices.detach().to(device), face_mesh.faces.to(device), face_mesh.uvs.to(device))
    if head_mesh is None:
        head_mesh = head.mesh()
    head_mesh = Mesh(head_mesh.vertices.detach().to(device), head_mesh.faces.to(device), head_mesh.uvs.to(device))
    _check_same_layout(face_mesh, head_mesh)
    if face_weight is None:
        regions = head.vertex_regions()
        face_weight = regions["face"]
    face_weight = face_weight.to(device)
    if face_weight.shape != (face_mesh.n_vertices,):
        raise ValueError(f"face_weight must be (V,) = ({face_mesh.n_vertices},), got {tuple(face_weight.shape)}")

    face_maps = face_maps.to(device)
    valid = face_maps.mask.bool()
    if face_mask is not None:
        if face_mask.dtype != torch.bool or tuple(face_mask.shape) != hw:
            raise ValueError(f"face_mask must be an {hw} bool tensor, got {tuple(face_mask.shape)} {face_mask.dtype}")
        valid = valid & face_mask.to(device)

    fragments = rasterize_uv(head_mesh, hw)  # one UV rasterisation serves every bake: shared layout
    if head_maps is None:
        head_maps, baked = head_model_maps(head_mesh, hw, skin=head_skin, seed=seed, head=head, fragments=fragments)
        head_shape = head_shape if head_shape is not None else baked
    if tuple(head_maps.hw) != hw:
        raise ValueError(f"head_maps are {tuple(head_maps.hw)} but face_maps are {hw}; give maps of one size")
    head_maps = head_maps.to(device)
    if face_shape is None:
        face_shape = bake_shape_maps(face_mesh, hw, fragments=fragments)
    if head_shape is None:
        head_shape = bake_shape_maps(head_mesh, hw, fragments=fragments)

    # 1. where
    alpha, vertex_weight = blend_weights(head_mesh, face_weight, valid, blend_width, fragments)
    alpha = alpha * valid

    # 2. skin tone, measured on bare skin in the seam band, the same texels on both heads
    non_skin = None
    if head is not None:
        from avatarme_edu.geometry.raster import interpolate

        regions = head.vertex_regions()
        names = [n for n in NON_SKIN_REGIONS if n in regions]
        if names:
            stacked = torch.stack([regions[n].float().to(device) for n in names], 1).amax(1, keepdim=True)
            non_skin = interpolate(fragments, stacked, head_mesh.faces)[0]
    ring = tone_ring(alpha, valid & head_maps.mask, non_skin)
    tone_face = tone_head = tone_matched = None
    gain, shift = torch.ones(3, device=device), torch.zeros(3, device=device)
    if tone_space != "none" and bool(ring.any()):
        tone_face = skin_tone_stats(face_maps.diffuse_albedo, ring, tone_space)
        tone_head = skin_tone_stats(head_maps.diffuse_albedo, ring, tone_space)
        gain, shift = tone_transform(tone_head, tone_face, match_std)
        spec_face = skin_tone_stats(face_maps.specular_albedo, ring, tone_space)
        spec_head = skin_tone_stats(head_maps.specular_albedo, ring, tone_space)
        keep = head_maps.mask[None].float()
        head_maps = ReflectanceMaps(
            diffuse_albedo=match_skin_tone(head_maps.diffuse_albedo, tone_head, tone_face, match_std) * keep,
            specular_albedo=match_skin_tone(head_maps.specular_albedo, spec_head, spec_face, match_std) * keep,
            diffuse_normals=head_maps.diffuse_normals, specular_normals=head_maps.specular_normals,
            mask=head_maps.mask)
        tone_matched = skin_tone_stats(head_maps.diffuse_albedo, ring, tone_space)

    # 3. geometry
    mesh, g = blend_geometry(face_mesh, head_mesh, vertex_weight, relax_iterations, align)
    out_shape = bake_shape_maps(mesh, hw, fragments=fragments)

    # 4. maps
    maps = blend_maps(face_maps, head_maps, alpha, face_shape, head_shape, out_shape, g["rotation"])
    moved = (mesh.vertices - g["aligned_head"].vertices).norm(dim=-1)
    info = HeadTransferInfo(alpha=alpha, vertex_weight=vertex_weight, band=g["band"], ring=ring,
                            tone_face=tone_face, tone_head=tone_head, tone_head_matched=tone_matched,
                            gain=gain, shift=shift, head_mesh=g["aligned_head"], head_maps=head_maps,
                            shape=out_shape, scale=g["scale"], rotation=g["rotation"],
                            translation=g["translation"], max_offset_mm=float(moved.max()) * 1000.0)
    return mesh, maps, info


def transfer_figure(face_maps: ReflectanceMaps, maps: ReflectanceMaps, info: HeadTransferInfo,
                    head_maps_before: ReflectanceMaps | None = None):
    """Before and after, as one :func:`~avatarme_edu.render.figures.show_maps` grid.

    Panels: the face's albedo (input), the head model's albedo before (if given) and after tone
    matching, the blend weight alpha, the ring where tones were compared, and the result's four maps.
    """
    from avatarme_edu.render.figures import show_maps

    panels = {"face: diffuse_albedo (input)": face_maps.diffuse_albedo}
    kinds = {}
    if head_maps_before is not None:
        panels["head model: diffuse_albedo"] = head_maps_before.diffuse_albedo
    panels["head model: tone matched"] = info.head_maps.diffuse_albedo
    panels["blend weight alpha (1 = face)"] = info.alpha[None]
    panels["tone ring"] = info.ring
    panels["result: diffuse_albedo"] = maps.diffuse_albedo
    panels["result: specular_albedo"] = maps.specular_albedo
    panels["result: specular_normals"] = maps.specular_normals
    panels["result: diffuse_normals"] = maps.diffuse_normals
    kinds["blend weight alpha (1 = face)"] = "gray"
    return show_maps(panels, kinds=kinds, ncols=3, title="Head model transfer")
