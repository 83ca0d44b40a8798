"""In-the-wild textures: what fitting a photo of a virtual subject would give, and its sharp version.

AvatarMe starts from a UV texture fitted to one photo (GANFit). That texture is not an albedo: the
light of the photo is *baked* into it - the sun's shading and cast shadows, the darker creases where
little of the sky reaches (ambient occlusion), shiny highlights, the camera's colour balance and tone
curve - and it is blurry, noisy, JPEG-compressed and small (576x384 in the paper). The de-lighting
network must undo the light; the super-resolution network must undo the size.

To train them we need pairs, and the virtual light stage can make them: light a subject's
ground-truth maps with a random environment and pass the result through a random camera.
:func:`wild_texture` returns

* ``high``: the lit texture at the reflectance maps' size ``profile.map_hw``, after the camera's
  colour balance and tone curve but *before* the losses of a low-resolution fit; with the subject's
  diffuse albedo it makes a (texture, albedo) pair for de-lighting;
* ``low``: ``high`` down-sampled to ``profile.texture_hw``, blurred, with sensor noise and JPEG
  artefacts - the texture a fit would give; with ``high`` it makes a pair for super-resolution.

**What a texture value means.** Like every colour map here, both textures hold *linear* RGB in
[0, 1]: the fitted photo's pixel values decoded with the standard sRGB curve
(:func:`avatarme_edu.color.srgb_to_linear`), which is all a fitting pipeline knows about the camera.
They are therefore *not* radiance: the camera's exposure, white balance and tone curve (a highlight
shoulder and an S-shaped contrast curve) are baked in, unknown to the networks, as in real photos.
A texel's value is ``srgb_to_linear(curve(encode(exposure * white_balance * radiance)))``.

The light (all from one ``torch.Generator``; every random choice is recorded in :class:`WildParams`):

* an order-2 spherical-harmonics **environment** (sky and ground, or room bounce) and a **key light**
  (the sun, a window or a lamp) of random direction, colour temperature and angular size;
* **soft shadows** of the key light: shadow maps seen from a few directions spread over the light's
  angular size (the penumbra), each a depth buffer of the subject's own surface points, tested with
  percentage-closer filtering;
* **ambient occlusion** for the environment: the same test from 48 directions around the head,
  cosine-weighted over each texel's hemisphere;
* **highlights** from the subject's specular albedo and specular normals for a random camera position,
  via :func:`avatarme_edu.render.shading.shade_uv`; its subsurface blur
  (:func:`~avatarme_edu.optics.subsurface.subsurface_blur`) then spreads the *shadowed* irradiance, so
  shadow edges glow a little red as on real skin.

(``shade_uv`` can cast shadows itself, by rasterising the mesh from each light. Here the shadow maps
are made of the position map's points instead: ambient occlusion needs 48 of them per texture, and
splatting points is far cheaper than rasterising triangles.)

Left out on purpose: the parts of the head the photo does not see are lit like the rest (AvatarMe's
texture GAN completes them; we pretend it does so perfectly), and the noise and JPEG blocks live on
the UV grid rather than on the photo's pixel grid.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from PIL import Image

from avatarme_edu.color import XYZ_TO_LINEAR_SRGB, cie_cmf, linear_to_srgb, luminance, srgb_to_linear
from avatarme_edu.geometry.texels import local_texel_size_mm, texel_size_mm
from avatarme_edu.imaging import downsample_masked, gaussian_blur
from avatarme_edu.lightstage import noise
from avatarme_edu.optics.shadows import perpendicular_basis, shadow_and_occlusion
from avatarme_edu.optics.subsurface import subsurface_blur
from avatarme_edu.profiles import Profile
from avatarme_edu.render.lights import DirectionalLight, SHEnvironment, direction_from_angles
from avatarme_edu.render.shading import shade_uv

ENVIRONMENT_KINDS = ("outdoor", "indoor", "overcast")
SUN_SAMPLES = 7  # directions over the key light's disc: the centre and a ring of six
#: The losses of a low-resolution fit, each drawn uniformly in its range (:func:`sample_wild_params`; the
#: super-resolution pairs degraded afresh of :mod:`~avatarme_edu.lightstage.fresh_lows` draw from the same).
DEGRADATION_RANGES = {"blur_sigma": (0.3, 1.1), "shot_noise": (2e-4, 2e-3), "read_noise": (1e-3, 6e-3),
                      "jpeg_quality": (50, 95)}


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WildParams:
    """Every random choice behind one wild texture (all plain numbers, so it serialises to JSON).

    Light: ``kind`` (outdoor / indoor / overcast); the key light's ``sun_direction`` (unit, from the
    head towards the light, object space), ``sun_color`` (linear RGB, luminance 1), ``sun_intensity``
    (a white surface facing it shows radiance ``sun_intensity``) and ``sun_radius_deg`` (angular
    radius: 0.27 for the real sun, several degrees for a window - wider gives softer shadows);
    ``environment`` the ``(9, 3)`` SH radiance coefficients; ``ao_strength`` in [0, 1].
    Camera: ``camera_position`` (m) for the highlights; ``roughness`` the perceptual
    roughness (:func:`~avatarme_edu.render.shading.shade_uv`'s) of the skin's specular lobe;
    ``exposure_bias`` in stops around the metered exposure; ``white_balance_error`` ``(3,)``
    multiplicative error of the camera's colour balance; ``tone_white`` (radiance that the highlight
    shoulder maps to 1) and ``contrast`` (0 = none) of the tone curve.
    Low-resolution fit: ``blur_sigma`` (texels of the low texture), ``shot_noise`` (variance per unit
    signal) and ``read_noise`` (std), ``jpeg_quality`` (Pillow's 1-95).
    """

    kind: str
    sun_direction: tuple[float, float, float]
    sun_color: tuple[float, float, float]
    sun_intensity: float
    sun_radius_deg: float
    environment: tuple[tuple[float, float, float], ...]
    ao_strength: float
    camera_position: tuple[float, float, float]
    roughness: float
    exposure_bias: float
    white_balance_error: tuple[float, float, float]
    tone_white: float
    contrast: float
    blur_sigma: float
    shot_noise: float
    read_noise: float
    jpeg_quality: int

    def as_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "WildParams":
        d = dict(d)
        for k in ("sun_direction", "sun_color", "camera_position", "white_balance_error"):
            d[k] = tuple(float(x) for x in d[k])
        d["environment"] = tuple(tuple(float(x) for x in row) for row in d["environment"])
        d["jpeg_quality"] = int(d["jpeg_quality"])
        return WildParams(**d)

    def lights(self) -> tuple[DirectionalLight, SHEnvironment]:
        """The key light and the environment, as :mod:`avatarme_edu.render.lights` objects."""
        return (DirectionalLight(self.sun_direction, self.sun_color, self.sun_intensity),
                SHEnvironment(torch.tensor(self.environment, dtype=torch.float32)))


def blackbody_rgb(kelvin: float) -> tuple[float, float, float]:
    """Linear sRGB colour of a black body at ``kelvin`` (1000-40000 K), scaled to luminance 1.

    Planck's law integrated against the CIE 1931 colour matching functions (the analytic fit of
    :func:`~avatarme_edu.color.cie_cmf`). 6500 K is close to white; 3000 K is a warm lamp.
    """
    if not 1000.0 <= float(kelvin) <= 40000.0:
        raise ValueError(f"kelvin must be in [1000, 40000], got {kelvin}")
    lam = torch.arange(380.0, 781.0, 5.0, dtype=torch.float64)
    m = lam * 1e-9
    planck = 1.0 / (m**5 * (torch.exp(torch.tensor(0.014388, dtype=torch.float64) / (m * float(kelvin))) - 1.0))
    xyz = cie_cmf(lam) @ planck
    rgb = torch.tensor(XYZ_TO_LINEAR_SRGB, dtype=torch.float64) @ xyz
    rgb = rgb.clamp_min(0.0)
    rgb = rgb / (luminance(rgb.view(3, 1, 1)).item())
    return tuple(float(x) for x in rgb)


def sample_wild_params(generator: torch.Generator | int) -> WildParams:
    """Draw a random environment, key light, camera and fit quality (see :class:`WildParams`).

    Kinds: 40 % outdoor (hard sun and a blue sky), 40 % indoor (a warm lamp or a window, warm room
    bounce), 20 % overcast (a weak, very soft key and a bright sky). The key light comes mostly from the
    front half (azimuth ~ N(0, 45) degrees, at most 110 degrees to the side), as in most portraits.
    """
    g = noise.as_generator(generator)
    u = torch.rand(32, generator=g, device=g.device).double().cpu().tolist()
    n = torch.randn(8, generator=g, device=g.device).double().cpu().tolist()

    def lerp(a, b, t):
        return a + (b - a) * t

    R = DEGRADATION_RANGES
    kind = ENVIRONMENT_KINDS[0 if u[0] < 0.4 else (1 if u[0] < 0.8 else 2)]
    azimuth = max(-110.0, min(110.0, 45.0 * n[0]))
    if kind == "outdoor":
        sun_k, sun_i, radius = lerp(4300, 6000, u[1]), lerp(0.8, 1.4, u[2]), lerp(0.27, 2.5, u[3])
        elevation = lerp(15, 70, u[4])
        sky_k, sky_i = lerp(8000, 14000, u[5]), lerp(0.15, 0.35, u[6])
        ground_k, ground_i = lerp(3500, 5000, u[7]), lerp(0.04, 0.1, u[8])
        ambient_i = lerp(0.02, 0.05, u[9])
    elif kind == "indoor":
        sun_k, sun_i, radius = lerp(2700, 5800, u[1]), lerp(0.6, 1.2, u[2]), lerp(3.0, 12.0, u[3])
        elevation = lerp(-5, 55, u[4])
        sky_k, sky_i = lerp(2800, 4500, u[5]), lerp(0.05, 0.15, u[6])
        ground_k, ground_i = lerp(2700, 4000, u[7]), lerp(0.03, 0.08, u[8])
        ambient_i = lerp(0.04, 0.09, u[9])
    else:
        sun_k, sun_i, radius = lerp(5500, 7000, u[1]), lerp(0.08, 0.3, u[2]), lerp(10.0, 20.0, u[3])
        elevation = lerp(30, 75, u[4])
        sky_k, sky_i = lerp(6500, 9000, u[5]), lerp(0.45, 0.75, u[6])
        ground_k, ground_i = lerp(4500, 6000, u[7]), lerp(0.08, 0.15, u[8])
        ambient_i = lerp(0.04, 0.08, u[9])
    sun_dir = direction_from_angles(azimuth, elevation)
    # a coloured bounce from a random side (a wall, a car, grass) adds variety to the environment
    bounce_dir = direction_from_angles(lerp(-180, 180, u[10]), lerp(-30, 40, u[11]))
    bounce_col = tuple(lerp(0.5, 1.0, t) for t in u[12:15])
    bounce_i = lerp(0.0, 0.12, u[15])
    white = blackbody_rgb(6500.0)
    env = SHEnvironment.from_directions(
        [(0.0, 1.0, 0.0), (0.0, -1.0, 0.0), bounce_dir],
        colors=[blackbody_rgb(sky_k), blackbody_rgb(ground_k), bounce_col],
        intensities=[sky_i, ground_i, bounce_i], ambient=tuple(ambient_i * c for c in white))
    cam_az, cam_el, cam_dist = 15.0 * n[1], 8.0 * n[2], lerp(0.5, 1.5, u[16])
    cam_dir = direction_from_angles(cam_az, cam_el)
    camera = tuple(0.03 * (k == 2) + cam_dist * c for k, c in enumerate(cam_dir))
    wb_error = (math.exp(0.07 * n[3]), 1.0, math.exp(0.07 * n[4]))
    return WildParams(
        kind=kind, sun_direction=tuple(sun_dir), sun_color=blackbody_rgb(sun_k), sun_intensity=sun_i,
        sun_radius_deg=radius, environment=tuple(tuple(row) for row in env.coeffs.tolist()),
        ao_strength=lerp(0.6, 1.0, u[17]), camera_position=camera, roughness=lerp(0.3, 0.45, u[18]),
        exposure_bias=lerp(-0.8, 0.3, u[19]), white_balance_error=wb_error,
        tone_white=lerp(1.5, 4.0, u[20]), contrast=lerp(0.0, 0.3, u[21]),
        blur_sigma=lerp(*R["blur_sigma"], u[22]), shot_noise=lerp(*R["shot_noise"], u[23]),
        read_noise=lerp(*R["read_noise"], u[24]), jpeg_quality=int(round(lerp(*R["jpeg_quality"], u[25]))))


# ----------------------------------------------------------------------------------------------
# Camera
# ----------------------------------------------------------------------------------------------


def tone_curve(x: torch.Tensor, white: float, contrast: float) -> torch.Tensor:
    """Camera tone curve: linear camera values -> display-encoded values in [0, 1].

    A highlight shoulder (extended Reinhard: ``x (1 + x / white^2) / (1 + x)``, 1 at ``white``) in
    linear light, the sRGB encoding, then an S-curve ``y - contrast / (2 pi) sin(2 pi y)`` that
    raises mid-tone contrast by ``1 + contrast`` and keeps 0 and 1 fixed (monotone for contrast < 1).
    """
    x = x.clamp_min(0.0)
    shoulder = (x * (1.0 + x / (white * white)) / (1.0 + x)).clamp(0.0, 1.0)
    y = linear_to_srgb(shoulder)
    return (y - contrast / (2 * math.pi) * torch.sin(2 * math.pi * y)).clamp(0.0, 1.0)


def jpeg_round_trip(linear: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode ``(3, H, W)`` linear RGB as an 8-bit sRGB JPEG (4:2:0) with Pillow and decode it back."""
    if not 1 <= int(quality) <= 95:
        raise ValueError(f"jpeg quality must be in [1, 95], got {quality}")
    srgb = (linear_to_srgb(linear.detach().float().cpu()) * 255.0).round().to(torch.uint8)
    img = Image.fromarray(srgb.permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as decoded:
        arr = torch.frombuffer(bytearray(decoded.convert("RGB").tobytes()), dtype=torch.uint8)
    back = arr.view(linear.shape[1], linear.shape[2], 3).permute(2, 0, 1).float() / 255.0
    return srgb_to_linear(back).to(linear.device)


# ----------------------------------------------------------------------------------------------
# The wild texture
# ----------------------------------------------------------------------------------------------


@dataclass
class WildTexture:
    """A fitted in-the-wild texture of one subject, and its sharp version (see the module docstring).

    ``low`` ``(3, h, w)`` at ``profile.texture_hw`` and ``high`` ``(3, H, W)`` at ``profile.map_hw``:
    linear RGB in [0, 1] with the camera baked in; ``mask_low`` / ``mask`` their valid texels.
    ``exposure`` (multiplier of radiance) and ``white_balance`` ``(3,)`` gains are what the camera
    chose; ``sun_visibility`` and ``occlusion`` ``(1, H, W)`` are the key light's shadows and the
    ambient occlusion, kept for teaching figures.
    """

    low: torch.Tensor
    high: torch.Tensor
    mask_low: torch.Tensor
    mask: torch.Tensor
    params: WildParams
    exposure: float
    white_balance: tuple[float, float, float]
    sun_visibility: torch.Tensor = field(repr=False)
    occlusion: torch.Tensor = field(repr=False)

    def __repr__(self) -> str:
        (h, w), (H, W) = self.mask_low.shape, self.mask.shape
        return f"WildTexture(low={w}x{h}, high={W}x{H}, kind={self.params.kind!r}, exposure={self.exposure:.3g})"


def _disc_directions(center: tuple[float, float, float], radius_deg: float, n: int) -> torch.Tensor:
    """``(n, 3)`` directions over a light's disc: the centre and a ring at 0.7 x the radius."""
    d = torch.tensor(center, dtype=torch.float64)
    e1, e2 = perpendicular_basis(d)
    out = [d]
    r = math.tan(math.radians(radius_deg)) * 0.7
    for i in range(n - 1):
        a = 2 * math.pi * i / (n - 1)
        out.append(d + r * (math.cos(a) * e1 + math.sin(a) * e2))
    return F.normalize(torch.stack(out), dim=-1).float()


def wild_texture(subject, profile: Profile, generator: torch.Generator | int,
                 params: WildParams | None = None) -> WildTexture:
    """Light ``subject`` with a random environment and camera: its in-the-wild texture (low and high).

    ``subject``: a :class:`~avatarme_edu.lightstage.subjects.Subject` with maps at ``profile.map_hw``;
    ``generator``: every random choice (a ``torch.Generator`` or an int seed); ``params``: use these
    instead of drawing new ones (the noise still comes from ``generator``).
    """
    if not isinstance(profile, Profile):
        raise ValueError(f"profile must be an avatarme_edu.profiles.Profile, got {type(profile).__name__}")
    if tuple(subject.hw) != tuple(profile.map_hw):
        raise ValueError(f"the subject's maps are {tuple(subject.hw)} but profile.map_hw is "
                         f"{tuple(profile.map_hw)}; make the subject with the same profile")
    th, tw = (int(x) for x in profile.texture_hw)
    if not (0 < th <= subject.hw[0] and 0 < tw <= subject.hw[1]):
        raise ValueError(f"profile.texture_hw must be positive and at most map_hw={tuple(subject.hw)}, got {(th, tw)}")
    gen = noise.as_generator(generator)
    g_params, g_noise = noise.split_generator(gen, 2)
    if params is None:
        params = sample_wild_params(g_params)
    shape, maps = subject.shape, subject.reflectance
    mask = maps.mask.bool()
    dev = mask.device
    keep = mask.to(torch.float32)[None]

    # --- light: key light with soft shadows, environment with ambient occlusion -------------------
    sun, env = params.lights()
    sun_dirs = _disc_directions(params.sun_direction, params.sun_radius_deg, SUN_SAMPLES)
    sun_vis, ao = shadow_and_occlusion(shape, sun_dirs)
    ao = 1.0 - params.ao_strength * (1.0 - ao)
    kw = dict(sss=False, roughness=params.roughness)
    lit_sun = shade_uv(shape, maps, [sun], params.camera_position, **kw)
    lit_env = shade_uv(shape, maps, [env], params.camera_position, **kw)
    irradiance = lit_sun["irradiance"] * sun_vis + lit_env["irradiance"] * ao
    # subsurface scattering blurs the irradiance - shadow edges included, which turn a little red
    irradiance_sss = subsurface_blur(irradiance, mask, texel_size_mm(shape.position, mask),
                                     texel_map_mm=local_texel_size_mm(shape.position, mask))
    diffuse = maps.diffuse_albedo / math.pi * irradiance_sss
    specular = lit_sun["specular"] * sun_vis + lit_env["specular"] * ao
    radiance = (diffuse + specular) * keep

    # --- camera: metering, white balance, tone curve ----------------------------------------------
    face = subject.regions.get("face") if getattr(subject, "regions", None) else None
    metered = mask & (face > 0.5) if face is not None and bool(((face > 0.5) & mask).any()) else mask
    # The camera meters the light, not the skin (as with a grey card): a white surface under the
    # face's mean light lands at 2^exposure_bias, so dark skin stays darker than light skin. (The mean,
    # not the median: with half the face in shadow the median would blow out the lit half.)
    white_level = luminance(irradiance / math.pi)[0][metered]
    exposure = 2.0 ** params.exposure_bias / float(white_level.mean().clamp_min(1e-6))
    # Auto white balance neutralises the average light on the face, up to the camera's error.
    light_rgb = (irradiance[:, metered]).mean(1)
    gains = light_rgb[1] / light_rgb.clamp_min(1e-6) * torch.tensor(params.white_balance_error, device=dev)
    camera = radiance * exposure * gains.view(3, 1, 1)
    high = srgb_to_linear(tone_curve(camera, params.tone_white, params.contrast)) * keep

    # --- the low-resolution fit: down-sample, blur, noise, JPEG -----------------------------------
    low, mask_low = degrade(high, mask, (th, tw), params, g_noise)
    return WildTexture(low=low, high=high, mask_low=mask_low, mask=mask.clone(), params=params,
                       exposure=exposure, white_balance=tuple(float(x) for x in gains),
                       sun_visibility=sun_vis, occlusion=ao)


def degrade(high: torch.Tensor, mask: torch.Tensor, texture_hw: tuple[int, int], params: WildParams,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The losses of a low-resolution fit: ``(3, H, W)`` -> ``(3, h, w)`` and its mask ``(h, w)``.
    ``params``: a :class:`WildParams`, or anything with its four fit-loss fields (``blur_sigma``,
    ``shot_noise``, ``read_noise``, ``jpeg_quality``).

    Area down-sampling to ``texture_hw`` (texel centres stay aligned: low texel ``(r, c)`` is the mean
    of the block of high texels around the same UV point), blur (a Gaussian of ``params.blur_sigma``
    low-res texels inside the mask - done after down-sampling, where it is 16x cheaper and nearly the
    same as blurring first), sensor noise of std ``sqrt(shot_noise * x + read_noise^2)``, and a JPEG
    round trip at ``params.jpeg_quality``.
    """
    low, mask_low = downsample_masked(high, mask, tuple(texture_hw))
    low = gaussian_blur(low, params.blur_sigma, mask_low, downsample_wide=True)
    std = (params.shot_noise * low.clamp_min(0) + params.read_noise**2).sqrt()
    low = (low + std * noise.randn(low.shape, generator, low.device)).clamp(0, 1)
    low = jpeg_round_trip(low, params.jpeg_quality) * mask_low
    return low, mask_low
