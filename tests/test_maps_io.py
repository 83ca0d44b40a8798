import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from avatarme_edu.color import linear_to_srgb
from avatarme_edu.maps_io import PhotoError, PhotoWarning, load_map, load_photo, save_map


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---- maps ---------------------------------------------------------------------------------

def test_normal_round_trip_is_16_bit_accurate(tmp_path):
    n = torch.nn.functional.normalize(torch.randn(3, 20, 30, generator=_gen()), dim=0)
    path = save_map(tmp_path / "n.png", n, "normal")
    back = load_map(path, "normal")
    assert back.shape == (3, 20, 30) and back.dtype == torch.float32
    assert (back - n).abs().max() < 1e-4
    import cv2
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (20, 30, 3)


def test_files_are_standard_rgb_order(tmp_path):
    x = torch.zeros(3, 4, 6)
    x[0] = 1.0  # pure red
    save_map(tmp_path / "red.png", x, "color")
    with Image.open(tmp_path / "red.png") as im:  # an independent reader
        assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 0, 0)
    n = torch.zeros(3, 4, 6)
    n[0] = 1.0  # +X normal: R = 65535, G = B = 32768
    save_map(tmp_path / "n.png", n, "normal")
    import cv2
    raw = cv2.imread(str(tmp_path / "n.png"), cv2.IMREAD_UNCHANGED)  # B, G, R
    assert raw[0, 0].tolist() == [32768, 32768, 65535]


def test_color_round_trip_within_one_srgb_step(tmp_path):
    x = torch.rand(3, 16, 24, generator=_gen(1))
    back = load_map(save_map(tmp_path / "c.png", x, "color"), "color")
    assert (linear_to_srgb(back) - linear_to_srgb(x)).abs().max() < 1 / 255


def test_gray_and_mask_round_trips(tmp_path):
    g = torch.rand(1, 10, 15, generator=_gen(2))
    back = load_map(save_map(tmp_path / "g.png", g, "gray"), "gray")
    assert back.shape == (1, 10, 15) and (back - g).abs().max() <= 0.5 / 65535 + 1e-7
    mask = torch.rand(10, 15, generator=_gen(3)) > 0.5
    path = save_map(tmp_path / "m.png", mask, "mask")
    with Image.open(path) as im:
        assert im.mode == "L"
    assert torch.equal(load_map(path, "mask"), mask)


def test_bad_map_raises_before_writing_and_keeps_the_old_file(tmp_path):
    good = torch.rand(3, 8, 12, generator=_gen(4))
    path = save_map(tmp_path / "a.png", good, "color")
    before = path.read_bytes()
    bad = good.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        save_map(path, bad, "color")
    with pytest.raises(ValueError, match="NaN"):
        save_map(tmp_path / "new.png", bad, "color")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.png"]  # no new file, no temporary left behind


def test_map_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="valid kinds"):
        save_map(tmp_path / "x.png", torch.zeros(3, 4, 4), "albedo")
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        save_map(tmp_path / "x.png", torch.zeros(1, 4, 4), "normal")
    with pytest.raises(ValueError, match=".png"):
        save_map(tmp_path / "x.jpg", torch.zeros(3, 4, 4), "color")
    with pytest.raises(FileNotFoundError):
        load_map(tmp_path / "missing.png", "color")
    (tmp_path / "t.png").write_text("not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        load_map(tmp_path / "t.png", "color")
    save_map(tmp_path / "g.png", torch.zeros(1, 4, 4), "gray")
    with pytest.raises(ValueError, match="channel"):
        load_map(tmp_path / "g.png", "normal")


# ---- photos -------------------------------------------------------------------------------

def _photo(path, w=96, h=80, mode="RGB", **save_args):
    a = (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(a).convert(mode)
    im.save(path, **save_args)
    return path


def test_photo_is_linear_rgb(tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (100, 70), (188, 188, 188)).save(path)
    x = load_photo(path)
    assert x.shape == (3, 70, 100) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 0.5029), atol=1e-3)  # sRGB 188 is ~0.5 linear


def test_photo_exif_orientation_is_applied(tmp_path):
    a = np.zeros((80, 100, 3), np.uint8)
    a[:10, :10] = (255, 0, 0)  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(a).save(tmp_path / "r.png", exif=exif)
    x = load_photo(tmp_path / "r.png")
    assert x.shape == (3, 100, 80)  # upright: the sides swap
    assert x[0, 2, -3] > 0.9 and x[0, 2, 2] < 0.1  # the block now sits top-right


def test_photo_grey_and_transparent_are_converted_with_a_warning(tmp_path):
    with pytest.warns(PhotoWarning, match="greyscale"):
        g = load_photo(_photo(tmp_path / "g.png", mode="L"))
    assert g.shape == (3, 80, 96) and torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    rgba = Image.new("RGBA", (90, 70), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 45, 70))
    rgba.save(tmp_path / "a.png")
    with pytest.warns(PhotoWarning, match="transparency"):
        x = load_photo(tmp_path / "a.png")
    assert x.shape == (3, 70, 90)
    assert torch.allclose(x[:, 5, 80], torch.ones(3))  # transparent -> white
    assert torch.allclose(x[:, 5, 5], torch.tensor([1.0, 0.0, 0.0]))
    g16 = Image.fromarray(np.full((70, 70), 65535, np.uint16))  # 16-bit grey is scaled, not clipped
    g16.save(tmp_path / "g16.png")
    with pytest.warns(PhotoWarning):
        assert torch.allclose(load_photo(tmp_path / "g16.png"), torch.ones(3, 70, 70))


