"""The cross-photo check: is the fitted head still the person when seen from another photo's viewpoint?

A fit reproduces its own photo almost by construction: where the photo shows the face, the texture *is*
the photo. The test that means something takes a second photo of the same person, from another day: the
head fitted to photo A is rendered in the camera fitted to photo B, over B's face crop, and dlib's face
descriptor is asked whether that rendering is the person in B (distance below dlib's 0.6). Two
references make the number readable:

* **photo A against photo B**: dlib's own distance between the two photos. The fit cannot be expected to
  be closer to B than A itself is (people change between days; light and pose change the descriptor).
* **another person's photo in B's place** (the negative control): the rendering should be *far* from it.

* :func:`render_in_pose_of` - ``fit_a``'s head with its texture, in ``fit_b``'s camera over ``fit_b``'s crop;
* :func:`photo_crop` - a fit's photo crop at the same size;
* :func:`cross_photo_distance` - the dlib distance of that rendering to photo B, and photo A's;
* :func:`cross_photo_table` - every ordered pair of a set of fits (``avatarme-edu same-person``), and
  :func:`summarise` - how many same-person pairs are recognised and other-person pairs kept apart.

The texture keeps photo A's light (it is the fitted texture T, before de-lighting): this checks the
fit - shape, camera and texture - not the de-lighting (``benchmarks/bench_reconstruct.py`` checks the
relit avatar).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avatarme_edu.fitting.fit_report import dlib_distance, overlay_rendering
from avatarme_edu.fitting.identity import SAME_PERSON_DISTANCE

FACTOR = 2.0  # the rendering and the crop at twice the fit's crop size, as the fit's own report measures


def photo_crop(fit) -> torch.Tensor:
    """``(3, 2R, 2R)`` linear RGB: the fit's photo crop at the size of :func:`render_in_pose_of`'s renderings."""
    side = round(fit.crop.image.shape[-1] * FACTOR)
    return F.interpolate(fit.crop.image[None], size=(side, side), mode="bilinear", align_corners=False)[0]


def render_in_pose_of(fit_a, fit_b, head=None) -> torch.Tensor:
    """``(3, 2R, 2R)`` linear RGB: the head of ``fit_a`` (a :class:`~avatarme_edu.fitting.fit.FitResult`)
    with its texture (the detailed one, ``FitResult.detailed_texture``), seen by the camera fitted to
    ``fit_b``, over ``fit_b``'s photo crop (``R`` = the fits' crop size). ``head``: EduHead, for its vertex
    weld (loaded when not given)."""
    from avatarme_edu.geometry.head import load_eduhead

    if fit_a.crop.image.shape != fit_b.crop.image.shape:
        raise ValueError(f"the two fits have different crop sizes ({tuple(fit_a.crop.image.shape)} and "
                         f"{tuple(fit_b.crop.image.shape)}): fit both with the same FitConfig.crop_px")
    head = head or load_eduhead()
    cam = fit_b.camera
    device = cam.rotation.device
    mesh = fit_a.mesh.to(device)
    with torch.no_grad():
        return overlay_rendering(mesh, fit_a.detailed_texture.to(device), cam, fit_b.crop, mesh.faces,
                                 head.weld.to(device), factor=FACTOR).cpu()


def _model_landmarks(fit_a, fit_b, head) -> torch.Tensor:
    """``(68, 2)`` where EduHead's landmarks of ``fit_a`` land in ``fit_b``'s rendering (pixels of the
    rendering): used only when dlib finds no face in it."""
    verts = fit_a.mesh.vertices.to(fit_b.camera.rotation.device)
    return (fit_b.camera.project(verts[head.landmark_ids.to(verts.device)])[0] * FACTOR).cpu()


def cross_photo_distance(fit_a, fit_b, head=None, image: torch.Tensor | None = None) -> dict:
    """dlib's verdict on ``fit_a``'s head rendered in ``fit_b``'s pose (``image``, made by
    :func:`render_in_pose_of` when not given).

    Returns ``{"distance", "same_person", "photo_distance", "photos_same_person", "agrees", "found_by"}``:
    ``distance`` from the rendering to photo B's crop (``same_person``: below dlib's 0.6);
    ``photo_distance`` from photo A's crop to photo B's, the reference: dlib's distance between the two
    photos themselves, and its verdict ``photos_same_person``; ``agrees``: the rendering gets the photos'
    verdict (the same person recognised, or another person kept apart). ``found_by`` says how the
    rendering's face was found (dlib's detector, or the model's own landmarks when it found none)."""
    from avatarme_edu.geometry.head import load_eduhead

    head = head or load_eduhead()
    image = render_in_pose_of(fit_a, fit_b, head) if image is None else image
    photo_b, lms_b = photo_crop(fit_b), fit_b.crop.landmarks * FACTOR
    d, how = dlib_distance(photo_b, lms_b, image, _model_landmarks(fit_a, fit_b, head))
    d_photos, _ = dlib_distance(photo_b, lms_b, photo_crop(fit_a), fit_a.crop.landmarks * FACTOR)
    same, photos_same = bool(d < SAME_PERSON_DISTANCE), bool(d_photos < SAME_PERSON_DISTANCE)
    return {"distance": round(d, 4), "same_person": same, "photo_distance": round(d_photos, 4),
            "photos_same_person": photos_same, "agrees": same == photos_same, "found_by": how}


def summarise(table: dict) -> dict:
    """Counts over :func:`cross_photo_table`'s pairs: of the pairs whose photos dlib calls one person, how
    many renderings it recognises; of the pairs of two people, how many it keeps apart."""
    same = [row for row in table.values() if row["photos_same_person"]]
    other = [row for row in table.values() if not row["photos_same_person"]]
    return {"same_person_pairs": len(same), "recognised": sum(r["same_person"] for r in same),
            "other_person_pairs": len(other), "kept_apart": sum(not r["same_person"] for r in other),
            "mean_distance_same_person_pairs": (round(sum(r["distance"] for r in same) / len(same), 4)
                                                if same else None),
            "threshold": SAME_PERSON_DISTANCE}


def cross_photo_table(fits: dict, head=None, renders: dict | None = None) -> dict:
    """Every ordered pair ``(a, b)`` of ``fits`` ({name: FitResult}, at least two):
    ``{"a in the pose of b": {"fit": a, "pose_of": b, **cross_photo_distance(fits[a], fits[b])}}``.
    ``renders``: a dict to fill with ``{(a, b): (3, 2R, 2R) rendering}`` (for a figure)."""
    from avatarme_edu.geometry.head import load_eduhead

    if len(fits) < 2:
        raise ValueError(f"the cross-photo check needs at least two fitted photos, got {len(fits)}")
    head = head or load_eduhead()
    table = {}
    for a, fit_a in fits.items():
        for b, fit_b in fits.items():
            if a == b:
                continue
            image = render_in_pose_of(fit_a, fit_b, head)
            if renders is not None:
                renders[(a, b)] = image
            table[f"{a} in the pose of {b}"] = {"fit": a, "pose_of": b,
                                                **cross_photo_distance(fit_a, fit_b, head, image)}
    return table
