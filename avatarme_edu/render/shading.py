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
from avatarme_edu.render.lights import DirectionalLight, PointLight, SHEnvironment, as_light_list

SPECULAR_MODELS = ("blinn_phong", "microfacet")

# Skin's Fresnel reflectance at normal incidence (index of refraction ~1.4: ((1.4 - 1) / (1.4 + 1))^2).
SKIN_F0 = 0.028
# The specular albedo a light-stage capture reports for typical skin (maps are normalised, so values
# ~0.2-0.6 are common). A texel with this value reflects with exactly F0 = SKIN_F0; oilier texels more.
REFERENCE_SPECULAR_ALBEDO = 0.35

# Penumbra radius of cast shadows on the surface, mm: a studio key light (a ~0.5 m softbox ~2 m away)
# spreads the shadow of a nose or brow a few cm away over a few mm.
SHADOW_SOFTNESS_MM = 2.0

# d'Eon & Luebke's sum-of-Gaussians fit of a three-layer skin diffusion profile (GPU Gems 3, ch. 14):
# (variance in mm^2, (red, green, blue) weight). Each colour's weights sum to 1, so blurring conserves
# energy; red keeps weight in the wide Gaussians, blue almost none - that is the red glow of skin.
SKIN_DIFFUSION_PROFILE = (
    (0.0064, (0.233, 0.455, 0.649)),
    (0.0484, (0.100, 0.336, 0.344)),
    (0.187, (0.118, 0.198, 0.000)),
    (0.567, (0.113, 0.007, 0.007)),
    (1.99, (0.358, 0.004, 0.000)),
    (7.41, (0.078, 0.000, 0.000)),
)


# ---------------------------------------------------------------------------------------------- helpers
def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dot product over the channel axis of ``(3, H, W)`` fields (or ``(3, 1, 1)`` constants)."""
    return (a * b).sum(dim=0, keepdim=True)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=0, eps=1e-12)


def _as_vec(value, device, dtype=torch.float32) -> torch.Tensor:
    """``(3,)`` numbers -> ``(3, 1, 1)`` tensor that broadcasts over a map."""
    return torch.as_tensor(value, dtype=dtype, device=device).reshape(3, 1, 1)


def roughness_to_alpha(roughness: float) -> float:
    """Perceptual roughness in (0, 1] -> microfacet ``alpha = roughness**2`` (the usual remapping)."""
    return roughness * roughness


def alpha_to_blinn_exponent(alpha: float) -> float:
    """The Blinn-Phong exponent whose lobe matches a Beckmann/GGX ``alpha`` (Walter et al. 2007)."""
    return 2.0 / (alpha * alpha) - 2.0


def fresnel_schlick(cos_theta: torch.Tensor, f0: float) -> torch.Tensor:
    """Schlick's approximation of the Fresnel reflectance, ``F0 + (1 - F0) (1 - cos)^5``."""
    return f0 + (1.0 - f0) * (1.0 - cos_theta.clamp(0.0, 1.0)) ** 5


def blinn_phong_lobe(n_dot_h: torch.Tensor, exponent: float) -> torch.Tensor:
    """Normalised Blinn-Phong BRDF without Fresnel, ``(s + 8) / (8 pi) * (n.h)^s``.

    The ``(s + 8) / (8 pi)`` factor keeps the reflected energy about constant as the lobe narrows, so a
    sharper highlight is brighter, not dimmer.
    """
    return (exponent + 8.0) / (8.0 * math.pi) * n_dot_h.clamp(0.0, 1.0) ** exponent


