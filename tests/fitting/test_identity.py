import itertools

import numpy as np
import pytest
import torch

from avatarme_edu.color import srgb_to_linear
from avatarme_edu.fitting.face_align import face_chip
from avatarme_edu.fitting.identity import (SAME_PERSON_DISTANCE, add_zero_padded, descriptor_distance,
                                           identity_loss)

PHOTO_NAMES = ("astronaut", "obama_2012", "obama_2009", "obama_2010", "biden_2010")


def person(name: str) -> str:
    return name.split("_")[0]


def _chip_tensor(chip: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module")
def descriptors(photos, faces, face_net, dlib_face_rec, dlib_shape):
    """name -> (dlib's descriptor, the port's on dlib's chip, the port's on our torch chip)."""
    import dlib
    out = {}
    for name in PHOTO_NAMES:
        img, shape = photos[name], dlib_shape(faces[name])
        ref = np.array(dlib_face_rec.compute_face_descriptor(img, shape, 0, 0.25))
        chip = dlib.get_face_chip(img, shape, 150, 0.25)
        image = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
        with torch.no_grad():
            port = face_net(_chip_tensor(chip))[0].double().numpy()
            ours = face_net(face_chip(image, torch.from_numpy(faces[name].landmarks)))[0].double().numpy()
        out[name] = (ref, port, ours)
    return out


def test_port_matches_dlib_on_real_faces(descriptors):
    for name, (ref, port, _) in descriptors.items():
        cos = port @ ref / np.linalg.norm(port) / np.linalg.norm(ref)
        assert np.linalg.norm(port - ref) <= 1e-4, name
        assert cos >= 0.9999, name
        assert 0.5 < np.linalg.norm(ref) < 2.0  # not L2-normalised (dlib's are ~1.3-1.5 long)


def test_same_decisions_as_dlib_at_its_threshold(descriptors):
    pairs = list(itertools.combinations(PHOTO_NAMES, 2))
    for a, b in pairs:
        d_ref = np.linalg.norm(descriptors[a][0] - descriptors[b][0])
        d_port = np.linalg.norm(descriptors[a][1] - descriptors[b][1])
        d_ours = np.linalg.norm(descriptors[a][2] - descriptors[b][2])
        same = person(a) == person(b)
        assert (d_ref < SAME_PERSON_DISTANCE) == same, (a, b, d_ref)  # dlib itself gets these right
        assert (d_port < SAME_PERSON_DISTANCE) == same and abs(d_port - d_ref) < 1e-4, (a, b)
        assert (d_ours < SAME_PERSON_DISTANCE) == same, (a, b, d_ours)


def test_torch_crop_path_is_close_to_dlib(descriptors):
    # landmarks -> differentiable crop -> port; differs from dlib only by 8-bit rounding of the chip
    for name, (ref, _, ours) in descriptors.items():
        assert np.linalg.norm(ours - ref) < 0.01, name


def test_batch_equals_one_by_one(face_net):
    x = torch.rand(3, 3, 150, 150, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        batch = face_net(x)
        single = torch.cat([face_net(x[i:i + 1]) for i in range(3)])
    assert batch.shape == (3, 128)
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=0)


def test_identity_loss_reaches_the_rendered_image(face_net, photos, faces):
    photo = torch.from_numpy(photos["obama_2012"]).permute(2, 0, 1).float() / 255.0
    lm = torch.from_numpy(faces["obama_2012"].landmarks)
    with torch.no_grad():
        target = face_net(face_chip(photo, lm))[0]
    # a "rendering": the photo in linear RGB, darkened; the loss must pull it back
    render = (srgb_to_linear(photo) * 0.5).requires_grad_(True)
    loss = identity_loss(face_net, face_chip(render, lm), target)
    loss.backward()
    g = render.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # the gradient sits on the face: inside the chip's region, not in the far corners
    assert g[:, :40, :40].abs().sum() == 0 and g[:, 150:250, 150:250].abs().sum() > 0
    assert 0 < loss.item() < 0.5
    same = identity_loss(face_net, face_chip(srgb_to_linear(photo), lm), target)
    assert same.item() < 1e-4


def test_add_zero_padded_is_dlibs_add_prev():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 4, 4, 4), 10.0)
    s = add_zero_padded(a, b)
    assert s.shape == (1, 4, 4, 4)
    assert (s[:, :2, :3, :3] == 11).all() and (s[:, 2:] == 10).all() and (s[:, :, 3] == 10).all()


def test_descriptor_distance_and_bad_input(face_net):
    assert descriptor_distance(torch.zeros(128), torch.ones(128)).item() == pytest.approx(128 ** 0.5)
    with pytest.raises(ValueError, match=r"face chips must be \(N, 3, 150, 150\)"):
        face_net(torch.zeros(1, 3, 100, 100))
    assert face_net.num_layers() == 132


def test_load_face_net_is_shared_per_device(face_net):
    from avatarme_edu.fitting.identity import load_face_net
    assert load_face_net() is face_net and load_face_net(device="cpu") is face_net
    assert not any(p.requires_grad for p in face_net.parameters()) and not face_net.training
