"""Reading dlib's binary serialisation (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``).

A dlib ``.dat`` network file is the C++ object tree written field by field, with no names and no
type tags: only the C++ type of each field says how to read the next bytes. The rules:

* **integer**: one control byte, then the magnitude in little-endian bytes. The low 4 bits of the
  control byte are the number of magnitude bytes (1 to 8), bit 7 is the sign; bits 4-6 are zero.
  ``5`` is ``01 05``; ``-300`` is ``82 2c 01``.
* **float / double**: a 64-bit mantissa and a 16-bit exponent, each an integer as above, *mantissa
  first* (whatever the header comment says), meaning ``mantissa * 2**exponent``. Exponents 32000,
  32001 and 32002 stand for +inf, -inf and NaN.
* **bool**: the ASCII byte ``'1'`` or ``'0'``.
* **string**: its length as an integer, then the bytes. Every layer starts with a version string
  such as ``"con_4"``.
* **tensor**: the integer 2 (its version), four integers ``num_samples, k, nr, nc``, then the values as
  raw little-endian float32 (dlib skips its float format here to keep files small).
* **alias tensor** (a view into a layer's parameter tensor): the integer 1, then its four sizes.

A network ``loss<L_n<...<L_1<input>>>>`` is written from the loss inward: the loss layer's version
and details, then each layer's version number on the way in (``add_layer``: 1 or 2, tag and skip
layers: 1), the input layer, and on the way out each layer's own details followed by its
bookkeeping (flags and cached tensors). So a file cannot be read without knowing the network's
layout: :func:`parse_network` takes that layout as a list of :class:`LayerSpec` (outermost first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DlibFormatError(ValueError):
    """The bytes are not what the dlib layout says should be there; the message says where."""


# float_details' special exponents (dlib/float_details.h)
_EXP_INF, _EXP_NINF, _EXP_NAN = 32000, 32001, 32002


class DlibReader:
    """A cursor over the bytes of a dlib file, reading one value at a time with dlib's rules."""

    def __init__(self, data: bytes, name: str = "<bytes>"):
        self.data = memoryview(data)
        self.pos = 0
        self.name = name

    def _fail(self, msg: str):
        raise DlibFormatError(f"{self.name}: at byte {self.pos}: {msg}")

    def take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.data):
            self._fail(f"file ends while reading {what} ({n} bytes needed, "
                       f"{len(self.data) - self.pos} left): truncated or not a dlib file")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def read_int(self, what: str = "an integer") -> int:
        control = self.take(1, what)[0]
        size = control & 0x0F
        if control & 0x70 or not 1 <= size <= 8:
            self.pos -= 1
            self._fail(f"bad integer control byte 0x{control:02x} while reading {what}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & 0x80 else value

    def read_float(self, what: str = "a float") -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            self._fail(f"{what} is in dlib's old text float format, which this reader does not handle")
        mantissa = self.read_int(what)
        exponent = self.read_int(what)
        if exponent == _EXP_INF:
            return math.inf
        if exponent == _EXP_NINF:
            return -math.inf
        if exponent == _EXP_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def read_bool(self, what: str = "a bool") -> bool:
        b = self.take(1, what)[0]
        if b not in (ord("0"), ord("1")):
            self.pos -= 1
            self._fail(f"expected '0' or '1' for {what}, found byte 0x{b:02x}")
        return b == ord("1")

    def read_string(self, what: str = "a string") -> str:
        n = self.read_int(f"the length of {what}")
        if n < 0 or n > 4096:
            self._fail(f"implausible string length {n} for {what}")
        return bytes(self.take(n, what)).decode("latin-1")

    def read_version(self, *allowed: str, layer: str) -> str:
        start = self.pos
        v = self.read_string(f"the version string of {layer}")
        if v not in allowed:
            self.pos = start
            self._fail(f"expected {layer} (version {' or '.join(map(repr, allowed))}), found {v!r}: "
                       "the file does not hold the network layout it was read with")
        return v

    def read_tensor(self, what: str = "a tensor") -> np.ndarray:
        """A ``resizable_tensor`` -> float32 array of shape ``(num_samples, k, nr, nc)``."""
        version = self.read_int(f"the version of {what}")
        if version != 2:
            self._fail(f"unknown tensor version {version} for {what} (dlib writes 2)")
        shape = tuple(self.read_int(f"the shape of {what}") for _ in range(4))
        if min(shape) < 0:
            self._fail(f"negative tensor size {shape} for {what}")
        n = int(np.prod(shape))
        raw = self.take(4 * n, what)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias_tensor(self, what: str = "an alias tensor") -> tuple[int, int, int, int]:
        version = self.read_int(f"the version of {what}")
        if version != 1:
            self._fail(f"unknown alias-tensor version {version} for {what} (dlib writes 1)")
        return tuple(self.read_int(f"the shape of {what}") for _ in range(4))


# ---- layer details --------------------------------------------------------------------------------
# One reader per layer type: each returns a dict of plain values (numpy arrays for weights).

def read_loss_metric(r: DlibReader) -> dict:
    v = r.read_version("loss_metric_", "loss_metric_2", layer="loss_metric")
    if v == "loss_metric_":
        return {"margin": 0.1, "distance_threshold": 0.75}  # the values that version hard-coded
    return {"margin": r.read_float("margin"), "distance_threshold": r.read_float("distance threshold")}


def read_input_rgb_image_sized(r: DlibReader) -> dict:
    r.read_version("input_rgb_image_sized", layer="input_rgb_image_sized")
    mean = tuple(r.read_float(f"the mean {c}") for c in ("red", "green", "blue"))
    return {"mean_rgb": mean, "rows": r.read_int("rows"), "cols": r.read_int("cols")}


def _split_params(r: DlibReader, params: np.ndarray, views: list, what: str) -> list:
    """Cut the flat parameter tensor into the alias tensors laid out one after the other."""
    flat, out, offset = params.reshape(-1), [], 0
    for shape in views:
        n = int(np.prod(shape))
        if offset + n > flat.size:
            r._fail(f"{what}: the parameter views {views} do not fit in {flat.size} parameters")
        out.append(flat[offset:offset + n].reshape(shape))
        offset += n
    return out


def read_con(r: DlibReader) -> dict:
    v = r.read_version("con_4", "con_5", "con_6", layer="con (convolution)")
    params = r.read_tensor("con params")
    num_filters = r.read_int("num_filters")
    kernel = (r.read_int("nr"), r.read_int("nc"))
    stride = (r.read_int("stride_y"), r.read_int("stride_x"))
    padding = (r.read_int("padding_y"), r.read_int("padding_x"))
    filters = r.read_alias_tensor("con filters")
    biases = r.read_alias_tensor("con biases")
    for name in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        r.read_float(f"con {name} multiplier")
    use_bias = r.read_bool("use_bias") if v in ("con_5", "con_6") else True
    if v == "con_6":
        r.read_bool("use_relu")
    views = [filters] + ([biases] if use_bias else [])
    parts = _split_params(r, params, views, "con")
    bias = parts[1].reshape(-1) if use_bias else None
    return {"weight": parts[0], "bias": bias, "num_filters": num_filters, "kernel": kernel,
            "stride": stride, "padding": padding}


def read_affine(r: DlibReader) -> dict:
    """An ``affine_`` layer: ``y = gamma * x + beta`` per channel (a frozen batch norm)."""
    v = r.read_version("affine_", "affine_2", layer="affine")
    params = r.read_tensor("affine params")
    gamma_shape = r.read_alias_tensor("affine gamma")
    beta_shape = r.read_alias_tensor("affine beta")
    mode = r.read_int("affine mode")
    if v == "affine_2" and r.read_bool("affine disabled"):
        r._fail("disabled affine layers are not supported")
    gamma, beta = _split_params(r, params, [gamma_shape, beta_shape], "affine")
    return {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1), "conv_mode": mode == 0}  # CONV_MODE = 0, FC_MODE = 1


