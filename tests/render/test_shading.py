"""Tests of texture-space shading, lights and image-space rendering (tiny sizes, known answers)."""

import math

import pytest
import torch

from avatarme_edu.color import linear_to_srgb
from avatarme_edu.geometry.camera import Camera
from avatarme_edu.geometry.mesh import uv_sphere
from avatarme_edu.geometry.uv_bake import ShapeMaps, bake_shape_maps
from avatarme_edu.reflectance import ReflectanceMaps
from avatarme_edu.render.lights import (
    DirectionalLight, PointLight, SHEnvironment, direction_from_angles, indoor_warm, outdoor_sun,
    rotation_y, studio,
)
from avatarme_edu.render.shading import render_view, sample_uv, shade_uv, specular_directional_albedo, to_srgb_image


def flat_shape(h=24, w=36, texel_m=0.001) -> ShapeMaps:
    """A plane z = 0 facing +Z, texel (row, col) at x = (col + .5) s, y = -(row + .5) s."""
    rows = (torch.arange(h, dtype=torch.float32) + 0.5) * texel_m
    cols = (torch.arange(w, dtype=torch.float32) + 0.5) * texel_m
    yy, xx = torch.meshgrid(-rows, cols, indexing="ij")
    position = torch.stack([xx, yy, torch.zeros_like(xx)])
    def const(v):
        return torch.tensor(v, dtype=torch.float32).view(3, 1, 1).expand(3, h, w).clone()
    z = const([0.0, 0.0, 1.0])
    return ShapeMaps(position, z, const([1.0, 0.0, 0.0]), const([0.0, 1.0, 0.0]), z.clone(), z.clone(),
                     torch.zeros(1, h, w), torch.ones(h, w, dtype=torch.bool))


def plain_maps(shape, albedo=(1.0, 1.0, 1.0), specular=0.35) -> ReflectanceMaps:
    h, w = shape.hw
    tangent_z = torch.zeros(3, h, w)
    tangent_z[2] = 1.0
    return ReflectanceMaps(torch.tensor(albedo).view(3, 1, 1).expand(3, h, w).clone(),
                           torch.full((1, h, w), float(specular)), shape.normals_object.clone(), tangent_z,
                           shape.mask.clone())


@pytest.fixture(scope="module")
def sphere():
    mesh = uv_sphere(24, 48, radius=0.1)
    shape = bake_shape_maps(mesh, (48, 72))
    return mesh, shape


# ------------------------------------------------------------------------------------------ Lambert
def test_lambert_white_plane_facing_light_is_intensity():
    # Convention: intensity I facing a white Lambertian surface -> radiance exactly I (E = pi I).
    shape = flat_shape()
    maps = plain_maps(shape, specular=0.0)
    for sss in (False, True):
        out = shade_uv(shape, maps, DirectionalLight((0, 0, 1), (1.0, 0.5, 0.25), 0.7), (0.0, 0.0, 1.0), sss=sss)
        expected = torch.tensor([0.7, 0.35, 0.175]).view(3, 1, 1).expand_as(out["diffuse"])
        torch.testing.assert_close(out["diffuse"], expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out["irradiance"], math.pi * expected, atol=1e-5, rtol=1e-5)


def test_lambert_cosine_law_on_sphere(sphere):
    _, shape = sphere
    maps = plain_maps(shape, specular=0.0)
    light = direction_from_angles(30.0, 20.0)
    out = shade_uv(shape, maps, DirectionalLight(light, intensity=2.0), (0.0, 0.0, 1.0), sss=False)
    cos = (shape.normals_object * torch.tensor(light).view(3, 1, 1)).sum(0).clamp_min(0)
    torch.testing.assert_close(out["diffuse"], 2.0 * cos.expand(3, -1, -1) * shape.mask, atol=1e-5, rtol=1e-5)


