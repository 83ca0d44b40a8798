"""What goes in and what comes out of each of AvatarMe's networks, read from a batch of maps.

A *batch* is a dict of ``(N, C, P, P)`` float32 tensors keyed by map name (the light-stage dataset's
names, :data:`avatarme_edu.lightstage.dataset.MAP_KEYS`) and ``mask`` ``(N, P, P)`` bool - what
:class:`~avatarme_edu.lightstage.dataset.PatchDataset` yields, and what the stage functions build
from whole maps. The networks and their inputs, as the paper writes them:

=========================  ======================================  ===================  =========
task                       input (channels)                        target               network
=========================  ======================================  ===================  =========
``sr``                     T (3), the fitted texture               T̂, texture x scale   RCAN
``delight``                δ(T̂, D_O): T̂, D_O, log T̂ (3 + 1 + 3)    A_D diffuse albedo   generator
``delight_no_shape``       δ(T̂): T̂, log T̂ (3 + 3)  (ablation)      A_D                  generator
``delight_normals_input``  δ(T̂, N_O): T̂, N_O, log T̂ (3 + 3 + 3)    A_D                  generator
``specular_albedo``        ψ(A_D): A_D, log detail, mean A_S (5)   A_S (1)              generator
``specular_normals``       ρ(gray(A_D), N_T) (1 + 1 + 3)           N_S, tangent space   generator
``diffuse_normals``        σ(gray(A_D), N_O) (1 + 1 + 3)           N_D, object space    generator
=========================  ======================================  ===================  =========

The generators refine an input map (``residual``: the texture, the shape normals, the mean specular
map; see :mod:`~avatarme_edu.nets.pix2pixhd`), so untrained they return the baseline.

**The specular albedo's UV prior.** A patch does not know where on the face it lies, and the specular
albedo depends on the place far more than on the diffuse colour (oily T-zone, wet lips; skin tone
does not change it, ``lightstage/skin_params.py``). So ψ also sees the training identities' mean
specular map at the same texels (``specular_albedo_prior``, from ``training_means.safetensors``,
:mod:`~avatarme_edu.lightstage.dataset.means`) and refines it: what the diffuse albedo shows - hair,
pores, wrinkle floors - moves the answer away from the mean.

Encoding: the generator sees values in [-1, 1] as in pix2pixHD - colour maps, grey and depth are
mapped ``2x - 1``, normals are already there. The normals networks see gray(A_D) twice: as it is, and
the local detail of its log at unit spread (``gray_log_detail``) - the same information, at the scale of
what they must read from it: a pore or wrinkle floor darkens the albedo by a fraction, whatever the
skin tone. ψ reads that detail too, beside A_D in colour (the pores' depth tells the sebum). De-lighting
reads the texture also as its log (``log_signed``): light and exposure multiply. RCAN sees the texture as
it is (linear RGB in [0, 1]).
Outputs are maps in the project's convention (albedo in [0, 1], unit normals), see the generator's
output heads in :mod:`~avatarme_edu.nets.pix2pixhd`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from avatarme_edu.color import luminance
from avatarme_edu.imaging import gaussian_blur
from avatarme_edu.profiles import Profile

#: How an input map is encoded for the network: ``(batch key, encoding)``.
ENCODINGS = ("as_is", "signed", "log_signed", "gray_signed", "gray_detail", "gray_log_detail")

#: ``gray_detail``: the grey map's high-pass (minus its Gaussian blur of :data:`DETAIL_SIGMA` texels),
#: divided by :data:`DETAIL_STD`, the high-pass's spread on the cpu training patches (about 0.05 in the
#: ``2x - 1`` encoding), so the pore and wrinkle trace reaches the network at unit size rather than as a
#: ripple of a few hundredths on the albedo's much larger level (see ``results/reflectance_training.md``).
DETAIL_SIGMA = 2.0
DETAIL_STD = 0.05

#: ``gray_log_detail``: the same high-pass taken on ``log(gray + LOG_DETAIL_FLOOR)``, divided by its spread
#: on the cpu training patches (about 0.1). A pore or wrinkle floor *darkens the albedo by a fraction*
#: (``lightstage/skin.py``), so the log's detail tells the relief's depth whatever the skin tone; the plain
#: high-pass is weaker on dark skin. Per 128-texel training patch, a linear reader of the log detail
#: explains 38 % of oiliness's variance, of the plain detail 13 % (``benchmarks/sebum_trace_patches.py``).
LOG_DETAIL_FLOOR = 0.01
LOG_DETAIL_STD = 0.1

#: ``log_signed``: ``1 + log(x + LOG_DETAIL_FLOOR) / LOG_SCALE``, so 0 -> -1, 0.1 -> 0, 1 -> 1. Light and
#: exposure *multiply* the albedo: in the log they add, and a layer without normalisation (the global
#: branch, ``pix2pixhd.py``) can read a level or a colour ratio from it linearly.
LOG_SCALE = -0.5 * math.log(LOG_DETAIL_FLOOR)


@dataclass(frozen=True)
class Task:
    """One network: its input maps (in channel order), its target map and its architecture."""

    name: str
    network: str  # "rcan" or "generator"
    inputs: tuple[tuple[str, str], ...]  # (batch key, encoding)
    target: str
    out_channels: int
    output: str = "unit_interval"  # the generator's output head
    paper: str = ""  # the paper's notation
    residual: str = ""  # the input map the output refines (pix2pixhd's residual output), "" for none
    mask: str = "mask"  # the batch key of the valid texels
    adversarial: bool = True  # trained with pix2pixHD's GAN and feature matching, else L1 alone (see train.py)
    shortcut: bool = False  # the generator's full-resolution input-to-output path (pix2pixhd.py)
    residual_scale: float = 1.0  # the refinement's unit (pix2pixhd.py): about the size of what it adds
    residual_mode: str = "add"  # "multiply": a log-ratio on the input map (de-lighting, pix2pixhd.py)
    global_branch: bool = False  # a per-window offset from un-normalised pooled features (pix2pixhd.py)
    augment: str = ""  # "pipeline_albedo": half the training patches' A_D as the pipeline makes it (augment.py)

    @property
    def residual_channel(self) -> int | None:
        """The first input channel of :attr:`residual`'s map, or None."""
        if not self.residual:
            return None
        c = 0
        for key, enc in self.inputs:
            if key == self.residual:
                return c
            c += 1 if enc.startswith("gray") else _CHANNELS[key]
        raise ValueError(f"task {self.name!r}: residual map {self.residual!r} is not one of its inputs")

    @property
    def in_channels(self) -> int:
        return sum(1 if enc.startswith("gray") else _CHANNELS[key] for key, enc in self.inputs)

    @property
    def keys(self) -> tuple[str, ...]:
        """The dataset keys this task reads (inputs, target and the mask; not the priors, see :func:`add_priors`)."""
        return tuple(dict.fromkeys([k for k, _ in self.inputs if k not in PRIOR_KEYS] + [self.target, self.mask]))

    @property
    def priors(self) -> tuple[str, ...]:
        """The inputs that are training-set statistics (:data:`PRIOR_KEYS`), added by :func:`add_priors`."""
        return tuple(k for k, _ in self.inputs if k in PRIOR_KEYS)

    @property
    def is_normals(self) -> bool:
        return self.output == "unit_vectors"


