"""A test pattern of reflectance maps for any mesh: see at a glance that a viewer or export works.

Real maps come from the pipeline (or the virtual light stage). To check a viewer, an export or a
UV layout, a pattern is easier to read: a checkerboard of saturated colours (you can see where each
UV cell lands and whether the texture is upside down: the top-left cell is red, the top row runs
red, green, blue...), a specular albedo that is strong in horizontal bands, and specular normals with
regular bumps (so the normal map visibly catches the light).
"""

from __future__ import annotations

import math

import torch

from avatarme_edu.geometry.mesh import Mesh
from avatarme_edu.reflectance import ReflectanceMaps
from avatarme_edu.geometry.uv_bake import bake_shape_maps

# Linear RGB colours of the checker cells, row by row (6 columns x 4 rows).
PATTERN_COLORS = torch.tensor([
    [0.80, 0.05, 0.05], [0.05, 0.60, 0.05], [0.05, 0.10, 0.80], [0.80, 0.70, 0.05], [0.70, 0.05, 0.60],
    [0.05, 0.60, 0.70],
])


def pattern_maps(mesh: Mesh, hw: tuple[int, int] = (96, 144), shape=None,
                 cells: tuple[int, int] = (4, 6), bumps: int = 24, bump_strength: float = 0.35):
    """Reflectance maps with a checker pattern for ``mesh``; returns ``(maps, shape)``.

    ``hw``: map size ``(H, W)``; ``cells``: checker ``(rows, cols)``; ``bumps``: bumps across the
    width of the specular normal map; ``bump_strength``: their slope (0 = flat).
    ``shape`` (a :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps`) is baked when not given; the
    diffuse normals are the shape's object-space normals N_O, the specular normals N_T plus bumps.
    """
    h, w = int(hw[0]), int(hw[1])
    if h < 2 or w < 2:
        raise ValueError(f"hw must be at least (2, 2), got {hw}")
    if cells[0] < 1 or cells[1] < 1:
        raise ValueError(f"cells must be positive (rows, cols), got {cells}")
    if shape is None:
        shape = bake_shape_maps(mesh, (h, w))
    device = shape.mask.device
    v = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h  # texel centres
    u = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    row = (vv * cells[0]).long().clamp(max=cells[0] - 1)
    col = (uu * cells[1]).long().clamp(max=cells[1] - 1)
    colors = PATTERN_COLORS.to(device)
    index = (row * cells[1] + col + row) % len(colors)  # shift each row so columns differ too
    diffuse = colors[index].permute(2, 0, 1)
    diffuse = torch.where(((row + col) % 2 == 0)[None], diffuse, 0.5 * diffuse + 0.25)  # light/dark cells

    specular = 0.2 + 0.4 * (0.5 + 0.5 * torch.cos(2 * math.pi * vv * cells[0]))[None]

    # Bumps: a height field h(u, v) = sin(k x) sin(k y); its slope tilts the normal. Tangent-space x
    # follows +u and y points up the map (-v), see uv_bake.
    k = 2 * math.pi * bumps
    x, y = uu, -vv * h / w  # the same length unit along both axes
    slope_x = bump_strength * torch.cos(k * x) * torch.sin(k * y)
    slope_y = bump_strength * torch.sin(k * x) * torch.cos(k * y)
    n_t = shape.normals_tangent
    specular_normals = torch.nn.functional.normalize(
        n_t + torch.stack([-slope_x, -slope_y, torch.zeros_like(x)]) * n_t[2:3].clamp_min(0), dim=0)
    mask = shape.mask
    keep = mask[None].float()
    flat = torch.tensor([0.0, 0.0, 1.0], device=device).view(3, 1, 1)
    maps = ReflectanceMaps(
        diffuse_albedo=diffuse * keep,
        specular_albedo=specular * keep,
        diffuse_normals=shape.normals_object * keep,
        specular_normals=torch.where(mask[None], specular_normals, flat),
        mask=mask,
    )
    return maps, shape
