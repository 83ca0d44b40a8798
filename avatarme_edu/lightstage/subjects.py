"""Virtual light-stage subjects: a head shape plus its ground-truth reflectance maps, from one seed.

AvatarMe's training data are 200 people, each scanned in 7 expressions in a light stage. Our
stand-in is a *subject*: an EduHead shape (identity drawn from the seed, one of the 7 expressions)
and the skin maps a light stage would have measured, painted by :mod:`~avatarme_edu.lightstage.skin`.

How one subject is made (:func:`make_subject`):

1. **Shape.** The seed draws EduHead identity coefficients; the expression adds its blendshapes. The
   UV layout is the same for every head, so the UV rasterisation (which triangle covers each texel)
   is done once per map size and shared by all subjects.
2. **Shape maps** (:func:`~avatarme_edu.geometry.uv_bake.bake_shape_maps`): position, shape normals
   N_O (object space) and N_T (tangent space of the smoothed base surface), depth, mask.
3. **Regions.** EduHead's soft per-vertex region weights (nose, lips, cheeks...) are interpolated
   into UV with :func:`~avatarme_edu.geometry.raster.interpolate`.
4. **Skin** (:func:`~avatarme_edu.lightstage.skin.skin_reflectance`): diffuse and specular albedo,
   and pore/wrinkle detail normals (full detail for the specular, subsurface-blurred for the diffuse).
5. **Normals.** The detail is put on top of the shape (reoriented normal mapping):

   * ``specular_normals`` N_S = perturb(N_T, full detail), **tangent space**;
   * ``diffuse_normals``  N_D = tangent_to_object(perturb(N_T, blurred detail)), **object space**.

Identity and skin belong to the *identity*, not to the expression: the seven expressions of one seed
share identity coefficients, skin parameters and the same albedo maps texel for texel (the skin is
painted once, with the texel size of the neutral face), and differ only in shape - and so in
the shape maps and the normals built on them. (Real wrinkles deepen with some expressions; that is
left out here.)

Randomness: ``seed`` is split into independent streams for identity, skin parameters and skin
maps (CPU generators), so the same seed gives the same subject on any device and at any map size
(a larger map shows the same subject sharper, see :mod:`~avatarme_edu.lightstage.noise`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

import torch

from avatarme_edu.geometry.mesh import Mesh
from avatarme_edu.geometry.raster import Fragments, interpolate, rasterize_uv
from avatarme_edu.geometry.uv_bake import ShapeMaps, bake_shape_maps, tangent_to_object
from avatarme_edu.imaging import unit_vectors
from avatarme_edu.lightstage import noise
from avatarme_edu.geometry.regions import REGION_NAMES
from avatarme_edu.lightstage.relief import perturb_normals
from avatarme_edu.lightstage.skin import SkinMaps, skin_reflectance, skin_texel_mm
from avatarme_edu.lightstage.skin_params import SkinParams, sample_skin_params
from avatarme_edu.profiles import Profile
from avatarme_edu.reflectance import ReflectanceMaps
from avatarme_edu.geometry.head import load_eduhead
from avatarme_edu.geometry import head as head_module
from avatarme_edu.seeds import check_seed  # the one seed rule


@dataclass
class Subject:
    """One virtual light-stage subject in one expression. All maps share the UV layout ``(H, W)``.

    * ``id``: the identity number (the seed); all expressions of one identity share it;
    * ``identity``: ``(K,)`` EduHead identity coefficients (in standard deviations of the population);
    * ``skin``: the :class:`~avatarme_edu.lightstage.skin.SkinParams` the maps were painted from;
    * ``mesh``: the head in this expression (metres, EduHead's topology and UVs);
    * ``shape``: its baked :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps`;
    * ``reflectance``: the ground truth :class:`~avatarme_edu.reflectance.ReflectanceMaps`
      (diffuse albedo (3, H, W) linear RGB, specular albedo (1, H, W), diffuse normals (3, H, W)
      object space, specular normals (3, H, W) tangent space, mask);
    * ``regions``: soft region weights ``(H, W)`` in [0, 1] (face, nose, lips...);
    * ``height``: ``(1, H, W)`` skin relief in mm (pores and wrinkles < 0), for teaching plots;
    * ``texel_mm``: texel size ``(rows, cols)`` in mm on the face.
    """

    id: int
    seed: int
    expression: str
    identity: torch.Tensor
    skin: SkinParams
    mesh: Mesh
    shape: ShapeMaps
    reflectance: ReflectanceMaps
    regions: dict[str, torch.Tensor] = field(repr=False)
    height: torch.Tensor = field(repr=False)
    texel_mm: tuple[float, float] = (0.0, 0.0)

    def __repr__(self) -> str:  # the default would print every map
        h, w = self.hw
        return (f"Subject(id={self.id}, expression={self.expression!r}, maps={w}x{h}, "
                f"device={self.mask.device}, skin={self.skin})")

    @property
    def mask(self) -> torch.Tensor:
        """``(H, W)`` bool: texels on the surface."""
        return self.reflectance.mask

    @property
    def hw(self) -> tuple[int, int]:
        return self.reflectance.hw

    @property
    def name(self) -> str:
        """``subject_0007_smile``: the identity and the expression, as used for file names."""
        return f"{subject_dir_name(self.id)}_{self.expression}"

    def maps(self) -> dict[str, torch.Tensor]:
        """The maps to look at, by name (for :func:`avatarme_edu.figures.maps.show_maps`)."""
        r = self.reflectance
        return {"diffuse_albedo": r.diffuse_albedo, "specular_albedo": r.specular_albedo,
                "diffuse_normals": r.diffuse_normals, "specular_normals": r.specular_normals,
                "normals_tangent": self.shape.normals_tangent, "depth": self.shape.depth}

    def to(self, device) -> "Subject":
        return Subject(self.id, self.seed, self.expression, self.identity.to(device), self.skin,
                       self.mesh.to(device), self.shape.to(device), self.reflectance.to(device),
                       {k: v.to(device) for k, v in self.regions.items()}, self.height.to(device),
                       self.texel_mm)


def subject_dir_name(identity_id: int) -> str:
    """``subject_0007``: the folder (and name prefix) of an identity."""
    return f"subject_{int(identity_id):04d}"


# ----------------------------------------------------------------------------------------------
# Making subjects
# ----------------------------------------------------------------------------------------------


def _expressions(head) -> tuple[str, ...]:
    return tuple(getattr(head, "expressions", None) or head_module.EXPRESSIONS)


def _check_expression(expression, valid: tuple[str, ...]) -> str:
    if expression not in valid:
        raise ValueError(f"unknown expression {expression!r}; valid expressions are: {', '.join(valid)}")
    return expression


def _streams(seed: int) -> tuple[torch.Generator, torch.Generator, torch.Generator]:
    """Independent CPU generators for identity, skin parameters and skin maps."""
    g = torch.Generator().manual_seed(seed)
    g_identity, g_params, g_maps = noise.split_generator(g, 3)
    return g_identity, g_params, g_maps


def _sample_identity(head, generator: torch.Generator) -> torch.Tensor:
    """EduHead identity coefficients for one person, drawn from ``generator``."""
    return head.sample_identity(generator).reshape(-1)


def identity_of(seed: int, head) -> torch.Tensor:
    """The identity coefficients ``(K,)`` of subject ``seed`` (``head --seed N`` is subject N)."""
    return _sample_identity(head, _streams(check_seed(seed))[0])


class _LayoutKey:
    """A mesh's UV layout as a cache key: equal when the faces and UVs are equal (not the positions)."""

    def __init__(self, mesh: Mesh, hw: tuple[int, int]):
        self.mesh, self.hw = mesh, hw
        digest = hashlib.sha1(mesh.uvs.detach().float().cpu().numpy().tobytes())
        digest.update(mesh.faces.detach().cpu().numpy().tobytes())
        self.key = (digest.hexdigest(), hw, str(mesh.vertices.device))

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _LayoutKey) and self.key == other.key


@functools.lru_cache(maxsize=2)
def _uv_fragments(layout: _LayoutKey) -> Fragments:
    # Every head shares one UV layout: rasterise it once per map size and device.
    return rasterize_uv(layout.mesh, layout.hw)


def uv_fragments_for(mesh: Mesh, hw: tuple[int, int]) -> Fragments:
    return _uv_fragments(_LayoutKey(mesh, tuple(hw)))


def bake_regions(fragments: Fragments, faces: torch.Tensor,
                 vertex_regions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-vertex region weights ``name -> (V,)`` -> UV maps ``name -> (H, W)`` in [0, 1].

    Only the regions the skin painter knows (:data:`~avatarme_edu.geometry.regions.REGION_NAMES`)
    are kept; all are interpolated in one pass.
    """
    names = [n for n in REGION_NAMES if n in vertex_regions]
    if not names:
        raise ValueError(f"vertex_regions has none of the skin regions {', '.join(REGION_NAMES)}")
    device = fragments.face_index.device
    stacked = torch.stack([vertex_regions[n].to(device=device, dtype=torch.float32) for n in names], 1)
    maps = interpolate(fragments, stacked, faces).clamp(0, 1)
    return {n: maps[i] for i, n in enumerate(names)}


def reflectance_from_skin(skin: SkinMaps, shape: ShapeMaps) -> ReflectanceMaps:
    """Put the skin's detail normals on the shape: the four ground-truth maps AvatarMe predicts.

    ``specular_normals`` = perturb(N_T, full detail) in tangent space; ``diffuse_normals`` =
    perturb(N_T, subsurface-blurred detail) brought to object space. Zero outside the mask.
    """
    mask = shape.mask
    keep = mask.to(torch.float32)[None]
    n_t = shape.normals_tangent
    specular = perturb_normals(n_t, skin.specular_detail_normals.to(n_t.device)) * keep
    diffuse_t = perturb_normals(n_t, skin.diffuse_detail_normals.to(n_t.device))
    diffuse = unit_vectors(tangent_to_object(diffuse_t, shape)) * keep
    return ReflectanceMaps(diffuse_albedo=skin.diffuse_albedo * keep, specular_albedo=skin.specular_albedo * keep,
                           diffuse_normals=diffuse, specular_normals=specular, mask=mask.clone())


def make_subject(seed: int, profile: Profile, expression: str = "neutral", head=None) -> Subject:
    """Subject ``seed`` in ``expression``, with maps at ``profile.map_hw`` on ``profile.device``.

    ``head``: the head model (default: :func:`avatarme_edu.geometry.head.load_eduhead`). Same seed,
    same subject. About 1-2 s for the cpu profile's 576x384 maps on a laptop CPU.

    >>> s = make_subject(7, get_profile("cpu"), "smile")   # doctest: +SKIP
    >>> s.reflectance.diffuse_albedo.shape                   # doctest: +SKIP
    torch.Size([3, 384, 576])
    """
    return make_subject_expressions(seed, profile, (expression,), head=head)[0]


def make_subject_expressions(seed: int, profile: Profile, expressions=None, head=None) -> list[Subject]:
    """The same identity (``seed``) in several expressions (default: all 7), painted once.

    Faster than calling :func:`make_subject` per expression: the skin maps are made once and shared,
    so the albedo maps of all the returned subjects are identical texel for texel.
    """
    seed = check_seed(seed)
    if not isinstance(profile, Profile):
        raise ValueError(f"profile must be an avatarme_edu.profiles.Profile, got {type(profile).__name__}")
    device = profile.torch_device
    if head is None:
        head = load_eduhead(device=device)
    valid = _expressions(head)
    expressions = valid if expressions is None else tuple(expressions)
    if not expressions:
        raise ValueError(f"expressions is empty; choose from: {', '.join(valid)}")
    for e in expressions:
        _check_expression(e, valid)
    hw = tuple(int(x) for x in profile.map_hw)

    g_identity, g_params, g_maps = _streams(seed)
    identity = _sample_identity(head, g_identity).to(device)
    params = sample_skin_params(g_params)

    # The UV layout is the same for every expression: rasterise once, bake regions once.
    neutral = head.mesh(identity, "neutral").to(device)
    fragments = uv_fragments_for(neutral, hw)
    regions = bake_regions(fragments, neutral.faces, head.vertex_regions())
    mask = fragments.mask
    # The skin is painted once, at the texel size of the neutral face, so every expression gets the
    # same albedo texel for texel.
    position = interpolate(fragments, neutral.vertices.detach().float(), neutral.faces)
    texel = skin_texel_mm(mask, position, regions)
    skin = skin_reflectance(regions, mask, params, g_maps, texel_mm=texel)

    subjects = []
    for expression in expressions:
        mesh = neutral if expression == "neutral" else head.mesh(identity, expression).to(device)
        mesh = Mesh(mesh.vertices.detach(), mesh.faces, mesh.uvs)
        shape = bake_shape_maps(mesh, hw, fragments=fragments)
        subjects.append(Subject(id=seed, seed=seed, expression=expression, identity=identity.detach().clone(),
                                skin=params, mesh=mesh, shape=shape,
                                reflectance=reflectance_from_skin(skin, shape), regions=regions,
                                height=skin.height, texel_mm=texel))
    return subjects
