"""Head-model transfer: the face is kept, the head is tone-matched, the seam is smooth, nothing folds.

Most tests use a small UV sphere as "head model" and a deformed copy of it as "reconstruction" (one
topology and UV layout, like EduHead meshes), with a synthetic soft face region on the front, so
they run in a fraction of a second. The last test runs the real thing on EduHead.
"""

import math

import pytest
import torch

from avatarme_edu.completion.blend import (face_blend_weights, feather_mask, flipped_faces, relax_offsets,
                                           rotate_between, similarity_transform)
from avatarme_edu.completion.tone import match_skin_tone, skin_tone_stats, tone_ring
from avatarme_edu.completion.transfer import transfer_to_head
from avatarme_edu.geometry.mesh import uv_sphere
from avatarme_edu.geometry.uv_bake import bake_shape_maps, tangent_to_object
from avatarme_edu.imaging import smoothstep
from avatarme_edu.reflectance import ReflectanceMaps

HW = (48, 72)


@pytest.fixture(scope="module")
def scene():
    """A head model (sphere), a reconstruction (the sphere with a nose, a little larger) and maps."""
    head_mesh = uv_sphere(rows=32, cols=48, radius=0.1)
    v = head_mesh.vertices
    r = v / v.norm(dim=-1, keepdim=True)
    nose = 0.012 * torch.exp(-((r[:, 0] / 0.25) ** 2 + (r[:, 1] / 0.3) ** 2)) * (r[:, 2] > 0)
    face_vertices = v * 1.04 + r * nose[:, None] + torch.tensor([0.0, 0.002, 0.003])
    face_mesh = head_mesh.with_vertices(face_vertices)
    face_weight = smoothstep(0.2, 0.6, r[:, 2])  # the front cap is "the face"

    g = torch.Generator().manual_seed(0)

    def maps_for(mesh, color, spread):
        shape = bake_shape_maps(mesh, HW)
        keep = shape.mask[None].float()
        noise = 1.0 + spread * torch.randn(3, *HW, generator=g)
        albedo = (torch.tensor(color).view(3, 1, 1) * noise).clamp(0, 1) * keep
        spec = (0.3 + 0.05 * torch.randn(1, *HW, generator=g)).clamp(0, 1) * keep
        wobble = 0.1 * torch.randn(3, *HW, generator=g)
        sideways = wobble * torch.tensor([1.0, 1.0, 0.0]).view(3, 1, 1)
        n_s = torch.nn.functional.normalize(shape.normals_tangent + sideways, dim=0) * keep
        n_d = torch.nn.functional.normalize(shape.normals_object + 0.3 * wobble, dim=0) * keep
        return ReflectanceMaps(albedo, spec, n_d, n_s, shape.mask.clone()), shape

    face_maps, face_shape = maps_for(face_mesh, (0.55, 0.38, 0.30), 0.08)
    head_maps, head_shape = maps_for(head_mesh, (0.30, 0.18, 0.12), 0.12)
    return dict(head_mesh=head_mesh, face_mesh=face_mesh, face_weight=face_weight, face_maps=face_maps,
                head_maps=head_maps, face_shape=face_shape, head_shape=head_shape)


def _transfer(scene, **kw):
    return transfer_to_head(scene["face_mesh"], scene["face_maps"], scene["head_mesh"], scene["head_maps"],
                            face_weight=scene["face_weight"], face_shape=scene["face_shape"],
                            head_shape=scene["head_shape"], **kw)


@pytest.fixture(scope="module")
def result(scene):
    return _transfer(scene)


def test_face_region_equals_the_input_face(scene, result):
    mesh, maps, info = result
    inside = info.alpha >= 1
    assert int(inside.sum()) > 50, "the test scene should have a solid face region"
    face = scene["face_maps"]
    assert torch.equal(maps.diffuse_albedo[:, inside], face.diffuse_albedo[:, inside])
    assert torch.equal(maps.specular_albedo[:, inside], face.specular_albedo[:, inside])
    # diffuse normals: the same object-space directions
    assert torch.allclose(maps.diffuse_normals[:, inside], face.diffuse_normals[:, inside], atol=1e-5)
    # specular normals live in the tangent frame of each mesh's own (smoothed) shape: compare them in
    # object space, where "the same normal" means the same thing on both meshes
    ours = tangent_to_object(maps.specular_normals, info.shape)[:, inside]
    theirs = tangent_to_object(face.specular_normals, scene["face_shape"])[:, inside]
    assert torch.allclose(ours, theirs, atol=1e-4)
    ones = info.vertex_weight >= 1
    assert int(ones.sum()) > 20
    assert torch.equal(mesh.vertices[ones], scene["face_mesh"].vertices[ones])


