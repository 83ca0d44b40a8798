"""The inference stages of AvatarMe, from the fitted texture to the four render-ready maps.

Each function takes maps (and the shape maps it needs) and a profile, and returns maps::

    T̂   = super_resolve(T, profile)                  (3, h, w) -> (3, H, W)   RCAN, then resampled
    A_D = delight(T̂, shape, profile)                  -> (3, H, W) diffuse albedo, linear RGB in [0, 1]
                                                        (δ(T̂, D_O), or δ(T̂): profile.delight_variant)
    A_S = specular_albedo(A_D, profile)               -> (1, H, W) in [0, 1]
    N_S = specular_normals(A_D, shape, profile)       -> (3, H, W) unit, tangent space
    N_D = diffuse_normals(A_D, shape, profile)        -> (3, H, W) unit, object space

``shape`` is the :class:`~avatarme_edu.geometry.uv_bake.ShapeMaps` of the fitted mesh (depth D_O,
normals N_O and N_T, mask). The networks are fully convolutional but run window by window with
:func:`~avatarme_edu.tiling.sliding_window` (``profile.window_size``, ``window_stride``), blended where
windows overlap, so a 6144x4096 map never has to fit in memory at once. The generator's instance
norm takes its statistics per window, so the sliding window equals a whole-map pass exactly only
where the map fits in one window (``tests/test_stages.py``); elsewhere each window's answer depends a
little on what else the window holds, as in AvatarMe (trained on 512 patches, run on 1536 windows).

``weights``: ``None`` loads the profile's committed file ``avatarme_edu/data/weights/<profile>/<net>.safetensors``;
a path loads that file; an ``nn.Module`` is used as it is. Everything runs on ``profile.device`` and
the result comes back on the input's device.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avatarme_edu.nets.tasks import DELIGHT_VARIANTS, Task, add_priors, get_task, network_input
from avatarme_edu.nets.weights import default_weights_path, load_weights
from avatarme_edu.profiles import Profile
from avatarme_edu.tiling import sliding_window

Weights = str | os.PathLike | nn.Module | None


def load_network(task: Task | str, profile: Profile, weights: Weights = None) -> nn.Module:
    """The network of ``task`` on ``profile.device`` in eval mode (see the module docstring for ``weights``)."""
    task = get_task(task) if isinstance(task, str) else task
    if isinstance(weights, nn.Module):
        return weights.to(profile.torch_device).eval()
    path = Path(weights) if weights is not None else default_weights_path(task, profile)
    if not path.is_file():
        where = "committed" if weights is None else "given"
        raise FileNotFoundError(f"no {where} weights for {task.name!r} ({profile.name} profile) at {str(path)!r}; "
                                f"train them with `{train_command(task.name, profile)}` and pass "
                                f"weights='runs/{task.name}/{task.name}.safetensors'")
    return load_weights(path, task, profile, device=profile.torch_device)


def train_command(name: str, profile: Profile, data: str | None = None) -> str:
    """The ``avatarme-edu train`` command that makes network ``name``'s weights (``delight_no_shape``
    is ``train delight --variant no_shape``), with ``--data data`` when given."""
    train_name = "delight" if name.startswith("delight") else name
    variant = {v: k for k, v in DELIGHT_VARIANTS.items()}.get(name, "depth")
    return (f"avatarme-edu train {train_name}" + (f" --variant {variant}" if variant != "depth" else "")
            + f" --profile {profile.name}" + (f" --data {data}" if data else "") + f" --out runs/{name}")


def pipeline_networks(profile: Profile) -> dict[str, str]:
    """Stage -> the network (weights file ``<name>.safetensors``) that the pipeline runs for it:
    the de-lighter is the profile's ``delight_variant``."""
    if profile.delight_variant not in DELIGHT_VARIANTS:
        raise ValueError(f"unknown delight_variant {profile.delight_variant!r} in profile {profile.name!r}; "
                         f"valid variants are: {', '.join(DELIGHT_VARIANTS)}")
    return {"sr": "sr", "delight": DELIGHT_VARIANTS[profile.delight_variant], "specular_albedo": "specular_albedo",
            "specular_normals": "specular_normals", "diffuse_normals": "diffuse_normals"}