_CHANNELS = {"specular_albedo_prior": 1, "texture": 3, "texture_low": 3, "texture_sr": 3, "diffuse_albedo": 3, "specular_albedo": 1, "diffuse_normals": 3,
             "specular_normals": 3, "normals_object": 3, "normals_tangent": 3, "depth": 1, "position": 3}

#: Inputs that are statistics of the training identities in UV, not maps of the subject: batch key ->
#: entry of ``training_means.safetensors`` (:mod:`~avatarme_edu.lightstage.dataset.means`).
PRIOR_KEYS = {"specular_albedo_prior": "specular_albedo_map"}

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("sr", "rcan", (("texture_low", "as_is"),), "texture", 3, "linear", "T -> T̂ (RCAN)"),
    Task("delight", "generator", (("texture", "signed"), ("depth", "signed"), ("texture", "log_signed")),
         "diffuse_albedo", 3, paper="δ(T̂, D_O) -> A_D", residual="texture", residual_mode="multiply",
         global_branch=True),
    Task("delight_no_shape", "generator", (("texture", "signed"), ("texture", "log_signed")), "diffuse_albedo",
         3, paper="δ(T̂) -> A_D", residual="texture", residual_mode="multiply", global_branch=True),
    Task("delight_normals_input", "generator", (("texture", "signed"), ("normals_object", "as_is"),
                                                ("texture", "log_signed")),
         "diffuse_albedo", 3, paper="δ(T̂, N_O) -> A_D", residual="texture", residual_mode="multiply",
         global_branch=True),
    Task("specular_albedo", "generator", (("diffuse_albedo", "signed"), ("diffuse_albedo", "gray_log_detail"),
                                          ("specular_albedo_prior", "signed")),
         "specular_albedo", 1, paper="ψ(A_D) -> A_S, refining the training set's mean map",
         residual="specular_albedo_prior", global_branch=True, adversarial=False, augment="pipeline_albedo"),
    Task("specular_normals", "generator", (("diffuse_albedo", "gray_signed"), ("diffuse_albedo", "gray_log_detail"),
                                                             ("normals_tangent", "as_is")),
         "specular_normals", 3, "unit_vectors", "ρ(gray(A_D), N_T) -> N_S", residual="normals_tangent",
         adversarial=False, shortcut=True, residual_scale=0.02),
    Task("diffuse_normals", "generator", (("diffuse_albedo", "gray_signed"), ("diffuse_albedo", "gray_log_detail"),
                                                            ("normals_object", "as_is")),
         "diffuse_normals", 3, "unit_vectors", "σ(gray(A_D), N_O) -> N_D", residual="normals_object",
         adversarial=False, shortcut=True, residual_scale=0.005),
)}

