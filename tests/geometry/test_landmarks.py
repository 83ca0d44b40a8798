import pytest
import torch

from avatarme_edu.geometry import head as H
from avatarme_edu.geometry import landmarks as LM


@pytest.fixture(scope="module")
def head():
    return H.load_eduhead()


@pytest.fixture(scope="module", params=["mean", "random", "smile"])
def lms(request, head):
    if request.param == "mean":
        return head.landmarks(head.shape())
    coeffs = head.sample_identity(torch.Generator().manual_seed(4), scale=1.5)
    return head.landmarks(head.vertices(coeffs, "smile" if request.param == "smile" else "neutral"))


def test_68_distinct_vertices(head):
    ids = head.landmark_ids
    assert ids.shape == (68,) and ids.dtype == torch.int64
    assert len(set(ids.tolist())) == 68


def test_mirror_pairs_are_symmetric(lms):
    mirrored = lms[list(LM.MIRROR)] * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(lms, mirrored, atol=1e-4)
    assert torch.allclose(lms[0] * torch.tensor([-1.0, 1.0, 1.0]), lms[16], atol=1e-4)


def test_sides_follow_ibug(lms):
    x, y, z = lms.unbind(-1)
    assert float(x[36]) < float(x[39]) < 0 < float(x[42]) < float(x[45])  # right eye on -X (image left)
    assert float(x[48]) < 0 < float(x[54])  # mouth corners
    assert float(x[0]) < 0 < float(x[16]) and float(x[17]) < float(x[21]) < 0
    assert int(z.argmax()) == 30  # the nose tip is the most forward landmark
    for i in list(range(0, 8)) + list(range(9, 17)):
        assert float(y[8]) < float(y[i])  # the chin is the lowest jaw point
    # top to bottom: brows, eyes, nose tip, nose base, mouth, chin
    assert float(y[19]) > float(y[37]) > float(y[41]) > float(y[30]) > float(y[33]) > float(y[51])
    assert float(y[51]) > float(y[62]) >= float(y[66]) > float(y[57]) > float(y[8])
    # upper lids above lower lids, along each eye
    assert float(y[37]) > float(y[41]) and float(y[38]) > float(y[40]) and float(y[44]) > float(y[46])
    # nose bridge descends to the tip
    assert float(y[27]) > float(y[28]) > float(y[29]) > float(y[30])


def test_landmark_geometry_is_plausible(lms):
    eye_w = float((lms[39] - lms[36]).norm())
    assert 0.020 < eye_w < 0.034
    mouth_w = float((lms[54] - lms[48]).norm())
    assert 0.040 < mouth_w < 0.065
    ipd = float((lms[[42, 45]].mean(0) - lms[[36, 39]].mean(0)).norm())
    assert 0.050 < ipd < 0.075


def test_mirror_vertex_is_an_involution():
    i = torch.arange(0, 29025, 97)
    assert torch.equal(LM.mirror_vertex(LM.mirror_vertex(i)), i)
