import pytest
import torch

from avatarme_edu.geometry import sculpt as S
from avatarme_edu.geometry import template_fit as TF
from avatarme_edu.geometry import template as T
from avatarme_edu.geometry.sdf import Points


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # ray casting is many small element-wise ops: on a shared 2-core machine one thread is fastest
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def canonical():
    return TF.canonical_vertices()


def test_params_have_documented_ranges_and_reject_bad_values():
    p = S.HeadParams()
    for name in S.PARAM_NAMES:
        low, high = S.PARAM_RANGES[name]
        assert low <= getattr(p, name) <= high
    with pytest.raises(ValueError, match=r"HeadParams.nose_length = 0.1 is outside its valid range \[0.043, 0.058\]"):
        S.HeadParams(nose_length=0.1)


def test_sampling_is_seeded_plausible_and_correlated():
    a = S.sample_head_params(torch.Generator().manual_seed(3), 300)
    b = S.sample_head_params(torch.Generator().manual_seed(3), 300)
    assert a == b
    width = torch.tensor([p.head_width for p in a])
    height = torch.tensor([p.head_height for p in a])
    assert abs(float(width.mean()) - 0.150) < 0.002 and abs(float(height.mean()) - 0.230) < 0.003
    assert float(torch.corrcoef(torch.stack([width, height]))[0, 1]) > 0.3  # shared size factor
    for p in a:
        for name, (low, high) in S.PARAM_RANGES.items():
            assert low <= getattr(p, name) <= high
    assert isinstance(S.sample_head_params(torch.Generator().manual_seed(0)), S.HeadParams)
    with pytest.raises(ValueError, match="positive number"):
        S.sample_head_params(torch.Generator(), 0)


def test_canonical_head_has_adult_proportions_and_lies_on_the_surface(canonical):
    v = canonical
    above_neck = v[v[:, 1] > -0.09]
    width = float(above_neck[:, 0].abs().max() * 2)  # includes the ears
    assert 0.15 < width < 0.19
    chin = S.head_layout(S.params_to_tensors(S.HeadParams()))["y_chin"]
    assert abs(float(v[:, 1].max() - chin) - 0.23) < 0.01  # chin to crown
    d = S.head_sdf(Points(v[:, 0], v[:, 1], v[:, 2]), {k: t[0] for k, t in S.params_to_tensors(S.HeadParams()).items()})
    assert float(d.abs().max()) < 1e-5


@pytest.mark.slow
def test_same_params_same_vertices_and_identity_warp_keeps_correspondence(canonical):
    base = S.HeadParams()
    wide = S.HeadParams(eye_spacing=0.068, mouth_width=0.055)
    v = TF.sculpt_vertices([base, wide, wide], canonical)
    assert torch.allclose(v[1], v[2], atol=1e-6)  # same head (float rounding may differ per row)
    assert torch.equal(TF.sculpt_vertices([wide], canonical), TF.sculpt_vertices([wide], canonical))
    # the default head sculpted through the warp is the canonical head itself
    assert float((v[0] - canonical).norm(dim=-1).max()) < 1e-4
    # features move with their parameters: the pupil and mouth-corner anchors land on their
    # vertices, so the same vertex is the same feature on every head
    anchors = TF.head_anchors(S.params_to_tensors([base, wide]))
    names = TF.ANCHOR_NAMES
    centre = torch.tensor(T.RAY_CENTRE)
    for name in ("pupil_l", "mouth_corner_r"):
        j = names.index(name)
        target0 = torch.nn.functional.normalize(anchors[0, j] - centre, dim=0)
        i = int((torch.nn.functional.normalize(canonical - centre, dim=-1) @ target0).argmax())
        target1 = torch.nn.functional.normalize(anchors[1, j] - centre, dim=0)
        seen = torch.nn.functional.normalize(v[1, i] - centre, dim=0)
        assert float(torch.rad2deg(torch.arccos((seen @ target1).clamp(-1, 1)))) < 1.0
    # moved by about the parameter change (half of +5 mm spacing), not stuck at the old place
    j = names.index("pupil_l")
    i = int((torch.nn.functional.normalize(canonical - centre, dim=-1)
             @ torch.nn.functional.normalize(anchors[0, j] - centre, dim=0)).argmax())
    assert 0.0015 < float(v[1, i, 0] - v[0, i, 0]) < 0.0035


def test_raycast_finds_the_outermost_surface():
    # rays through an ear must stop on the ear, not the skull behind it
    hp = S.params_to_tensors(S.HeadParams())
    d = torch.nn.functional.normalize(torch.tensor([[[1.0, 0.05, -0.15]]]), dim=-1)
    t = TF.raycast(hp, d)
    hit = torch.tensor(T.RAY_CENTRE) + t[0, 0] * d[0, 0]
    at = Points(hit[None, 0], hit[None, 1], hit[None, 2])
    _, parts = S.head_sdf(at, {k: v[0] for k, v in hp.items()}, parts=True)
    assert float(parts["ears"].abs()) < 2e-3
    assert float(hit[0]) > 0.5 * S.HeadParams().head_width + 0.005