#: The ``avatarme-edu train`` names: the five networks, and the de-lighting variants.
TRAIN_NAMES = ("sr", "delight", "specular_albedo", "specular_normals", "diffuse_normals")
DELIGHT_VARIANTS = {"depth": "delight", "no_shape": "delight_no_shape", "normals_input": "delight_normals_input"}


#: Super-resolution where the maps are not the texture x ``sr_scale`` (the paper: x8 of 576x384 is 4608x3072,
#: the maps 6144x4096): RCAN learns the texture at ``profile.sr_hw`` (the dataset's ``SR_KEYS`` pairs).
SR_PAIRS = Task("sr", "rcan", (("texture_low", "as_is"),), "texture_sr", 3, "linear", "T -> T̂ at sr_hw (RCAN)",
                mask="mask_low")


def task_for_profile(task: Task, profile: Profile) -> Task:
    """The task as the profile's dataset serves it: :data:`SR_PAIRS` for ``sr`` when ``map_hw != sr_hw``."""
    if task.name == "sr" and tuple(profile.map_hw) != tuple(profile.sr_hw):
        return SR_PAIRS
    return task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown network {name!r}; valid networks are: {', '.join(TASKS)}")
    return TASKS[name]


def _batched(x: torch.Tensor, key: str) -> torch.Tensor:
    if not torch.is_tensor(x) or x.ndim != 4:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"batch[{key!r}] must be an (N, C, H, W) tensor, got {shape}")
    return x.float()


def _get(batch: dict, key: str, task: Task) -> torch.Tensor:
    if key not in batch:
        raise ValueError(f"network {task.name!r} needs the map {key!r}, which the batch does not hold "
                         f"(it holds: {', '.join(sorted(k for k in batch if torch.is_tensor(batch[k])))})")
    return _batched(batch[key], key)


def gray_detail(gray: torch.Tensor, mask: torch.Tensor | None = None, spread: float = DETAIL_STD) -> torch.Tensor:
    """``(N, 1, H, W)``: the grey map's high-pass divided by ``spread`` (:data:`DETAIL_STD`): unit size.

    With ``mask`` ``(N, H, W)`` bool the blur averages valid texels only and the detail is 0 outside:
    the step from skin to the empty background (and across UV seams) is not detail, and would
    otherwise be read as a deep wrinkle along every border."""
    if mask is None or not torch.is_tensor(mask) or tuple(mask.shape[-2:]) != tuple(gray.shape[-2:]):
        return (gray - gaussian_blur(gray, DETAIL_SIGMA)) / spread
    mask = mask.reshape(gray.shape[0], *gray.shape[-2:]).bool()
    blurred = torch.stack([gaussian_blur(g, DETAIL_SIGMA, m) for g, m in zip(gray, mask)])
    return (gray - blurred) * mask[:, None] / spread


