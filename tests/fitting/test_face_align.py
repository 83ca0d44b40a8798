import numpy as np
import pytest
import torch

from avatarme_edu.fitting.face_align import (ALIGN_POINTS, _dlib_similarity, dlib_face_template, face_chip,
                                             pyramid_levels, similarity_from_landmarks)


def _image(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float()


def test_template_measured_from_dlib_reproduces_dlibs_chips():
    q = dlib_face_template(150, 0.25)
    assert q.shape == (len(ALIGN_POINTS), 2) == (33, 2)
    # the template lies inside the chip, eyes above the mouth
    assert (q > 0).all() and (q < 150).all()
    assert q[ALIGN_POINTS.index(36), 1] < q[ALIGN_POINTS.index(48), 1]
    rng = np.random.default_rng(3)
    for _ in range(5):
        p = np.round(rng.uniform(50, 900, size=(68, 2)))
        ours = similarity_from_landmarks(torch.tensor(p, dtype=torch.float64))[0].numpy()
        np.testing.assert_allclose(ours, _dlib_similarity(p, 150, 0.25), atol=1e-9)


def test_chip_matches_dlib_get_face_chip_on_the_astronaut(photos, faces, dlib_shape):
    import dlib
    img, face = photos["astronaut"], faces["astronaut"]
    ref = dlib.get_face_chip(img, dlib_shape(face), 150, 0.25).astype(np.float32)
    ours = face_chip(_image(img), torch.from_numpy(face.landmarks))[0].permute(1, 2, 0).numpy()
    diff = np.abs(ours - ref)
    # dlib truncates its bilinear result to 8 bits: we differ by less than one level
    assert diff.mean() < 0.6 and diff.max() <= 1.01


def test_chip_of_a_large_face_uses_dlibs_pyramid(photos, faces, dlib_shape):
    import cv2
    import dlib
    big = cv2.resize(photos["astronaut"], (2048, 2048), interpolation=cv2.INTER_CUBIC)
    lm = faces["astronaut"].landmarks * 4.0 + 1.5  # where the landmarks land after the x4 resize
    face = type(faces["astronaut"])(box=(0, 0, 1, 1), landmarks=np.round(lm).astype(np.float32), score=0,
                                    plausibility=0)
    ref = dlib.get_face_chip(big, dlib_shape(face), 150, 0.25).astype(np.float32)
    lm_t = torch.from_numpy(face.landmarks)
    assert pyramid_levels(similarity_from_landmarks(lm_t)) == 1
    ours = face_chip(_image(big), lm_t)[0].permute(1, 2, 0).numpy()
    plain = face_chip(_image(big), lm_t, antialias=False)[0].permute(1, 2, 0).numpy()
    d, d_plain = np.abs(ours - ref), np.abs(plain - ref)
    # stated tolerance: mean under 1.5 of 255 levels, 99th percentile under 4 (dlib crops its
    # pyramid at a bounding box, which shifts the filter's phase by up to a pixel)
    assert d.mean() < 1.5 and np.percentile(d, 99) < 4.0
    assert d.mean() < 0.7 * d_plain.mean()  # the pyramid is what makes it match


def test_gradients_reach_image_and_landmarks(photos, faces):
    img = (_image(photos["obama_2012"]) / 255.0).requires_grad_(True)
    lm = torch.from_numpy(faces["obama_2012"].landmarks).double().requires_grad_(True)
    chip = face_chip(img, lm)
    assert chip.shape == (1, 3, 150, 150)
    (chip * torch.linspace(0, 1, 150)).sum().backward()
    assert torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    used = torch.zeros(68, dtype=torch.bool)
    used[list(ALIGN_POINTS)] = True
    assert (lm.grad[used].abs().sum(1) > 0).all() and (lm.grad[~used] == 0).all()


def test_batches_and_shifts(photos, faces):
    img = _image(photos["obama_2009"]) / 255.0
    lm = torch.from_numpy(faces["obama_2009"].landmarks)
    one = face_chip(img, lm)
    two = face_chip(torch.stack([img, img]), torch.stack([lm, lm]))
    torch.testing.assert_close(two, one.expand(2, -1, -1, -1))
    # moving image and landmarks together by whole pixels gives the same chip
    shifted = torch.nn.functional.pad(img, (7, 0, 5, 0))
    moved = face_chip(shifted, lm + torch.tensor([7.0, 5.0]))
    torch.testing.assert_close(moved, one, atol=1e-4, rtol=0)  # float32 coordinates
    with pytest.raises(ValueError, match=r"landmarks must be \(68, 2\)"):
        face_chip(img, lm[:5])
