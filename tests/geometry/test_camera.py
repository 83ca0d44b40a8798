import math

import pytest
import torch

from avatarme_edu.geometry.camera import Camera


def front_camera(hw=(100, 200), fov_deg=90.0):
    return Camera.look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), fov_deg=fov_deg, hw=hw)


def test_project_known_points():
    cam = front_camera()  # focal = 50 / tan(45 deg) = 50 px, principal (100, 50)
    assert cam.focal == pytest.approx(50.0)
    pts = torch.tensor([[0.0, 0.0, 0.0],   # the target: image centre
                        [0.5, 0.0, 0.0],   # world +X is image right
                        [0.0, 0.5, 0.0],   # world +Y (up) is image up = smaller y
                        [0.2, -0.1, 0.5]])  # nearer the camera: depth 0.5
    xy, depth = cam.project(pts)
    expected = torch.tensor([[100.0, 50.0], [125.0, 50.0], [100.0, 25.0], [100 + 50 * 0.2 / 0.5, 50 + 50 * 0.1 / 0.5]])
    assert torch.allclose(xy, expected, atol=1e-4)
    assert torch.allclose(depth, torch.tensor([1.0, 1.0, 1.0, 0.5]), atol=1e-6)


def test_principal_point_override_shifts_pixels():
    cam = front_camera()
    shifted = Camera(cam.world_to_camera, cam.focal, cam.hw, principal=(10.0, 20.0))
    xy, _ = shifted.project(torch.zeros(1, 3))
    assert torch.allclose(xy, torch.tensor([[10.0, 20.0]]))


def test_look_at_pose_position_and_fov():
    eye = torch.tensor([0.3, 0.2, 0.8])
    cam = Camera.look_at(eye, (0.0, 0.05, 0.0), fov_deg=25.0, hw=(64, 96))
    r = cam.rotation
    assert torch.allclose(r @ r.T, torch.eye(3), atol=1e-6)
    assert torch.linalg.det(r) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(cam.position, eye, atol=1e-6)
    assert cam.fov_deg == pytest.approx(25.0)
    # the target projects to the image centre; the up vector points up in the image
    xy, depth = cam.project(torch.tensor([[0.0, 0.05, 0.0], [0.0, 0.15, 0.0]]))
    assert torch.allclose(xy[0], torch.tensor([48.0, 32.0]), atol=1e-3)
    assert xy[1, 1] < xy[0, 1]
    assert depth[0] == pytest.approx(float((eye - torch.tensor([0.0, 0.05, 0.0])).norm()), abs=1e-5)


def test_view_directions_point_to_the_camera():
    cam = Camera.look_at((0.0, 0.0, 2.0), (0.0, 0.0, 0.0))
    pts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 2.0]])
    v = cam.view_directions(pts)
    assert torch.allclose(v, torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]), atol=1e-6)


def test_project_is_differentiable():
    cam = front_camera()
    pts = torch.tensor([[0.1, 0.2, 0.0]], requires_grad=True)
    xy, _ = cam.project(pts)
    xy[0, 0].backward()
    # d x / d X = focal / depth = 50
    assert pts.grad[0, 0].item() == pytest.approx(50.0, rel=1e-5)


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="fov_deg"):
        Camera.look_at((0, 0, 1), (0, 0, 0), fov_deg=180.0)
    with pytest.raises(ValueError, match="parallel"):
        Camera.look_at((0, 1, 0), (0, 0, 0), up=(0, 1, 0))
    with pytest.raises(ValueError, match="different positions"):
        Camera.look_at((0, 0, 0), (0, 0, 0))
    with pytest.raises(ValueError, match="focal"):
        Camera(torch.eye(4), -1.0, (8, 8))
    with pytest.raises(ValueError, match="hw"):
        Camera(torch.eye(4), 10.0, (8, 0))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        Camera(torch.eye(3), 10.0, (8, 8))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        front_camera().project(torch.zeros(4, 2))
    assert math.isfinite(front_camera().fov_deg)
