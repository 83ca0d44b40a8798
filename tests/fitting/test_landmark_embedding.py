"""The learned landmark embedding: yaw bins, blending, the committed file, and its calibration."""

import math

import pytest
import torch

from avatarme_edu.fitting.diff_render import FRONT_VIEW, rotation_matrix
from avatarme_edu.fitting.landmark_embedding import (INNER_RADIUS_M, JAW_RADIUS_M, LandmarkEmbedding,
                                                     load_embedding, yaw_deg)


def test_yaw_has_the_sign_of_the_synthetic_photos():
    for yaw in (-25.0, 0.0, 12.0):
        rot = rotation_matrix(torch.tensor([math.radians(4.0), math.radians(yaw), 0.0])) @ FRONT_VIEW
        assert abs(yaw_deg(rot) - yaw) < 0.5


def test_bins_blend_linearly_and_clamp():
    ids = torch.arange(3)[:, None].repeat(1, 68)  # bin b -> vertex b
    emb = LandmarkEmbedding(ids, torch.tensor([-30.0, 0.0, 30.0]), {})
    assert torch.allclose(emb.weights(0.0), torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(emb.weights(15.0), torch.tensor([0.0, 0.5, 0.5]))
    assert torch.allclose(emb.weights(-90.0), torch.tensor([1.0, 0.0, 0.0]))
    values = torch.tensor([[0.0], [10.0], [20.0]])
    assert torch.allclose(emb.points(values, -15.0), torch.full((68, 1), 5.0))
    assert torch.equal(emb.landmark_weights(), torch.ones(68))  # no sigma: plain least squares


def test_committed_embedding_is_learned_from_training_identities_near_the_hand_placed_points():
    from avatarme_edu.geometry.head import load_eduhead

    emb = load_embedding()
    assert emb is not None and emb.ids.shape == (5, 68) and emb.sigma.shape == (68,)
    assert all(i % 5 != 4 for i in emb.info["identities"]) and emb.info["samples"] >= 30
    # the inner points have one vertex for every yaw; the jaw slides
    assert torch.equal(emb.ids[:, 17:], emb.ids[:1, 17:].expand(5, -1))
    assert not torch.equal(emb.ids[0, :17], emb.ids[-1, :17])
    head = load_eduhead()
    mean = head.vertices().detach()
    dist = (mean[emb.ids] - mean[head.landmark_ids][None]).norm(dim=-1)
    assert float(dist[:, 17:].max()) <= INNER_RADIUS_M + 1e-6 and float(dist[:, :17].max()) <= JAW_RADIUS_M + 1e-6
    # learning moved the points closer to dlib's, and the weights are finite and positive
    learned, hand = emb.info["mean_px_to_dlib_learned"], emb.info["mean_px_to_dlib_hand_placed"]
    assert learned["inner"] < hand["inner"] and learned["jaw"] < hand["jaw"]
    w = emb.landmark_weights()
    assert bool(torch.isfinite(w).all()) and float(w.min()) >= 0.05 and float(w.max()) <= 2.0


def test_calibration_refuses_held_out_identities():
    from avatarme_edu.fitting.landmark_calibration import collect
    from avatarme_edu.profiles import get_profile

    with pytest.raises(ValueError, match="held out"):
        collect([3, 9], 1, get_profile("cpu", "cpu"), head=None, progress=False)


@pytest.mark.slow
def test_learning_from_one_render_gets_closer_to_dlib():
    from avatarme_edu.fitting.landmark_calibration import collect, learn
    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.profiles import get_profile

    head = load_eduhead()
    samples = collect([1], 2, get_profile("cpu", "cpu"), head, progress=False)
    assert samples, "dlib found no face in two renders of subject 1"
    emb, stats = learn(samples, head)
    assert stats["mean_px_to_dlib_learned"]["inner"] < stats["mean_px_to_dlib_hand_placed"]["inner"]
    assert emb.ids.shape == (5, 68) and emb.sigma.shape == (68,)