def test_diffuse_integrates_like_lambert_over_the_sphere(sphere):
    # The power a white Lambertian sphere reflects equals the power it intercepts:
    # sum over the surface of pi * L_d dA = E * (pi r^2), the light's irradiance times the disc it covers.
    _, shape = sphere
    maps = plain_maps(shape, specular=0.0)
    out = shade_uv(shape, maps, DirectionalLight((0.3, 0.2, 0.9), intensity=1.0), (0.0, 0.0, 1.0), sss=False)
    u, v = shape.hw[1], shape.hw[0]
    # texel area on the sphere: (dP/du x dP/dv) / (W H) evaluated analytically for the UV sphere
    theta = (torch.arange(v, dtype=torch.float64) + 0.5) / v * math.pi
    area = (0.1**2) * torch.sin(theta) * (math.pi / v) * (2 * math.pi / u)
    reflected = (math.pi * out["diffuse"][0].double() * area[:, None]).sum()
    intercepted = math.pi * 1.0 * math.pi * 0.1**2
    assert abs(float(reflected) / intercepted - 1.0) < 0.02


def test_diffuse_independent_of_view_specular_depends_on_it(sphere):
    _, shape = sphere
    maps = plain_maps(shape, albedo=(0.6, 0.4, 0.3))
    lights = [DirectionalLight(direction_from_angles(-30, 20))]
    for model in ("blinn_phong", "microfacet"):
        a = shade_uv(shape, maps, lights, (0.0, 0.0, 1.0), specular_model=model)
        b = shade_uv(shape, maps, lights, (0.6, 0.3, 0.7), specular_model=model)
        assert torch.equal(a["diffuse"], b["diffuse"])
        assert (a["specular"] - b["specular"]).abs().max() > 1e-2
        assert a["specular"].max() > 0.05  # a visible highlight


def test_zero_specular_albedo_gives_zero_specular(sphere):
    _, shape = sphere
    maps = plain_maps(shape, specular=0.0)
    for model in ("blinn_phong", "microfacet"):
        out = shade_uv(shape, maps, studio() + outdoor_sun(), (0.0, 0.0, 1.0), specular_model=model)
        assert torch.count_nonzero(out["specular"]) == 0
        assert out["diffuse"].max() > 0.1


def test_specular_scales_with_albedo_and_peaks_at_mirror_direction():
    shape = flat_shape()
    light = DirectionalLight((0.0, 0.0, 1.0), intensity=1.0)
    eye = (0.018, -0.012, 5.0)  # above the middle of the plane
    half = shade_uv(shape, plain_maps(shape, specular=0.175), light, eye, sss=False, roughness=0.35)
    full = shade_uv(shape, plain_maps(shape, specular=0.35), light, eye, sss=False, roughness=0.35)
    torch.testing.assert_close(full["specular"], 2 * half["specular"])
    # Light and camera both along +Z: h = n, so the reference albedo gives F0 * lobe(0) * pi * I:
    # normalised Blinn-Phong peak (s + 8) / (8 pi) with s = 2 / alpha^2 - 2, alpha = 0.35^2.
    alpha = 0.35**2
    s = 2 / alpha**2 - 2
    peak = 0.028 * (s + 8) / (8 * math.pi) * math.pi
    assert float(full["specular"].max()) == pytest.approx(peak, rel=2e-3)
    # ... and GGX: D = 1 / (pi alpha^2), V = 1/4 at normal incidence.
    ggx = shade_uv(shape, plain_maps(shape), light, eye, sss=False, specular_model="microfacet", roughness=0.35)
    assert float(ggx["specular"].max()) == pytest.approx(0.028 / (math.pi * alpha**2) / 4 * math.pi, rel=2e-3)


