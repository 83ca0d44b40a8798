import math

import pytest
import torch

from avatarme_edu.fitting.symmetry import DETAIL_SIGMA, REFERENCE_WIDTH, TRUSTED_GAIN, mirror_fill, mirror_uv
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


def _symmetric_face(h=24, w=40, light_ratio=1.6):
    """A symmetric albedo with a fine feature pattern, lit by a smooth ramp: the right side darker."""
    g = torch.Generator().manual_seed(0)
    half = 0.45 * torch.exp(0.3 * torch.randn(3, h, w // 2, generator=g))  # detail finer than the sigma
    albedo = torch.cat([half, mirror_uv(half)], -1)
    ramp = torch.exp(torch.linspace(0, -math.log(light_ratio), w)).expand(3, h, w)
    return albedo, ramp.clone()


def test_an_unseen_side_gets_the_mirror_detail_on_its_own_light():
    albedo, shading = _symmetric_face()
    photo = albedo * shading
    share = torch.zeros(24, 40)
    share[:, :20] = 1  # only the left half was seen
    seen_photo = torch.where(share.bool(), photo, torch.zeros_like(photo))  # the unseen half holds garbage
    estimate = 0.45 * shading  # the light the fit found, without the person's detail
    out, total = mirror_fill(seen_photo, share, estimate, sigma=2.0)
    assert torch.equal(total, torch.ones(24, 40))  # the light ratio (1.6) is within the trusted gain
    right = (slice(None), slice(4, -4), slice(24, -4))  # away from the map's and the seen half's borders
    # the right half as the photo would have shown it: its features, at its own (darker) level
    err = (out[right] - photo[right]).abs() / photo[right]
    assert err.median() < 0.05 and err.max() < 0.25
    # whereas the mirror's colour as it is would be too bright there, by the light ratio
    assert (mirror_uv(photo)[right] / photo[right]).median() > 1.2
    # and the estimate alone has none of the features
    assert (estimate[right] - photo[right]).abs().div(photo[right]).median() > 0.1


def test_seen_texels_keep_their_own_colour_and_nothing_seen_stays_unseen():
    albedo, shading = _symmetric_face()
    photo = albedo * shading
    out, total = mirror_fill(photo, torch.ones(24, 40), 0.45 * shading)
    assert torch.equal(out, photo) and torch.equal(total, torch.ones(24, 40))
    # a frontal photo: both sides half trusted alike, so the mirror adds no trust and no colour
    half = torch.full((24, 40), 0.5)
    out, total = mirror_fill(photo, half, 0.45 * shading)
    assert torch.equal(out, photo) and torch.equal(total, half)
    out, total = mirror_fill(photo, torch.zeros(24, 40), 0.45 * shading)
    assert torch.equal(total, torch.zeros(24, 40)) and torch.equal(out, photo)


@pytest.mark.parametrize("ratio, trust", [(1.5, 1.0), (TRUSTED_GAIN ** 1.5, 0.5), (TRUSTED_GAIN ** 2.5, 0.0)])
def test_the_mirror_is_trusted_less_where_the_two_sides_light_differs_much(ratio, trust):
    # a side in deep shadow carries little detail: the mirror adds less trust there, none beyond gain^2
    photo = torch.full((3, 6, 16), 0.15)
    share = torch.zeros(6, 16)
    share[:, :8] = 1
    estimate = torch.cat([torch.full((3, 6, 8), 0.15), torch.full((3, 6, 8), 0.15 * ratio)], -1)
    out, total = mirror_fill(photo, share, estimate, sigma=1.0)
    far = slice(12, None)  # four texels from the light's step, beyond the blur's reach
    assert torch.allclose(total[:, far], torch.full((6, 4), trust), atol=0.01)  # (the log floor of 1e-3)
    if trust > 0:  # what it adds is at the estimate's level
        assert torch.allclose(out[:, :, far], torch.full((3, 6, 4), 0.15 * ratio), rtol=0.01)


def test_defaults_and_bad_input_are_one_clear_error():
    assert DETAIL_SIGMA > 0 and TRUSTED_GAIN > 1
    with pytest.raises(ValueError, match="mirror_fill needs photo"):
        mirror_fill(torch.zeros(3, 4, 4), torch.zeros(4, 5), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="sigma > 0 and trusted_gain > 1"):
        mirror_fill(torch.zeros(3, 4, 4), torch.zeros(4, 4), torch.zeros(3, 4, 4), sigma=0.0)


def test_the_default_detail_scale_follows_the_map_width():
    # the same face at 4x the texels (the paper profile's fitted texture) keeps the same detail band
    for width in (REFERENCE_WIDTH, 4 * REFERENCE_WIDTH):
        albedo, shading = _symmetric_face(h=24, w=width)
        share = torch.zeros(24, width)
        share[:, : width // 2] = 1
        out, _ = mirror_fill(albedo * shading, share, 0.45 * shading)
        expected, _ = mirror_fill(albedo * shading, share, 0.45 * shading, sigma=DETAIL_SIGMA * width / REFERENCE_WIDTH)
        assert torch.equal(out, expected)