def test_far_from_the_face_it_is_the_tone_matched_head(scene, result):
    mesh, maps, info = result
    outside = (info.alpha <= 0) & maps.mask
    assert int(outside.sum()) > 500
    assert torch.equal(maps.diffuse_albedo[:, outside], info.head_maps.diffuse_albedo[:, outside])
    assert torch.equal(maps.specular_albedo[:, outside], info.head_maps.specular_albedo[:, outside])
    # the head's tone moved: its statistics in the ring now equal the face's
    assert info.tone_head_matched is not None and info.ring.sum() >= 32
    assert torch.allclose(info.tone_head_matched.mean, info.tone_face.mean, atol=1e-3)
    assert torch.allclose(info.tone_head_matched.std, info.tone_face.std, atol=1e-3)
    assert torch.allclose(info.tone_head_matched.linear_mean, info.tone_face.linear_mean, atol=0.01)
    before = skin_tone_stats(scene["head_maps"].diffuse_albedo, info.ring)
    assert (before.linear_mean - info.tone_face.linear_mean).abs().max() > 0.1  # it was really different
    # the far-away texels are the head's albedo times one colour gain per channel (no local changes)
    ratio = info.head_maps.diffuse_albedo[:, outside] / scene["head_maps"].diffuse_albedo[:, outside].clamp_min(0.05)
    assert float(ratio.mean(1).min()) > 1.3  # the darker head became lighter, like the face
    # geometry: untouched vertices are the aligned head's
    still = (info.vertex_weight <= 0) & ~info.band
    assert torch.equal(mesh.vertices[still], info.head_mesh.vertices[still])


def test_no_step_across_the_seam(scene):
    # Constant, very different albedos and no tone matching: the largest texel-to-texel jump of the
    # result must be a small fraction of the 0.6 a hard cut would make.
    s = dict(scene)
    keep = scene["face_maps"].mask[None].float()

    def flat(m, value):
        return ReflectanceMaps(torch.full_like(m.diffuse_albedo, value) * keep, m.specular_albedo,
                               m.diffuse_normals, m.specular_normals, m.mask)

    s["face_maps"], s["head_maps"] = flat(scene["face_maps"], 0.8), flat(scene["head_maps"], 0.2)
    _, maps, info = _transfer(s, tone_space="none")
    a, m = maps.diffuse_albedo[0], maps.mask
    jump_x = (a[:, 1:] - a[:, :-1]).abs()[m[:, 1:] & m[:, :-1]].max()
    jump_y = (a[1:] - a[:-1]).abs()[m[1:] & m[:-1]].max()
    assert float(max(jump_x, jump_y)) < 0.2
    assert bool(((info.alpha > 0) & (info.alpha < 1)).sum() > 50)  # there is a band to cross


def test_blended_geometry_has_no_flipped_faces_and_no_step(scene, result):
    mesh, _, info = result
    assert int(flipped_faces(mesh, scene["head_mesh"], min_cos=0.5).sum()) == 0
    assert int(flipped_faces(mesh, scene["face_mesh"], min_cos=0.5).sum()) == 0
    # edges of the result are never much longer than the same edges on either input (no tear)
    f = mesh.faces
    edge = lambda v: (v[f[:, 1]] - v[f[:, 0]]).norm(dim=-1)  # noqa: E731
    longest = torch.maximum(edge(scene["face_mesh"].vertices), edge(info.head_mesh.vertices))
    assert float((edge(mesh.vertices) / longest.clamp_min(1e-9)).max()) < 1.3
    assert 0 < info.max_offset_mm < 30


