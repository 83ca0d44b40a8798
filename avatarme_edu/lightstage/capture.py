"""Simulated polarised spherical-gradient capture: the eight photographs of a light-stage subject.

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

Forward model (:func:`render_gradient_images`): each of the stage's lights is a small source of unit radiance
times its pattern intensity, covering its solid angle; a texel's radiance towards the camera is the sum over
the lights (no integrals in closed form: the discrete stage is simulated as it is). Diffuse: Lambertian on the
*diffuse normals* (subsurface scattering is already in their smoothness). Specular: a GGX microfacet lobe
(:func:`~avatarme_edu.optics.brdf.ggx_reflectance`: separable Smith shadowing, Schlick Fresnel with F0 = 0.028
for skin's refractive index of about 1.4, alpha = 0.35 as measured for skin by Weyrich et al. 2006) on the
*specular normals*, scaled by the specular albedo. Camera ``"best"`` picks for every texel the camera that
sees it most frontally; texels seen only beyond ``max_view_angle_deg`` are dropped from the recovery mask.

The separation that recovers the maps from these images is :mod:`~avatarme_edu.lightstage.separation`.

Device-agnostic: everything runs on the device of ``position``; texels are processed in chunks so
memory stays bounded at any map size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatarme_edu.geometry.uv_bake import tangent_to_object
from avatarme_edu.imaging import check_map
from avatarme_edu.lightstage.sphere import BANKS, LightStage
from avatarme_edu.optics.brdf import SKIN_F0, SKIN_GGX_ALPHA, ggx_reflectance

PATTERN_NAMES = ("x", "y", "z", "o")  # the three gradients and the full-on pattern, in this order


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


@dataclass
class GradientImages:
    """The eight photographs of a capture, resampled into UV space (docs/design.md section 2 layout).

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
                           alpha: float = SKIN_GGX_ALPHA, f0: float = SKIN_F0,
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
    check_map("position", position, 3, hw)
    check_map("diffuse_albedo", diffuse_albedo, 3, hw)
    check_map("specular_albedo", specular_albedo, 1, hw)
    check_map("diffuse_normals_obj", diffuse_normals_obj, 3, hw)
    check_map("specular_normals_obj", specular_normals_obj, 3, hw)
    device = position.device
    for name, t in (("diffuse_albedo", diffuse_albedo), ("specular_albedo", specular_albedo),
                    ("diffuse_normals_obj", diffuse_normals_obj), ("specular_normals_obj", specular_normals_obj),
                    ("mask", mask)):
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but position is on {device}; put all maps on one device")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0 (the GGX width, skin ~0.3-0.45), got {alpha}")
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
        lobe = ggx_reflectance((ns[:, None] * l).sum(-1), (ns * v).sum(-1, keepdim=True),
                               (ns[:, None] * h).sum(-1), (v[:, None] * h).sum(-1), alpha, f0)
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


def capture_subject(shape, maps, stage: LightStage, camera_index: int | str = "best",
                    **render_options) -> GradientImages:
    """:func:`render_gradient_images` for a subject given as ShapeMaps + ReflectanceMaps.

    ``shape``: :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps` (position, tangent frame);
    ``maps``: :class:`~avatarme_edu.reflectance.ReflectanceMaps` in the same UV layout. Its specular
    normals (tangent space) are brought to object space with ``tangent_to_object``; the mask is
    both masks together. ``render_options`` go to :func:`render_gradient_images`.
    """
    if tuple(shape.mask.shape) != tuple(maps.mask.shape):
        raise ValueError(f"shape maps are {tuple(shape.mask.shape)} but reflectance maps are "
                         f"{tuple(maps.mask.shape)}; both must share one UV layout")
    mask = shape.mask & maps.mask
    specular_obj = tangent_to_object(maps.specular_normals, shape)
    return render_gradient_images(shape.position, maps.diffuse_albedo, maps.specular_albedo, maps.diffuse_normals,
                                  specular_obj, mask, stage, camera_index, **render_options)


