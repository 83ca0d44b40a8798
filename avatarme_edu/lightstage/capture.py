"""Simulated polarised spherical-gradient capture, and the separation of Ma et al. 2007.

AvatarMe's ground truth came from a light stage: the subject sits in a sphere of LEDs that can show
*spherical gradient patterns*, and the cameras and lights carry polarisers. Ma et al. 2007 ("Rapid
acquisition of specular and diffuse normal maps from polarized spherical gradient illumination")
showed that eight photographs are enough to measure diffuse and specular albedo and normals:

* four **patterns**, as intensities of a light in direction ``w`` (unit vector from the centre):
  ``P_x = (1 + w_x) / 2``, ``P_y = (1 + w_y) / 2``, ``P_z = (1 + w_z) / 2`` and the full-on ``P_o = 1``;
* two **polarisations**: with the lights' polarisers *crossed* with the camera's, the specular
  reflection (which keeps the light's polarisation) is blocked and only the diffuse light (depolarised
  by scattering inside the skin) is seen; with them *parallel* both come through. So
  ``cross = diffuse`` and ``parallel - cross = specular``. (A real polariser halves the unpolarised
  diffuse light in both images; that common factor is left out here.)

Separation (:func:`separate`), per texel:

* diffuse albedo   = cross image under ``P_o``, divided by the Lambertian integral
  ``(1/pi) * integral of max(0, n.w) dw = 1`` (so a white Lambertian plane reads 1);
* specular albedo  = (parallel - cross) under ``P_o``, divided by the lobe's integral
  ``R(n.v)`` (the directional albedo of a white specular lobe; divides out the Fresnel rise at
  grazing views);
* diffuse normals  = ``normalize(2 * I_k / I_o - 1)`` for k = x, y, z on the cross images. For a
  Lambertian surface under a *complete* sphere of light, ``I_k / I_o = 1/2 + n_k / 3``: the direction
  is exact, the length 2/3 is normalised away;
* specular normals: on the specular images the same ratio gives the *reflection vector* ``r``
  (a mirror reflects the light of direction ``r``, so ``I_k / I_o = (1 + r_k) / 2``), and the normal is
  the half vector between reflection and view: ``n_s = normalize(r + v)``.

Forward model (:func:`render_gradient_images`): each of the stage's lights is a small source of
unit radiance times its pattern intensity, covering its solid angle; a texel's radiance towards the
camera is the sum over the lights (no integrals in closed form: the discrete stage is simulated as it
is). Diffuse: Lambertian on the *diffuse normals* (subsurface scattering is already in their
smoothness). Specular: a GGX microfacet lobe (Smith shadowing, Schlick Fresnel with F0 = 0.028 for
skin's refractive index of about 1.4, roughness alpha = 0.35 as measured for skin by Weyrich et al.
2006) on the *specular normals*, scaled by the specular albedo. Camera ``"best"`` picks for every
texel the camera that sees it most frontally; texels seen only beyond ``max_view_angle_deg`` are
dropped from the recovery mask.

Why the recovered maps differ from the truth:

1. **168 lights, not a continuous sphere.** Sums over 168 lights (about 16 degrees apart) replace
   integrals. With the even Fibonacci layout this costs little: about 0.1 % ripple of the Lambertian
   integral (0.1 degree on diffuse normals) and about 0.2 degree on specular normals.
2. **The floor.** No lights below ``floor_elevation_deg``. A normal tilted downwards (under the nose
   and chin) loses part of its hemisphere: the full-on image is too dark (albedo too low) and the
   gradient ratios are biased (the normal is pulled upwards). The ratio formula is exact only for a
   complete, unoccluded sphere. Even a horizontal normal loses a sliver (-3 % albedo, 2.5 degrees);
   a normal 30 degrees down loses 13 % and 9 degrees. The reflection vectors of such texels point at
   the floor too, so their specular albedo comes out too low.
3. **The specular lobe is not a mirror.** ``2 I_k / I_o - 1`` is the lobe-weighted *mean* of the light
   directions. A GGX lobe is not symmetric about ``r`` (the ``n.l`` factor, shadowing, Fresnel and the
   horizon cut it): its mean lies at about 1.8 theta from the view instead of 2 theta, so the half
   vector leans towards the viewer by up to several degrees, more at oblique views. The biased
   normal then also picks the wrong Fresnel normalisation, which is what limits the specular albedo.
4. **Grazing views and camera seams.** Every texel uses its most frontal camera; errors that depend
   on the view jump where that camera changes (seams in the specular maps), and texels beyond
   ``max_view_angle_deg`` (the back and top of the head) are not recovered at all.
5. **Noise.** The specular signal is parallel minus cross: about 2 % of the diffuse signal, so sensor
   noise hits the specular maps, and most of all the specular normals, far harder.
6. **Not modelled** (so the simulation errs on the kind side): shadows and interreflections from
   other parts of the head (the nose shadowing a cheek), imperfect polarisers, LED spectra, motion
   between the eight photographs. Lights are distant by default; ``near_field=True`` places them at
   the stage radius, which adds the parallax and inverse-square falloff seen from a texel that is
   not at the centre.

Measured on the tests' bumpy head-sized sphere (radius 10 cm, 192x288 map; mean / median errors over
the 61 % of texels the cameras see within 70 degrees):

=========================================== ========= ========= ============= =============
setting                                      A_D PSNR  A_S PSNR  N_D (deg)     N_S (deg)
=========================================== ========= ========= ============= =============
complete sphere, Ma et al. formulas          67.0 dB   28.0 dB   0.09 / 0.08   3.28 / 3.66
complete sphere, lobe-aware specular         67.0 dB   56.8 dB   0.09 / 0.08   0.18 / 0.09
default stage (floor -60), Ma et al.         26.8 dB   24.1 dB   3.91 / 1.66   3.82 / 3.80
default, stage-aware diffuse + lobe-aware    exact     24.3 dB   0.00 / 0.00   1.82 / 0.64
default, near-field lights (1 m)             26.0 dB   22.3 dB   3.81 / 1.25   5.35 / 5.56
default, noise std 0.001                     26.8 dB   22.3 dB   4.04 / 1.70   13.2 / 10.7
default, noise std 0.003                     26.7 dB   17.6 dB   4.42 / 2.23   30.4 / 25.2
=========================================== ========= ========= ============= =============

Normals tilted upwards are recovered to 0.1 degree by the formulas even in the default stage; the
mean is dominated by the downward-facing texels (about 10 degrees) - the floor. A face, which looks
forwards and up, fares better than this sphere, whose whole lower half is in view.

Device-agnostic: everything runs on the device of ``position``; texels are processed in chunks so
memory stays bounded at any map size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatarme_edu.color import linear_to_srgb
from avatarme_edu.lightstage.sphere import BANKS, LightStage, fibonacci_directions

PATTERN_NAMES = ("x", "y", "z", "o")  # the three gradients and the full-on pattern, in this order
SKIN_F0 = 0.028  # Fresnel reflectance at normal incidence, ((1.4 - 1) / (1.4 + 1)) ** 2
SKIN_ROUGHNESS = 0.35  # GGX alpha


def gradient_patterns(stage: LightStage) -> torch.Tensor:
    """``(L, 4)`` per-light intensities in [0, 1]: columns ``P_x, P_y, P_z, P_o`` (see PATTERN_NAMES).

    ``P_k(w) = (1 + w_k) / 2`` for the light direction ``w``; ``P_o = 1``.
    """
    w = stage.light_directions
    return torch.cat([(1.0 + w) * 0.5, torch.ones_like(w[:, :1])], dim=1)


def lambertian_integral(stage: LightStage) -> float:
    """The stage's reading of a white Lambertian plane facing up, under ``P_o``.

    ``(1/pi) * sum_l max(0, n.w_l) * solid_angle_l`` with ``n = +Y``; a continuous sphere gives exactly
    1. Facing up, the floor does not matter, so this is the calibration constant of the diffuse albedo.
    """
    cos = stage.light_directions[:, 1].clamp_min(0.0)
    return float((cos * stage.light_solid_angles).sum() / math.pi)


def ggx_lobe(n_dot_l: torch.Tensor, n_dot_v: torch.Tensor, n_dot_h: torch.Tensor, v_dot_h: torch.Tensor,
             roughness: float = SKIN_ROUGHNESS, f0: float = SKIN_F0) -> torch.Tensor:
    """The specular BRDF times the cosine, ``f_s(l, v) * max(0, n.l)``, of a GGX microfacet lobe.

    ``f_s = D * G * F / (4 (n.l) (n.v))`` with the GGX distribution ``D``, separable Smith shadowing
    ``G = G1(n.l) G1(n.v)`` and Schlick's Fresnel ``F = f0 + (1 - f0)(1 - v.h)^5``. Multiplying by
    ``n.l`` cancels it in the denominator, and ``G1(c) / c`` is written out, so nothing divides by zero
    at grazing angles. Zero where the light or the viewer is below the surface.
    """
    a2 = roughness * roughness
    nl = n_dot_l.clamp_min(0.0)
    nv = n_dot_v.clamp_min(0.0)
    d = a2 / (math.pi * (n_dot_h.square() * (a2 - 1.0) + 1.0).square())
    g1_l = 2.0 * nl / (nl + torch.sqrt(a2 + (1.0 - a2) * nl * nl))
    g1_v_over_nv = 2.0 / (nv + torch.sqrt(a2 + (1.0 - a2) * nv * nv))
    fresnel = f0 + (1.0 - f0) * (1.0 - v_dot_h.clamp(0.0, 1.0)) ** 5
    return d * g1_l * g1_v_over_nv * fresnel * 0.25 * (nv > 0)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``f(x)`` through the points ``(xp, fp)`` (``xp`` increasing), clamped at the ends."""
    x = x.clamp(float(xp[0]), float(xp[-1]))
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1, f0_, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return f0_ + (f1 - f0_) * (x - x0) / (x1 - x0)


