"""Shading AvatarMe's render-ready maps: texture-space lighting, then a camera view.

AvatarMe's promise is that its four maps plug straight into a renderer (paper, section 6): the diffuse
albedo A_D is lit on the smooth **diffuse normals** N_D, the colourless specular reflection is lit on
the detailed **specular normals** N_S and scaled by the **specular albedo** A_S. This module is that
renderer, written for reading:

1. :func:`shade_uv` lights every texel of the UV maps ("texture-space lighting"): per texel we know the
   surface position (the baked position map), both normals and the direction to the camera.

   * Diffuse: Lambert, ``L_d = A_D / pi * E`` with the irradiance ``E`` from every light evaluated on N_D.
   * Subsurface scattering: light entering skin leaves it a few millimetres away, more so for red light
     (haemoglobin absorbs green and blue). Following d'Eon & Luebke (GPU Gems 3, 2007, "texture-space
     diffusion") we blur the *irradiance* in UV space with their sum of six Gaussians fitted to a
     measured skin diffusion profile, each Gaussian with its own red/green/blue weight; kernel widths
     are millimetres turned into texels through the position map's texel size. A normalised
     convolution (blur of ``E * mask`` divided by blur of ``mask``) keeps the background from leaking in.
     The albedo multiplies after the blur ("post-scatter" texturing), so freckles and pores stay sharp.
   * Specular: a normalised Blinn-Phong lobe or a GGX microfacet lobe (height-correlated Smith
     visibility), with Schlick's Fresnel (``F0 = 0.028`` for skin, index of refraction ~1.4), on N_S
     brought from tangent space to object space with :func:`~avatarme_edu.geometry.uv_bake.tangent_to_object`.
   * An :class:`~avatarme_edu.render.lights.SHEnvironment` adds its exact order-2 irradiance to the
     diffuse term and, to the specular term, the (very blurred) environment seen in the mirror direction.
   The lobes, the diffusion profile and the shadow maps are shared physics, in
   :mod:`avatarme_edu.optics` (``brdf``, ``subsurface``, ``shadows``); this module puts them together.
2. :func:`render_view` rasterises the mesh from a camera, interpolates the UVs and samples the shaded UV
   maps bilinearly - so the image shows exactly the lighting computed in texture space.

Units and scale (see :mod:`avatarme_edu.render.lights`): a light of ``intensity`` 1 facing a white
Lambertian texel gives radiance 1.0, i.e. display white. All outputs are linear RGB radiance; use
:func:`to_srgb_image` (exposure in photographic stops) for display.

Cast shadows are optional (``shadows=True``: a shadow map per directional or point light, one extra
rasterisation each). What the renderer leaves out, on purpose: inter-reflection and occlusion of the
environment light, the eyes' and hair's own materials, and the UV seams (the subsurface blur does not
cross UV chart borders).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from avatarme_edu.color import linear_to_srgb
from avatarme_edu.geometry.camera import Camera
from avatarme_edu.geometry.raster import dilate, interpolate, rasterize_image
from avatarme_edu.geometry.texels import local_texel_size_mm, texel_size_mm
from avatarme_edu.geometry.uv_bake import tangent_to_object
from avatarme_edu.imaging import channel_dot, check_map, unit_vectors
from avatarme_edu.optics.brdf import (SKIN_F0, SKIN_PERCEPTUAL_ROUGHNESS, alpha_to_blinn_exponent, blinn_phong_lobe,
                                      fresnel_schlick, ggx_lobe, roughness_to_alpha)
from avatarme_edu.optics.shadows import SHADOW_SOFTNESS_MM, shadow_visibility
from avatarme_edu.optics.subsurface import subsurface_blur
from avatarme_edu.render.lights import DirectionalLight, SHEnvironment, as_light_list

SPECULAR_MODELS = ("blinn_phong", "microfacet")

# The specular albedo a light-stage capture reports for typical skin (maps are normalised, so values
# ~0.2-0.6 are common). A texel with this value reflects with exactly F0 = SKIN_F0; oilier texels more.
REFERENCE_SPECULAR_ALBEDO = 0.35


# ---------------------------------------------------------------------------------------------- helpers


def _as_vec(value, device, dtype=torch.float32) -> torch.Tensor:
    """``(3,)`` numbers -> ``(3, 1, 1)`` tensor that broadcasts over a map."""
    return torch.as_tensor(value, dtype=dtype, device=device).reshape(3, 1, 1)


def _specular_lobe(model: str, n: torch.Tensor, l: torch.Tensor, v: torch.Tensor,
                   alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The half vector ``h`` and the ``(1, H, W)`` specular lobe (no Fresnel) for light ``l``, view ``v``."""
    h = unit_vectors(l + v, dim=0)  # l = -v gives h = 0 and so no highlight, never a NaN
    n_dot_h = channel_dot(n, h, dim=0)
    if model == "blinn_phong":
        lobe = blinn_phong_lobe(n_dot_h, alpha_to_blinn_exponent(alpha))
    else:
        lobe = ggx_lobe(n_dot_h, channel_dot(n, l, dim=0), channel_dot(n, v, dim=0), alpha)
    return h, lobe


