import math

import pytest
import torch

from avatarme_edu.geometry.sphere_points import fibonacci_directions
from avatarme_edu.lightstage.sphere import BANKS, LightStage, camera_arc, make_light_stage


def elevation_deg(d):
    return torch.rad2deg(torch.asin(d[:, 1].clamp(-1, 1)))


def test_default_stage_has_168_lights_above_the_floor_and_9_cameras():
    stage = make_light_stage()
    assert stage.n_lights == 168 and stage.n_cameras == 9
    assert torch.allclose(stage.light_directions.norm(dim=1), torch.ones(168), atol=1e-6)
    assert elevation_deg(stage.light_directions).min() >= stage.floor_elevation_deg == -60.0
    # the covered area: a sphere minus the floor cap, 2 pi (1 - sin(floor))
    covered = 2 * math.pi * (1 - math.sin(math.radians(-60)))
    assert stage.light_solid_angles.sum().item() == pytest.approx(covered, rel=1e-5)
    assert torch.allclose(stage.light_positions.norm(dim=1), torch.full((168,), stage.radius), atol=1e-5)


def test_full_sphere_covers_4pi_and_is_balanced():
    stage = make_light_stage(floor_elevation_deg=-90)
    assert stage.light_solid_angles.sum().item() == pytest.approx(4 * math.pi, rel=1e-5)
    # evenly spread: the lights' mean direction is (almost) the centre
    assert stage.light_directions.mean(0).norm().item() < 0.01


def test_fibonacci_lights_are_evenly_spaced():
    d = fibonacci_directions(168)
    cos = d @ d.t()
    cos.fill_diagonal_(-1.0)
    nearest = torch.rad2deg(torch.acos(cos.max(1).values.clamp(-1, 1)))
    # no clumps and no holes: nearest-neighbour angles stay close to their mean (~16 degrees)
    assert 12.0 < nearest.mean().item() < 18.0
    assert nearest.min().item() > 0.7 * nearest.mean().item()
    assert nearest.max().item() < 1.3 * nearest.mean().item()


def test_cameras_form_a_frontal_arc_looking_at_the_centre():
    stage = make_light_stage(camera_distance=1.8)
    pos = stage.camera_positions
    assert torch.allclose(pos.norm(dim=1), torch.full((9,), 1.8), atol=1e-5)
    azimuth = torch.rad2deg(torch.atan2(pos[:, 0], pos[:, 2]))
    assert azimuth.min().item() == pytest.approx(-60.0, abs=1e-3)
    assert azimuth.max().item() == pytest.approx(60.0, abs=1e-3)
    assert (pos[:, 2] > 0).all()  # all in front of the face
    el = elevation_deg(pos / 1.8)
    assert (el > 0).sum() == 5 and (el < 0).sum() == 4  # a row above and a row below eye level
    towards_centre = torch.nn.functional.normalize(-pos, dim=1)
    assert torch.allclose((stage.camera_forward * towards_centre).sum(1), torch.ones(9), atol=1e-6)
    assert torch.allclose(camera_arc(1, 2.0), torch.tensor([[0.0, 0.0, 2.0]]))


def test_each_light_has_a_cross_and_a_parallel_led_side_by_side():
    stage = make_light_stage()
    cross, parallel = stage.led_positions("cross"), stage.led_positions("parallel")
    assert torch.allclose((cross - parallel).norm(dim=1), torch.full((168,), stage.led_spacing), atol=1e-5)
    assert torch.allclose((cross + parallel) / 2, stage.light_positions, atol=1e-6)
    assert BANKS == ("cross", "parallel")
    with pytest.raises(ValueError, match="bank"):
        stage.led_positions("circular")


@pytest.mark.parametrize("kwargs, match", [
    ({"n_lights": 4}, "n_lights"),
    ({"n_cameras": 0}, "n_cameras"),
    ({"radius": 0.0}, "radius"),
    ({"floor_elevation_deg": 10.0}, "floor_elevation_deg"),
    ({"camera_distance": -1.0}, "distance"),
])
def test_invalid_rigs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_light_stage(**kwargs)


def test_stage_validates_its_tensors():
    with pytest.raises(ValueError, match="light_solid_angles"):
        LightStage(torch.zeros(10, 3), torch.zeros(9), 1.0, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="camera_positions"):
        LightStage(torch.zeros(10, 3), torch.zeros(10), 1.0, torch.zeros(0, 3))
