"""pix2pixHD image translation (Wang et al., CVPR 2018): the global generator and multi-scale PatchGANs.

AvatarMe turns one UV map into another (texture -> diffuse albedo, albedo -> specular albedo, grey
albedo + shape normals -> detail normals) with pix2pixHD's *global generator*, trained on patches and
run on large windows at test time (:func:`avatarme_edu.tiling.sliding_window`).

**Global generator** ``G`` (an encoder - residual bottleneck - decoder, no skip connections):

* 7x7 conv to ``ngf`` channels (reflection padding), instance norm, ReLU;
* ``n_down`` stride-2 3x3 convs, each doubling the channels (64 -> 1024 in the paper);
* ``n_blocks`` residual blocks at the bottleneck width (reflection padding, conv-IN-ReLU-conv-IN);
* ``n_down`` transposed convs back up, halving the channels;
* 7x7 conv to the output channels, then the output head (below).

Instance norm without learned scale/shift, as in pix2pixHD. Paper profile (ngf 64, 4 down, 9 blocks,
3 in, 3 out): 182,443,267 parameters (worked out in ``tests/nets/test_pix2pixhd.py``), 9 x 2 convs of
1024 x 1024 x 3 x 3 holding 93% of them.

**Output heads** (the original ends with tanh on [-1, 1] images): ``"unit_interval"`` maps tanh to
[0, 1] for albedos (our maps are linear RGB in [0, 1]); ``"unit_vectors"`` normalises the three
output channels per texel, so predicted normals are unit vectors by construction.

**Residual output** (``residual=c``, this project's choice for the cpu profile): the output refines
the input map that starts at channel ``c`` - the texture for de-lighting, the shape normals for the
normals networks - ``A = clamp(T + y, 0, 1)`` (the texture decoded from its ``2x - 1`` encoding),
``N = normalize(N_shape + y)``. The last convolution starts at zero, so an untrained network returns
its input map: the ``texture`` / ``shape_normals`` baseline, and training only has to learn what
differs (the shading to remove, the pore and wrinkle slopes to add) - a few thousand patches on a
cpu are not enough to learn the identity map as well.

**Multiplicative residual** (``residual_mode="multiply"``, de-lighting): light multiplies the albedo,
so the network predicts a per-texel log-ratio, ``A = (T + 0.01) exp(y) - 0.01``: the same shadow is the
same ``y`` on dark and on light skin, which an added correction is not (the instance norm hides the
absolute level from the decoder).

**Shortcut** (``shortcut=True``, the normals networks): a 7x7 convolution from the input straight to
the output at full resolution, added to the decoder's answer. Pore and wrinkle slopes are a texel or
two wide; the encoder-decoder sees them only through its 1/2^n_down bottleneck, while a linear
reader of the grey albedo's local gradients already explains a part of them
(``benchmarks/albedo_detail_trace.py``). Zero at the start, like the residual output.

**Residual scale** (``residual_scale``, the normals networks): the refinement is multiplied by a
constant before it is added, ``N = normalize(N_shape + s * y)``. Pore and wrinkle slopes move the
normal by a fraction of a degree (s = 0.02 rad is about 1 degree): without the scale, one Adam step at
pix2pixHD's learning rate moves the answer by more than the whole detail, and the network dithers
around the shape normals instead of learning them (the first committed cpu weights had to use a 10x
smaller learning rate, and learned 0.6 % in 4 minutes).

**Global branch** (``global_branch=True``, specular albedo and de-lighting on the cpu profile): instance
norm removes every feature map's mean and spread over the window, so the decoder cannot make its
answer brighter or darker as a whole according to what the window shows - yet that is the question for
ψ (how oily is this face? the whole map is higher or lower, and the clue is spread over the window:
age, pores, beard) and for δ (how strong and what colour was the light?). A small encoder *without*
normalisation (3x3 conv, two 4x4 stride-4 convs, ReLUs) is averaged over the window and a linear layer
turns it into one offset per output channel, added to the refinement (a log-gain per channel for the
multiplicative residual: an exposure and white balance). Zero at the start, like the residual output.

**Discriminator** ``D``: ``n_discriminators`` PatchGANs (3 stride-2/1 4x4 conv layers, ndf 64, leaky
ReLU 0.2) that see the (input, output) pair at full, 1/2, 1/4... resolution; each returns its
intermediate features too, for the feature-matching loss (:mod:`avatarme_edu.nets.losses`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatarme_edu.profiles import Profile

OUTPUT_HEADS = ("unit_interval", "unit_vectors", "linear")
RESIDUAL_MODES = ("add", "multiply")
DARK = 0.01  # the multiplicative residual's offset: a black input texel can still be brightened


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)


class ResnetBlock(nn.Module):
    """``x + IN(conv(relu(IN(conv(x)))))`` with reflection padding; channels unchanged."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels),
                                  nn.ReLU(inplace=True),
                                  nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GlobalGenerator(nn.Module):
    """``(N, in_channels, H, W) -> (N, out_channels, H, W)`` for any ``H, W``.

    Sides that are not a multiple of ``2 ** n_down`` are reflection-padded before the encoder and
    cropped after the decoder, so every map size works (the stride-2 layers need it).
    """

    def __init__(self, in_channels: int, out_channels: int, ngf: int = 64, n_down: int = 4, n_blocks: int = 9,
                 output: str = "unit_interval", residual: int | None = None, shortcut: bool = False,
                 residual_scale: float = 1.0, residual_mode: str = "add", global_branch: bool = False):
        super().__init__()
        if residual_mode not in RESIDUAL_MODES:
            raise ValueError(f"unknown residual_mode {residual_mode!r}; valid modes are: {', '.join(RESIDUAL_MODES)}")
        if output not in OUTPUT_HEADS:
            raise ValueError(f"unknown output head {output!r}; valid heads are: {', '.join(OUTPUT_HEADS)}")
        if output == "unit_vectors" and out_channels != 3:
            raise ValueError(f"the unit_vectors head needs 3 output channels, got {out_channels}")
        if residual is not None and not 0 <= residual <= in_channels - out_channels:
            raise ValueError(f"residual input channels {residual}..{residual + out_channels - 1} do not fit in "
                             f"{in_channels} input channels")
        self.config = dict(in_channels=in_channels, out_channels=out_channels, ngf=ngf, n_down=n_down,
                           n_blocks=n_blocks, output=output)
        if residual is not None:  # only then, so configurations saved before it still load
            self.config["residual"] = residual
        if shortcut:
            self.config["shortcut"] = True
        if residual_scale != 1.0:
            self.config["residual_scale"] = float(residual_scale)
        if residual_mode != "add":
            self.config["residual_mode"] = residual_mode
        if global_branch:
            self.config["global_branch"] = True
        self.residual_mode = residual_mode
        self.output, self.multiple, self.residual = output, 2 ** n_down, residual
        self.residual_scale = float(residual_scale)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), _norm(ngf),
                                   nn.ReLU(inplace=True)]
        for i in range(n_down):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), _norm(2 * c), nn.ReLU(inplace=True)]
        c = ngf * 2 ** n_down
        layers += [ResnetBlock(c) for _ in range(n_blocks)]
        for i in range(n_down):
            c = ngf * 2 ** (n_down - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1), _norm(c // 2),
                       nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7)]
        if residual is not None:  # untrained == the input map (see the module docstring)
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        self.model = nn.Sequential(*layers)
        # a full-resolution path from input to output (zero at the start): detail at the texel scale
        # that the 2^n_down bottleneck cannot carry (see the module docstring)
        self.shortcut = None
        if shortcut:
            self.shortcut = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, out_channels, 7))
            nn.init.zeros_(self.shortcut[1].weight)
            nn.init.zeros_(self.shortcut[1].bias)
        # one offset per output channel from un-normalised features pooled over the window (docstring)
        self.global_branch = None
        if global_branch:
            self.global_branch = nn.Sequential(
                nn.Conv2d(in_channels, ngf, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(ngf, 2 * ngf, 4, stride=4), nn.ReLU(inplace=True),
                nn.Conv2d(2 * ngf, 2 * ngf, 4, stride=4), nn.ReLU(inplace=True),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * ngf, out_channels))
            nn.init.zeros_(self.global_branch[-1].weight)
            nn.init.zeros_(self.global_branch[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        y = self.model(x)[..., :h, :w]
        if self.shortcut is not None:
            y = y + self.shortcut(x)[..., :h, :w]
        if self.global_branch is not None:
            y = y + self.global_branch(x)[:, :, None, None]
        if self.residual is not None:
            y = y * self.residual_scale
            base = x[:, self.residual:self.residual + y.shape[1], :h, :w]
            if self.output == "unit_interval":  # the base map arrives encoded 2x - 1
                base = 0.5 * (base + 1.0)
                if self.residual_mode == "multiply":  # light scales the albedo: a log-ratio per texel
                    return ((base + DARK) * torch.exp(y) - DARK).clamp(0.0, 1.0)
                return (base + y).clamp(0.0, 1.0)
            y = base + y
        if self.output == "unit_interval":
            return 0.5 * (torch.tanh(y) + 1.0)
        if self.output == "unit_vectors":
            return y / y.square().sum(1, keepdim=True).add(1e-12).sqrt()
        return y


class PatchDiscriminator(nn.Module):
    """PatchGAN with ``n_layers`` stride-2 convs: ``(N, C, H, W) ->`` list of features, the last one
    ``(N, 1, h, w)`` real/fake scores, one per overlapping patch (70x70 texels for 3 layers)."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        pad = 2  # ceil((4 - 1) / 2), as in pix2pixHD
        blocks = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=pad), nn.LeakyReLU(0.2, True))]
        nf = ndf
        for i in range(1, n_layers + 1):
            prev, nf = nf, min(nf * 2, 512)
            stride = 2 if i < n_layers else 1
            blocks.append(nn.Sequential(nn.Conv2d(prev, nf, 4, stride=stride, padding=pad), _norm(nf),
                                        nn.LeakyReLU(0.2, True)))
        blocks.append(nn.Sequential(nn.Conv2d(nf, 1, 4, stride=1, padding=pad)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``n_discriminators`` PatchGANs on the input at full, 1/2, 1/4... resolution.

    Returns one feature list per scale (finest first). The coarser discriminators see more of the
    map per patch (global consistency), the finest one judges texture detail.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, n_discriminators: int = 2):
        super().__init__()
        self.config = dict(in_channels=in_channels, ndf=ndf, n_layers=n_layers, n_discriminators=n_discriminators)
        self.scales = nn.ModuleList([PatchDiscriminator(in_channels, ndf, n_layers) for _ in range(n_discriminators)])

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(d(x))
        return out


def generator_from_profile(profile: Profile, in_channels: int, out_channels: int,
                           output: str = "unit_interval", residual: int | None = None,
                           shortcut: bool = False, residual_scale: float = 1.0,
                           residual_mode: str = "add", global_branch: bool = False) -> GlobalGenerator:
    """The profile's global generator (``gen_ngf``, ``gen_downsample``, ``gen_blocks``)."""
    return GlobalGenerator(in_channels, out_channels, profile.gen_ngf, profile.gen_downsample, profile.gen_blocks,
                           output, residual, shortcut, residual_scale, residual_mode, global_branch)


def discriminator_from_profile(profile: Profile, in_channels: int, ndf: int | None = None) -> MultiscaleDiscriminator:
    """The profile's multi-scale discriminator for (input, output) pairs of ``in_channels`` in all.

    ndf is 64 in the paper; the cpu profile scales it with the generator (``gen_ngf``), so the
    discriminator does not dwarf a small generator.
    """
    ndf = ndf or (64 if profile.name == "paper" else profile.gen_ngf)
    return MultiscaleDiscriminator(in_channels, ndf, 3, profile.n_discriminators)