@functools.lru_cache(maxsize=16)
def _lobe_tables(roughness: float, f0: float, n_theta: int = 180, n_dirs: int = 20000):
    """Integrals of the white lobe over a fine, even set of directions (~1 degree apart), on CPU.

    For view angles ``theta`` from the normal (0 .. 89.5 degrees) returns ``(theta, albedo, gamma)``:
    ``albedo`` = R, the lobe's integral; ``gamma`` = the angle between the view direction and the
    lobe's mean direction (what the gradient ratio measures as the reflection vector). A mirror has
    ``gamma = 2 theta``; a rough lobe falls short of it.
    """
    l = fibonacci_directions(n_dirs).double()
    omega = 4.0 * math.pi / n_dirs
    theta = torch.linspace(0.0, math.radians(89.5), n_theta, dtype=torch.float64)
    albedo, gamma = [], []
    for th in theta.split(8):  # a few view angles at a time keeps memory small
        v = torch.stack([th.sin(), torch.zeros_like(th), th.cos()], -1)  # the normal is +Z
        h = F.normalize(l[None] + v[:, None], dim=-1)
        lobe = ggx_lobe(l[None, :, 2], v[:, 2:3], h[..., 2], (h * v[:, None]).sum(-1), roughness, f0)
        albedo.append(lobe.sum(-1) * omega)
        mean_dir = F.normalize(lobe @ l, dim=-1)
        gamma.append(torch.acos((mean_dir * v).sum(-1).clamp(-1.0, 1.0)))
    return theta.float(), torch.cat(albedo).float(), torch.cat(gamma).float()


