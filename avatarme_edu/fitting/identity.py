"""Identity features from dlib's face-recognition ResNet, ported to torch (differentiable).

GANFIT (and AvatarMe's fitting stage, which builds on it) compares deep features of a
face-recognition network between the photo and the rendering: an *identity loss*. Here that network
is dlib's ``dlib_face_recognition_resnet_model_v1`` (a ResNet-29-like net, 128-D descriptors, 99.38 %
on LFW), read from the installed ``.dat`` file by :mod:`.dlib_serialize` and rebuilt as a torch module,
so the loss reaches the rendering through autograd. Two faces are the same person when their
descriptors are closer than 0.6 (Euclidean), dlib's own threshold.

The layout below is the C++ type of the network (``examples/dnn_face_recognition_ex.cpp``), written
as Python lists, outermost layer first::

    loss_metric< fc_no_bias<128, avg_pool_everything< level0 < level1 < ... level4 <
        max_pool<3,3,2,2, relu< affine< con<32,7,7,2,2, input_rgb_image_sized<150> >>>> >>>>> >>

Things worth knowing (all checked against dlib by the tests):

* strided convolutions and poolings are *not* padded; only the stride-1 3x3 convolutions are;
* a down-sampling residual block adds a 2x2 average pool of its input to its output; where the two
  differ in shape (more channels, or 4x4 against 3x3 after an odd size) the smaller is zero-padded
  at the end (dlib's ``add_prev``), it is not cropped;
* batch norm is frozen into per-channel ``affine`` layers;
* the descriptor is *not* L2-normalised;
* the input is 8-bit sRGB minus a per-channel mean, divided by 256.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avatarme_edu.color import linear_to_srgb
from avatarme_edu.fitting.dlib_models import FACE_RECOGNITION, model_path
from avatarme_edu.fitting.dlib_serialize import DlibLayer, LayerSpec, read_file

CHIP_SIZE = 150          # the network's input, pixels
CHIP_PADDING = 0.25      # get_face_chip_details(shape, 150, 0.25)
SAME_PERSON_DISTANCE = 0.6


# ---- the layout: dlib's C++ templates as Python lists (outermost first) ---------------------------

def _con(n: int, k: int, stride: int) -> LayerSpec:
    return LayerSpec("con", expect={"num_filters": n, "kernel": (k, k), "stride": (stride, stride)})


def _block(n: int, stride: int) -> list[LayerSpec]:
    # block<N,BN,stride,SUB> = BN<con<N,3,3,1,1, relu<BN<con<N,3,3,stride,stride, SUB>>>>>
    return [LayerSpec("affine"), _con(n, 3, 1), LayerSpec("relu"), LayerSpec("affine"), _con(n, 3, stride)]


def _ares(n: int) -> list[LayerSpec]:
    # relu<add_prev1<block<N,affine,1,tag1<SUB>>>>
    return [LayerSpec("relu"), LayerSpec("add_prev", tag=1)] + _block(n, 1) + [LayerSpec("tag", tag=1)]


def _ares_down(n: int) -> list[LayerSpec]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUB>>>>>>>>
    return ([LayerSpec("relu"), LayerSpec("add_prev", tag=2),
             LayerSpec("avg_pool", expect={"window": (2, 2), "stride": (2, 2)}),
             LayerSpec("skip", tag=1), LayerSpec("tag", tag=2)]
            + _block(n, 2) + [LayerSpec("tag", tag=1)])


def face_recognition_layout() -> list[LayerSpec]:
    """``anet_type`` of ``dnn_face_recognition_ex.cpp``: 132 layers, loss first, input last."""
    levels = (_ares_down(256)                                      # level0
              + _ares(256) + _ares(256) + _ares_down(256)          # level1
              + _ares(128) + _ares(128) + _ares_down(128)          # level2
              + _ares(64) + _ares(64) + _ares(64) + _ares_down(64)  # level3
              + _ares(32) + _ares(32) + _ares(32))                 # level4
    return ([LayerSpec("loss_metric"), LayerSpec("fc", expect={"num_outputs": 128}),
             LayerSpec("avg_pool", expect={"window": (0, 0)})]
            + levels
            + [LayerSpec("max_pool", expect={"window": (3, 3), "stride": (2, 2)}), LayerSpec("relu"),
               LayerSpec("affine"), _con(32, 7, 2), LayerSpec("input_rgb_image_sized")])


# ---- the torch network --------------------------------------------------------------------------

def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum over the larger shape, each input zero-padded at its end."""
    shape = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:])]

    def pad(t):
        # F.pad takes (left, right) pairs from the last axis back: pad only on the right/bottom/end
        p = [0, shape[2] - t.shape[3], 0, shape[1] - t.shape[2], 0, shape[0] - t.shape[1]]
        return F.pad(t, p) if any(p) else t
    return pad(a) + pad(b)


