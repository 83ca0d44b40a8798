"""Shadow maps: which texels of a surface see a light.

Two ways, one idea - look at the surface from the light, keep the nearest depth per pixel, and call a
texel lit when it is no further from the light than that:

* :func:`shadow_visibility` rasterises a **mesh** from a directional or point light (the renderer's
  cast shadows, with normal offset, bilinear percentage-closer filtering and an optional penumbra);
* :func:`splat_visibility` splats a dense **point set** - the texels of a position map - into the
  depth buffer (no mesh needed; many directions at once), and :func:`shadow_and_occlusion` uses it for
  a key light's soft shadow and for ambient occlusion (the light stage's in-the-wild textures).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from avatarme_edu.geometry.camera import Camera
from avatarme_edu.geometry.raster import rasterize_image
from avatarme_edu.geometry.sphere_points import fibonacci_directions
from avatarme_edu.geometry.texels import largest_step_m
from avatarme_edu.imaging import downsample_masked, gaussian_blur, upsample_masked

AO_DIRECTIONS = 48  # directions of the ambient-occlusion shadow maps (Fibonacci sphere)
SHADOW_MAX_HW = (768, 1152)  # shadows: computed at half the maps' size, at most this, and upsampled
AO_HW = (96, 144)  # ambient occlusion is smooth: computed at this size and upsampled


# Penumbra radius of cast shadows on the surface, mm: a studio key light (a ~0.5 m softbox ~2 m away)
# spreads the shadow of a nose or brow a few cm away over a few mm.
SHADOW_SOFTNESS_MM = 2.0


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
    ``position``/``normals`` ``(3, H, W)``, ``mask`` ``(H, W)``. ``light``: anything with a ``direction``
    (towards a distant light, e.g. :class:`~avatarme_edu.render.lights.DirectionalLight`) or a ``position``
    (a point light, :class:`~avatarme_edu.render.lights.PointLight`); lights with neither (an environment)
    return all ones.
    """
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
    direction, lamp = getattr(light, "direction", None), getattr(light, "position", None)
    if (direction is None and lamp is None) or not bool(mask.any()):
        return ones
    verts = mesh.vertices.detach().to(position.device, position.dtype)
    center = (verts.min(0).values + verts.max(0).values) / 2
    radius = float((verts - center).norm(dim=-1).max()) * 1.05
    if direction is not None:
        eye = center + 10.0 * radius * torch.tensor(direction, device=center.device, dtype=center.dtype)
    else:
        eye = torch.tensor(lamp, device=center.device, dtype=center.dtype)
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
    to_light = F.normalize(eye - p, dim=-1) if direction is None else -forward.expand_as(p)
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