def lobe_albedo(mu: torch.Tensor, roughness: float = SKIN_ROUGHNESS, f0: float = SKIN_F0) -> torch.Tensor:
    """The lobe's integral ``R(mu) = integral of f_s(l, v) max(0, n.l) dl`` for a white specular albedo.

    ``mu = n.v`` (any shape); interpolated in a cached table. At normal incidence this is about
    0.84 * f0 (0.023 for skin); towards grazing views it rises with Fresnel (0.045 at 65 degrees).
    """
    theta, albedo, _ = (t.to(mu.device) for t in _lobe_tables(float(roughness), float(f0)))
    return _interp(torch.acos(mu.clamp(-1.0, 1.0)), theta, albedo)


@dataclass
class GradientImages:
    """The eight photographs of a capture, resampled into UV space (DESIGN.md section 2 layout).

    * ``cross``, ``parallel``: ``(4, 3, H, W)`` float32 linear RGB radiance, one image per pattern in
      ``PATTERN_NAMES`` order (x, y, z, o). A white Lambertian plane facing up reads 1 under ``P_o``.
    * ``view_directions``: ``(3, H, W)`` unit vectors from each texel towards the camera that saw it.
    * ``camera_index``: ``(H, W)`` int64, that camera (-1 where none).
    * ``mask``: ``(H, W)`` bool, texels of the surface that a camera saw within the view-angle limit.
    """

    cross: torch.Tensor
    parallel: torch.Tensor
    view_directions: torch.Tensor
    camera_index: torch.Tensor
    mask: torch.Tensor

    @property
    def specular(self) -> torch.Tensor:
        """``(4, 3, H, W)``: parallel minus cross, the specular reflection alone."""
        return self.parallel - self.cross

    def image(self, pattern: str, polarisation: str) -> torch.Tensor:
        """``(3, H, W)``: one photograph, e.g. ``image("x", "cross")``; polarisation may be "specular"."""
        if pattern not in PATTERN_NAMES:
            raise ValueError(f"unknown pattern {pattern!r}; valid patterns are {PATTERN_NAMES}")
        stacks = {"cross": self.cross, "parallel": self.parallel}
        if polarisation == "specular":
            return self.specular[PATTERN_NAMES.index(pattern)]
        if polarisation not in stacks:
            raise ValueError(f"unknown polarisation {polarisation!r}; valid: {BANKS + ('specular',)}")
        return stacks[polarisation][PATTERN_NAMES.index(pattern)]


def _check_map(name: str, t, channels: int, hw: tuple[int, int]) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != 3 or t.shape[0] != channels or tuple(t.shape[1:]) != hw:
        raise ValueError(f"{name} must be ({channels}, {hw[0]}, {hw[1]}) to match the mask, got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")


