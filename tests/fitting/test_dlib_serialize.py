import math
import struct
from collections import Counter

import numpy as np
import pytest

from avatarme_edu.fitting.dlib_models import FACE_RECOGNITION, model_path
from avatarme_edu.fitting.dlib_serialize import DlibFormatError, DlibReader, LayerSpec, parse_network, read_file
from avatarme_edu.fitting.identity import face_recognition_layout


def R(data: bytes) -> DlibReader:
    return DlibReader(data, name="test")


# ---- one rule each, on hand-built bytes ---------------------------------------------------------

@pytest.mark.parametrize("data, value", [
    (b"\x01\x05", 5),
    (b"\x01\x00", 0),
    (b"\x82\x2c\x01", -300),              # sign bit, 2 magnitude bytes, little-endian 0x012c
    (b"\x04\x78\x56\x34\x12", 0x12345678),
    (b"\x88" + (2 ** 63 - 1).to_bytes(8, "little"), -(2 ** 63 - 1)),
])
def test_integers_are_control_byte_plus_little_endian_magnitude(data, value):
    r = R(data)
    assert r.read_int() == value and r.at_end()


@pytest.mark.parametrize("bad", [b"\x00", b"\x09" + bytes(9), b"\x11\x01"])
def test_bad_integer_control_bytes_are_refused(bad):
    with pytest.raises(DlibFormatError, match="at byte 0: bad integer control byte"):
        R(bad).read_int()


def test_floats_are_mantissa_then_exponent():
    # mantissa 3, exponent -1 -> 1.5 (the other order would read -1 * 2**3 = -8)
    assert R(b"\x01\x03\x81\x01").read_float() == 1.5
    # the loss layer's margin in the real file: 10737418 * 2**-28 == float32(0.04)
    assert R(b"\x03\x0a\xd7\xa3\x81\x1c").read_float() == pytest.approx(0.04, rel=1e-7)
    assert R(b"\x81\x05\x01\x00").read_float() == -5.0
    assert R(b"\x01\x00\x02\x00\x7d").read_float() == math.inf       # exponent 32000
    assert R(b"\x01\x00\x02\x01\x7d").read_float() == -math.inf      # 32001
    assert math.isnan(R(b"\x01\x00\x02\x02\x7d").read_float())       # 32002


def test_old_text_floats_are_refused_clearly():
    with pytest.raises(DlibFormatError, match="old text float"):
        R(b"1.5 ").read_float()


def test_bools_strings_and_versions():
    r = R(b"10\x01\x05con_4\x01\x05relu_")
    assert r.read_bool() is True and r.read_bool() is False
    assert r.read_string() == "con_4"
    with pytest.raises(DlibFormatError, match="expected affine.*found 'relu_'"):
        r.read_version("affine_", layer="affine")
    with pytest.raises(DlibFormatError, match="expected '0' or '1'"):
        R(b"x").read_bool()


def test_tensors_are_version_shape_then_raw_float32():
    values = np.arange(6, dtype="<f4") - 2.5
    data = b"\x01\x02" + b"\x01\x01\x01\x02\x01\x01\x01\x03" + values.tobytes()
    t = R(data).read_tensor()
    assert t.shape == (1, 2, 1, 3) and t.dtype == np.float32
    np.testing.assert_array_equal(t.reshape(-1), values)
    assert R(b"\x01\x01" + b"\x01\x02\x01\x03\x01\x01\x01\x01").read_alias_tensor() == (2, 3, 1, 1)


def test_truncated_tensor_says_so():
    data = b"\x01\x02" + b"\x01\x01\x01\x02\x01\x01\x01\x03" + struct.pack("<3f", 1, 2, 3)
    with pytest.raises(DlibFormatError, match="file ends while reading .*truncated"):
        R(data).read_tensor()


