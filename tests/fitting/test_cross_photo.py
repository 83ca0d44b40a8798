"""The cross-photo check: a fit rendered in another photo's camera, judged by dlib; ``avatarme-edu same-person``."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from avatarme_edu.fitting.cross_photo import cross_photo_table, photo_crop, render_in_pose_of, summarise
from avatarme_edu.fitting.fit import fit
from avatarme_edu.geometry.head import load_eduhead
from avatarme_edu.profiles import get_profile

from .conftest import PHOTOS


@pytest.fixture(scope="module")
def fits():
    """The default fit of two photos of Obama taken on different days and one of Biden."""
    profile, head = get_profile("cpu", device="cpu"), load_eduhead()
    return {n: fit(PHOTOS / f"{n}.jpg", profile, progress=False, head=head)
            for n in ("obama_2012", "obama_2009", "biden_2010")}


@pytest.mark.slow
def test_a_fit_in_its_own_pose_is_its_overlay_and_in_another_pose_lies_over_that_photo(fits):
    a, b = fits["obama_2012"], fits["obama_2009"]
    # the renderings use the finer unwrap (FitConfig.detail_scale 2): the same texture with more of the photo
    assert a.texture_detail.shape[-2:] == tuple(2 * x for x in a.texture.shape[-2:])
    down = torch.nn.functional.avg_pool2d(a.texture_detail[None], 2)[0]
    assert (down - a.texture).abs().mean() < 0.02
    own = render_in_pose_of(a, a)
    assert own.shape == a.overlay.shape and (own - a.overlay).abs().mean() < 2e-3
    other = render_in_pose_of(a, b)
    crop_b = photo_crop(b)
    assert other.shape == crop_b.shape
    # the background is photo B's crop; the head covers the middle, where it differs from B's face
    assert torch.allclose(other[:, :8, :8], crop_b[:, :8, :8], atol=1e-4)
    middle = (slice(None), slice(96, 160), slice(96, 160))
    assert (other[middle] - crop_b[middle]).abs().mean() > 0.01
    assert (other[middle] - render_in_pose_of(a, a)[middle]).abs().mean() > 0.01  # another pose, not A's


@pytest.mark.slow
def test_the_same_person_is_recognised_from_another_day_and_another_person_kept_apart(fits):
    """Measured (one thread): Obama 2012 <-> 2009 0.42 / 0.47, Obama in Biden's pose 0.75, Biden in Obama's
    0.75-0.88; dlib on the photos themselves: Obama-Obama 0.41-0.43, Obama-Biden 0.75-0.85."""
    renders: dict = {}
    table = cross_photo_table(fits, renders=renders)
    assert len(table) == 6 and set(renders) == {(r["fit"], r["pose_of"]) for r in table.values()}
    for row in table.values():
        obama_pair = "biden" not in row["fit"] + row["pose_of"]
        assert row["photos_same_person"] == obama_pair, row
        assert row["agrees"], row
        assert row["found_by"] == "dlib detection", row
        if obama_pair:
            assert row["distance"] < 0.55, row
        else:
            assert row["distance"] > 0.65, row
    # the photos' own distance is the same both ways
    d = [table[f"{x} in the pose of {y}"]["photo_distance"] for x, y in (("obama_2012", "obama_2009"),
                                                                          ("obama_2009", "obama_2012"))]
    assert abs(d[0] - d[1]) < 0.02
    s = summarise(table)
    assert (s["same_person_pairs"], s["recognised"], s["other_person_pairs"], s["kept_apart"]) == (2, 2, 4, 4)


def test_the_check_needs_two_fits():
    with pytest.raises(ValueError, match="at least two fitted photos"):
        cross_photo_table({"one": object()})


@pytest.mark.slow
def test_same_person_command_writes_the_table_the_figure_and_the_fits(tmp_path, capsys):
    from avatarme_edu.cli import main

    out = tmp_path / "check"
    photos = [str(PHOTOS / "obama_2012.jpg"), str(PHOTOS / "biden_2010.jpg")]
    assert main(["same-person", *photos, "--out", str(out), "--profile", "cpu", "--device", "cpu", "--steps", "20",
                 "--quiet"]) == 0  # few steps: what is written, and the control's verdict, not the fit's quality
    printed = capsys.readouterr().out
    assert "2 of 2 of other people kept apart" in printed and "same person" in printed
    result = json.loads((out / "same_person.json").read_text())
    assert set(result["pairs"]) == {"obama_2012 in the pose of biden_2010", "biden_2010 in the pose of obama_2012"}
    assert all(not row["same_person"] and row["agrees"] for row in result["pairs"].values())
    assert result["summary"]["kept_apart"] == 2
    figure = Image.open(out / "same_person.png")
    assert figure.size[0] > 600 and figure.size[1] > 300
    for name in ("obama_2012_in_pose_of_biden_2010.png", "biden_2010_in_pose_of_obama_2012.png"):
        assert np.asarray(Image.open(out / "renders" / name)).std() > 10
    for name in ("obama_2012", "biden_2010"):
        assert (out / "fits" / name / "mesh.obj").stat().st_size > 0
        assert (out / "fits" / name / "report.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_same_person_command_refuses_bad_input_in_one_line(tmp_path, capsys):
    """One photo, an existing folder, a photo without a face (named in the message): exit 2, nothing left."""
    from avatarme_edu.cli import main

    photo = str(PHOTOS / "obama_2012.jpg")
    out = tmp_path / "out"
    assert main(["same-person", photo, "--out", str(out)]) == 2
    assert "give at least two photos" in capsys.readouterr().err and not out.exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    assert main(["same-person", photo, photo, "--out", str(taken)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (taken / "mine.txt").read_text() == "keep me"
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((160, 160, 3), 90, np.uint8)).save(wall)
    assert main(["same-person", str(wall), photo, "--out", str(out), "--profile", "cpu", "--device", "cpu",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"avatarme-edu same-person: error: {wall}: no face found"), err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_two_photos_with_one_file_name_get_two_names():
    from avatarme_edu.cli import photo_names

    assert photo_names(["a/me.jpg", "b/me.jpg", "c/you.png"]) == ["me_1", "me_2", "you"]