def test_half_masked_face_still_blends(scene):
    cols = torch.arange(HW[1])
    half = (cols < HW[1] // 2).expand(HW)  # only the subject's right half (u < 0.5) has data
    mesh, maps, info = _transfer(scene, face_mask=half)
    assert float(info.alpha[:, HW[1] // 2:].max()) == 0.0
    assert float(info.alpha[:, : HW[1] // 2].max()) == 1.0
    gone = ~half & maps.mask
    assert torch.equal(maps.diffuse_albedo[:, gone], info.head_maps.diffuse_albedo[:, gone])
    uv = scene["head_mesh"].uvs
    right = (uv[:, 0] > 0.6) & (uv[:, 1] > 0.05) & (uv[:, 1] < 0.95)  # well inside the missing half, off the poles
    assert float(info.vertex_weight[right].max()) == 0.0
    assert int(flipped_faces(mesh, scene["head_mesh"], min_cos=0.5).sum()) == 0
    assert torch.isfinite(maps.diffuse_normals).all() and torch.isfinite(maps.specular_normals).all()
    n = maps.diffuse_normals[:, maps.mask].norm(dim=0)
    assert torch.allclose(n, torch.ones_like(n), atol=1e-4)


def test_feather_mask_fades_inside_the_edge():
    mask = torch.zeros(40, 60, dtype=torch.bool)
    mask[:, :30] = True
    soft = feather_mask(mask, width=0.1)  # 6 texels
    assert float(soft[:, 30:].max()) == 0.0
    assert float(soft[:, :20].min()) == 1.0  # far from the edge (and at the map's own border) it is 1
    row = soft[20, :30]
    assert bool((row[1:] <= row[:-1] + 1e-6).all())  # falls towards the edge
    assert float(row[-1]) < 0.2
    assert torch.equal(feather_mask(mask, 0.0), mask.float())
    with pytest.raises(ValueError, match="width"):
        feather_mask(mask, 0.9)


def test_skin_tone_stats_and_matching_known_values():
    img = torch.full((3, 4, 6), 0.5)
    img[:, :, 3:] = 0.1
    region = torch.ones(4, 6, dtype=torch.bool)
    lin = skin_tone_stats(img, region, space="linear")
    assert torch.allclose(lin.mean, torch.full((3,), 0.3)) and torch.allclose(lin.std, torch.full((3,), 0.2))
    log = skin_tone_stats(img, region, space="log")
    expected = 0.5 * (math.log(0.501) + math.log(0.101))
    assert torch.allclose(log.mean, torch.full((3,), expected), atol=1e-6)
    target = skin_tone_stats(img * 1.5, region, space="log")
    matched = match_skin_tone(img, log, target)
    assert torch.allclose(matched, img * 1.5, atol=2e-3)  # a pure multiplicative change is undone exactly
    with pytest.raises(ValueError, match="no valid texels"):
        skin_tone_stats(img, torch.zeros(4, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="space"):
        skin_tone_stats(img, region, space="lab")


def test_tone_ring_widens_when_the_band_is_too_thin():
    alpha = torch.zeros(20, 30)
    alpha[5:15, 5:25] = 1.0
    alpha[5, 5:25] = 0.5  # one thin row of band: 20 texels, fewer than the minimum
    valid = torch.ones(20, 30, dtype=torch.bool)
    ring = tone_ring(alpha, valid)
    assert int(ring.sum()) == 200  # widened to everything the face covers
    alpha[4, 5:25] = 0.3
    alpha[3, 5:25] = 0.6
    assert int(tone_ring(alpha, valid).sum()) == 60


def test_similarity_transform_recovers_a_known_transform():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(50, 3, generator=g, dtype=torch.float64)
    angle = 0.3
    rot = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]],
                       dtype=torch.float64)
    dst = 1.2 * src @ rot.T + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    s, r, t = similarity_transform(src, dst, torch.ones(50))
    assert abs(s - 1.2) < 1e-9 and torch.allclose(r, rot, atol=1e-9)
    assert torch.allclose(t, torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64), atol=1e-9)
    s, r, _ = similarity_transform(src, dst, torch.ones(50), mode="rigid")
    assert s == 1.0 and abs(float(torch.linalg.det(r)) - 1) < 1e-9


def test_relax_offsets_keeps_the_boundary_and_smooths_the_band():
    # a chain 0-1-2-...-10 (as degenerate-free triangles of a strip); ends fixed, a spike inside
    n = 11
    top, bottom = torch.arange(n), torch.arange(n) + n
    faces = torch.cat([torch.stack([top[:-1], bottom[:-1], bottom[1:]], 1),
                       torch.stack([top[:-1], bottom[1:], top[1:]], 1)])
    x = torch.zeros(2 * n, 3)
    x[top, 0] = torch.linspace(0, 1, n)
    x[bottom, 0] = torch.linspace(0, 1, n)
    x[5, 2] = x[5 + n, 2] = 1.0  # the spike
    band = torch.ones(2 * n, dtype=torch.bool)
    band[[0, n - 1, n, 2 * n - 1]] = False
    out = relax_offsets(x, faces, band, iterations=2000, step=0.5)  # equal weights (no vertices)
    assert torch.equal(out[~band], x[~band])
    # converged to the harmonic fill between the fixed ends: every free vertex is the mean of its
    # neighbours, and the spike (boundary values 0) is gone
    assert float(out[:, 2].abs().max()) < 1e-3
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = torch.unique(torch.sort(edges, 1).values, dim=0)
    nbr_sum = torch.zeros(2 * n).index_add_(0, edges[:, 0], out[edges[:, 1], 0])
    nbr_sum.index_add_(0, edges[:, 1], out[edges[:, 0], 0])
    degree = torch.zeros(2 * n).index_add_(0, edges.flatten(), torch.ones(edges.numel()))
    assert torch.allclose(out[band, 0], (nbr_sum / degree)[band], atol=1e-4)
    assert bool((out[top[1:], 0] > out[top[:-1], 0]).all())  # still ordered along the chain


def test_rotate_between_turns_a_onto_b():
    a = torch.nn.functional.normalize(torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(2)), dim=0)
    b = torch.nn.functional.normalize(a + 0.5 * torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(3)), dim=0)
    assert torch.allclose(rotate_between(a, b, a), b, atol=1e-5)
    v = torch.nn.functional.normalize(torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(4)), dim=0)
    turned = rotate_between(a, b, v)
    assert torch.allclose((turned * b).sum(0), (v * a).sum(0), atol=1e-5)  # angles are kept
    assert torch.allclose(turned.norm(dim=0), torch.ones(5, 5), atol=1e-5)


