"""Bad input to ``avatarme-edu reconstruct`` and ``avatarme-edu fit`` (and their APIs): one clear line,
exit status 2, no output folder left behind, no user file lost. The bad files are made here.

Documented handling, not refusals: EXIF orientation is applied; grey, transparent (RGBA) and 16-bit
photos are converted with a warning; an 8000-pixel JPEG is decoded small and downscaled; of several
faces the largest is taken (with a warning, and a note in the report).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avatarme_edu.cli import main
from avatarme_edu.fitting.landmarks import FaceNotFoundError, SeveralFacesWarning, detect_face
from avatarme_edu.maps_io import PhotoError, PhotoWarning, load_photo
from avatarme_edu.pipeline import reconstruct

PHOTOS = Path(__file__).resolve().parents[1] / "data_samples" / "photos"
COMMANDS = ("reconstruct", "fit")


def _astronaut() -> Image.Image:
    return Image.open(PHOTOS / "astronaut.jpg").convert("RGB")


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def make_bad(kind: str, tmp: Path) -> Path:
    """A bad photo of ``kind`` in ``tmp``."""
    if kind == "missing":
        return tmp / "no_such_photo.jpg"
    if kind == "directory":
        (tmp / "a_folder.jpg").mkdir()
        return tmp / "a_folder.jpg"
    if kind == "not_an_image":
        p = tmp / "notes.jpg"
        p.write_text("this is not a photo\n")
        return p
    if kind == "empty":
        p = tmp / "empty.jpg"
        p.write_bytes(b"")
        return p
    if kind == "truncated_jpeg":
        p = tmp / "truncated.jpg"
        data = _jpeg_bytes(_astronaut())
        p.write_bytes(data[: len(data) // 3])
        return p
    if kind == "tiny_32px":
        p = tmp / "tiny.png"
        _astronaut().resize((32, 32)).save(p)
        return p
    if kind == "huge_8000px_png":  # 8000 x 6000 = 48 megapixels, over the 40 MP limit; a PNG cannot be decoded small
        p = tmp / "huge.png"
        Image.new("RGB", (8000, 6000), (120, 100, 90)).save(p, compress_level=1)
        return p
    if kind == "no_face":
        p = tmp / "rocket.png"
        Image.fromarray(np.array(_astronaut())[:300, 330:]).save(p)  # the shuttle and the flag
        return p
    raise ValueError(kind)


BAD = {"missing": "photo not found", "directory": "is not a file", "not_an_image": "not an image",
       "empty": "is empty", "truncated_jpeg": "corrupt or truncated", "tiny_32px": "only 32x32",
       "huge_8000px_png": "megapixels", "no_face": "no face found"}


def _one_error_line(capsys, command: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in err if line.startswith(f"avatarme-edu {command}: error:")]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    return errors[0]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", list(BAD))
def test_bad_photo_is_one_line_exit_2_and_no_output(kind, command, tmp_path, capsys):
    photo = make_bad(kind, tmp_path)
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main([command, str(photo), "--out", str(out), "--profile", "cpu", "--device", "cpu", "--quiet"])
    assert code == 2
    line = _one_error_line(capsys, command)
    assert BAD[kind] in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output folder, no temporary left


@pytest.mark.parametrize("api", ["reconstruct", "fit"])
@pytest.mark.parametrize("kind", ["missing", "directory", "not_an_image", "truncated_jpeg", "tiny_32px", "no_face"])
def test_bad_photo_through_the_api_raises_one_value_error(kind, api, tmp_path):
    from avatarme_edu.fitting.fit import fit
    from avatarme_edu.profiles import get_profile

    photo = make_bad(kind, tmp_path)
    with pytest.raises(ValueError, match=BAD[kind]) as info:
        if api == "reconstruct":
            reconstruct(photo, "cpu", progress=False)
        else:
            fit(photo, get_profile("cpu", "cpu"), progress=False)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, (PhotoError, FaceNotFoundError))


def test_bad_api_options_are_one_value_error(tmp_path):
    photo = PHOTOS / "astronaut.jpg"
    for kwargs, message in (({"profile": "gpu"}, "unknown profile 'gpu'"),
                            ({"profile": "cpu", "weights": tmp_path / "nothing"}, "is not a folder"),
                            ({"profile": "cpu", "weights": tmp_path}, "no weights for the 'sr' network")):
        with pytest.raises(ValueError, match=message):
            reconstruct(photo, progress=False, **kwargs)


@pytest.mark.parametrize("command", COMMANDS)
def test_existing_unwritable_or_file_out_is_refused_before_any_work(command, tmp_path, capsys):
    photo = PHOTOS / "astronaut.jpg"
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me too")
    cases = {str(taken): "already exists and is not empty", str(a_file): "is a file",
             str(a_file / "below"): "", "/proc/avatarme_out": "cannot write there"}
    for out, message in cases.items():
        assert main([command, str(photo), "--out", out, "--profile", "cpu", "--quiet"]) == 2, out
        line = _one_error_line(capsys, command)
        assert message in line, line
    assert (taken / "mine.txt").read_text() == "keep me" and a_file.read_text() == "keep me too"
    assert sorted(p.name for p in taken.iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("argv, message", [
    (["--device", "gpu9"], "unknown device"),
    (["--device", "cuda:0"], "CUDA") if not torch.cuda.is_available() else (["--device", "tpu"], "unknown device"),
    (["--steps", "-3"], "--steps must be >= 0"),
])
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_option_values_are_one_line(command, argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([command, str(PHOTOS / "astronaut.jpg"), "--out", str(out), "--quiet", *argv]) == 2
    assert message in _one_error_line(capsys, command)
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--weights", "/no/such/weights"], "is not a folder"),
    (["--sample", "astronaut"], "give one of PHOTO, --sample NAME"),  # both
    (["--profile", "paper", "--device", "cpu"], "no weights for the 'sr' network (paper profile)"),
    (["--weights", "/"], "no weights for the 'sr' network"),  # a folder without them
])
def test_bad_reconstruct_options_are_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reconstruct", str(PHOTOS / "astronaut.jpg"), "--out", str(out), "--quiet", *argv]) == 2
    assert message in _one_error_line(capsys, "reconstruct")
    assert main(["reconstruct", "--out", str(out)]) == 2  # neither
    assert "give one of PHOTO, --sample NAME" in _one_error_line(capsys, "reconstruct")
    assert not out.exists()


@pytest.mark.parametrize("argv", [["--profile", "gpu"], ["--sample", "mona_lisa"], ["--steps", "ten"],
                                  ["--mirror", "sideways"]])
def test_values_the_parser_refuses_exit_2_with_one_line(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["reconstruct", "--out", str(tmp_path / "out"), *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("avatarme-edu reconstruct: error:") and "invalid" in err[-1]


# ---- documented handling: converted or chosen, then reconstructed ---------------------------------------


def make_unusual(kind: str, tmp: Path) -> Path:
    img = _astronaut()
    if kind == "greyscale":
        p = tmp / "grey.jpg"
        img.convert("L").save(p, quality=92)
    elif kind == "rgba":
        p = tmp / "rgba.png"
        rgba = img.convert("RGBA")
        rgba.putalpha(200)
        rgba.save(p)
    elif kind == "png_16bit":
        p = tmp / "grey16.png"
        arr = (np.asarray(img.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        Image.fromarray(arr).save(p)
    elif kind == "exif_rotated":
        p = tmp / "rotated.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 CW to view": the pixels are stored turned the other way
        img.transpose(Image.Transpose.ROTATE_90).save(p, quality=92, exif=exif)
    elif kind == "jpeg_8000px":
        p = tmp / "big.jpg"
        img.resize((8000, 8000), Image.Resampling.BILINEAR).save(p, quality=85)
    elif kind == "two_faces":  # the astronaut and a smaller Obama beside her
        other = Image.open(PHOTOS / "obama_2012.jpg").convert("RGB").resize((160, 160))
        canvas = Image.new("RGB", (512 + 160, 512), (200, 200, 200))
        canvas.paste(img, (0, 0))
        canvas.paste(other, (512, 160))
        p = tmp / "two.png"
        canvas.save(p)
    else:
        raise ValueError(kind)
    return p


ASTRONAUT_NOSE_TIP = None  # measured below from the plain photo


@pytest.mark.parametrize("kind", ["greyscale", "rgba", "png_16bit", "exif_rotated", "jpeg_8000px", "two_faces"])
def test_unusual_photos_are_handled_and_the_astronauts_face_is_found(kind, tmp_path):
    plain = detect_face(load_photo(PHOTOS / "astronaut.jpg"))
    photo = make_unusual(kind, tmp_path)
    with __import__("warnings").catch_warnings(record=True) as caught:
        __import__("warnings").simplefilter("always")
        img = load_photo(photo)
        face = detect_face(img)
    assert img.ndim == 3 and img.shape[0] == 3 and max(img.shape[1:]) <= 1024
    scale = 512 / max(img.shape[1:]) if kind != "two_faces" else 1.0
    nose = torch.as_tensor(face.landmarks[30]) * scale
    assert (nose - torch.as_tensor(plain.landmarks[30])).norm() < 8, (kind, nose, plain.landmarks[30])
    categories = {w.category for w in caught}
    expected = {"greyscale": PhotoWarning, "rgba": PhotoWarning, "png_16bit": PhotoWarning,
                "two_faces": SeveralFacesWarning}.get(kind)
    if expected is not None:
        assert any(issubclass(c, expected) for c in categories), (kind, categories)


@pytest.mark.slow
def test_a_grey_exif_rotated_photo_with_two_faces_reconstructs_with_notes(tmp_path, capsys):
    """One whole run through the command: grey, EXIF-rotated, two people; the notes reach report.json."""
    two = Image.open(make_unusual("two_faces", tmp_path)).convert("L")
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 270 CW to view"
    photo = tmp_path / "grey_rotated_two.jpg"
    two.transpose(Image.Transpose.ROTATE_270).save(photo, quality=92, exif=exif)
    out = tmp_path / "out"
    assert main(["reconstruct", str(photo), "--out", str(out), "--profile", "cpu", "--device", "cpu",
                 "--quiet", "--steps", "5"]) == 0
    report = json.loads((out / "report.json").read_text())
    notes = " ".join(report["notes"])
    assert "greyscale" in notes and "largest" in notes, notes
    assert report["fit"]["face_note"] and (out / "maps" / "diffuse_albedo.png").is_file()
    assert "reconstructed" in capsys.readouterr().out


def test_the_package_front_door_is_reconstruct_and_costs_nothing_to_import():
    import subprocess
    import sys

    code = ("import sys, avatarme_edu; assert 'avatarme_edu.pipeline' not in sys.modules; "
            "from avatarme_edu.pipeline import reconstruct; assert avatarme_edu.reconstruct is reconstruct; "
            "assert avatarme_edu.Avatar.__module__ == 'avatarme_edu.pipeline'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