def test_photo_is_downscaled_to_max_side(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain RGB photo gives no warning
        x = load_photo(_photo(tmp_path / "big.png", w=400, h=300), max_side=100)
    assert x.shape == (3, 75, 100)


def test_photo_errors_name_the_file_and_the_problem(tmp_path):
    cases = {}
    cases["not found"] = tmp_path / "missing.jpg"
    cases["not a file"] = tmp_path
    (tmp_path / "notes.txt").write_text("hello, I am not a photo")
    cases["not an image"] = tmp_path / "notes.txt"
    _photo(tmp_path / "full.jpg", w=300, h=200, quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    cases["corrupt or truncated"] = tmp_path / "cut.jpg"
    cases["only 100x40"] = _photo(tmp_path / "tiny.png", w=100, h=40)
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases["empty"] = tmp_path / "empty.jpg"
    for problem, path in cases.items():
        with pytest.raises(PhotoError, match=problem) as info:
            load_photo(path)
        assert str(path.name) in str(info.value)
        assert isinstance(info.value, ValueError)


def test_photo_pixel_limit_refuses_or_decodes_jpeg_small(tmp_path):
    with pytest.raises(PhotoError, match="megapixels"):
        load_photo(_photo(tmp_path / "p.png", w=400, h=300), max_pixels=100_000)
    # a JPEG above the limit is decoded at 1/2 scale (320x240) and then resized to max_side
    x = load_photo(_photo(tmp_path / "p.jpg", w=640, h=480), max_side=200, max_pixels=100_000)
    assert x.shape == (3, 150, 200)


def _png_header_only(path, width, height, bit_depth=8, colour_type=2):
    """A PNG whose header claims ``width x height`` pixels, with a tiny (invalid) body."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("w, h", [(20000, 20000), (100_000, 10)])
def test_huge_maps_are_refused_before_decoding(tmp_path, w, h):
    # Found: a 1 MB PNG of 20000x20000 asked for more than 8 GB; 100k wide gave a raw cv2.error.
    from avatarme_edu.maps_io import MapFileError

    f = _png_header_only(tmp_path / "huge.png", w, h)
    with pytest.raises(MapFileError, match=rf"huge.png.*{w}x{h}.*megapixels.*bytes on disk"):
        load_map(f, "color")


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n garbage", b"not an image at all"])
def test_bad_map_files_are_one_line_naming_the_file(tmp_path, content):
    from avatarme_edu.maps_io import MapFileError

    f = tmp_path / "bad.png"
    f.write_bytes(content)
    with pytest.raises(MapFileError, match="bad.png") as err:
        load_map(f, "color")
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_save_tensors_gives_the_same_bytes_every_time(tmp_path):
    # Found: the safetensors header listed its metadata in a different order in each process.
    from avatarme_edu.maps_io import load_tensors, save_tensors

    tensors = {f"t{i}": torch.full((2, 3), float(i)) for i in range(12)}
    meta = {f"key{i}": str(i) for i in range(12)}
    files = [save_tensors(tmp_path / f"{k}.safetensors", tensors, meta).read_bytes() for k in range(4)]
    code = ("import torch, sys; from avatarme_edu.maps_io import save_tensors; "
            "save_tensors(sys.argv[1], {f't{i}': torch.full((2, 3), float(i)) for i in range(12)}, "
            "{f'key{i}': str(i) for i in range(12)})")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "other.safetensors")], check=True)
    files.append((tmp_path / "other.safetensors").read_bytes())
    assert all(f == files[0] for f in files)
    assert torch.equal(load_tensors(tmp_path / "0.safetensors")["t5"], tensors["t5"])


def test_dark_16_bit_grey_photo_keeps_its_brightness(tmp_path):
    # Found: a 16-bit grey photo with every value below 256 was taken as 8-bit: ~2400x too bright.
    import cv2
    import numpy as np

    from avatarme_edu.maps_io import PhotoWarning, load_photo

    f = tmp_path / "dark.png"
    cv2.imwrite(str(f), np.full((80, 80), 200, np.uint16))
    with pytest.warns(PhotoWarning, match="greyscale"):
        img = load_photo(f)
    srgb = 200 / 65535
    assert img.max() < 0.01 and abs(float(img.mean()) - srgb / 12.92) < 1e-3


def test_16_bit_colour_photo_says_it_was_cut_to_8_bits(tmp_path):
    import cv2
    import numpy as np

    from avatarme_edu.maps_io import PhotoWarning, load_photo

    f = tmp_path / "deep.png"
    cv2.imwrite(str(f), np.full((80, 80, 3), 40000, np.uint16))
    with pytest.warns(PhotoWarning, match="16-bit colour"):
        load_photo(f)


def test_a_huge_jpeg_map_is_refused_from_its_header(tmp_path):
    # Found: load_map on a 12000x9000 JPEG peaked at 7.1 GB. Here a small JPEG whose frame header
    # (SOF0) claims 12000x9000: refused without decoding.
    import cv2
    import numpy as np

    from avatarme_edu.maps_io import MapFileError

    ok, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (9000).to_bytes(2, "big") + (12000).to_bytes(2, "big")
    f = tmp_path / "huge.jpg"
    f.write_bytes(bytes(data))
    with pytest.raises(MapFileError, match="huge.jpg' is 12000x9000 = 108.0 megapixels"):
        load_map(f, "color")