def test_a_tiny_network_parses_outer_layer_first_details_inner_first():
    f = lambda m, e: bytes([1, m]) + (bytes([0x81, -e]) if e < 0 else bytes([1, e]))  # noqa: E731
    empty_tensor = b"\x01\x02" + b"\x01\x00" * 4
    data = (b"\x01\x01"                                   # add_loss_layer version 1
            + b"\x01\x0dloss_metric_2" + f(1, -2) + f(3, -2)  # margin 0.25, threshold 0.75
            + b"\x01\x02"                                 # add_layer<relu> version 2 (outer)
            + b"\x01\x02"                                 # add_layer<relu, input> version 2 (inner)
            + b"\x01\x15input_rgb_image_sized" + f(1, 0) + f(2, 0) + f(3, 0) + b"\x01\x02\x01\x02"
            + b"\x01\x05relu_" + b"100" + empty_tensor * 3  # inner: details, flags, x_grad, cache, grad_final
            + b"\x01\x05relu_" + b"100" + empty_tensor * 3)  # outer: details, flags, x_grad, cache, params_grad
    layout = [LayerSpec("loss_metric"), LayerSpec("relu"), LayerSpec("relu"), LayerSpec("input_rgb_image_sized")]
    layers = parse_network(R(data), layout)
    assert [l.kind for l in layers] == ["loss_metric", "relu", "relu", "input_rgb_image_sized"]
    assert layers[0].values == {"margin": 0.25, "distance_threshold": 0.75}
    assert layers[-1].values == {"mean_rgb": (1.0, 2.0, 3.0), "rows": 2, "cols": 2}
    with pytest.raises(DlibFormatError, match="bytes left after the network"):
        parse_network(R(data + b"\x00"), layout)


# ---- the real file --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_layers():
    return read_file(model_path(FACE_RECOGNITION), face_recognition_layout())


def test_real_file_layer_count_and_kinds(real_layers):
    assert len(real_layers) == 132  # what dlib's net.num_layers says for this network
    kinds = Counter(l.kind for l in real_layers)
    assert kinds == {"con": 29, "affine": 29, "relu": 29, "tag": 18, "add_prev": 14, "avg_pool": 5,
                     "skip": 4, "fc": 1, "max_pool": 1, "loss_metric": 1, "input_rgb_image_sized": 1}


def test_real_file_values(real_layers):
    loss, inp = real_layers[0].values, real_layers[-1].values
    assert loss["margin"] == pytest.approx(0.04) and loss["distance_threshold"] == pytest.approx(0.6)
    assert inp["rows"] == inp["cols"] == 150
    np.testing.assert_allclose(inp["mean_rgb"], (122.782, 117.001, 104.298), atol=1e-4)
    convs = [l.values for l in real_layers if l.kind == "con"]
    first = convs[-1]  # the layer next to the input
    assert first["weight"].shape == (32, 3, 7, 7) and first["stride"] == (2, 2) and first["padding"] == (0, 0)
    assert all(c["padding"] == ((1, 1) if c["stride"] == (1, 1) else (0, 0)) for c in convs)
    assert sum(c["stride"] == (2, 2) for c in convs) == 5
    fc = next(l.values for l in real_layers if l.kind == "fc")
    assert fc["weight_in_out"].shape == (256, 128) and fc["bias"] is None
    pools = [l.values for l in real_layers if l.kind in ("max_pool", "avg_pool")]
    assert all(p["padding"] == (0, 0) for p in pools)
    n_params = sum(v.size for l in real_layers for k, v in l.values.items()
                   if isinstance(v, np.ndarray))
    assert 5.5e6 < n_params < 5.7e6  # 22.4 MB of float32


def test_a_wrong_layout_or_a_truncated_file_is_named(tmp_path):
    layout = face_recognition_layout()
    wrong = layout[:-2] + [LayerSpec("con", expect={"num_filters": 64}), layout[-1]]
    with pytest.raises(DlibFormatError, match="num_filters=32, the layout says 64"):
        read_file(model_path(FACE_RECOGNITION), wrong)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(model_path(FACE_RECOGNITION).read_bytes()[:100_000])
    with pytest.raises(DlibFormatError, match="cut.dat: at byte .*truncated"):
        read_file(cut, layout)