def perpendicular_basis(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unit vectors perpendicular to unit ``d`` (3,) and to each other."""
    helper = torch.tensor([0.0, 1.0, 0.0] if abs(float(d[1])) < 0.9 else [1.0, 0.0, 0.0],
                          dtype=d.dtype, device=d.device)
    e1 = F.normalize(torch.linalg.cross(helper, d), dim=0)
    return e1, torch.linalg.cross(d, e1)


def splat_visibility(points: torch.Tensor, normals: torch.Tensor, directions: torch.Tensor,
               pixel: float, pcf: int = 1) -> torch.Tensor:
    """How much of each point sees along each direction, unblocked by the other points: ``(K, P)``.

    ``points`` ``(P, 3)`` (metres) are both the occluders and the receivers (a dense sampling of one
    surface, e.g. the texels of a position map, about ``pixel`` or less apart); ``normals`` ``(P, 3)``
    their unit normals; ``directions`` ``(K, 3)`` unit vectors towards the light. Per direction:

    1. **Shadow map.** Seen from the light, the points are splatted into a depth buffer of
       ``pixel``-sized cells; each cell keeps the depth nearest to the light. A gap between splats
       (an empty cell with at least 6 of its 8 neighbours filled, so not a cell beside the
       silhouette) takes the mean depth of its neighbours.
    2. **Percentage-closer filtering.** A receiver is compared with the ``(2 pcf + 1)^2`` cells around
       it and is lit by the fraction of them it is not behind: soft shadow edges.
    3. **No "shadow acne".** The receiver is compared as its *tangent plane*, evaluated at each
       cell's centre ("receiver plane depth bias"), plus half a cell and half a cell per unit of
       slope for the extent of the cell; a smooth surface then never shadows itself (a convex one
       lies behind its tangent planes). Shadows fade out where the light only grazes the surface
       (``n.d < 0.15``): the test is least reliable there and the light adds less than 15 % anyway.
    """
    if points.ndim != 2 or points.shape[1] != 3 or normals.shape != points.shape:
        raise ValueError(f"points and normals must both be (P, 3), got {tuple(points.shape)}, {tuple(normals.shape)}")
    if not pixel > 0:
        raise ValueError(f"pixel must be a positive size in metres, got {pixel}")
    dirs = F.normalize(directions.to(points), dim=-1).reshape(-1, 3)
    out = torch.empty(dirs.shape[0], points.shape[0], dtype=points.dtype, device=points.device)
    taps = [(dy, dx) for dy in range(-pcf, pcf + 1) for dx in range(-pcf, pcf + 1)]
    for k, d in enumerate(dirs):
        e1, e2 = perpendicular_basis(d)
        x, y, z = points @ e1, points @ e2, -(points @ d)  # z: distance from the light, smaller = nearer
        x0, y0 = float(x.min()) - (pcf + 2) * pixel, float(y.min()) - (pcf + 2) * pixel
        w = int((float(x.max()) - x0) / pixel) + pcf + 3
        h = int((float(y.max()) - y0) / pixel) + pcf + 3
        fx, fy = (x - x0) / pixel, (y - y0) / pixel  # continuous cell coordinates
        ix, iy = fx.long(), fy.long()
        depth = torch.full((h * w,), float("inf"), dtype=points.dtype, device=points.device)
        depth.scatter_reduce_(0, iy * w + ix, z, reduce="amin")
        grid = depth.view(1, 1, h, w)
        known = torch.isfinite(grid).to(points.dtype)
        total = F.avg_pool2d(torch.where(known > 0, grid, torch.zeros_like(grid)), 3, stride=1, padding=1)
        count = F.avg_pool2d(known, 3, stride=1, padding=1).view(-1) * 9
        depth = torch.where(torch.isinf(depth) & (count > 5.5), total.view(-1) * 9 / count.clamp_min(1e-6), depth)
        # slope of each receiver's tangent plane: depth change (in cells) per cell along e1 and e2
        n3 = (normals @ d).clamp_min(0.05)
        sx, sy = ((normals @ e1) / n3).clamp(-20, 20), ((normals @ e2) / n3).clamp(-20, 20)
        bias = pixel * (0.5 + 0.5 * (sx.abs() + sy.abs()))
        lit = torch.zeros_like(z)
        for dy, dx in taps:
            a, b = ix + dx + 0.5 - fx, iy + dy + 0.5 - fy  # from the receiver to the cell centre, cells
            plane = z + pixel * (sx * a + sy * b)
            lit = lit + (plane <= depth[(iy + dy) * w + (ix + dx)] + bias).to(points.dtype)
        grazing = ((normals @ d) / 0.15).clamp(0.0, 1.0)
        out[k] = 1.0 - (1.0 - lit / len(taps)) * grazing
    return out


def shadow_and_occlusion(shape, sun_directions: torch.Tensor, ao_directions: int = AO_DIRECTIONS,
                         shadow_hw: tuple[int, int] | None = None, ao_hw: tuple[int, int] = AO_HW
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Key-light visibility and ambient occlusion of a baked shape, both ``(1, H, W)`` in [0, 1].

    ``shape``: :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps`; ``sun_directions`` ``(K, 3)``
    directions over the key light's disc (their visibilities are averaged: a soft penumbra).
    Occlusion: the cosine-weighted fraction of ``ao_directions`` Fibonacci directions of the texel's
    hemisphere that are not blocked by the head. Both are computed on smaller copies of the position
    map (``shadow_hw``: half the map's size, at most :data:`SHADOW_MAX_HW`; ``ao_hw``) and upsampled:
    soft shadows need no more, and a 6144x4096 map stays cheap.
    """
    mask = shape.mask.bool()
    H, W = mask.shape
    if shadow_hw is None:
        shadow_hw = (max(1, min(H // 2, SHADOW_MAX_HW[0])), max(1, min(W // 2, SHADOW_MAX_HW[1])))
    pos_n = torch.cat([shape.position.float(), shape.normals_object.float()])

    def run(hw, directions, weigh):
        small, m = downsample_masked(pos_n, mask, hw)
        pts, nrm = small[:3][:, m].T, F.normalize(small[3:][:, m].T, dim=-1)
        # cells a little larger than most gaps between samples, so few cells stay empty
        pixel = 1.25 * float(largest_step_m(small[:3], m)[m].median())
        vis = splat_visibility(pts, nrm, directions.to(pts.device), pixel)  # (K, P)
        if weigh:
            w = (nrm @ directions.to(pts).T).clamp_min(0.0).T  # (K, P) cosine weights
            vis = (vis * w).sum(0) / w.sum(0).clamp_min(1e-6)
        else:
            vis = vis.mean(0)
        out = torch.zeros(1, *m.shape, dtype=pts.dtype, device=pts.device)
        out[0, m] = vis
        # a light blur hides the staircase of the shadow-map cells
        out = gaussian_blur(out, 0.7, m, downsample_wide=True)
        return upsample_masked(out, m, mask)

    sun = run(shadow_hw, sun_directions, weigh=False)
    ao = run(ao_hw, fibonacci_directions(ao_directions), weigh=True)
    return sun.clamp(0, 1), ao.clamp(0, 1)