def read_fc(r: DlibReader) -> dict:
    """A fully connected layer. dlib stores the weights as ``(num_inputs, num_outputs)``."""
    v = r.read_version("fc_2", "fc_3", layer="fc (fully connected)")
    num_outputs = r.read_int("num_outputs")
    num_inputs = r.read_int("num_inputs")
    params = r.read_tensor("fc params")
    weights = r.read_alias_tensor("fc weights")
    biases = r.read_alias_tensor("fc biases")
    has_bias = r.read_int("fc bias mode") == 0  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    for name in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        r.read_float(f"fc {name} multiplier")
    if v == "fc_3":
        has_bias = r.read_bool("use_bias") and has_bias
    parts = _split_params(r, params, [weights] + ([biases] if has_bias else []), "fc")
    w = parts[0].reshape(num_inputs, num_outputs)
    return {"weight_in_out": w, "bias": parts[1].reshape(-1) if has_bias else None,
            "num_outputs": num_outputs, "num_inputs": num_inputs}


def read_relu(r: DlibReader) -> dict:
    v = r.read_version("relu_", "relu_2", layer="relu")
    if v == "relu_2" and r.read_bool("relu disabled"):
        r._fail("disabled relu layers are not supported")
    return {}


def _read_pool(r: DlibReader, name: str) -> dict:
    r.read_version(f"{name}_2", layer=name)
    window = (r.read_int("pool nr"), r.read_int("pool nc"))  # (0, 0): pool over everything
    stride = (r.read_int("stride_y"), r.read_int("stride_x"))
    padding = (r.read_int("padding_y"), r.read_int("padding_x"))
    return {"window": window, "stride": stride, "padding": padding}


