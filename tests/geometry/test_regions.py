import pytest
import torch

from avatarme_edu.geometry import head as H
from avatarme_edu.geometry import template as T
from avatarme_edu.geometry.regions import REGION_NAMES


@pytest.fixture(scope="module")
def head():
    return H.load_eduhead()


@pytest.fixture(scope="module")
def regions(head):
    return head.vertex_regions()


def test_all_regions_present_in_range(regions, head):
    required = {"face", "forehead", "nose", "cheeks", "lips", "chin", "under_eye", "eyes", "brows", "beard",
                "t_zone", "ears", "scalp", "neck"}
    assert required <= set(regions) and set(regions) == set(REGION_NAMES)
    for name, w in regions.items():
        assert w.shape == (head.n_vertices,), name
        assert float(w.min()) >= 0 and float(w.max()) <= 1, name
        assert float(w.max()) > 0.95, f"{name} is never fully on"


def test_regions_sit_on_their_features(regions, head):
    ids = head.landmark_ids
    assert float(regions["nose"][ids[30]]) == pytest.approx(1.0)
    # the middle of each lip (between the outer and inner lip landmarks)
    for outer, inner in ((51, 62), (57, 66)):
        mid = head.canonical[ids[[outer, inner]]].mean(0)
        i = int((head.canonical - mid).norm(dim=-1).argmin())
        assert float(regions["lips"][i]) > 0.9
    assert float(regions["eyes"][ids[37]]) > 0.5
    assert float(regions["brows"][ids[19]]) > 0.5
    assert float(regions["chin"][ids[8]]) > 0.2
    assert float(regions["face"][ids[30]]) == pytest.approx(1.0)
    crown = 0
    assert float(regions["scalp"][crown]) == pytest.approx(1.0) and float(regions["face"][crown]) == 0.0
    # exclusive where it matters: no lips on the nose, no ears on the face
    assert float((regions["ears"] * regions["face"]).max()) < 0.05
    assert float(regions["lips"][ids[30]]) < 0.01


def test_face_region_covers_most_of_the_uv_map(regions, head):
    uv, f = head.uvs.double(), head.faces
    a, b, c = uv[f[:, 0]], uv[f[:, 1]], uv[f[:, 2]]
    area = ((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]).abs() / 2
    face = regions["face"].double()[f].mean(1)
    frac = float((area * face).sum() / area.sum())
    assert frac > 0.5  # the face gets most of the texels


def test_regions_are_symmetric(regions):
    grid = (T.GRID_ROWS + 1, T.GRID_COLS + 1)
    for name, w in regions.items():
        g = w.reshape(grid)
        assert torch.allclose(g, g.flip(1), atol=2e-3), name


def test_eyeballs_and_irises_separate_the_eye_from_its_lids(regions, head):
    from avatarme_edu.geometry.sculpt import HeadParams, head_layout, params_to_tensors

    L = {k: float(t) for k, t in head_layout(params_to_tensors(HeadParams(), "cpu")).items()}
    canon = head.canonical
    for sign in (-1.0, 1.0):  # the front of each cornea, on the eye's line of sight
        front = torch.tensor([sign * L["x_eye"], 0.0, L["z_eye"] + 0.0135])
        i = int((canon - front).norm(dim=-1).argmin())
        assert float((canon[i] - front).norm()) < 0.003
        assert float(regions["irises"][i]) > 0.9 and float(regions["eyeballs"][i]) > 0.9
    # the lids are eye region but not eyeball; the iris lies inside the eyeball, the eyeball inside the eyes
    lids = int(((regions["eyes"] > 0.5) & (regions["eyeballs"] < 0.5)).sum())
    assert lids > 0.5 * int((regions["eyeballs"] > 0.5).sum()) > 0
    assert bool((regions["irises"] <= regions["eyeballs"] + 1e-6).all())
    assert bool((regions["eyeballs"] <= regions["eyes"] + 1e-6).all())
    # and no eyeball anywhere else on the head
    far = (canon[:, 1].abs() > 0.02) | (canon[:, 2] < L["z_eye"])
    assert float(regions["eyeballs"][far].max()) == 0.0