def _unit(name: str, n: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Normalise a normal map; any length is accepted, zero length inside the mask is an error."""
    length = n.norm(dim=0)
    if bool(((length < 1e-8) & mask).any()):
        raise ValueError(f"{name} has zero-length vectors inside the mask; normals must be non-zero there")
    return n / length.clamp_min(1e-8)


def choose_cameras(position: torch.Tensor, normals: torch.Tensor, mask: torch.Tensor, stage: LightStage,
                   camera_index: int | str = "best", max_view_angle_deg: float = 70.0):
    """Per texel: the camera used, the unit view direction towards it, and whether it is usable.

    ``camera_index="best"`` takes, for every texel, the camera with the largest ``n . v`` (the most
    frontal view of that texel); an int uses that one camera everywhere. A texel is usable when it is
    in ``mask`` and its view angle is at most ``max_view_angle_deg``. Only the angle is tested:
    occlusion by other parts of the head is not.
    Returns ``(camera_index (H, W) int64 with -1 where unusable, view_directions (3, H, W), usable (H, W))``.
    """
    if not 0.0 < max_view_angle_deg <= 90.0:
        raise ValueError(f"max_view_angle_deg must be in (0, 90] degrees, got {max_view_angle_deg}")
    cams = stage.camera_positions.to(position.device, position.dtype)
    to_cam = F.normalize(cams[:, :, None, None] - position[None], dim=1)  # (C, 3, H, W)
    cos = (to_cam * normals[None]).sum(1)  # (C, H, W)
    if isinstance(camera_index, str):
        if camera_index != "best":
            raise ValueError(f"camera_index must be 'best' or an int in [0, {stage.n_cameras - 1}], "
                             f"got {camera_index!r}")
        best_cos, index = cos.max(0)
    else:
        if isinstance(camera_index, bool) or not isinstance(camera_index, int) \
                or not 0 <= camera_index < stage.n_cameras:
            raise ValueError(f"camera_index must be 'best' or an int in [0, {stage.n_cameras - 1}], "
                             f"got {camera_index!r}")
        index = torch.full(mask.shape, camera_index, dtype=torch.int64, device=position.device)
        best_cos = cos[camera_index]
    usable = mask & (best_cos >= math.cos(math.radians(max_view_angle_deg)))
    view = torch.gather(to_cam, 0, index[None, None].expand(1, 3, *mask.shape))[0]
    return torch.where(usable, index, torch.full_like(index, -1)), view, usable


def render_gradient_images(position: torch.Tensor, diffuse_albedo: torch.Tensor, specular_albedo: torch.Tensor,
                           diffuse_normals_obj: torch.Tensor, specular_normals_obj: torch.Tensor,
                           mask: torch.Tensor, stage: LightStage, camera_index: int | str = "best", *,
                           roughness: float = SKIN_ROUGHNESS, f0: float = SKIN_F0,
                           max_view_angle_deg: float = 70.0, noise_std: float = 0.0,
                           generator: torch.Generator | None = None, near_field: bool = False,
                           chunk_texels: int = 16384) -> GradientImages:
    """Photograph a subject in the stage under the four patterns in both polarisations, in UV space.

    Inputs share one UV layout ``(H, W)`` and device:

    * ``position`` ``(3, H, W)`` metres, object space (head centre at the origin);
    * ``diffuse_albedo`` ``(3, H, W)`` linear RGB in [0, 1]; ``specular_albedo`` ``(1, H, W)`` in [0, 1];
    * ``diffuse_normals_obj``, ``specular_normals_obj`` ``(3, H, W)`` normals in **object space**
      (any non-zero length; normalised here). ReflectanceMaps keeps specular normals in tangent
      space: convert them first with ``geometry.uv_bake.tangent_to_object``;
    * ``mask`` ``(H, W)`` bool, texels of the surface.

    ``noise_std`` adds Gaussian sensor noise of that standard deviation (in units where a white
    Lambertian plane reads 1) independently to all eight images; it needs ``generator``.
    ``near_field=False`` treats the lights as distant (directions from the centre, as the separation
    formulas assume); ``True`` puts them at ``stage.radius`` as seen from each texel.
    Returns :class:`GradientImages`; everything outside its ``mask`` is 0.
    """
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be an (H, W) bool tensor, got "
                         f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}"
                         f"{'' if not isinstance(mask, torch.Tensor) else ' ' + str(mask.dtype)}")
    hw = tuple(mask.shape)
    _check_map("position", position, 3, hw)
    _check_map("diffuse_albedo", diffuse_albedo, 3, hw)
    _check_map("specular_albedo", specular_albedo, 1, hw)
    _check_map("diffuse_normals_obj", diffuse_normals_obj, 3, hw)
    _check_map("specular_normals_obj", specular_normals_obj, 3, hw)
    device = position.device
    for name, t in (("diffuse_albedo", diffuse_albedo), ("specular_albedo", specular_albedo),
                    ("diffuse_normals_obj", diffuse_normals_obj), ("specular_normals_obj", specular_normals_obj),
                    ("mask", mask)):
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but position is on {device}; put all maps on one device")
    if not roughness > 0:
        raise ValueError(f"roughness must be > 0 (GGX alpha, skin ~0.3-0.45), got {roughness}")
    if not 0.0 <= f0 <= 1.0:
        raise ValueError(f"f0 must be in [0, 1] (skin ~0.028), got {f0}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if noise_std > 0 and generator is None:
        raise ValueError("noise_std > 0 needs an explicit torch.Generator (randomness only from a seed)")
    if chunk_texels < 1:
        raise ValueError(f"chunk_texels must be >= 1, got {chunk_texels}")

    position = position.float()
    n_d = _unit("diffuse_normals_obj", diffuse_normals_obj.float(), mask)
    n_s = _unit("specular_normals_obj", specular_normals_obj.float(), mask)
    # the camera choice uses the smooth (diffuse) normals: pore detail should not switch cameras
    cam_index, view, usable = choose_cameras(position, n_d, mask, stage, camera_index, max_view_angle_deg)

    stage = stage.to(device)
    patterns = gradient_patterns(stage)  # (L, 4)
    light_dirs, light_pos = stage.light_directions, stage.light_positions
    omega = stage.light_solid_angles
    H, W = hw
    cross = torch.zeros(H * W, 4, 3, device=device)
    parallel = torch.zeros(H * W, 4, 3, device=device)
    texels = usable.flatten().nonzero().squeeze(1)

    def texel_rows(m: torch.Tensor) -> torch.Tensor:  # (C, H, W) -> (T, C) for the usable texels
        return m.flatten(1).t()[texels]

    x_all, v_all = texel_rows(position), texel_rows(view)
    nd_all, ns_all = texel_rows(n_d), texel_rows(n_s)
    ad_all, as_all = texel_rows(diffuse_albedo.float()), texel_rows(specular_albedo.float())
    for start in range(0, texels.numel(), chunk_texels):
        sl = slice(start, start + chunk_texels)
        x, v, nd, ns = x_all[sl], v_all[sl], nd_all[sl], ns_all[sl]
        if near_field:
            to_light = light_pos[None] - x[:, None]  # (t, L, 3)
            dist2 = to_light.square().sum(-1)
            l = to_light / dist2.sqrt()[..., None]
            solid = omega[None] * (stage.radius ** 2) / dist2  # a light looks bigger from nearer
        else:
            l = light_dirs[None].expand(x.shape[0], -1, -1)
            solid = omega[None].expand(x.shape[0], -1)
        # diffuse: Lambert, radiance = albedo / pi * sum of cos * solid angle * pattern
        lambert = (nd[:, None] * l).sum(-1).clamp_min(0.0) * solid / math.pi  # (t, L)
        diffuse = lambert @ patterns  # (t, 4)
        # specular: GGX lobe on the specular normals
        h = F.normalize(l + v[:, None], dim=-1)
        lobe = ggx_lobe((ns[:, None] * l).sum(-1), (ns * v).sum(-1, keepdim=True),
                        (ns[:, None] * h).sum(-1), (v[:, None] * h).sum(-1), roughness, f0)
        specular = (lobe * solid) @ patterns  # (t, 4)
        c = diffuse[:, :, None] * ad_all[sl][:, None, :]  # (t, 4, 3)
        cross[texels[sl]] = c
        parallel[texels[sl]] = c + (specular * as_all[sl])[:, :, None]  # colourless specular

    cross = cross.reshape(H, W, 4, 3).permute(2, 3, 0, 1).contiguous()
    parallel = parallel.reshape(H, W, 4, 3).permute(2, 3, 0, 1).contiguous()
    if noise_std > 0:
        def noise():
            return torch.randn(cross.shape, generator=generator, device=generator.device).to(device) * noise_std
        cross = (cross + noise()) * usable
        parallel = (parallel + noise()) * usable
    return GradientImages(cross, parallel, view * usable, cam_index, usable)


def _stage_response(n: torch.Tensor, stage: LightStage):
    """For unit normals ``n`` (T, 3): the stage's Lambertian ratio vector and full-on reading.

    ``ratio = sum_l c_l w_l / sum_l c_l`` (what ``2 I_k / I_o - 1`` measures) and ``reading = sum_l c_l / pi``
    with ``c_l = max(0, n.w_l) * solid_angle_l``. A complete continuous sphere gives ``(2/3) n`` and 1.
    """
    w = stage.light_directions.to(n.device)
    c = (n @ w.t()).clamp_min(0.0) * stage.light_solid_angles.to(n.device)  # (T, L)
    total = c.sum(-1, keepdim=True)
    return (c @ w) / total.clamp_min(1e-12), total[:, 0] / math.pi


def _fit_normals_to_stage(ratio: torch.Tensor, stage: LightStage, iterations: int = 10,
                          chunk_texels: int = 16384):
    """Invert the stage's own Lambertian response: find ``n`` whose predicted ratio vector is ``ratio``.

    ``ratio`` (T, 3). Fixed-point iteration ``n <- normalize(n + 1.5 (ratio - predicted(n)))``,
    started from the textbook answer ``normalize(ratio)``; 1.5 = 1 / (2/3), the full sphere's slope.
    Returns the normals (T, 3) and the stage's full-on reading of a white plane with them (T,).
    """
    normals, readings = [], []
    for r in ratio.split(chunk_texels):
        n = F.normalize(r, dim=-1)
        for _ in range(iterations):
            predicted, _ = _stage_response(n, stage)
            n = F.normalize(n + 1.5 * (r - predicted), dim=-1)
        normals.append(n)
        readings.append(_stage_response(n, stage)[1])
    return torch.cat(normals), torch.cat(readings)


def _lobe_aware_normals(reflection: torch.Tensor, view: torch.Tensor, roughness: float, f0: float):
    """Specular normals that undo the lobe's bias: rotate ``v`` towards ``r`` by theta, not by half.

    For a mirror the measured reflection vector lies at ``gamma = 2 theta`` from the view, so the
    half vector is right. A rough lobe's mean direction falls short (gamma = 1.8 theta at 30 degrees),
    which tilts the half vector towards the viewer. The table of gamma(theta) inverts that.
    All tensors (3, H, W).
    """
    theta_t, _, gamma_t = (t.to(view.device) for t in _lobe_tables(float(roughness), float(f0)))
    gamma = torch.acos((reflection * view).sum(0).clamp(-1.0, 1.0))
    theta = _interp(gamma, gamma_t, theta_t)
    across = F.normalize(reflection - (reflection * view).sum(0, keepdim=True) * view, dim=0)
    return F.normalize(theta.cos() * view + theta.sin() * across, dim=0)


def separate(images: GradientImages, stage: LightStage, *, stage_aware_diffuse: bool = False,
             lobe_aware_specular: bool = False, roughness: float = SKIN_ROUGHNESS, f0: float = SKIN_F0,
             min_signal: float = 1e-6) -> dict[str, torch.Tensor]:
    """Recover the reflectance maps from the eight images with the formulas of Ma et al. 2007.

    Returns a dict (all zero outside ``mask``):

    * ``diffuse_albedo`` ``(3, H, W)`` linear RGB in [0, 1];
    * ``specular_albedo`` ``(1, H, W)`` in [0, 1];
    * ``diffuse_normals`` ``(3, H, W)`` unit, **object space**;
    * ``specular_normals`` ``(3, H, W)`` unit, **object space** (convert with
      ``geometry.uv_bake.object_to_tangent`` for a ReflectanceMaps);
    * ``reflection_vectors`` ``(3, H, W)`` unit, the intermediate step of the specular normals;
    * ``mask`` ``(H, W)`` bool, the recovered texels (``images.mask``).

    The gradient ratios use the sum over RGB (one normal per texel). Where the full-on signal is
    below ``min_signal`` the ratio is undefined: diffuse normals fall back to the view direction and
    specular normals to the diffuse normals, with zero specular albedo.
    ``roughness``/``f0`` describe the lobe whose integral normalises the specular albedo.

    Two optional corrections, beyond the paper, show where its errors come from:

    * ``stage_aware_diffuse``: instead of assuming a complete sphere, invert *this* stage's
      Lambertian response (its discrete lights and missing floor) for the normal, and divide the
      albedo by the stage's reading for that normal. Removes the floor's bias.
    * ``lobe_aware_specular``: replace the half vector by the rotation that a GGX lobe of
      ``roughness`` really produces (see :func:`_lobe_aware_normals`). Removes most of the lobe bias.
    """
    mask, v = images.mask, images.view_directions
    # diffuse: the cross-polarised images
    d = images.cross.sum(1)  # (4, H, W) grey, for the ratios
    d_ok = d[3] > min_signal
    ratio = 2.0 * d[:3] / d[3].clamp_min(min_signal) - 1.0
    if stage_aware_diffuse:
        fit = mask & d_ok
        n_fit, reading = _fit_normals_to_stage(ratio.permute(1, 2, 0)[fit], stage)
        diffuse_normals = torch.zeros_like(ratio).permute(1, 2, 0)
        diffuse_normals[fit] = n_fit
        diffuse_normals = diffuse_normals.permute(2, 0, 1)
        white = torch.ones_like(d[3])
        white[fit] = reading.clamp_min(min_signal)
        diffuse_albedo = images.cross[3] / white
    else:
        diffuse_normals = F.normalize(ratio, dim=0)
        diffuse_albedo = images.cross[3] / lambertian_integral(stage)
    diffuse_albedo = diffuse_albedo.clamp(0.0, 1.0)
    diffuse_normals = torch.where(d_ok, diffuse_normals, v)
    # specular: parallel minus cross, colourless so average RGB (less noise)
    s = images.specular.mean(1)  # (4, H, W)
    s_ok = s[3] > min_signal
    reflection = F.normalize(2.0 * s[:3] / s[3].clamp_min(min_signal) - 1.0, dim=0)
    if lobe_aware_specular:
        specular_normals = _lobe_aware_normals(reflection, v, roughness, f0)
    else:
        specular_normals = F.normalize(reflection + v, dim=0)  # the half vector
    specular_normals = torch.where(s_ok, specular_normals, diffuse_normals)
    reflection = torch.where(s_ok, reflection, torch.zeros_like(reflection))
    mu = (specular_normals * v).sum(0)
    specular_albedo = (s[3] / lobe_albedo(mu, roughness, f0)).clamp(0.0, 1.0)
    specular_albedo = torch.where(s_ok, specular_albedo, torch.zeros_like(specular_albedo))[None]
    m = mask.to(diffuse_albedo.dtype)
    return {"diffuse_albedo": diffuse_albedo * m, "specular_albedo": specular_albedo * m,
            "diffuse_normals": diffuse_normals * m, "specular_normals": specular_normals * m,
            "reflection_vectors": reflection * m, "mask": mask}


def capture_subject(shape, maps, stage: LightStage, camera_index: int | str = "best",
                    **render_options) -> GradientImages:
    """:func:`render_gradient_images` for a subject given as ShapeMaps + ReflectanceMaps.

    ``shape``: :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps` (position, tangent frame);
    ``maps``: :class:`~avatarme_edu.reflectance.ReflectanceMaps` in the same UV layout. Its specular
    normals (tangent space) are brought to object space with ``tangent_to_object``; the mask is
    both masks together. ``render_options`` go to :func:`render_gradient_images`.
    """
    from avatarme_edu.geometry.uv_bake import tangent_to_object  # only needed for this convenience

    if tuple(shape.mask.shape) != tuple(maps.mask.shape):
        raise ValueError(f"shape maps are {tuple(shape.mask.shape)} but reflectance maps are "
                         f"{tuple(maps.mask.shape)}; both must share one UV layout")
    mask = shape.mask & maps.mask
    specular_obj = tangent_to_object(maps.specular_normals, shape)
    return render_gradient_images(shape.position, maps.diffuse_albedo, maps.specular_albedo, maps.diffuse_normals,
                                  specular_obj, mask, stage, camera_index, **render_options)


def to_reflectance_maps(recovered: Mapping[str, torch.Tensor], shape):
    """The recovered maps as a :class:`~avatarme_edu.reflectance.ReflectanceMaps` (the training targets).

    Specular normals go to the tangent space of ``shape`` (``object_to_tangent``); the mask is the
    recovered mask, so texels no camera saw are marked invalid.
    """
    from avatarme_edu.geometry.uv_bake import object_to_tangent
    from avatarme_edu.reflectance import ReflectanceMaps

    mask = recovered["mask"] & shape.mask
    keep = mask.to(recovered["diffuse_albedo"].dtype)
    specular_tangent = F.normalize(object_to_tangent(recovered["specular_normals"], shape), dim=0) * keep
    return ReflectanceMaps(recovered["diffuse_albedo"] * keep, recovered["specular_albedo"] * keep,
                           recovered["diffuse_normals"] * keep, specular_tangent, mask)


def recovery_report(recovered: Mapping[str, torch.Tensor], truth: Mapping[str, torch.Tensor],
                    mask: torch.Tensor | None = None) -> dict[str, float]:
    """How close the recovered maps are to the truth, over texels valid in both masks.

    ``truth``: a mapping with ``diffuse_albedo``, ``specular_albedo``, ``diffuse_normals`` and
    ``specular_normals`` - both normal maps in **object space**, like the recovered ones.
    Returns PSNR (dB) for the albedos, mean / median angular error (degrees) for the normals, and
    ``recovered_fraction``: recovered texels / texels in ``mask``.
    """
    from avatarme_edu import metrics
    from avatarme_edu.reflectance import ReflectanceMaps

    if isinstance(truth, ReflectanceMaps):
        raise ValueError("truth is a ReflectanceMaps, whose specular normals are in tangent space; pass a dict "
                         "with specular_normals converted to object space (geometry.uv_bake.tangent_to_object)")
    names = ("diffuse_albedo", "specular_albedo", "diffuse_normals", "specular_normals")
    for name in names:
        if name not in truth or name not in recovered:
            raise ValueError(f"both recovered and truth need {name!r}")
        if tuple(truth[name].shape) != tuple(recovered[name].shape):
            raise ValueError(f"{name}: recovered {tuple(recovered[name].shape)} and truth "
                             f"{tuple(truth[name].shape)} differ in shape")
    base = recovered["mask"] if mask is None else mask
    if tuple(base.shape) != tuple(recovered["mask"].shape):
        raise ValueError(f"mask must be {tuple(recovered['mask'].shape)}, got {tuple(base.shape)}")
    valid = base & recovered["mask"]
    if not bool(valid.any()):
        raise ValueError("no texel was recovered inside the mask; nothing to compare")
    report = {"recovered_fraction": float(valid.sum()) / max(1, int(base.sum()))}
    for name in ("diffuse_albedo", "specular_albedo"):
        report[f"{name}_psnr"] = float(metrics.psnr(recovered[name], truth[name], valid))
    for name in ("diffuse_normals", "specular_normals"):
        err = metrics.angular_error(recovered[name], truth[name], valid)
        report[f"{name}_mean_deg"] = float(err["mean"])
        report[f"{name}_median_deg"] = float(err["median"])
    return report


# ----------------------------------------------------------------------------------------------
# display helpers for the notebook: display-ready (3, H, W) tensors in [0, 1]


def _exposure(x: torch.Tensor, mask: torch.Tensor, q: float = 0.99) -> float:
    """1 / the q-quantile of ``x`` (C, H, W) inside ``mask``: a robust auto-exposure."""
    vals = x.permute(1, 2, 0)[mask].flatten()
    if vals.numel() == 0:
        return 1.0
    if vals.numel() > 1_000_000:  # quantile has an input-size limit; a strided sample is plenty
        vals = vals[:: vals.numel() // 1_000_000 + 1]
    top = float(torch.quantile(vals.float(), q))
    return 1.0 / top if top > 0 else 1.0


def _as_rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


def gradient_image_panels(images: GradientImages, exposure: float | None = None,
                          specular_exposure: float | None = None) -> dict[str, torch.Tensor]:
    """The eight photographs (and the four specular differences) ready to show, sRGB ``(3, H, W)``.

    Keys ``cross_x ... cross_o``, ``parallel_x ... parallel_o``, ``specular_x ... specular_o``.
    ``exposure`` multiplies the cross and parallel images (default: the brightest 1 % of the full-on
    parallel image saturates); the specular images, a few percent as bright, get their own
    ``specular_exposure``, so they are on a different scale than the others.
    """
    m = images.mask
    exposure = exposure or _exposure(images.parallel[3], m)
    specular_exposure = specular_exposure or _exposure(images.specular[3].clamp_min(0), m)
    panels = {}
    for name, stack, gain in (("cross", images.cross, exposure), ("parallel", images.parallel, exposure),
                              ("specular", images.specular, specular_exposure)):
        for k, p in enumerate(PATTERN_NAMES):
            panels[f"{name}_{p}"] = linear_to_srgb(stack[k] * gain) * m
    return panels


def separation_panels(images: GradientImages, recovered: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The separation step by step, as display-ready ``(3, H, W)`` tensors in [0, 1].

    In order: the ratio images ``2 I_k / I_o - 1`` of the cross images (shown as ``0.5 x + 0.5``,
    before normalising), the diffuse normals, the diffuse albedo (sRGB); the specular images' ratio,
    the reflection vectors, the view directions, the specular normals (``r + v`` normalised) and the
    specular albedo (grey). Vectors are shown as ``0.5 n + 0.5`` (object space: red = +X, green = +Y up,
    blue = +Z towards the front camera).
    """
    m = images.mask
    d = images.cross.sum(1)
    s = images.specular.mean(1)

    def ratio(x):
        return (2.0 * x[:3] / x[3].clamp_min(1e-6) - 1.0).clamp(-1.0, 1.0)

    def vec(n):
        return (n * 0.5 + 0.5) * m

    return {
        "diffuse_ratio": vec(ratio(d)),
        "diffuse_normals": vec(recovered["diffuse_normals"]),
        "diffuse_albedo": linear_to_srgb(recovered["diffuse_albedo"]) * m,
        "specular_ratio": vec(ratio(s)),
        "reflection_vectors": vec(recovered["reflection_vectors"]),
        "view_directions": vec(images.view_directions),
        "specular_normals": vec(recovered["specular_normals"]),
        "specular_albedo": _as_rgb(recovered["specular_albedo"]) * m,
    }