def test_bad_inputs_raise_clear_errors(scene):
    with pytest.raises(ValueError, match="tone_space"):
        _transfer(scene, tone_space="hsv")
    with pytest.raises(ValueError, match="align"):
        _transfer(scene, align="affine")
    with pytest.raises(ValueError, match="same topology"):
        transfer_to_head(uv_sphere(8, 12), scene["face_maps"], scene["head_mesh"], scene["head_maps"],
                         face_weight=scene["face_weight"])
    with pytest.raises(ValueError, match="face_mask"):
        _transfer(scene, face_mask=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="covers no part"):
        _transfer(scene, face_mask=torch.zeros(HW, dtype=torch.bool))
    with pytest.raises(ValueError, match="face_weight"):
        face_blend_weights(scene["head_mesh"], torch.ones(5), torch.ones(HW, dtype=torch.bool))


# ----------------------------------------------------------------------------------------------
# On EduHead itself
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eduhead():
    from avatarme_edu.geometry.head import load_eduhead

    return load_eduhead()


@pytest.mark.slow
def test_eduhead_blends_fold_no_faces(eduhead):
    # Faces of other identities (one at 2 standard deviations) and expressions on the mean head
    # (neutral, or in the same expression), with the whole face or only its left half: the blend
    # folds no triangle that was not already turned away in one of the two inputs.
    from avatarme_edu.geometry.raster import rasterize_uv

    mean = eduhead.mesh()
    hw = (96, 144)
    fragments = rasterize_uv(mean, hw)
    half = torch.zeros(hw, dtype=torch.bool)
    half[:, : hw[1] // 2] = True
    for mask in (torch.ones(hw, dtype=torch.bool), half):
        _, w = face_blend_weights(mean, eduhead.vertex_regions()["face"], mask, fragments=fragments)
        for seed, expression, scale in ((0, "smile", 1.0), (1, "mouth_open", 1.0), (2, "neutral", 2.0)):
            identity = eduhead.sample_identity(torch.Generator().manual_seed(seed), scale=scale)  # 2: an extreme face
            face = eduhead.mesh(identity, expression)
            for head_mesh in (mean, eduhead.mesh(None, expression)):
                out, info = blend_geometry_checked(face, head_mesh, w)
                new = flipped_faces(out, info["aligned_head"]) & flipped_faces(out, face)
                assert int(new.sum()) == 0, (seed, expression)


def blend_geometry_checked(face, head_mesh, w):
    from avatarme_edu.completion.blend import blend_geometry

    out, info = blend_geometry(face, head_mesh, w)
    assert torch.equal(out.vertices[w >= 1], face.vertices[w >= 1])
    still = (w <= 0) & ~info["band"]
    assert torch.equal(out.vertices[still], info["aligned_head"].vertices[still])
    return out, info


@pytest.mark.slow
def test_transfer_to_head_on_eduhead_with_default_head(eduhead):
    from avatarme_edu.profiles import get_profile

    profile = get_profile("cpu", device="cpu").replace(map_hw=(96, 144))
    face_mesh = eduhead.mesh(eduhead.sample_identity(torch.Generator().manual_seed(5)), "smile")
    shape = bake_shape_maps(face_mesh, profile.map_hw)
    keep = shape.mask[None].float()
    albedo = torch.tensor([0.45, 0.28, 0.2]).view(3, 1, 1) * keep  # a darker skin than the default head's
    face_maps = ReflectanceMaps(albedo, 0.3 * keep[:1], shape.normals_object, shape.normals_tangent, shape.mask)
    mesh, maps, info = transfer_to_head(face_mesh, face_maps, profile=profile, face_shape=shape, head=eduhead)
    assert mesh.n_vertices == face_mesh.n_vertices and maps.hw == profile.map_hw
    inside = info.alpha >= 1
    assert int(inside.sum()) > 0.15 * inside.numel()  # the face gets a large part of the layout
    assert torch.equal(maps.diffuse_albedo[:, inside], face_maps.diffuse_albedo[:, inside])
    assert info.ring.sum() >= 32 and info.tone_head is not None
    assert torch.allclose(info.tone_head_matched.mean, info.tone_face.mean, atol=0.02)  # up to clipping
    assert float(info.tone_head.linear_mean[0]) > 0.5  # the default head is lighter than this face...
    outside = (info.alpha <= 0) & maps.mask
    assert float(maps.diffuse_albedo[0, outside].median()) < float(info.tone_head.linear_mean[0])  # ...until matched
    for m in (maps.diffuse_normals, maps.specular_normals):
        n = m[:, maps.mask].norm(dim=0)
        assert torch.isfinite(m).all() and torch.allclose(n, torch.ones_like(n), atol=1e-4)
    assert int((flipped_faces(mesh, info.head_mesh) & flipped_faces(mesh, face_mesh)).sum()) == 0


@pytest.mark.slow
def test_eduhead_seam_has_no_step(eduhead):
    # Flat albedos 0.8 (face) and 0.2 (head), no tone matching: across the seam the albedo may change
    # by at most a small multiple of what a linear ramp over the blend band would give per texel.
    from avatarme_edu.completion.blend import DEFAULT_BLEND_WIDTH

    hw = (96, 144)
    face_mesh = eduhead.mesh(eduhead.sample_identity(torch.Generator().manual_seed(7)), "smile")
    head_mesh = eduhead.mesh()
    maps = {}
    for name, mesh, value in (("face", face_mesh, 0.8), ("head", head_mesh, 0.2)):
        shape = bake_shape_maps(mesh, hw)
        keep = shape.mask[None].float()
        maps[name] = (ReflectanceMaps(value * keep.expand(3, -1, -1), 0.3 * keep, shape.normals_object,
                                      shape.normals_tangent, shape.mask), shape)
    ramp_step = 0.6 / (DEFAULT_BLEND_WIDTH * hw[1])  # per texel, for a linear ramp across the band
    half = torch.zeros(hw, dtype=torch.bool)
    half[:, : hw[1] // 2] = True
    for mask in (None, half):
        _, out, info = transfer_to_head(face_mesh, maps["face"][0], head_mesh, maps["head"][0], face_mask=mask,
                                        face_shape=maps["face"][1], head_shape=maps["head"][1], head=eduhead,
                                        tone_space="none")
        a, m = out.diffuse_albedo[0], out.mask
        jump = max(float((a[:, 1:] - a[:, :-1]).abs()[m[:, 1:] & m[:, :-1]].max()),
                   float((a[1:] - a[:-1]).abs()[m[1:] & m[:-1]].max()))
        assert jump < 2.5 * ramp_step, jump  # a hard cut would jump by 0.6
        assert float(a[info.alpha >= 1].min()) == pytest.approx(0.8)
        assert float(a[(info.alpha <= 0) & m].max()) == pytest.approx(0.2)