def test_outputs_finite_non_negative_at_grazing_angles(sphere):
    _, shape = sphere
    g = torch.Generator().manual_seed(0)
    h, w = shape.hw
    noisy = torch.nn.functional.normalize(torch.randn(3, h, w, generator=g) * torch.tensor([1, 1, 0.2]).view(3, 1, 1)
                                          + torch.tensor([0, 0, 0.05]).view(3, 1, 1), dim=0)
    maps = ReflectanceMaps(torch.rand(3, h, w, generator=g), torch.rand(1, h, w, generator=g),
                           shape.normals_object.clone(), noisy, shape.mask)
    # Lights and camera in the equatorial plane: half the sphere is seen and lit at grazing angles;
    # one light exactly opposite the camera (l = -v, a zero half vector).
    lights = [DirectionalLight((1, 0, 0)), DirectionalLight((0, 0, -1)), PointLight((0.1, 0.0, 0.0), intensity=0.2),
              SHEnvironment.from_directions([(0, 0, -1)], ambient=(0.1, 0.1, 0.1))]
    for model in ("blinn_phong", "microfacet"):
        for roughness in (0.2, 0.5, 1.0):
            out = shade_uv(shape, maps, lights, (0.0, 0.0, 100.0), specular_model=model, roughness=roughness)
            for key in ("diffuse", "specular", "total"):
                assert torch.isfinite(out[key]).all(), (model, key)
                assert (out[key] >= 0).all(), (model, key)
            assert (out["total"][:, ~shape.mask] == 0).all()


def test_directional_albedo_matches_fresnel_and_stays_below_one():
    nv = torch.linspace(0, 1, 11)
    for model in ("blinn_phong", "microfacet"):
        a = specular_directional_albedo(nv, model, 0.35**2, 0.028)
        assert float(a[-1]) == pytest.approx(0.028, rel=0.05)  # a smooth-ish lobe reflects ~F0 head-on
        white = specular_directional_albedo(nv, model, 0.35**2, 1.0)
        assert (white <= 1.03).all() and (white >= 0).all()  # a lossless mirror reflects at most all of it


# ------------------------------------------------------------------------------------------ subsurface


def test_subsurface_blur_softens_a_shadow_edge_with_red_bleeding():
    shape = flat_shape(h=32, w=48, texel_m=0.0005)
    maps = plain_maps(shape, specular=0.0)
    maps.diffuse_normals[:, :, 24:] = torch.tensor([0.0, 0.0, -1.0]).view(3, 1, 1)  # right half faces away
    out = shade_uv(shape, maps, DirectionalLight((0, 0, 1)), (0, 0, 1), sss=True)
    dark = out["diffuse"][:, 16, 25]  # just inside the unlit half
    assert dark[0] > 0.05 and dark[0] > 3 * dark[1] and dark[1] >= dark[2]


# ------------------------------------------------------------------------------------------ shadows
def test_convex_sphere_does_not_shadow_itself(sphere):
    mesh, shape = sphere
    maps = plain_maps(shape)
    lights = [DirectionalLight(direction_from_angles(-50, 30)), PointLight((0.3, 0.1, 0.4))]
    plain = shade_uv(shape, maps, lights, (0, 0, 1))
    shadowed = shade_uv(shape, maps, lights, (0, 0, 1), shadows=True, mesh=mesh, shadow_resolution=128)
    torch.testing.assert_close(shadowed["total"], plain["total"], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="mesh"):
        shade_uv(shape, maps, lights, (0, 0, 1), shadows=True)


