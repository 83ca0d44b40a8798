"""Head-model transfer: the reconstructed face on a complete head.

AvatarMe reconstructs the *face*; to show a whole person it "transfers the face's shape and maps
onto a complete head model". Because every EduHead mesh shares one topology and one UV layout, this
transfer is not a registration problem at all - vertex ``i`` of the reconstruction *is* vertex ``i``
of the head model, texel ``(row, col)`` of one map *is* that texel of the other. So the transfer is
a **blend** of two heads, with a weight that is 1 on the face, 0 on the rest of the head and soft in
between. What makes a blend look seamless is the subject of this module:

1. **Where** (:func:`face_blend_weights`). EduHead's soft ``face`` region (per vertex, in [0, 1]) says where
   the face is. A reconstruction may cover less than that (a cropped photo, a self-occluded cheek), so a
   ``face_mask`` ``(H, W)`` says which texels hold data; it is *feathered*
   (:func:`~avatarme_edu.completion.blend.feather_mask`, ``blend_width`` wide) so the weight also fades out
   towards the edge of the data. The same weight is rasterised into UV (``alpha`` per texel, for the maps) and
   sampled at the vertices (``vertex_weight``, for the geometry).
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

:func:`transfer_to_head` runs all four steps: where and how to blend are in
:mod:`~avatarme_edu.completion.blend`, the skin tone in :mod:`~avatarme_edu.completion.tone`. Map conventions
are those of :mod:`avatarme_edu.reflectance`: ``(C, H, W)`` float32, diffuse albedo linear RGB, diffuse
normals in object space, specular normals in the tangent space of :mod:`avatarme_edu.geometry.uv_bake`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatarme_edu.completion.blend import (ALIGN_MODES, DEFAULT_BLEND_WIDTH, blend_geometry, blend_maps,
                                           check_same_layout, face_blend_weights)
from avatarme_edu.completion.tone import (TONE_SPACES, SkinTone, match_skin_tone, skin_tone_stats, tone_ring,
                                          tone_transform)
from avatarme_edu.geometry.head import load_eduhead
from avatarme_edu.geometry.mesh import Mesh
from avatarme_edu.geometry.raster import interpolate, rasterize_uv
from avatarme_edu.geometry.uv_bake import bake_shape_maps
from avatarme_edu.lightstage.skin import skin_reflectance, skin_texel_mm
from avatarme_edu.lightstage.skin_params import SkinParams
from avatarme_edu.lightstage.subjects import bake_regions, reflectance_from_skin
from avatarme_edu.reflectance import ReflectanceMaps

NON_SKIN_REGIONS = ("scalp", "brows", "beard", "eyes", "lips", "mouth_interior", "ears")


def head_model_maps(head_mesh: Mesh, hw: tuple[int, int], skin=None, seed: int = 0, head=None,
                    fragments=None):
    """Skin maps for a head-model mesh, so the transfer has a complete head to put the face on.

    Painted by the virtual light stage's skin model (:func:`~avatarme_edu.lightstage.skin.skin_reflectance`)
    with ``skin`` (a :class:`~avatarme_edu.lightstage.skin.SkinParams`; default: the average
    parameters: medium skin, short brown hair) and ``seed``. ``head``: the EduHead model (for its regions).
    Returns ``(ReflectanceMaps, ShapeMaps)`` at ``hw`` on the mesh's device.
    """
    device = head_mesh.vertices.device
    if head is None:
        head = load_eduhead(device=device)
    if fragments is None:
        fragments = rasterize_uv(head_mesh, hw)
    shape = bake_shape_maps(head_mesh, hw, fragments=fragments)
    regions = bake_regions(fragments, head_mesh.faces, head.vertex_regions())
    texel = skin_texel_mm(shape.mask, shape.position, regions)
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
        head = load_eduhead(device=device)
    face_mesh = Mesh(face_mesh.vertices.detach().to(device), face_mesh.faces.to(device), face_mesh.uvs.to(device))
    if head_mesh is None:
        head_mesh = head.mesh()
    head_mesh = Mesh(head_mesh.vertices.detach().to(device), head_mesh.faces.to(device), head_mesh.uvs.to(device))
    check_same_layout(face_mesh, head_mesh)
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
    alpha, vertex_weight = face_blend_weights(head_mesh, face_weight, valid, blend_width, fragments)
    alpha = alpha * valid

    # 2. skin tone, measured on bare skin in the seam band, the same texels on both heads
    non_skin = None
    if head is not None:
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
