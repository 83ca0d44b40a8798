import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from avatarme_edu.figures.compare import (compare_maps, detail_gain, error_map, normal_detail, region_box,
                                          zoom_crops)
from avatarme_edu.figures.maps import to_display


def _normals(h=20, w=30, tilt=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = torch.zeros(3, h, w)
    n[2] = 1.0
    n[:2] = tilt * torch.randn(2, h, w, generator=g)
    return torch.nn.functional.normalize(n, dim=0)


def test_error_map_colour_is_the_mean_absolute_difference_inside_the_mask():
    truth = torch.full((3, 4, 5), 0.5)
    pred = truth.clone()
    pred[0, 1, 2] += 0.3  # one channel of one texel: mean over 3 channels = 0.1
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[3] = False
    pred[:, 3] = 0.0  # wrong, but outside the mask
    err = error_map(pred, truth, "color", mask)
    assert err.shape == (1, 4, 5)
    assert math.isclose(float(err[0, 1, 2]), 0.1, rel_tol=1e-5)
    assert float(err.sum()) == pytest.approx(0.1, rel=1e-5)


def test_error_map_normals_is_the_angle_in_degrees():
    a = _normals()
    b = a.clone()
    t = math.radians(3.0)  # tilt one texel by 3 degrees about x
    b[:, 5, 7] = torch.tensor([0.0, math.sin(t), math.cos(t)])
    a[:, 5, 7] = torch.tensor([0.0, 0.0, 1.0])
    err = error_map(b, a, "normal")
    assert float(err[0, 5, 7]) == pytest.approx(3.0, abs=1e-3)
    assert float(err[0, 0, 0]) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="valid kinds"):
        error_map(a, b, "heat")
    with pytest.raises(ValueError, match="one shape"):
        error_map(a, b[:, :5], "normal")


def test_compare_maps_draws_inputs_prediction_truth_and_error():
    g = torch.Generator().manual_seed(0)
    truth, pred = torch.rand(3, 12, 18, generator=g), torch.rand(3, 12, 18, generator=g)
    mask = torch.ones(12, 18, dtype=torch.bool)
    fig = compare_maps({"texture": torch.rand(3, 12, 18, generator=g), "depth": torch.rand(1, 12, 18, generator=g)},
                       pred, truth, "color", mask, title="t")
    assert isinstance(fig, Figure)
    titles = [ax.get_title().split("\n")[0] for ax in fig.axes if ax.get_title()]
    assert titles == ["texture", "depth", "prediction", "ground truth", "error: |error|"]
    n = compare_maps({}, _normals(tilt=0.1), _normals(), "normal")
    assert any("angle (deg)" in ax.get_title() for ax in n.axes)


def test_region_box_centres_on_the_region_and_stays_inside():
    region = torch.zeros(40, 60)
    region[10:14, 20:26] = 1.0  # centroid (11.5, 22.5)
    t, l, h, w = region_box(region, 8)
    assert (h, w) == (8, 8) and abs(t + 4 - 12) <= 1 and abs(l + 4 - 23) <= 1
    corner = torch.zeros(40, 60)
    corner[0, 59] = 1.0
    assert region_box(corner, 16) == (0, 44, 16, 16)
    assert region_box(corner, 100) == (0, 0, 40, 60)
    with pytest.raises(ValueError, match="empty"):
        region_box(torch.zeros(4, 4), 2)
    pair = torch.zeros(40, 60)
    pair[20, 10] = pair[20, 50] = 1.0  # two eyes: the centroid of both is between them
    assert region_box(pair, 4)[1] == 28
    assert region_box(pair, 4, "left")[:2] == (18, 8) and region_box(pair, 4, "right")[:2] == (18, 48)
    with pytest.raises(ValueError, match="side"):
        region_box(pair, 4, "up")


def test_normal_detail_amplifies_the_deviation_from_the_base():
    base = _normals()
    n = _normals(tilt=0.002, seed=1)
    gain = detail_gain(n, base)
    img = normal_detail(n, base, gain)
    assert img.shape == (3, 20, 30) and float(img.min()) >= 0 and float(img.max()) <= 1
    # the faint detail spans a visible range; without it the image is flat grey
    assert float(img[:2].std()) > 0.1
    assert torch.allclose(normal_detail(base, base, gain), torch.full((3, 20, 30), 0.5))
    assert gain == pytest.approx(0.45 / float(torch.quantile((n - base).abs().flatten(), 0.99)), rel=1e-4)


def test_zoom_crops_shows_each_region_of_each_image_at_the_box():
    img = np.zeros((20, 30, 3))
    img[5:9, 10:14] = 1.0  # a white square, exactly the first box
    other = torch.zeros(3, 20, 30)
    fig = zoom_crops({"a": img, "b": other}, {"eyes": (5, 10, 4, 4), "lips": (0, 0, 6, 6)})
    axes = np.array(fig.axes).reshape(2, 2)
    assert np.allclose(axes[0, 0].images[0].get_array(), 1.0)
    assert np.allclose(axes[1, 0].images[0].get_array(), 0.0)
    assert axes[0, 0].get_title() == "a" and "eyes" in axes[0, 0].get_ylabel()
    with pytest.raises(ValueError, match="not inside"):
        zoom_crops({"a": img}, {"x": (18, 0, 4, 4)})
    with pytest.raises(ValueError, match="one size"):
        zoom_crops({"a": img, "b": torch.zeros(3, 10, 10)}, {"x": (0, 0, 2, 2)})


def test_zoom_crops_accepts_to_display_images():
    g = torch.Generator().manual_seed(0)
    m = torch.rand(3, 16, 16, generator=g)
    fig = zoom_crops({"albedo": to_display(m, "color")}, {"all": (0, 0, 16, 16)})
    assert np.allclose(fig.axes[0].images[0].get_array(), to_display(m, "color"))