# ------------------------------------------------------------------------------------------ lights
def test_sh_dc_only_gives_constant_irradiance():
    g = torch.Generator().manual_seed(1)
    normals = torch.nn.functional.normalize(torch.randn(500, 3, generator=g), dim=-1)
    env = SHEnvironment.uniform((0.2, 0.5, 1.0), 0.8)
    e = env.irradiance(normals)
    torch.testing.assert_close(e, (math.pi * 0.8 * torch.tensor([0.2, 0.5, 1.0])).expand(500, 3), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(env.radiance(normals), (0.8 * torch.tensor([0.2, 0.5, 1.0])).expand(500, 3),
                               rtol=1e-5, atol=1e-6)


def test_white_furnace_uniform_environment_shades_white_albedo_to_its_radiance():
    shape = flat_shape()
    out = shade_uv(shape, plain_maps(shape, specular=0.0), SHEnvironment.uniform(intensity=0.6), (0, 0, 1))
    torch.testing.assert_close(out["diffuse"], torch.full_like(out["diffuse"], 0.6), atol=1e-5, rtol=1e-5)


def test_sh_from_directions_approximates_a_directional_light():
    d = torch.nn.functional.normalize(torch.tensor([0.3, 0.5, 0.8]), dim=0)
    env = SHEnvironment.from_directions([d.tolist()], [(1.0, 0.8, 0.6)], [1.5])
    facing = env.irradiance(d[None])[0]
    # Order 2 smooths the clamped cosine: 1.0625 x the exact pi I c when facing the light.
    torch.testing.assert_close(facing, 1.0625 * math.pi * 1.5 * torch.tensor([1.0, 0.8, 0.6]), rtol=1e-4, atol=1e-4)
    g = torch.Generator().manual_seed(2)
    normals = torch.nn.functional.normalize(torch.randn(400, 3, generator=g), dim=-1)
    exact = math.pi * 1.5 * (normals @ d).clamp_min(0)
    assert (env.irradiance(normals)[:, 0] - exact).abs().max() < 0.12 * math.pi * 1.5


def test_sh_rotation_rotates_the_environment():
    env = SHEnvironment.from_directions([(0.0, 0.3, 1.0), (1.0, 1.0, 0.0)], [(1, 0.5, 0.2), (0.1, 0.2, 1)], [1.0, 0.5],
                                        ambient=(0.1, 0.1, 0.1))
    r = rotation_y(70.0)
    turned = env.rotated(r)
    g = torch.Generator().manual_seed(3)
    w = torch.nn.functional.normalize(torch.randn(100, 3, generator=g), dim=-1)
    torch.testing.assert_close(turned.irradiance(w @ r.T), env.irradiance(w), atol=1e-4, rtol=1e-4)


def test_point_light_inverse_square_falloff():
    shape = flat_shape(h=4, w=4, texel_m=1e-4)  # tiny patch: all texels ~ on the axis
    maps = plain_maps(shape, specular=0.0)
    near = shade_uv(shape, maps, PointLight((0.0, 0.0, 0.5), intensity=1.0), (0, 0, 1), sss=False)["diffuse"]
    far = shade_uv(shape, maps, PointLight((0.0, 0.0, 1.0), intensity=1.0), (0, 0, 1), sss=False)["diffuse"]
    assert float(far.mean()) == pytest.approx(1.0, rel=1e-4)  # 1 m away: the same scale as a directional light
    assert float(near.mean()) == pytest.approx(4.0, rel=1e-4)


def test_presets_are_light_lists_and_rotate():
    for preset in (studio, outdoor_sun, indoor_warm):
        lights = preset()
        assert len(lights) >= 2
        for light in lights:
            assert light.rotated(rotation_y(30.0)) is not None
    d = DirectionalLight((0, 0, 1)).rotated(rotation_y(90.0)).direction
    assert d == pytest.approx(direction_from_angles(90.0, 0.0), abs=1e-6)


def test_bad_inputs_raise_clear_errors(sphere):
    _, shape = sphere
    maps = plain_maps(shape)
    with pytest.raises(ValueError, match="specular_model"):
        shade_uv(shape, maps, studio(), (0, 0, 1), specular_model="phong")
    with pytest.raises(ValueError, match="roughness"):
        shade_uv(shape, maps, studio(), (0, 0, 1), roughness=0.01)
    with pytest.raises(ValueError, match="lights"):
        shade_uv(shape, maps, ["sun"], (0, 0, 1))
    with pytest.raises(ValueError, match="direction"):
        DirectionalLight((0, 0, 0))
    with pytest.raises(ValueError, match="intensity"):
        PointLight((0, 0, 1), intensity=-1)
    with pytest.raises(ValueError, match=r"\(9, 3\)"):
        SHEnvironment(torch.zeros(4, 3))
    small = plain_maps(flat_shape())
    with pytest.raises(ValueError, match="size"):
        shade_uv(shape, small, studio(), (0, 0, 1))


# ------------------------------------------------------------------------------------------ image space
def test_sample_uv_uses_texel_centres():
    h, w = 4, 6
    ramp = torch.arange(w, dtype=torch.float32).view(1, 1, w).expand(1, h, w).clone()
    cols = torch.arange(w, dtype=torch.float32)
    uv = torch.stack([(cols + 0.5) / w, torch.full((w,), 0.5 / h)]).view(2, 1, w)
    torch.testing.assert_close(sample_uv(ramp, uv)[0, 0], cols)


def test_render_sphere_mask_matches_projected_disc_and_front_texel(sphere):
    mesh, shape = sphere
    maps = plain_maps(shape, albedo=(0.7, 0.5, 0.4))
    dist, r = 1.0, 0.1
    cam = Camera.look_at((0.0, 0.0, dist), (0.0, 0.0, 0.0), fov_deg=20.0, hw=(96, 96))
    out = render_view(mesh, shape, maps, DirectionalLight((0, 0, 1)), cam, background=(0.2, 0.3, 0.4),
                      shadow_resolution=128)
    # The silhouette of a sphere is a cone of half-angle asin(r / dist): image radius f r / sqrt(d^2 - r^2).
    radius_px = cam.focal * r / math.sqrt(dist**2 - r**2)
    area = out["mask"].sum().item()
    assert area == pytest.approx(math.pi * radius_px**2, rel=0.03)
    # Background where nothing is drawn, finite non-negative everywhere.
    assert torch.equal(out["image"][:, 0, 0], torch.tensor([0.2, 0.3, 0.4]))
    assert torch.isfinite(out["image"]).all() and (out["image"] >= 0).all()
    # The centre pixel sees the front of the sphere (u = v = 0.5): lit head-on by a white light of
    # intensity 1, its diffuse radiance is the albedo.
    centre = out["diffuse"][:, 48, 48]
    torch.testing.assert_close(centre, torch.tensor([0.7, 0.5, 0.4]), atol=0.02, rtol=0.02)
    torch.testing.assert_close(out["srgb"], to_srgb_image(out["image"]))


def test_to_srgb_image_exposure_is_in_stops():
    x = torch.full((3, 2, 2), 0.1)
    torch.testing.assert_close(to_srgb_image(x, exposure=1.0), linear_to_srgb(torch.full((3, 2, 2), 0.2)))
    assert float(to_srgb_image(torch.full((3, 1, 1), 5.0)).max()) == pytest.approx(1.0)  # clipped


# ------------------------------------------------------------------------------------------ stretch and softness
def stretched_shape(h=24, w=36, row_mm=15.0, col_mm=0.5) -> ShapeMaps:
    """A plane whose rows are ``row_mm`` apart and columns ``col_mm``: like EduHead's neck in UV."""
    shape = flat_shape(h, w)
    rows = (torch.arange(h, dtype=torch.float32) + 0.5) * row_mm / 1000
    cols = (torch.arange(w, dtype=torch.float32) + 0.5) * col_mm / 1000
    yy, xx = torch.meshgrid(-rows, cols, indexing="ij")
    shape.position = torch.stack([xx, yy, torch.zeros_like(xx)])
    return shape


def test_shade_uv_uses_the_stretch_map():
    shape = stretched_shape()
    maps = plain_maps(shape, specular=0.0)
    maps.diffuse_normals[:, 12:] = torch.tensor([0.0, 0.0, -1.0]).view(3, 1, 1)  # lower rows face away
    out = shade_uv(shape, maps, DirectionalLight((0, 0, 1)), (0, 0, 1), sss=True)
    assert float(out["diffuse"][0, 13:].max()) < 1e-3  # no red glow 15+ mm into the dark part


