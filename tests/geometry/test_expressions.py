import pytest
import torch

from avatarme_edu.geometry import head as H
from avatarme_edu.geometry.expressions import BLENDSHAPE_NAMES, EXPRESSIONS, expression_weights


@pytest.fixture(scope="module")
def head():
    return H.load_eduhead()


@pytest.fixture(scope="module")
def identity(head):
    return head.sample_identity(torch.Generator().manual_seed(9))


def _moved(head, identity, expression):
    base = head.vertices(identity)
    return base, head.vertices(identity, expression) - base


def test_seven_expressions_like_the_capture():
    assert len(EXPRESSIONS) == 7 and EXPRESSIONS[0] == "neutral"
    for required in ("smile", "mouth_open", "brow_raise", "brow_lower", "pucker", "cheek_puff", "jaw_left"):
        assert required in BLENDSHAPE_NAMES
    for e in EXPRESSIONS:
        assert set(expression_weights(e)) <= set(BLENDSHAPE_NAMES)


def test_smile_moves_mouth_corners_up_and_out(head, identity):
    base, d = _moved(head, identity, "smile")
    for lm, side in ((48, -1.0), (54, 1.0)):
        i = head.landmark_ids[lm]
        assert float(d[i, 1]) > 0.002  # up
        assert float(d[i, 0]) * side > 0.002  # out


def test_mouth_open_drops_the_chin_and_parts_the_lips(head, identity):
    base, d = _moved(head, identity, "mouth_open")
    ids = head.landmark_ids
    assert float(d[ids[8], 1]) < -0.01  # chin down by more than a centimetre
    assert float(d[ids[57], 1]) < -0.006 and abs(float(d[ids[51], 1])) < 0.001  # lower lip moves, upper stays
    gap = head.landmarks(base + d)
    assert float(gap[62, 1] - gap[66, 1]) > 0.008  # the inner lips part


def test_brow_raise_and_frown(head, identity):
    _, up = _moved(head, identity, "brow_raise")
    _, down = _moved(head, identity, "frown")
    ids = head.landmark_ids
    for lm in range(17, 27):
        assert float(up[ids[lm], 1]) > 0.002
    for lm in (21, 22):  # inner brow ends: down and together
        assert float(down[ids[lm], 1]) < -0.001
    assert float(down[ids[21], 0]) > 0 > float(down[ids[22], 0])


def test_pucker_and_cheek_puff(head, identity):
    _, pu = _moved(head, identity, "pucker")
    ids = head.landmark_ids
    assert float(pu[ids[51], 2]) > 0.004 and float(pu[ids[48], 0]) > 0.001  # lips forward, corners in
    _, cp = _moved(head, identity, "cheek_puff")
    cheeks = head.vertex_regions()["cheeks"] > 0.5
    assert float(cp[cheeks].norm(dim=-1).mean()) > 0.002


@pytest.mark.parametrize("name", BLENDSHAPE_NAMES)
def test_back_of_head_stays_still(head, name):
    offsets = head.expression_offsets({name: 1.0})
    back = head.canonical[:, 2] < -0.04
    assert float(offsets[back].abs().max()) < 1e-6
    assert float(offsets.norm(dim=-1).max()) < 0.035  # no spikes (the chin drops ~3 cm at mouth_open = 1)


def test_weights_are_linear(head):
    a = head.expression_offsets({"smile": 0.5, "pucker": 0.25})
    b = 0.5 * head.expression_offsets("smile") + 0.25 * head.expression_offsets("pucker")
    assert torch.allclose(a, b, atol=1e-7)
    w = torch.zeros(len(BLENDSHAPE_NAMES))
    w[BLENDSHAPE_NAMES.index("smile")] = 1.0
    assert torch.allclose(head.expression_offsets(w), head.expression_offsets("smile"))
