import pytest
import torch

from avatarme_edu.fitting.symmetry import MAX_RELIGHT, mirror_fill, mirror_uv
from avatarme_edu.geometry.head import load_eduhead
from avatarme_edu.geometry.landmarks import mirror_vertex


def test_eduhead_uv_layout_is_mirrored_across_the_middle_column():
    # the premise of mirror_uv: the vertex mirrored in x sits at (1 - u, v)
    head = load_eduhead()
    ids = torch.arange(head.n_vertices)
    uv, uv_m = head.uvs, head.uvs[mirror_vertex(ids)]
    assert torch.allclose(uv_m[:, 0], 1 - uv[:, 0], atol=1e-6) and torch.equal(uv_m[:, 1], uv[:, 1])
    x = torch.rand(3, 4, 6)
    assert torch.equal(mirror_uv(mirror_uv(x)), x) and torch.equal(mirror_uv(x)[..., 0], x[..., -1])


def _symmetric_face(h=8, w=10):
    g = torch.Generator().manual_seed(0)
    half = torch.rand(3, h, w // 2, generator=g) * 0.6 + 0.2
    albedo = torch.cat([half, mirror_uv(half)], -1)  # symmetric colour
    ramp = torch.linspace(1.1, 0.6, w).expand(3, h, w)  # light from the left: the right side darker
    return albedo, ramp.clone()


def test_an_unseen_side_gets_the_mirror_colour_relit_to_its_own_light():
    albedo, shading = _symmetric_face()
    photo = albedo * shading
    share = torch.zeros(8, 10)
    share[:, :5] = 1  # only the left half was seen
    seen_photo = torch.where(share.bool(), photo, torch.zeros_like(photo))  # the unseen half holds garbage
    out, total = mirror_fill(seen_photo, share, shading)
    assert torch.equal(total, torch.ones(8, 10))
    assert torch.allclose(out, photo.clamp(0, 1), atol=1e-5)  # the right half as the photo would have shown it


def test_seen_texels_keep_their_own_colour_and_nothing_seen_stays_unseen():
    albedo, shading = _symmetric_face()
    photo = albedo * shading
    out, total = mirror_fill(photo, torch.ones(8, 10), shading * 0.5 + mirror_uv(shading) * 0.1)
    assert torch.equal(out, photo) and torch.equal(total, torch.ones(8, 10))
    # a frontal photo: both sides half trusted alike, so the mirror adds no trust and no colour
    half = torch.full((8, 10), 0.5)
    out, total = mirror_fill(photo, half, shading)
    assert torch.equal(out, photo) and torch.equal(total, half)
    out, total = mirror_fill(photo, torch.zeros(8, 10), shading)
    assert torch.equal(total, torch.zeros(8, 10)) and torch.equal(out, photo)


def test_relighting_is_bounded_where_one_side_is_in_deep_shadow():
    photo = torch.full((3, 2, 4), 0.3)
    share = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 2)
    shading = torch.tensor([[1.0, 1.0, 1e-3, 1e-3]] * 2).expand(3, 2, 4)
    out, _ = mirror_fill(photo, share, shading)
    assert torch.allclose(out[:, :, 2:], torch.full((3, 2, 2), 0.3 / MAX_RELIGHT))


def test_bad_shapes_are_one_clear_error():
    with pytest.raises(ValueError, match="mirror_fill needs"):
        mirror_fill(torch.zeros(3, 4, 4), torch.zeros(4, 5), torch.zeros(3, 4, 4))
