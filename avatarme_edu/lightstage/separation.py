"""The separation of Ma et al. 2007: the reflectance maps from the eight photographs of a capture.

The photographs come from :mod:`~avatarme_edu.lightstage.capture` (patterns, polarisations, the
forward model). Separation (:func:`separate`), per texel:

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

import torch
import torch.nn.functional as F

from avatarme_edu import metrics
from avatarme_edu.geometry.sphere_points import fibonacci_directions
from avatarme_edu.geometry.uv_bake import object_to_tangent
from avatarme_edu.imaging import interp
from avatarme_edu.lightstage.capture import GradientImages, lambertian_integral
from avatarme_edu.lightstage.sphere import LightStage
from avatarme_edu.optics.brdf import SKIN_F0, SKIN_GGX_ALPHA, ggx_reflectance
from avatarme_edu.reflectance import ReflectanceMaps


@functools.lru_cache(maxsize=16)
def _lobe_tables(alpha: float, f0: float, n_theta: int = 180, n_dirs: int = 20000):
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
        lobe = ggx_reflectance(l[None, :, 2], v[:, 2:3], h[..., 2], (h * v[:, None]).sum(-1), alpha, f0)
        albedo.append(lobe.sum(-1) * omega)
        mean_dir = F.normalize(lobe @ l, dim=-1)
        gamma.append(torch.acos((mean_dir * v).sum(-1).clamp(-1.0, 1.0)))
    return theta.float(), torch.cat(albedo).float(), torch.cat(gamma).float()


def lobe_albedo(mu: torch.Tensor, alpha: float = SKIN_GGX_ALPHA, f0: float = SKIN_F0) -> torch.Tensor:
    """The lobe's integral ``R(mu) = integral of f_s(l, v) max(0, n.l) dl`` for a white specular albedo.

    ``mu = n.v`` (any shape); interpolated in a cached table. At normal incidence this is about
    0.84 * f0 (0.023 for skin); towards grazing views it rises with Fresnel (0.045 at 65 degrees).
    """
    theta, albedo, _ = (t.to(mu.device) for t in _lobe_tables(float(alpha), float(f0)))
    return interp(torch.acos(mu.clamp(-1.0, 1.0)), theta, albedo)


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


def _lobe_aware_normals(reflection: torch.Tensor, view: torch.Tensor, alpha: float, f0: float):
    """Specular normals that undo the lobe's bias: rotate ``v`` towards ``r`` by theta, not by half.

    For a mirror the measured reflection vector lies at ``gamma = 2 theta`` from the view, so the
    half vector is right. A rough lobe's mean direction falls short (gamma = 1.8 theta at 30 degrees),
    which tilts the half vector towards the viewer. The table of gamma(theta) inverts that.
    All tensors (3, H, W).
    """
    theta_t, _, gamma_t = (t.to(view.device) for t in _lobe_tables(float(alpha), float(f0)))
    gamma = torch.acos((reflection * view).sum(0).clamp(-1.0, 1.0))
    theta = interp(gamma, gamma_t, theta_t)
    across = F.normalize(reflection - (reflection * view).sum(0, keepdim=True) * view, dim=0)
    return F.normalize(theta.cos() * view + theta.sin() * across, dim=0)


def separate(images: GradientImages, stage: LightStage, *, stage_aware_diffuse: bool = False,
             lobe_aware_specular: bool = False, alpha: float = SKIN_GGX_ALPHA, f0: float = SKIN_F0,
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
    ``alpha`` (GGX) / ``f0`` describe the lobe whose integral normalises the specular albedo.

    Two optional corrections, beyond the paper, show where its errors come from:

    * ``stage_aware_diffuse``: instead of assuming a complete sphere, invert *this* stage's
      Lambertian response (its discrete lights and missing floor) for the normal, and divide the
      albedo by the stage's reading for that normal. Removes the floor's bias.
    * ``lobe_aware_specular``: replace the half vector by the rotation that a GGX lobe of
      ``alpha`` really produces (see :func:`_lobe_aware_normals`). Removes most of the lobe bias.
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
        specular_normals = _lobe_aware_normals(reflection, v, alpha, f0)
    else:
        specular_normals = F.normalize(reflection + v, dim=0)  # the half vector
    specular_normals = torch.where(s_ok, specular_normals, diffuse_normals)
    reflection = torch.where(s_ok, reflection, torch.zeros_like(reflection))
    mu = (specular_normals * v).sum(0)
    specular_albedo = (s[3] / lobe_albedo(mu, alpha, f0)).clamp(0.0, 1.0)
    specular_albedo = torch.where(s_ok, specular_albedo, torch.zeros_like(specular_albedo))[None]
    m = mask.to(diffuse_albedo.dtype)
    return {"diffuse_albedo": diffuse_albedo * m, "specular_albedo": specular_albedo * m,
            "diffuse_normals": diffuse_normals * m, "specular_normals": specular_normals * m,
            "reflection_vectors": reflection * m, "mask": mask}


def to_reflectance_maps(recovered: Mapping[str, torch.Tensor], shape):
    """The recovered maps as a :class:`~avatarme_edu.reflectance.ReflectanceMaps` (the training targets).

    Specular normals go to the tangent space of ``shape`` (``object_to_tangent``); the mask is the
    recovered mask, so texels no camera saw are marked invalid.
    """
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