def _check_map(x: torch.Tensor, name: str, channels: int, hw: tuple[int, int] | None = None) -> torch.Tensor:
    if not torch.is_tensor(x) or x.ndim != 3 or x.shape[0] != channels:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be a ({channels}, H, W) map, got {shape}")
    if hw is not None and tuple(x.shape[-2:]) != tuple(hw):
        raise ValueError(f"{name} is {tuple(x.shape[-2:])} but the shape maps are {tuple(hw)}; "
                         "all maps must share one UV layout and size")
    return x


def _windows(net: nn.Module, x: torch.Tensor, profile: Profile, window: int, stride: int, unshuffle: int = 1):
    """Run ``net`` over ``x`` ``(C, H, W)`` in blended windows on the profile's device, without gradients.

    ``unshuffle`` r > 1 is for a network that enlarges its input r times (RCAN): each answer is folded
    into ``r * r`` channels at the input's size (pixel unshuffle), blended there, and unfolded after.
    """
    dev = profile.torch_device

    def fn(w: torch.Tensor) -> torch.Tensor:
        y = net(w.to(dev))
        return F.pixel_unshuffle(y, unshuffle) if unshuffle > 1 else y

    with torch.no_grad():
        y = sliding_window(fn, x.to(dev), window, stride)
    return F.pixel_shuffle(y[None], unshuffle)[0] if unshuffle > 1 else y