@functools.lru_cache(maxsize=32)
def _directional_albedo_table(model: str, alpha: float, f0: float, n: int = 16) -> torch.Tensor:
    """``(n,)`` float64: the fraction of light a specular lobe reflects, for ``n.v`` on a grid over [0, 1].

    Integrates ``f(l, v) n.l`` over the hemisphere of ``l`` numerically (a midpoint grid fine enough for
    the narrowest allowed lobe) for a flat normal ``n = +Z``. Used to scale the environment's
    reflection: at grazing angles Fresnel grows, but masking and shadowing of microfacets take it back.
    """
    n_theta, n_phi = 128, 256
    theta = (torch.arange(n_theta, dtype=torch.float64) + 0.5) / n_theta * (math.pi / 2)
    phi = (torch.arange(n_phi, dtype=torch.float64) + 0.5) / n_phi * (2 * math.pi)
    th, ph = torch.meshgrid(theta, phi, indexing="ij")
    l = torch.stack([torch.sin(th) * torch.cos(ph), torch.sin(th) * torch.sin(ph), torch.cos(th)])[:, None]
    d_omega = torch.sin(th) * (math.pi / 2 / n_theta) * (2 * math.pi / n_phi)
    cos_v = torch.linspace(0.0, 1.0, n, dtype=torch.float64).clamp_min(1e-3)
    v = torch.stack([torch.sqrt(1 - cos_v**2), torch.zeros_like(cos_v), cos_v]).view(3, n, 1, 1)
    normal = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).view(3, 1, 1, 1)
    h, lobe = _specular_lobe(model, normal, l, v, alpha)  # (1, n, n_theta, n_phi)
    f = fresnel_schlick(channel_dot(v, h, dim=0), f0) * lobe
    return (f[0] * l[2] * d_omega).sum(dim=(1, 2))


def specular_directional_albedo(n_dot_v: torch.Tensor, model: str, alpha: float, f0: float) -> torch.Tensor:
    """How much of a uniform environment the specular lobe reflects towards a viewer at ``n.v``
    (same shape as ``n_dot_v``; linear interpolation in a cached table)."""
    table = _directional_albedo_table(model, float(alpha), float(f0)).to(n_dot_v.device, n_dot_v.dtype)
    x = n_dot_v.clamp(0.0, 1.0) * (table.numel() - 1)
    i0 = x.floor().long().clamp(max=table.numel() - 2)
    t = x - i0
    return table[i0] * (1 - t) + table[i0 + 1] * t