class DlibFaceNet(nn.Module):
    """dlib's face-recognition ResNet as a torch module; weights frozen, eval mode.

    ``forward(chips)``: chips ``(N, 3, 150, 150)`` float32, **sRGB** in [0, 1] (what a camera or a
    PNG holds), aligned with :mod:`.face_align` -> descriptors ``(N, 128)`` float32.
    Use :meth:`from_linear` for linear-RGB chips such as renderings.
    """

    def __init__(self, layers: list[DlibLayer]):
        super().__init__()
        self.loss = layers[0].values
        inp = layers[-1].values
        self.chip_size = (inp["rows"], inp["cols"])
        self.register_buffer("mean_rgb", torch.tensor(inp["mean_rgb"], dtype=torch.float32).view(1, 3, 1, 1))
        # Inner to outer, the order data flows. Each step: (kind, tag id, info: module index or pool sizes).
        self.steps: list[tuple[str, int | None, dict]] = []
        self.convs = nn.ModuleList()
        self.affines = nn.ParameterList()
        self.fc = None
        for layer in reversed(layers[1:-1]):
            kind, v = layer.kind, layer.values
            info: dict = {}
            if kind == "con":
                conv = nn.Conv2d(v["weight"].shape[1], v["num_filters"], v["kernel"], v["stride"],
                                 v["padding"], bias=v["bias"] is not None)
                conv.weight.data.copy_(torch.from_numpy(v["weight"]))
                if v["bias"] is not None:
                    conv.bias.data.copy_(torch.from_numpy(v["bias"]))
                info["index"] = len(self.convs)
                self.convs.append(conv)
            elif kind == "affine":
                if not v["conv_mode"]:
                    raise ValueError("affine layers in fully-connected mode are not supported (none in this net)")
                info["index"] = len(self.affines)
                gb = torch.stack([torch.from_numpy(v["gamma"]), torch.from_numpy(v["beta"])])
                self.affines.append(nn.Parameter(gb.view(2, 1, -1, 1, 1)))
            elif kind == "fc":
                self.fc = nn.Linear(v["num_inputs"], v["num_outputs"], bias=v["bias"] is not None)
                self.fc.weight.data.copy_(torch.from_numpy(v["weight_in_out"]).t())  # stored (in, out)
                if v["bias"] is not None:
                    self.fc.bias.data.copy_(torch.from_numpy(v["bias"]))
            elif kind in ("max_pool", "avg_pool"):
                info = dict(v)
            self.steps.append((kind, layer.spec.tag, info))
        self.requires_grad_(False)
        self.eval()

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        if chips.ndim != 4 or chips.shape[1] != 3 or tuple(chips.shape[2:]) != self.chip_size:
            raise ValueError(f"face chips must be (N, 3, {self.chip_size[0]}, {self.chip_size[1]}) sRGB "
                             f"in [0, 1], aligned with face_align; got {tuple(chips.shape)}")
        x = (chips * 255.0 - self.mean_rgb) / 256.0
        tags: dict[int, torch.Tensor] = {}
        for kind, tag, info in self.steps:
            if kind == "tag":
                tags[tag] = x
            elif kind == "skip":
                x = tags[tag]
            elif kind == "add_prev":
                x = add_zero_padded(x, tags[tag])
            elif kind == "con":
                x = self.convs[info["index"]](x)
            elif kind == "affine":
                g, b = self.affines[info["index"]]
                x = x * g + b
            elif kind == "relu":
                x = F.relu(x)
            elif kind == "max_pool":
                x = F.max_pool2d(x, info["window"], info["stride"], info["padding"])
            elif kind == "avg_pool":
                if info["window"] == (0, 0):  # avg_pool_everything
                    x = x.mean(dim=(2, 3), keepdim=True)
                else:
                    x = F.avg_pool2d(x, info["window"], info["stride"], info["padding"],
                                     count_include_pad=False)
            elif kind == "fc":
                x = self.fc(x.flatten(1))
            else:  # pragma: no cover - the layout lists only the kinds above
                raise ValueError(f"layer kind {kind!r} has no torch version")
        return x

    def from_linear(self, chips_linear: torch.Tensor) -> torch.Tensor:
        """Descriptors of linear-RGB chips (renderings): converted to sRGB first, differentiably."""
        return self(linear_to_srgb(chips_linear.clamp(0.0, 1.0)))

    def num_layers(self) -> int:
        """Layers as dlib counts them (loss and input included): 132 for this network."""
        return len(self.steps) + 2


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str) -> DlibFaceNet:
    if device == "cpu":
        return DlibFaceNet(read_file(path, face_recognition_layout()))
    return copy.deepcopy(_load(path, "cpu")).to(device)


def load_face_net(path: str | Path | None = None, device: str | torch.device = "cpu") -> DlibFaceNet:
    """dlib's face-recognition ResNet as a frozen torch module on ``device``, parsed once per process.

    ``path`` defaults to the file of the installed ``face-recognition-models`` package. The module
    is shared by every caller asking for the same file and device: use it, do not change it (call
    ``copy.deepcopy`` first to get one of your own; ``.to()`` on a module moves it in place).
    The 1e-6 agreement with dlib is measured on the CPU; on a GPU, TF32 convolutions
    (``torch.backends.cudnn.allow_tf32``, on by default) round more coarsely (not measured here).
    """
    return _load(str(Path(path) if path is not None else model_path(FACE_RECOGNITION)), str(torch.device(device)))


def descriptor_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between descriptors ``(..., 128)``; below 0.6 means the same person."""
    return (a - b).norm(dim=-1)


def identity_loss(net: DlibFaceNet, rendered_chips_linear: torch.Tensor,
                  photo_descriptor: torch.Tensor) -> torch.Tensor:
    """GANFIT's identity loss: 1 - cosine similarity of the descriptors, averaged over the batch.

    ``rendered_chips_linear``: ``(N, 3, 150, 150)`` linear RGB aligned chips of the rendering;
    ``photo_descriptor``: ``(128,)`` or ``(N, 128)`` descriptor of the photo (no gradient needed).
    """
    d = net.from_linear(rendered_chips_linear)
    return (1.0 - F.cosine_similarity(d, photo_descriptor.expand_as(d), dim=-1)).mean()