def super_resolve(texture: torch.Tensor, profile: Profile, weights: Weights = None,
                  resample: bool = True) -> torch.Tensor:
    """T̂: the fitted texture ``(3, h, w)`` linear RGB, super-resolved by RCAN ``sr_scale`` times.

    Returns ``(3, h * s, w * s)``, then (``resample``) bicubically resampled to ``profile.map_hw`` when
    that differs, as the paper does (x8 of 576x384 is 4608x3072; the maps are 6144x4096). Clamped to
    [0, 1]. Windows are ``window_size / sr_scale`` texels of the input, so each answer is one
    ``window_size`` window of the output.
    """
    _check_map(texture, "texture", 3)
    s = profile.sr_scale
    net = load_network("sr", profile, weights)
    window, stride = max(1, profile.window_size // s), max(1, profile.window_stride // s)
    y = _windows(net, texture.float(), profile, window, stride, unshuffle=s)
    if resample and tuple(y.shape[-2:]) != tuple(profile.map_hw):
        y = F.interpolate(y[None], size=tuple(profile.map_hw), mode="bicubic", align_corners=False)[0]
    return y.clamp(0, 1).to(texture.device)


def _translate(task: Task, maps: dict[str, torch.Tensor], mask: torch.Tensor | None, profile: Profile,
               weights: Weights, device) -> torch.Tensor:
    net = load_network(task, profile, weights)
    x = network_input(task, {k: v[None] for k, v in maps.items()})[0]
    y = _windows(net, x, profile, profile.window_size, profile.window_stride)
    if task.is_normals:  # blending averages unit vectors: make them unit again
        y = y / y.square().sum(0, keepdim=True).add(1e-12).sqrt()
    if mask is not None:
        y = y * mask.to(y.device)
    return y.to(device)


def delight(texture: torch.Tensor, shape, profile: Profile, weights: Weights = None,
            variant: str | None = None) -> torch.Tensor:
    """A_D = δ(T̂, D_O): the diffuse albedo ``(3, H, W)`` from the super-resolved texture and the depth.

    ``variant``: ``"depth"`` (the paper), ``"no_shape"`` (the ablation δ(T̂), ``shape`` may be None) or
    ``"normals_input"`` (N_O instead of D_O); None takes ``profile.delight_variant`` (the cpu profile's
    is ``"no_shape"``, see :mod:`~avatarme_edu.profiles`). Zero outside ``shape.mask``.
    """
    variant = profile.delight_variant if variant is None else variant
    if variant not in DELIGHT_VARIANTS:
        raise ValueError(f"unknown delight variant {variant!r}; valid variants are: {', '.join(DELIGHT_VARIANTS)}")
    task = get_task(DELIGHT_VARIANTS[variant])
    if shape is None and variant != "no_shape":
        raise ValueError(f"delight with variant {variant!r} needs the shape maps")
    _check_map(texture, "texture", 3, shape.hw if shape is not None else None)
    maps = {"texture": texture.float()}
    if shape is not None:
        maps.update(depth=shape.depth, normals_object=shape.normals_object)
    return _translate(task, maps, shape.mask if shape is not None else None, profile, weights, texture.device)


def specular_albedo(diffuse_albedo: torch.Tensor, profile: Profile, weights: Weights = None,
                    mask: torch.Tensor | None = None, means: dict | None = None, level_head=None) -> torch.Tensor:
    """A_S = ψ(A_D): the specular albedo ``(1, H, W)`` in [0, 1] from the diffuse albedo ``(3, H, W)``.

    The network refines the training set's mean specular map (:mod:`~avatarme_edu.nets.tasks`):
    ``means`` (default: ``training_means.safetensors`` beside the weights file) holds it. Its overall
    level is then set by ψ's level head (:mod:`~avatarme_edu.nets.specular_level`), which reads the whole
    face's pores, lines and beard: ``level_head`` None takes the head beside the weights file, else the
    profile's committed one, when there is one for maps of this size; a path or a :class:`~avatarme_edu.nets.specular_level.LevelHead` that one, False none (the
    pipeline's choice at the cpu profile, whose albedo shows no pores; see that module)."""
    _check_map(diffuse_albedo, "diffuse_albedo", 3, mask.shape if mask is not None else None)
    task = get_task("specular_albedo")
    net = load_network(task, profile, weights)  # first: a missing weights file says how to train it
    if means is None:
        from avatarme_edu.lightstage.dataset.means import load_training_means

        folder = Path(weights).parent if isinstance(weights, (str, os.PathLike)) else default_weights_path(task, profile).parent
        means = load_training_means(folder, profile)
    maps = add_priors(task, {"diffuse_albedo": diffuse_albedo.float()[None]}, means)
    if mask is not None:  # a grey-detail input would be taken inside the valid texels, as in training
        maps["mask"] = mask.bool()[None]
    out = _translate(task, {k: v[0] for k, v in maps.items()}, mask, profile, net, diffuse_albedo.device)
    head = _level_head(level_head, profile, tuple(diffuse_albedo.shape[-2:]), weights)
    if head is None:
        return out
    from avatarme_edu.nets.specular_level import set_level

    valid = mask.bool() if mask is not None else diffuse_albedo.amax(0) > 0
    return set_level(out, valid, head.predict(diffuse_albedo, valid))


def _level_head(level_head, profile: Profile, hw: tuple[int, int], weights: Weights = None):
    """The :class:`~avatarme_edu.nets.specular_level.LevelHead` that ``level_head`` names, or None; by
    default the one beside ψ's weights file (as its training means), else the committed one."""
    from avatarme_edu.nets.specular_level import LevelHead, load_level_head

    if level_head is False:
        return None
    if isinstance(level_head, LevelHead):
        return level_head
    if level_head is None:
        folder = Path(weights).parent if isinstance(weights, (str, os.PathLike)) else None
        return find_level_head(folder, profile, hw)
    return load_level_head(level_head)


def find_level_head(weights_dir, profile: Profile, hw: tuple[int, int]):
    """ψ's level head for ``hw`` maps: the one in the folder ``weights_dir`` where it holds one, else the
    profile's committed one; None where there is none, or it was fitted on maps of another size (its
    statistics are per texel)."""
    from avatarme_edu.nets.specular_level import load_level_head

    path = None if weights_dir is None else Path(weights_dir) / "specular_level.safetensors"
    if path is None or not path.is_file():
        path = default_weights_path("specular_level", profile)
    head = load_level_head(path) if path.is_file() else None
    return head if head is not None and tuple(head.map_hw) == tuple(hw) else None


def specular_normals(diffuse_albedo: torch.Tensor, shape, profile: Profile, weights: Weights = None) -> torch.Tensor:
    """N_S = ρ(gray(A_D), N_T): unit specular normals ``(3, H, W)`` in tangent space, zero outside the mask."""
    _check_map(diffuse_albedo, "diffuse_albedo", 3, shape.hw)
    maps = {"diffuse_albedo": diffuse_albedo.float(), "normals_tangent": shape.normals_tangent, "mask": shape.mask}
    return _translate(get_task("specular_normals"), maps, shape.mask, profile, weights, diffuse_albedo.device)


def diffuse_normals(diffuse_albedo: torch.Tensor, shape, profile: Profile, weights: Weights = None) -> torch.Tensor:
    """N_D = σ(gray(A_D), N_O): unit diffuse normals ``(3, H, W)`` in object space, zero outside the mask."""
    _check_map(diffuse_albedo, "diffuse_albedo", 3, shape.hw)
    maps = {"diffuse_albedo": diffuse_albedo.float(), "normals_object": shape.normals_object, "mask": shape.mask}
    return _translate(get_task("diffuse_normals"), maps, shape.mask, profile, weights, diffuse_albedo.device)