def ggx_lobe(n_dot_h: torch.Tensor, n_dot_l: torch.Tensor, n_dot_v: torch.Tensor, alpha: float) -> torch.Tensor:
    """GGX microfacet BRDF without Fresnel: ``D(h) * V(l, v)`` with the height-correlated Smith
    visibility ``V = G / (4 n.l n.v)`` (Heitz 2014). Inputs are cosines; grazing angles stay finite."""
    a2 = alpha * alpha
    nh = n_dot_h.clamp(0.0, 1.0)
    d = a2 / (math.pi * (nh * nh * (a2 - 1.0) + 1.0) ** 2)
    nl, nv = n_dot_l.clamp(0.0, 1.0), n_dot_v.clamp(0.0, 1.0)
    lam_v = nl * torch.sqrt(nv * nv * (1.0 - a2) + a2)
    lam_l = nv * torch.sqrt(nl * nl * (1.0 - a2) + a2)
    vis = 0.5 / (lam_v + lam_l).clamp_min(1e-6)
    return d * vis


def _specular_lobe(model: str, n: torch.Tensor, l: torch.Tensor, v: torch.Tensor,
                   alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The half vector ``h`` and the ``(1, H, W)`` specular lobe (no Fresnel) for light ``l``, view ``v``."""
    h = _normalize(l + v)  # l = -v gives h = 0 and so no highlight, never a NaN
    n_dot_h = _dot(n, h)
    if model == "blinn_phong":
        lobe = blinn_phong_lobe(n_dot_h, alpha_to_blinn_exponent(alpha))
    else:
        lobe = ggx_lobe(n_dot_h, _dot(n, l), _dot(n, v), alpha)
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
    f = fresnel_schlick(_dot(v, h), f0) * lobe
    return (f[0] * l[2] * d_omega).sum(dim=(1, 2))


def specular_directional_albedo(n_dot_v: torch.Tensor, model: str, alpha: float, f0: float) -> torch.Tensor:
    """How much of a uniform environment the specular lobe reflects towards a viewer at ``n.v``
    (same shape as ``n_dot_v``; linear interpolation in a cached table)."""
    table = _directional_albedo_table(model, float(alpha), float(f0)).to(n_dot_v.device, n_dot_v.dtype)
    x = n_dot_v.clamp(0.0, 1.0) * (table.numel() - 1)
    i0 = x.floor().long().clamp(max=table.numel() - 2)
    t = x - i0
    return table[i0] * (1 - t) + table[i0 + 1] * t


def _check_map(name: str, t: torch.Tensor, channels: int, hw) -> None:
    if not torch.is_tensor(t) or t.ndim != 3 or t.shape[0] != channels or tuple(t.shape[1:]) != tuple(hw):
        shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
        raise ValueError(f"{name} must be ({channels}, {hw[0]}, {hw[1]}), got {shape}")


# ---------------------------------------------------------------------------------------------- subsurface
def texel_size_mm(position: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Physical size of one texel step, ``(along a row, along a column)`` = ``(du, dv)`` in millimetres.

    The median distance between horizontally (vertically) adjacent valid texels of the ``(3, H, W)``
    position map in metres: the typical size. Where the atlas stretches, :func:`local_texel_size_mm`
    gives each texel its own (d'Eon & Luebke's stretch map).
    """
    m = mask.bool()
    du = (position[:, :, 1:] - position[:, :, :-1]).norm(dim=0)[m[:, 1:] & m[:, :-1]]
    dv = (position[:, 1:, :] - position[:, :-1, :]).norm(dim=0)[m[1:, :] & m[:-1, :]]
    if du.numel() == 0 or dv.numel() == 0:
        raise ValueError("texel_size_mm needs a mask with horizontally and vertically adjacent valid texels")
    return (float(du.median()) * 1000.0, float(dv.median()) * 1000.0)


def _gaussian_kernel(sigma: float, device, dtype) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def gaussian_blur(image: torch.Tensor, sigma_x: float, sigma_y: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(C, H, W)`` with zero padding (widths in texels)."""
    c = image.shape[0]
    kx = _gaussian_kernel(sigma_x, image.device, image.dtype)
    ky = _gaussian_kernel(sigma_y, image.device, image.dtype)
    x = F.conv2d(image[None], kx.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, kx.numel() // 2), groups=c)
    x = F.conv2d(x, ky.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(ky.numel() // 2, 0), groups=c)
    return x[0]


def local_texel_size_mm(position: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The *stretch map*: each texel's own size ``(2, H, W)`` in millimetres, ``[0]`` along a row (to
    the next column, ``du``) and ``[1]`` along a column (to the next row, ``dv``).

    A UV atlas is never uniform: EduHead's face gets ~0.5 mm texels, its neck rows are ~15 mm tall. Per
    texel we take the *smaller* of the steps to its two valid neighbours (a chart border or a fold on
    one side then does not count), and fall back to :func:`texel_size_mm` where it has none.
    """
    m = mask.bool()
    glob = texel_size_mm(position, m)
    out = []
    for axis, g in ((2, glob[0]), (1, glob[1])):
        n = position.shape[axis]
        step = (position.narrow(axis, 1, n - 1) - position.narrow(axis, 0, n - 1)).norm(dim=0) * 1000.0
        ok = m.narrow(axis - 1, 1, n - 1) & m.narrow(axis - 1, 0, n - 1)
        step = torch.where(ok, step, torch.full_like(step, math.inf))
        inf = torch.full_like(step.narrow(axis - 1, 0, 1), math.inf)
        forward = torch.cat([step, inf], axis - 1)  # to the next texel
        backward = torch.cat([inf, step], axis - 1)  # to the previous one
        local = torch.minimum(forward, backward)
        out.append(torch.where(torch.isfinite(local) & (local > 0), local, torch.full_like(local, g)))
    return torch.stack(out)


def _blur_1d_varying(x: torch.Tensor, sigma: torch.Tensor, dim: int, radius: int) -> torch.Tensor:
    """Gaussian blur of ``(C, H, W)`` along ``dim`` (1 rows, 2 columns) with a width ``sigma``
    ``(1, H, W)`` (texels) chosen *per output texel*; each texel's kernel is normalised, zero padding."""
    inv = 0.5 / sigma.clamp_min(1e-3) ** 2
    out, total = x.clone(), torch.ones_like(sigma)
    n = x.shape[dim]
    for k in range(1, min(radius, n - 1) + 1):
        w = torch.exp(-(k * k) * inv)
        # out[i] += w[i] * (x[i + k] + x[i - k]); beyond the border x is 0
        out.narrow(dim, 0, n - k).addcmul_(w.narrow(dim, 0, n - k), x.narrow(dim, k, n - k))
        out.narrow(dim, k, n - k).addcmul_(w.narrow(dim, k, n - k), x.narrow(dim, 0, n - k))
        total += 2.0 * w
    return out / total


def subsurface_blur(irradiance: torch.Tensor, mask: torch.Tensor, texel_mm: tuple[float, float],
                    profile=SKIN_DIFFUSION_PROFILE, min_sigma_texels: float = 0.25,
                    texel_map_mm: torch.Tensor | None = None) -> torch.Tensor:
    """Texture-space diffusion: blur ``(3, H, W)`` irradiance per colour with a sum of Gaussians.

    ``texel_mm`` = ``(du, dv)`` millimetres per texel (see :func:`texel_size_mm`); ``profile`` is a
    sequence of ``(variance_mm2, (wr, wg, wb))``. Gaussians narrower than ``min_sigma_texels`` are
    below the map's resolution and are applied as the identity. Each Gaussian is a normalised
    convolution inside ``mask`` (``(H, W)`` bool): a flat field stays flat right up to the mask's edge,
    and no background leaks in. Returns ``(3, H, W)``, zero outside the mask.

    ``texel_map_mm`` ``(2, H, W)`` (optional, see :func:`local_texel_size_mm`): every texel's own size,
    d'Eon & Luebke's *stretch map*. Each texel's kernel is then sized in *its* texels, so a millimetre
    of scattering stays a millimetre where the atlas stretches (a neck row ~15 mm tall must not be
    blurred over several rows: that would carry red light ~5 cm into a shadow). Without it, one size
    ``texel_mm`` is used everywhere (exact on evenly spread maps, and faster).
    """
    if irradiance.ndim != 3 or irradiance.shape[0] != 3 or tuple(irradiance.shape[1:]) != tuple(mask.shape):
        raise ValueError(f"irradiance must be (3, H, W) matching mask {tuple(mask.shape)}, "
                         f"got {tuple(irradiance.shape)}")
    du, dv = (float(t) for t in texel_mm)
    if not (du > 0 and dv > 0 and math.isfinite(du) and math.isfinite(dv)):
        raise ValueError(f"texel_mm must be two positive millimetre sizes, got {texel_mm!r}")
    if texel_map_mm is not None:
        if tuple(texel_map_mm.shape) != (2, *mask.shape):
            raise ValueError(f"texel_map_mm must be (2, {mask.shape[0]}, {mask.shape[1]}) millimetres, "
                             f"got {tuple(texel_map_mm.shape)}")
        # Texels finer than the typical one (rows near a pole) would need wider kernels for no visible
        # gain (and more time): size them no finer than 0.8 of the typical texel.
        limit = torch.tensor([du, dv], dtype=irradiance.dtype, device=irradiance.device).view(2, 1, 1)
        texel_map = texel_map_mm.to(irradiance.device, irradiance.dtype).maximum(0.8 * limit)
        inside = mask.bool()
    m = mask.to(irradiance.dtype)[None]
    masked = irradiance * m
    out = torch.zeros_like(irradiance)
    identity = torch.zeros(3, 1, 1, dtype=irradiance.dtype, device=irradiance.device)
    for variance, weights in profile:
        w = _as_vec(weights, irradiance.device, irradiance.dtype)
        sigma_mm = math.sqrt(variance)
        if texel_map_mm is None:
            sx, sy = sigma_mm / du, sigma_mm / dv
            if max(sx, sy) < min_sigma_texels:
                identity = identity + w
                continue
            blurred = gaussian_blur(torch.cat([masked, m]), sx, sy)
            out = out + w * blurred[:3] / blurred[3:].clamp_min(1e-6)
            continue
        sigma = sigma_mm / texel_map  # (2, H, W): this Gaussian's width in each texel's own texels
        sigma = torch.where(sigma < min_sigma_texels, torch.zeros_like(sigma), sigma)  # below resolution
        if not bool((sigma[:, inside] > 0).any()):
            identity = identity + w
            continue
        # only the colours this Gaussian carries (the widest ones are red only), plus the mask
        used = [c for c in range(3) if float(weights[c]) > 0]
        x = torch.cat([masked[used], m])
        for dim, s in ((2, sigma[0:1]), (1, sigma[1:2])):
            radius = int(math.ceil(3.0 * float(s[0][inside].max())))
            if radius > 0:
                x = _blur_1d_varying(x, s, dim, radius)
        out[used] = out[used] + w[used] * x[:-1] / x[-1:].clamp_min(1e-6)
    return (out + identity * masked) * m


# ---------------------------------------------------------------------------------------------- lights
def _light_at(light, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a directional or point light: ``(E_perp, l)`` - the irradiance on a surface facing the light
    (``(3, 1, 1)`` or ``(3, H, W)``) and the unit direction towards it (same shapes)."""
    device, dtype = position.device, position.dtype
    color = _as_vec(light.color, device, dtype)
    if isinstance(light, DirectionalLight):
        return math.pi * light.intensity * color, _as_vec(light.direction, device, dtype)
    to_light = _as_vec(light.position, device, dtype) - position
    dist2 = _dot(to_light, to_light).clamp_min(1e-8)  # a texel at the lamp itself gets no NaN
    return math.pi * light.intensity * color / dist2, to_light / dist2.sqrt()


# ---------------------------------------------------------------------------------------------- shadows
def shadow_visibility(mesh, position: torch.Tensor, normals: torch.Tensor, mask: torch.Tensor, light,
                      resolution: int = 512, pcf: int = 1, softness_mm: float = 0.0,
                      taps: int = 12) -> torch.Tensor:
    """Which texels see ``light``: a shadow map. Returns ``(1, H, W)`` in [0, 1] (1 = fully lit).

    The classic two-pass trick: rasterise ``mesh`` from the light (a depth image: the distance to the
    first surface the light meets), then a texel is lit when it is no further from the light than
    that first surface. A directional light is seen from far away with a narrow field of view (nearly
    orthographic); a point light from where it stands. Two fixes make it work in practice: each texel
    is looked up a little off the surface along its ``normals`` (``normal offset``, so a surface does not
    shadow itself: "shadow acne"), and ``pcf`` averages the test over a ``(2 pcf + 1)^2`` block of
    shadow-map pixels (percentage-closer filtering, bilinearly weighted), which softens the edge.

    ``softness_mm`` > 0 replaces that box by a disc of that radius *on the surface*, in millimetres: a
    real key light has a size, so its shadows have a penumbra of a few mm, whatever the shadow map's
    resolution. ``taps`` lookups spread evenly over the disc (a Vogel spiral), each one bilinear, average
    the test; the edge is then a smooth ramp ~2 ``softness_mm`` wide instead of a staircase of shadow-map
    pixels. Each tap compares against the depth the texel's own tangent plane has at that tap
    (*receiver-plane depth bias*), so a wide disc on a slanted surface does not shadow itself.
    ``position``/``normals`` ``(3, H, W)``, ``mask`` ``(H, W)``; lights of other kinds return all ones.
    """
    from avatarme_edu.geometry.camera import Camera
    from avatarme_edu.geometry.raster import rasterize_image

    if int(resolution) != resolution or resolution < 16:
        raise ValueError(f"shadow map resolution must be an integer >= 16, got {resolution}")
    if int(pcf) != pcf or not 0 <= pcf <= 4:
        raise ValueError(f"pcf must be an integer in [0, 4], got {pcf}")
    if not (math.isfinite(float(softness_mm)) and 0.0 <= float(softness_mm) <= 50.0):
        raise ValueError(f"softness_mm must be in [0, 50] millimetres, got {softness_mm}")
    if int(taps) != taps or not 1 <= taps <= 64:
        raise ValueError(f"taps must be an integer in [1, 64], got {taps}")
    resolution, pcf, taps = int(resolution), int(pcf), int(taps)
    h, w = mask.shape
    ones = torch.ones(1, h, w, device=position.device, dtype=position.dtype)
    if not isinstance(light, (DirectionalLight, PointLight)) or not bool(mask.any()):
        return ones
    verts = mesh.vertices.detach().to(position.device, position.dtype)
    center = (verts.min(0).values + verts.max(0).values) / 2
    radius = float((verts - center).norm(dim=-1).max()) * 1.05
    if isinstance(light, DirectionalLight):
        eye = center + 10.0 * radius * torch.tensor(light.direction, device=center.device, dtype=center.dtype)
    else:
        eye = torch.tensor(light.position, device=center.device, dtype=center.dtype)
    dist = float((eye - center).norm())
    if dist <= radius:  # a lamp inside the head's bounding sphere cannot frame it: no shadows
        return ones
    forward = (center - eye) / dist
    up = (0.0, 1.0, 0.0) if abs(float(forward[1])) < 0.99 else (1.0, 0.0, 0.0)
    fov = 2.0 * math.degrees(math.asin(radius / dist))
    camera = Camera.look_at(eye, center, up=up, fov_deg=fov, hw=(resolution, resolution), device=center.device)
    depth = rasterize_image(mesh.to(center.device), camera).depth  # (R, R), inf where empty

    p = position[:, mask].T  # (N, 3) texels on the surface
    n = normals[:, mask].T
    to_light = F.normalize(eye - p, dim=-1) if isinstance(light, PointLight) else -forward.expand_as(p)
    cos = (n * to_light).sum(-1).clamp(0.0, 1.0)
    _, z0 = camera.project(p)
    step = z0.clamp_min(1e-6) / camera.focal  # one shadow-map pixel, in metres, at the texel's depth
    # Grazing texels need the largest offset: there the depth seen by the light changes fastest.
    q = p + (step * (1.0 + 2.0 * (1.0 - cos)))[:, None] * n
    xy, z = camera.project(q)
    bias = step * (0.5 + (1.0 - cos * cos).sqrt() / cos.clamp_min(0.25))  # + tan(angle), capped
    x, y = xy[:, 0] - 0.5, xy[:, 1] - 0.5  # pixel centres at integers

    def bilinear_test(px, py, z_tap, bias_tap):
        """The depth test at the four pixels around ``(px, py)``, bilinearly weighted: in [0, 1]."""
        col, row = px.floor().long(), py.floor().long()
        fx, fy = px - col, py - row
        out = torch.zeros_like(z_tap)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                r, c = (row + dy).clamp(0, resolution - 1), (col + dx).clamp(0, resolution - 1)
                out = out + wx * wy * (z_tap <= depth[r, c] + bias_tap).to(z_tap.dtype)
        return out

    if softness_mm > 0:
        # Receiver plane: how the depth of the texel's tangent plane changes per shadow-map pixel, from
        # two tangent directions projected into the map (Isidoro 2006). Capped like the bias above.
        helper = torch.where(n[:, :1].abs() < 0.9, torch.tensor([[1.0, 0.0, 0.0]], device=n.device, dtype=n.dtype),
                             torch.tensor([[0.0, 1.0, 0.0]], device=n.device, dtype=n.dtype))
        t1 = F.normalize(torch.cross(n, helper, dim=-1), dim=-1)
        t2 = torch.cross(n, t1, dim=-1)
        jac, dz = [], []
        for t in (t1, t2):
            xy_t, z_t = camera.project(q + step[:, None] * t)
            jac.append(xy_t - xy)
            dz.append(z_t - z)
        jac = torch.stack(jac, -1)  # (N, 2 pixel axes, 2 tangents)
        det = jac[:, 0, 0] * jac[:, 1, 1] - jac[:, 0, 1] * jac[:, 1, 0]
        ok = det.abs() > 1e-3
        safe = torch.where(ok, det, torch.ones_like(det))
        # gradient g with g . (jacobian column) = dz for both tangents
        gx = (dz[0] * jac[:, 1, 1] - dz[1] * jac[:, 1, 0]) / safe
        gy = (dz[1] * jac[:, 0, 0] - dz[0] * jac[:, 0, 1]) / safe
        g = torch.stack([gx, gy], -1) * ok[:, None]
        cap = 4.0 * step
        g = g * (cap / g.norm(dim=-1).clamp_min(1e-12)).clamp(max=1.0)[:, None]
        base_bias = 0.5 * step + g.norm(dim=-1)  # covers the bilinear neighbours, one pixel away
        radius_px = (float(softness_mm) * 1e-3 / step).clamp_min(1.0)  # the disc, in pixels at the texel
        lit = torch.zeros_like(z)
        golden = math.pi * (3.0 - math.sqrt(5.0))
        for k in range(taps):
            rho = math.sqrt((k + 0.5) / taps)
            ox, oy = radius_px * rho * math.cos(k * golden), radius_px * rho * math.sin(k * golden)
            z_tap = z + g[:, 0] * ox + g[:, 1] * oy
            lit = lit + bilinear_test(x + ox, y + oy, z_tap, base_bias)
        lit = lit / taps
        count = 1.0
    else:
        # Bilinear PCF: the depth tests of a (2 pcf + 2)^2 block of pixels around the lookup point, the
        # outer ring weighted by how far the point sits towards it, so the shadow edge moves smoothly
        # instead of in whole shadow-map pixels (no staircase).
        col, row = x.floor().long(), y.floor().long()
        fx, fy = x - col, y - row
        lit = torch.zeros_like(z)
        for dy in range(-pcf, pcf + 2):
            wy = (1 - fy) if dy == -pcf else fy if dy == pcf + 1 else torch.ones_like(fy)
            for dx in range(-pcf, pcf + 2):
                wx = (1 - fx) if dx == -pcf else fx if dx == pcf + 1 else torch.ones_like(fx)
                r, c = (row + dy).clamp(0, resolution - 1), (col + dx).clamp(0, resolution - 1)
                lit = lit + wx * wy * (z <= depth[r, c] + bias).to(z.dtype)
        count = float((2 * pcf + 1) ** 2)  # the weights of each row/column sum to 2 pcf + 1
    # A smooth-shaded low-poly surface is lit by its smooth normal where its flat facets already face
    # away (the "shadow terminator" problem): fade the shadow test out where the light grazes.
    fade = (cos / 0.15).clamp(0.0, 1.0)
    out = ones.clone()
    out[0, mask] = (1.0 - fade * (1.0 - lit / count)).clamp(0.0, 1.0)
    return out


# ---------------------------------------------------------------------------------------------- shading
def shade_uv(shape, maps, lights, camera_position, sss: bool = True, specular_model: str = "blinn_phong",
             roughness: float = 0.45, f0: float = SKIN_F0,
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
        texel_mm: one texel size ``(du, dv)`` mm for the whole subsurface blur (default: every texel's
            own size from the position map, :func:`local_texel_size_mm`, so stretched parts of the atlas
            such as the neck are not over-blurred).
        shadows: cast shadows from directional and point lights with a shadow map of ``mesh`` (one
            extra rasterisation per light at ``shadow_resolution``, see :func:`shadow_visibility`);
            the shadowed irradiance is blurred by the subsurface term too, so shadow edges glow red.
        shadow_softness_mm: radius of the shadows' penumbra on the surface, mm (the key light's size;
            0 gives the shadow map's own hard, pixel-sized edge).

    Returns:
        dict of ``(3, H, W)`` float32 linear RGB: ``"diffuse"``, ``"specular"``, ``"total"``, and the
        ``"irradiance"`` before and ``"irradiance_sss"`` after the subsurface blur, plus the ``(H, W)``
        bool ``"mask"`` they are valid on (everything is zero outside it).
    """
    from avatarme_edu.geometry.uv_bake import tangent_to_object

    lights = as_light_list(lights)
    hw = tuple(maps.mask.shape)
    if tuple(shape.mask.shape) != hw:
        raise ValueError(f"shape maps are {tuple(shape.mask.shape)} but reflectance maps are {hw}; "
                         "bake the shape maps at the reflectance maps' size")
    for name, ch in (("position", 3), ("normals_object", 3)):
        _check_map(f"shape.{name}", getattr(shape, name), ch, hw)
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

    n_diffuse = _normalize(maps.diffuse_normals.to(device, dtype))
    n_specular = _normalize(tangent_to_object(maps.specular_normals.to(device, dtype), shape))
    n_shape = shape.normals_object.to(device, dtype)
    view = _normalize(_as_vec(camera_position, device, dtype) - position)
    n_dot_v = _dot(n_specular, view)
    # A texel the camera cannot see (back-facing) reflects nothing towards it.
    facing = (n_dot_v > 0).to(dtype) * (_dot(n_shape, view) > 0).to(dtype)
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
            env = light.irradiance(_normalize(mirror).permute(1, 2, 0), lobe=bands).permute(2, 0, 1)
            specular = specular + specular_directional_albedo(n_dot_v, specular_model, alpha, f0) * env * facing
            continue
        e_perp, l = _light_at(light, position)
        if shadows:
            e_perp = e_perp * shadow_visibility(mesh, position, n_shape, mask, light, shadow_resolution,
                                                softness_mm=shadow_softness_mm)
        irradiance = irradiance + e_perp * _dot(n_diffuse, l).clamp_min(0.0)
        h, lobe = _specular_lobe(specular_model, n_specular, l, view, alpha)
        fres = fresnel_schlick(_dot(view, h), f0)
        # The detailed specular normal can face a light that the surface itself faces away from; the
        # shape normal's horizon switches those highlights off smoothly.
        horizon = (_dot(n_shape, l) / 0.1).clamp(0.0, 1.0)
        specular = specular + e_perp * fres * lobe * _dot(n_specular, l).clamp_min(0.0) * horizon * facing
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
        shadows: cast shadows (see :func:`shadow_visibility`; costs one small rasterisation per
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
    from avatarme_edu.geometry.raster import dilate, interpolate, rasterize_image

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