# ---------------------------------------------------------------------------------------------- lights
def _light_at(light, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a directional or point light: ``(E_perp, l)`` - the irradiance on a surface facing the light
    (``(3, 1, 1)`` or ``(3, H, W)``) and the unit direction towards it (same shapes)."""
    device, dtype = position.device, position.dtype
    color = _as_vec(light.color, device, dtype)
    if isinstance(light, DirectionalLight):
        return math.pi * light.intensity * color, _as_vec(light.direction, device, dtype)
    to_light = _as_vec(light.position, device, dtype) - position
    dist2 = channel_dot(to_light, to_light, dim=0).clamp_min(1e-8)  # a texel at the lamp itself gets no NaN
    return math.pi * light.intensity * color / dist2, to_light / dist2.sqrt()


# ---------------------------------------------------------------------------------------------- shading
def shade_uv(shape, maps, lights, camera_position, sss: bool = True, specular_model: str = "blinn_phong",
             roughness: float = SKIN_PERCEPTUAL_ROUGHNESS, f0: float = SKIN_F0,
             specular_reference: float = REFERENCE_SPECULAR_ALBEDO,
             texel_mm: tuple[float, float] | None = None, shadows: bool = False, mesh=None,
             shadow_resolution: int = 512, shadow_softness_mm: float = SHADOW_SOFTNESS_MM) -> dict[str, torch.Tensor]:
    """Light every texel of the reflectance maps; returns linear radiance maps in UV space.

    Args:
        shape: :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps` of the mesh (position in metres,
            object-space shape normals, the tangent frame the specular normals live in, mask).
        maps: :class:`~avatarme_edu.reflectance.ReflectanceMaps` in the same UV layout.
        lights: one light or a list of :mod:`~avatarme_edu.render.lights` lights (world = object space).
        camera_position: ``(3,)`` camera centre in metres; the view vector of each texel points from
            ``shape.position`` to it, so only the specular term depends on it.
        sss: blur the diffuse irradiance with the skin diffusion profile (subsurface scattering).
        specular_model: ``"blinn_phong"`` (normalised) or ``"microfacet"`` (GGX + Smith).
        roughness: perceptual roughness in [0.2, 1]; ``alpha = roughness**2``. The default 0.45
            (alpha 0.2) looks like skin at these map sizes; lower looks oily or wet, higher matte.
        f0: Fresnel reflectance at normal incidence of a texel whose specular albedo equals
            ``specular_reference``; the specular term is scaled by ``specular_albedo / specular_reference``.
        texel_mm: one texel size ``(rows, cols)`` mm for the whole subsurface blur (default: every texel's
            own size from the position map, :func:`~avatarme_edu.geometry.texels.local_texel_size_mm`,
            so stretched parts of the atlas such as the neck are not over-blurred).
        shadows: cast shadows from directional and point lights with a shadow map of ``mesh`` (one
            extra rasterisation per light at ``shadow_resolution``, see :func:`~avatarme_edu.optics.shadows.shadow_visibility`);
            the shadowed irradiance is blurred by the subsurface term too, so shadow edges glow red.
        shadow_softness_mm: radius of the shadows' penumbra on the surface, mm (the key light's size;
            0 gives the shadow map's own hard, pixel-sized edge).

    Returns:
        dict of ``(3, H, W)`` float32 linear RGB: ``"diffuse"``, ``"specular"``, ``"total"``, and the
        ``"irradiance"`` before and ``"irradiance_sss"`` after the subsurface blur, plus the ``(H, W)``
        bool ``"mask"`` they are valid on (everything is zero outside it).
    """
    lights = as_light_list(lights)
    hw = tuple(maps.mask.shape)
    if tuple(shape.mask.shape) != hw:
        raise ValueError(f"shape maps are {tuple(shape.mask.shape)} but reflectance maps are {hw}; "
                         "bake the shape maps at the reflectance maps' size")
    for name, ch in (("position", 3), ("normals_object", 3)):
        check_map(f"shape.{name}", getattr(shape, name), ch, hw)
    if specular_model not in SPECULAR_MODELS:
        raise ValueError(f"specular_model must be one of {SPECULAR_MODELS}, got {specular_model!r}")
    if not 0.2 <= float(roughness) <= 1.0:
        raise ValueError(f"roughness must be in [0.2, 1], got {roughness}")
    if not 0.0 < float(f0) < 1.0:
        raise ValueError(f"f0 must be in (0, 1), got {f0}")
    if not float(specular_reference) > 0.0:
        raise ValueError(f"specular_reference must be > 0, got {specular_reference}")
    if shadows and mesh is None:
        raise ValueError("shadows=True needs the mesh (mesh=...) to cast them")

    position = shape.position.float()
    device, dtype = position.device, position.dtype
    mask = shape.mask.bool() & maps.mask.to(device).bool()
    m = mask.to(dtype)[None]

    n_diffuse = unit_vectors(maps.diffuse_normals.to(device, dtype), dim=0)
    n_specular = unit_vectors(tangent_to_object(maps.specular_normals.to(device, dtype), shape), dim=0)
    n_shape = shape.normals_object.to(device, dtype)
    view = unit_vectors(_as_vec(camera_position, device, dtype) - position, dim=0)
    n_dot_v = channel_dot(n_specular, view, dim=0)
    # A texel the camera cannot see (back-facing) reflects nothing towards it.
    facing = (n_dot_v > 0).to(dtype) * (channel_dot(n_shape, view, dim=0) > 0).to(dtype)
    alpha = roughness_to_alpha(float(roughness))
    # The specular albedo scales the Fresnel reflectance: A_S = specular_reference means F0 = f0.
    spec_weight = maps.specular_albedo.to(device, dtype) / float(specular_reference)

    irradiance = torch.zeros(3, *hw, device=device, dtype=dtype)
    specular = torch.zeros(3, *hw, device=device, dtype=dtype)
    for light in lights:
        if isinstance(light, SHEnvironment):
            irradiance = irradiance + light.irradiance(n_diffuse.permute(1, 2, 0)).permute(2, 0, 1)
            # Glossy reflection of the environment: its radiance around the mirror direction, blurred by
            # the lobe (a Phong lobe of exponent s attenuates SH band l by ~exp(-l^2 / 2s); Blinn-Phong's
            # exponent is ~4x Phong's), times the lobe's directional albedo at this viewing angle.
            phong_s = max(alpha_to_blinn_exponent(alpha) / 4.0, 1.0)
            bands = tuple(math.exp(-l * l / (2.0 * phong_s)) for l in range(3))
            mirror = 2.0 * n_dot_v * n_specular - view
            env = light.irradiance(unit_vectors(mirror, dim=0).permute(1, 2, 0), lobe=bands).permute(2, 0, 1)
            specular = specular + specular_directional_albedo(n_dot_v, specular_model, alpha, f0) * env * facing
            continue
        e_perp, l = _light_at(light, position)
        if shadows:
            e_perp = e_perp * shadow_visibility(mesh, position, n_shape, mask, light, shadow_resolution,
                                                softness_mm=shadow_softness_mm)
        irradiance = irradiance + e_perp * channel_dot(n_diffuse, l, dim=0).clamp_min(0.0)
        h, lobe = _specular_lobe(specular_model, n_specular, l, view, alpha)
        fres = fresnel_schlick(channel_dot(view, h, dim=0), f0)
        # The detailed specular normal can face a light that the surface itself faces away from; the
        # shape normal's horizon switches those highlights off smoothly.
        horizon = (channel_dot(n_shape, l, dim=0) / 0.1).clamp(0.0, 1.0)
        n_dot_l = channel_dot(n_specular, l, dim=0).clamp_min(0.0)
        specular = specular + e_perp * fres * lobe * n_dot_l * horizon * facing
    specular = specular * spec_weight * m

    irradiance = irradiance * m
    if sss:
        if texel_mm is not None:  # one size everywhere, as asked
            irradiance_sss = subsurface_blur(irradiance, mask, texel_mm)
        else:  # each texel's own size, from the position map (the atlas's stretch)
            irradiance_sss = subsurface_blur(irradiance, mask, texel_size_mm(position, mask),
                                             texel_map_mm=local_texel_size_mm(position, mask))
    else:
        irradiance_sss = irradiance
    diffuse = maps.diffuse_albedo.to(device, dtype) / math.pi * irradiance_sss * m
    return {"diffuse": diffuse, "specular": specular, "total": diffuse + specular,
            "irradiance": irradiance, "irradiance_sss": irradiance_sss, "mask": mask}


def to_srgb_image(linear: torch.Tensor, exposure: float = 0.0) -> torch.Tensor:
    """Linear radiance -> display sRGB in [0, 1]: scale by ``2**exposure`` (photographic stops), clip,
    encode with :func:`avatarme_edu.color.linear_to_srgb`."""
    return linear_to_srgb(linear * (2.0 ** float(exposure)))


def sample_uv(uv_maps: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of ``(C, H, W)`` UV maps at ``(2, h, w)`` coordinates ``(u, v)`` in [0, 1].

    ``grid_sample`` with ``align_corners=False`` puts ``-1`` on the left edge of texel 0, so
    ``x = 2u - 1`` puts texel ``col``'s centre at ``u = (col + 0.5) / W`` - our convention.
    """
    grid = (uv.permute(1, 2, 0) * 2.0 - 1.0)[None].to(uv_maps.dtype)
    return F.grid_sample(uv_maps[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def render_view(mesh, shape, maps, lights, camera, background=(0.0, 0.0, 0.0), exposure: float = 0.0,
                shadows: bool = True, shading: dict | None = None, seam_padding: int = 2,
                **shade_kwargs) -> dict[str, torch.Tensor]:
    """Render the shaded maps from ``camera``: rasterise, interpolate UVs, sample the UV radiance.

    Args:
        mesh: the :class:`~avatarme_edu.geometry.mesh.Mesh` the maps belong to (same UV layout).
        shape, maps, lights: as for :func:`shade_uv`.
        camera: a :class:`~avatarme_edu.geometry.camera.Camera`; its image size is the output size.
        background: linear RGB ``(3,)`` or a ``(3, H, W)`` image shown where no surface is.
        exposure: stops applied to the ``"srgb"`` output only.
        shadows: cast shadows (see :func:`~avatarme_edu.optics.shadows.shadow_visibility`; costs one small rasterisation per
            directional or point light). On by default here: pictures need them.
        shading: a :func:`shade_uv` result for this camera, to skip shading again.
        seam_padding: texels to dilate the UV maps by, so bilinear lookups at chart borders do not
            mix in the black background (dark seams).
        **shade_kwargs: passed to :func:`shade_uv` (``sss``, ``specular_model``, ``roughness``...).

    Returns:
        ``"image"`` ``(3, H, W)`` linear radiance over the background, ``"srgb"`` the same for display,
        ``"mask"`` ``(H, W)`` bool surface pixels, ``"diffuse"`` and ``"specular"`` ``(3, H, W)`` (zero
        off the surface), ``"depth"`` ``(H, W)`` metres (``inf`` off the surface) and ``"uv"`` ``(2, H, W)``.
    """
    if shading is None:
        shading = shade_uv(shape, maps, lights, camera.position, shadows=shadows, mesh=mesh, **shade_kwargs)
    device = shading["total"].device
    fragments = rasterize_image(mesh, camera)
    pixel_mask = fragments.mask.to(device)
    uv = interpolate(fragments, mesh.uvs, mesh.faces).to(device)
    terms = torch.cat([shading["diffuse"], shading["specular"]])
    if seam_padding > 0:
        terms = dilate(terms, shading["mask"], seam_padding)
    sampled = sample_uv(terms, uv) * pixel_mask[None]
    diffuse, specular = sampled[:3], sampled[3:]
    h, w = pixel_mask.shape
    bg = torch.as_tensor(background, dtype=diffuse.dtype, device=device)
    bg = bg.reshape(3, 1, 1).expand(3, h, w) if bg.numel() == 3 else bg
    if tuple(bg.shape) != (3, h, w):
        raise ValueError(f"background must be (3,) or (3, {h}, {w}), got {tuple(bg.shape)}")
    image = torch.where(pixel_mask[None], diffuse + specular, bg)
    depth = fragments.depth.to(device) if fragments.depth is not None else None
    return {"image": image, "srgb": to_srgb_image(image, exposure), "mask": pixel_mask,
            "diffuse": diffuse, "specular": specular, "depth": depth, "uv": uv * pixel_mask[None]}
