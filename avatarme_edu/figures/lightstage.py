"""Figures of the virtual light stage: the rig in 3D, the eight photographs, the separation step by step,
a flat shaded preview of a subject's skin maps.

Display only: every function here returns matplotlib axes or display-ready ``(3, H, W)`` sRGB tensors
in [0, 1]; the physics lives in :mod:`avatarme_edu.lightstage`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from avatarme_edu.color import linear_to_srgb
from avatarme_edu.lightstage.capture import PATTERN_NAMES, GradientImages, gradient_patterns
from avatarme_edu.lightstage.skin import SkinMaps
from avatarme_edu.lightstage.sphere import BANKS, HEAD_RADIUS, LightStage


def plot_light_stage(stage: LightStage, ax=None, color_by="bank", show_cameras: bool = True,
                     show_head: bool = True, title: str | None = None):
    """Draw the rig in 3D with matplotlib and return the axes.

    ``color_by``: ``"bank"`` draws both LEDs of every light (blue = cross, orange = parallel);
    a pattern name (``"x"``, ``"y"``, ``"z"``, ``"o"``, see :func:`capture.gradient_patterns`) or an
    ``(L,)`` tensor of intensities in [0, 1] shows each light as a grey level (black = off).
    Drawn with object +Y vertical, seen from in front of the face (a little right and above); lights
    on the far side of the sphere are faded.
    """
    if ax is None:
        fig = plt.figure(figsize=(6, 6))
        ax = fig.add_subplot(projection="3d")

    def xyz(p):  # object (x, y, z) -> matplotlib (z, x, y): a rotation, so +Y is drawn vertical
        p = p.detach().cpu().numpy()
        return p[..., 2], p[..., 0], p[..., 1]

    elev, azim = 15.0, 25.0  # seen from in front, a little to the right and above
    viewer = torch.tensor([math.cos(math.radians(elev)) * math.sin(math.radians(azim)),
                           math.sin(math.radians(elev)),
                           math.cos(math.radians(elev)) * math.cos(math.radians(azim))])
    # matplotlib draws scatter points without hiding: fade the lights on the far side of the sphere
    near = (stage.light_directions.cpu() @ viewer) > 0

    # faint wireframe of the light sphere
    t = torch.linspace(0, math.pi, 13)
    p = torch.linspace(0, 2 * math.pi, 25)
    tt, pp = torch.meshgrid(t, p, indexing="ij")
    wire = torch.stack([torch.sin(tt) * torch.sin(pp), torch.cos(tt), torch.sin(tt) * torch.cos(pp)], -1)
    wx, wy, wz = xyz(wire * stage.radius)
    ax.plot_wireframe(wx, wy, wz, color="0.85", linewidth=0.4)

    if isinstance(color_by, str) and color_by == "bank":
        for bank, colour in zip(BANKS, ("tab:blue", "tab:orange")):
            leds = stage.led_positions(bank).cpu()
            ax.scatter(*xyz(leds[near]), s=9, c=colour, label=f"{bank}-polarised LED", depthshade=False)
            ax.scatter(*xyz(leds[~near]), s=8, c=colour, alpha=0.2, depthshade=False)
    else:
        if isinstance(color_by, str):
            if color_by not in PATTERN_NAMES:
                raise ValueError(f"color_by must be 'bank', one of {PATTERN_NAMES} or an (L,) tensor, "
                                 f"got {color_by!r}")
            intensity = gradient_patterns(stage)[:, PATTERN_NAMES.index(color_by)]
            label = f"pattern P_{color_by}"
        else:
            intensity = torch.as_tensor(color_by, dtype=torch.float32)
            if intensity.shape != (stage.n_lights,):
                raise ValueError(f"intensities must be ({stage.n_lights},), got {tuple(intensity.shape)}")
            label = "light intensity"
        ax.set_facecolor("0.55")
        grey = intensity.detach().cpu().clamp(0, 1).numpy()
        pos = stage.light_positions.cpu()
        ax.scatter(*xyz(pos[~near]), s=12, c=grey[~near.numpy()], cmap="gray", vmin=0.0, vmax=1.0,
                   alpha=0.3, depthshade=False)
        ax.scatter(*xyz(pos[near]), s=30, c=grey[near.numpy()], cmap="gray", vmin=0.0, vmax=1.0,
                   edgecolors="0.3", linewidths=0.4, label=label, depthshade=False)

    if show_cameras:
        cx, cy, cz = xyz(stage.camera_positions)
        ax.scatter(cx, cy, cz, marker="s", s=40, c="tab:red", label="camera", depthshade=False)
        fx, fy, fz = xyz(stage.camera_forward * 0.35)
        ax.quiver(cx, cy, cz, fx, fy, fz, color="tab:red", linewidth=1.0, arrow_length_ratio=0.25)

    if show_head:
        hx, hy, hz = xyz(wire * HEAD_RADIUS)
        ax.plot_surface(hx, hy, hz, color="peachpuff", linewidth=0, alpha=0.9)

    lim = max(stage.radius, float(stage.camera_positions.norm(dim=-1).max())) * 1.05
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_zlim(-lim, lim)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=elev, azim=azim)
    ax.set_xlabel("z (m), the face looks this way")
    ax.set_ylabel("x (m)")
    ax.set_zlabel("y (m), up")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or f"light stage: {stage.n_lights} lights, {stage.n_cameras} cameras", pad=0)
    return ax


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


def flat_preview(maps: SkinMaps, light: tuple[float, float, float] = (-0.55, 0.5, 0.67),
                 shininess: float = 40.0, ambient: float = 0.1, intensity: float = 1.0) -> torch.Tensor:
    """Shade the maps as if the UV map were a flat sheet seen from +z: linear RGB ``(3, H, W)``.

    Lambert with the diffuse detail normals plus Blinn-Phong (normalised, ``(p + 8) / 8``) with the
    specular detail normals, one white light from the tangent-space direction ``light``. Good for
    checking that pores, wrinkles and the specular map look right before any head is rendered.
    """
    lvec = F.normalize(torch.tensor(light, dtype=torch.float32, device=maps.mask.device), dim=0).view(3, 1, 1)
    view = torch.tensor([0.0, 0.0, 1.0], device=maps.mask.device).view(3, 1, 1)
    half = F.normalize(lvec + view, dim=0)
    nd, ns = maps.diffuse_detail_normals, maps.specular_detail_normals
    lambert = (nd * lvec).sum(0, keepdim=True).clamp_min(0)
    blinn = (ns * half).sum(0, keepdim=True).clamp_min(0) ** shininess * (shininess + 8) / 8
    specular = maps.specular_albedo * blinn * (ns * lvec).sum(0, keepdim=True).clamp_min(0)
    out = intensity * (maps.diffuse_albedo * lambert + specular) + ambient * maps.diffuse_albedo
    return (out * maps.mask).clamp(0, 1)
