"""Virtual light-stage subjects: determinism, value ranges, unit normals, expressions vs identity."""

import pytest
import torch

from avatarme_edu.lightstage.subjects import Subject, make_subject, make_subject_expressions


@pytest.fixture(scope="module")
def three(tiny):
    return make_subject_expressions(11, tiny, ("neutral", "smile", "mouth_open"))


def _all_maps(s: Subject) -> dict:
    return {**s.reflectance.as_dict(), "position": s.shape.position, "vertices": s.mesh.vertices,
            "identity": s.identity, "height": s.height}


@pytest.mark.slow
def test_same_seed_same_subject_and_other_seed_differs(tiny, three):
    a = make_subject(11, tiny, "neutral")
    for name, m in _all_maps(a).items():
        assert torch.equal(m, _all_maps(three[0])[name]), name
    assert a.skin == three[0].skin and a.id == 11 and a.expression == "neutral"
    b = make_subject(12, tiny)
    assert not torch.equal(a.identity, b.identity)
    assert not torch.allclose(a.reflectance.diffuse_albedo, b.reflectance.diffuse_albedo)
    # a single expression made alone equals the same expression made with the others
    smile = make_subject(11, tiny, "smile")
    assert torch.equal(smile.reflectance.specular_normals, three[1].reflectance.specular_normals)


def test_shapes_ranges_and_unit_normals(tiny, three):
    s = three[0]
    H, W = tiny.map_hw
    r = s.reflectance
    assert r.diffuse_albedo.shape == (3, H, W) and r.specular_albedo.shape == (1, H, W)
    assert r.diffuse_normals.shape == (3, H, W) and r.specular_normals.shape == (3, H, W)
    assert s.mask.dtype == torch.bool and s.mask.float().mean() > 0.8  # the UV layout covers most texels
    m = s.mask
    for name in ("diffuse_albedo", "specular_albedo"):
        x = getattr(r, name)
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1, name
        assert (x[:, ~m] == 0).all()
    # plausible skin: linear albedo of the face between very dark and very light skin
    face = (s.regions["face"] > 0.5) & m
    assert 0.01 < float(r.diffuse_albedo[:, face].mean()) < 0.8
    assert 0.05 < float(r.specular_albedo[:, face].mean()) < 0.8
    for name in ("diffuse_normals", "specular_normals"):
        n = getattr(r, name)
        assert torch.allclose(n[:, m].norm(dim=0), torch.ones(int(m.sum())), atol=1e-4), name
        assert (n[:, ~m] == 0).all()
    # tangent-space specular normals point out of the surface (+Z), mostly close to it (the ears
    # stand almost perpendicular to the smoothed base surface, so a few texels lean far over)
    z = r.specular_normals[2, m]
    assert (z > 0.5).float().mean() > 0.97 and z.mean() > 0.9
    # object-space diffuse normals follow the shape normals N_O, with only subsurface-blurred detail
    cos_d = (r.diffuse_normals * s.shape.normals_object).sum(0)[m]
    assert cos_d.mean() > 0.98
    # specular normals carry more detail than the diffuse ones (relative to the same shape)
    spec_obj = s.shape.tangent * r.specular_normals[0:1] + s.shape.bitangent * r.specular_normals[1:2] + \
        s.shape.base_normal * r.specular_normals[2:3]
    cos_s = (spec_obj * s.shape.normals_object).sum(0)[m]
    assert cos_s.mean() < cos_d.mean()


def test_expressions_change_shape_not_identity_or_skin(three):
    neutral, smile, mouth = three
    for s in three:
        assert s.id == 11 and s.skin == neutral.skin
        assert torch.equal(s.identity, neutral.identity)
        assert torch.equal(s.reflectance.diffuse_albedo, neutral.reflectance.diffuse_albedo)
        assert torch.equal(s.reflectance.specular_albedo, neutral.reflectance.specular_albedo)
        assert torch.equal(s.mask, neutral.mask)
        assert torch.equal(s.mesh.faces, neutral.mesh.faces) and torch.equal(s.mesh.uvs, neutral.mesh.uvs)
    for s in (smile, mouth):
        moved = (s.mesh.vertices - neutral.mesh.vertices).norm(dim=1)
        assert moved.max() > 2e-3  # the expression moves part of the face by millimetres
        assert (moved < 1e-6).float().mean() > 0.3  # and leaves much of the head where it was
        assert not torch.allclose(s.shape.position, neutral.shape.position)
        assert not torch.allclose(s.reflectance.diffuse_normals, neutral.reflectance.diffuse_normals)


def test_regions_are_soft_weights(three):
    s = three[0]
    for name, w in s.regions.items():
        assert w.shape == s.mask.shape and w.min() >= 0 and w.max() <= 1, name
    for name in ("face", "nose", "lips"):
        assert s.regions[name].max() > 0.9, name


def test_bad_inputs_raise(tiny):
    with pytest.raises(ValueError, match="seed"):
        make_subject(-1, tiny)
    with pytest.raises(ValueError, match="seed"):
        make_subject("7", tiny)
    with pytest.raises(ValueError, match="expression"):
        make_subject(1, tiny, "grin")
    with pytest.raises(ValueError, match="profile"):
        make_subject(1, "cpu")
