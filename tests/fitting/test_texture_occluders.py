"""The UV texture takes the photo's colour only where the photo shows skin: a synthetic photo of EduHead
with a dark collar over the neck and a hair-coloured fringe over the forehead."""

import pytest
import torch

SKIN = (0.62, 0.45, 0.36)
COLLAR = (0.03, 0.03, 0.04)
HAIR = (0.30, 0.20, 0.08)
PITCH = -0.3  # radians: the camera a little below the face, as in most portraits (it sees under the jaw)


@pytest.fixture(scope="module")
def scene():
    """EduHead's mean head seen from the front in a 160 px photo of uniform skin, then occluded: every
    pixel below the chin is collar, a band across the upper forehead is fringe."""
    from avatarme_edu.fitting.diff_render import FRONT_VIEW, PinholeCamera, render, rotation_matrix, uniform_sh
    from avatarme_edu.fitting.fit_stages import FOCAL_PER_CROP, Crop, vertex_weights
    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.geometry.mesh import Mesh
    from avatarme_edu.profiles import get_profile

    head = load_eduhead()
    hw = tuple(get_profile("cpu").texture_hw)
    v = head.vertices()
    mesh = Mesh(v, head.faces, head.uvs)
    size = 160
    face_v = v[head.vertex_regions()["face"] > 0.5]
    centre = (face_v.amax(0) + face_v.amin(0)) / 2
    focal = FOCAL_PER_CROP * size
    depth = focal * float((face_v.amax(0) - face_v.amin(0))[1]) / (0.55 * size)
    rot = rotation_matrix(torch.tensor([PITCH, 0.0, 0.0])) @ FRONT_VIEW
    cam = PinholeCamera(rot, -rot @ centre + torch.tensor([0.0, 0.0, depth]), focal,
                        (size / 2, size / 2), (size, size))
    skin_tex = torch.tensor(SKIN)[:, None, None].expand(3, *hw).contiguous()
    photo = render(v, head.faces, head.uvs, skin_tex, uniform_sh(), cam, background=torch.full((3, size, size), 0.8),
                   weld=head.weld).image.detach().clamp(0, 1)
    xy, _ = cam.project(v[head.landmark_ids])
    chin_row, brow_row = float(xy[8, 1]), float(xy[17:27, 1].min())
    rows = torch.arange(size, dtype=torch.float32)[:, None].expand(size, size)
    collar = rows > chin_row - 2
    fringe = (rows < brow_row - 3) & (rows > brow_row - 3 - 0.12 * size)
    photo = torch.where(collar[None], torch.tensor(COLLAR)[:, None, None], photo)
    photo = torch.where(fringe[None], torch.tensor(HAIR)[:, None, None], photo)
    crop = Crop(photo, torch.ones(size, size, dtype=torch.bool), torch.zeros(68, 2), (0.0, 0.0), 1.0)
    w = vertex_weights(head)
    return dict(mesh=mesh, model=skin_tex, cam=cam, crop=crop, photo=photo, hw=hw, weld=head.weld,
                texture_weight=w["texture"], features=w["features"], head=head)


def _uv(scene, values):
    from avatarme_edu.geometry.raster import interpolate, rasterize_uv
    frags = rasterize_uv(scene["mesh"], scene["hw"])
    return interpolate(frags, values.float()[:, None], scene["mesh"].faces)[0]


def _unwrap(scene, **kw):
    from avatarme_edu.fitting.diff_render import uniform_sh
    from avatarme_edu.fitting.fit_report import unwrap_texture
    return unwrap_texture(scene["mesh"], scene["model"], uniform_sh(), scene["cam"], scene["crop"], scene["photo"],
                          scene["hw"], scene["weld"], **kw)


def _near(texture, colour, tol):
    """``(H, W)``: texels within ``tol`` of ``colour`` in every channel."""
    return (texture - torch.tensor(colour)[:, None, None]).abs().amax(0) < tol


@pytest.fixture(scope="module")
def taken(scene):
    """The old behaviour (every seen texel takes the photo): which texels took the collar, the fringe, skin."""
    texture, share, _, _ = _unwrap(scene)
    sure = share > 0.5
    return {"collar": sure & (texture.amax(0) < 0.15), "fringe": sure & _near(texture, HAIR, 0.03),
            "skin": sure & _near(texture, SKIN, 0.05)}


def test_the_scene_puts_occluders_where_photos_have_them(taken):
    assert int(taken["collar"].sum()) >= 10  # under the jaw
    assert int(taken["fringe"].sum()) >= 100
    assert int(taken["skin"].sum()) >= 1000


def test_the_face_region_keeps_the_collar_out_of_the_skin_texture(scene, taken):
    texture, share, _, info = _unwrap(scene, skin_weight=scene["texture_weight"])
    collar = taken["collar"]
    assert float(share[collar].mean()) < 0.1
    # the texels keep the model's skin: not darkened by the collar through the colour correction either
    assert float((texture[:, collar] - torch.tensor(SKIN)[:, None]).abs().amax(0).mean()) < 0.08
    assert float(share[taken["skin"]].mean()) > 0.8
    assert info["photo_fraction"] < info["seen_fraction"]
    # a fringe lies on the face: the region alone keeps it
    assert float(share[taken["fringe"]].mean()) > 0.4


def test_the_outlier_test_rejects_the_fringe_and_keeps_the_skin(scene, taken):
    texture, share, _, _ = _unwrap(scene, skin_weight=scene["texture_weight"], feature_weight=scene["features"],
                                   outliers=True)
    fringe = taken["fringe"]
    assert float(share[fringe].mean()) < 0.05
    assert float(share[taken["collar"]].mean()) < 0.05
    assert float((texture[:, fringe] - torch.tensor(SKIN)[:, None]).abs().amax(0).mean()) < 0.08
    assert float(share[taken["skin"]].mean()) > 0.75


def test_skin_consistency_is_soft_and_spares_features():
    from avatarme_edu.fitting.fit_report import skin_consistency

    model = torch.full((3, 40, 60), 0.5)
    photo = model * (1 + 0.03 * torch.randn(3, 40, 60, generator=torch.Generator().manual_seed(0)))
    photo[:, :10] = 0.05  # an occluder along the top
    share = torch.ones(40, 60)
    c = skin_consistency(photo, model, share)
    assert float(c[:8].max()) < 0.05 and float(c[20:].min()) > 0.95
    assert bool(((c > 0.05) & (c < 0.95)).any())  # a ramp, not a hard edge
    features = torch.zeros(40, 60)
    features[:10, :20] = 1.0
    spared = skin_consistency(photo, model, share, features)
    assert float(spared[:6, :10].min()) > 0.95 and float(spared[:8, 40:].max()) < 0.05


def test_a_weight_of_the_wrong_length_is_refused_in_one_line(scene):
    with pytest.raises(ValueError, match="skin_weight must be one weight per vertex"):
        _unwrap(scene, skin_weight=torch.ones(7))