def read_max_pool(r: DlibReader) -> dict:
    return _read_pool(r, "max_pool")


def read_avg_pool(r: DlibReader) -> dict:
    return _read_pool(r, "avg_pool")


def read_add_prev(r: DlibReader) -> dict:
    r.read_version("add_prev_", layer="add_prev")
    return {}


LAYER_READERS = {
    "con": read_con, "affine": read_affine, "fc": read_fc, "relu": read_relu,
    "max_pool": read_max_pool, "avg_pool": read_avg_pool, "add_prev": read_add_prev,
}
INPUT_READERS = {"input_rgb_image_sized": read_input_rgb_image_sized}
LOSS_READERS = {"loss_metric": read_loss_metric}


# ---- whole networks -------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerSpec:
    """One layer of a dlib network layout, as written in C++ (``con<32,7,7,2,2,...>``).

    ``kind`` is a key of :data:`LAYER_READERS`, ``"tag"``/``"skip"`` (with ``tag`` = the N of
    ``tagN``/``skipN``), ``"add_prev"`` (with ``tag``), an input or a loss. ``expect`` holds values
    the file must agree with, e.g. ``{"num_filters": 32, "stride": (2, 2)}``.
    """
    kind: str
    tag: int | None = None
    expect: dict = field(default_factory=dict)


@dataclass
class DlibLayer:
    """One parsed layer: its spec and the values read from the file."""
    spec: LayerSpec
    values: dict

    @property
    def kind(self) -> str:
        return self.spec.kind


def parse_network(r: DlibReader, layout: list[LayerSpec]) -> list[DlibLayer]:
    """Read a whole ``add_loss_layer`` network; ``layout`` lists its layers outermost (loss) first.

    Returns the layers in the same order, each with the values read from the file; raises
    :class:`DlibFormatError` where the bytes disagree with the layout.
    """
    if len(layout) < 3 or layout[0].kind not in LOSS_READERS or layout[-1].kind not in INPUT_READERS:
        raise ValueError("a layout is a loss, then layers, then an input layer")
    if r.read_int("the add_loss_layer version") != 1:
        r._fail("unknown add_loss_layer version (dlib writes 1)")
    loss = DlibLayer(layout[0], LOSS_READERS[layout[0].kind](r))

    # On the way in: each layer's version number.
    middle = layout[1:-1]
    versions = []
    for i, spec in enumerate(middle):
        v = r.read_int(f"the version of layer {i + 1} ({spec.kind})")
        innermost = i == len(middle) - 1
        if spec.kind in ("tag", "skip"):
            ok = v == 1 and not innermost  # a tag/skip right on the input is laid out differently
        elif spec.kind in LAYER_READERS:
            ok = (2 <= v <= 3) if innermost else (1 <= v <= 2)
        else:
            raise ValueError(f"unknown layer kind {spec.kind!r} in the layout")
        if not ok:
            r._fail(f"layer {i + 1} ({spec.kind}) has version {v}, not what dlib writes for it: "
                    "the file does not hold the network layout it was read with")
        versions.append(v)
    inp = DlibLayer(layout[-1], INPUT_READERS[layout[-1].kind](r))

    # On the way out: each add_layer's details, then its bookkeeping.
    parsed: list[DlibLayer | None] = [None] * len(middle)
    for i in range(len(middle) - 1, -1, -1):
        spec = middle[i]
        if spec.kind in ("tag", "skip"):
            parsed[i] = DlibLayer(spec, {})
            continue
        values = LAYER_READERS[spec.kind](r)
        for key, want in spec.expect.items():
            if values.get(key) != want:
                r._fail(f"layer {i + 1} ({spec.kind}) has {key}={values.get(key)!r}, the layout says {want!r}")
        for flag in ("this_layer_setup_called", "gradient_input_is_stale", "output_and_gradient_disabled"):
            r.read_bool(flag)
        r.read_tensor("x_grad")
        r.read_tensor("cached_output")
        if i == len(middle) - 1:  # the add_layer that holds the input layer
            r.read_tensor("grad_final")
            if versions[i] >= 3:
                r.read_int("sample_expansion_factor")
        elif versions[i] == 2:
            r.read_tensor("params_grad")
        parsed[i] = DlibLayer(spec, values)
    if not r.at_end():
        r._fail(f"{len(r.data) - r.pos} bytes left after the network: a different network layout?")
    return [loss] + parsed + [inp]


def read_file(path: str | Path, layout: list[LayerSpec]) -> list[DlibLayer]:
    """Parse the dlib network file at ``path`` with the given layout (see :func:`parse_network`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dlib network file not found: {str(path)!r}")
    return parse_network(DlibReader(path.read_bytes(), name=str(path)), layout)