def gray_log_detail(gray: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, 1, H, W)``: the high-pass of ``log(gray + LOG_DETAIL_FLOOR)`` at unit spread
    (:data:`LOG_DETAIL_STD`), ``gray`` in [0, 1]; masked as :func:`gray_detail`. A floor that darkens the
    albedo by a fraction gives the same value on light and dark skin."""
    return gray_detail(torch.log(gray.clamp(min=0) + LOG_DETAIL_FLOOR), mask, LOG_DETAIL_STD)


def add_priors(task: Task, batch: dict, means: dict[str, torch.Tensor]) -> dict:
    """``batch`` with the task's prior maps added, cut from ``means`` (the training means, maps
    ``(C, H, W)`` at ``map_hw``) where each patch lies: at ``batch["corner"]`` ``(N, 2)`` (top, left), as
    :class:`~avatarme_edu.lightstage.dataset.PatchDataset` gives it, or the whole map when the batch
    holds whole maps (no ``corner``)."""
    if not task.priors:
        return batch
    target = _get(batch, task.target if task.target in batch else task.inputs[0][0], task)
    n, (h, w) = target.shape[0], target.shape[-2:]
    out = dict(batch)
    for key in task.priors:
        prior = means[PRIOR_KEYS[key]].float()
        if "corner" not in batch:
            if tuple(prior.shape[-2:]) != (h, w):
                raise ValueError(f"the training means' {PRIOR_KEYS[key]!r} is {tuple(prior.shape[-2:])}, the maps "
                                 f"{(h, w)}: use the means of the profile the maps were made with")
            out[key] = prior.expand(n, *prior.shape).to(target.device)
            continue
        corners = batch["corner"].reshape(n, 2).tolist()
        out[key] = torch.stack([prior[:, t:t + h, l:l + w] for t, l in corners]).to(target.device)
    return out


def network_input(task: Task, batch: dict) -> torch.Tensor:
    """``(N, in_channels, H, W)``: the task's input maps, encoded and concatenated in order."""
    parts = []
    for key, enc in task.inputs:
        x = _get(batch, key, task)
        if enc == "gray_signed":
            x = luminance(x) * 2 - 1
        elif enc == "gray_detail":
            x = gray_detail(luminance(x) * 2 - 1, batch.get(task.mask))
        elif enc == "gray_log_detail":
            x = gray_log_detail(luminance(x), batch.get(task.mask))
        elif enc == "signed":
            x = x * 2 - 1
        elif enc == "log_signed":
            x = 1 + torch.log(x.clamp(min=0) + LOG_DETAIL_FLOOR) / LOG_SCALE
        parts.append(x)
    return torch.cat(parts, 1)


def network_target(task: Task, batch: dict) -> torch.Tensor:
    """``(N, out_channels, H', W')``: the map the network must produce (``H' = H * scale`` for ``sr``)."""
    return _get(batch, task.target, task)


def batch_mask(task: Task, batch: dict) -> torch.Tensor | None:
    """``(N, H', W')`` bool valid texels of the target, or None when the batch has no mask.

    A mask coarser than the target (``mask_low`` of super-resolution pairs) is enlarged: each of its
    texels covers ``r x r`` target texels."""
    m = batch.get(task.mask)
    if m is None:
        return None
    if m.ndim == 4:  # (N, 1, H, W) masks are accepted too
        m = m[:, 0]
    t = batch.get(task.target)
    if torch.is_tensor(t) and tuple(m.shape[-2:]) != tuple(t.shape[-2:]):
        m = torch.nn.functional.interpolate(m[:, None].float(), size=tuple(t.shape[-2:]), mode="nearest")[:, 0]
    return m.bool()


def example_batch(n: int, patch: int, sr_scale: int, generator: torch.Generator) -> dict:
    """A batch of random maps with every key the tasks read: ``(n, C, patch, patch)`` float32 (unit
    vectors for normals, [0, 1] otherwise), ``texture_low`` at ``patch / sr_scale``, an all-true
    ``mask`` ``(n, patch, patch)``. For tests and speed measurements, where content does not matter."""
    def rand(c, p=patch):
        return torch.rand(n, c, p, p, generator=generator)

    def unit():
        v = torch.randn(n, 3, patch, patch, generator=generator)
        return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return {"texture": rand(3), "texture_low": rand(3, patch // sr_scale), "diffuse_albedo": rand(3),
            "specular_albedo_prior": rand(1),
            "specular_albedo": rand(1), "diffuse_normals": unit(), "specular_normals": unit(),
            "normals_object": unit(), "normals_tangent": unit(), "depth": rand(1),
            "position": rand(3), "mask": torch.ones(n, patch, patch, dtype=torch.bool)}


def build_network(task: Task, profile: Profile) -> nn.Module:
    """The task's network at the profile's configuration (weights freshly initialised)."""
    from avatarme_edu.nets.pix2pixhd import generator_from_profile
    from avatarme_edu.nets.rcan import rcan_from_profile

    if task.network == "rcan":
        return rcan_from_profile(profile, task.in_channels, task.out_channels)
    return generator_from_profile(profile, task.in_channels, task.out_channels, task.output, task.residual_channel,
                                  task.shortcut, task.residual_scale, task.residual_mode, task.global_branch)
