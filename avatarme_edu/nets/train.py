"""Training one of AvatarMe's networks: the loop, its losses, checkpoints with exact resume, a JSON log.

* **RCAN** (``sr``): L1 between the super-resolved patch and the sharp texture (Zhang et al. 2018),
  Adam lr 1e-4, betas (0.9, 0.999); the gradient's norm is clipped at :data:`RCAN_CLIP_NORM` (the log
  keeps it before clipping as ``grad_norm``), so a short run can take a higher rate (the committed
  cpu weights: lr 1e-3).
* **Translation networks**: pix2pixHD's objective - least-squares GAN, feature matching (weight 10)
  and L1 to the target (weight :data:`L1_WEIGHT`), Adam lr 2e-4, betas (0.5, 0.999); one generator
  step, then one discriminator step, per batch, as in pix2pixHD. Texels outside the mask are zeroed
  in both the real and the fake map before the discriminator sees them, so it cannot tell them
  apart by the background. For normals the L1 acts on unit vectors: for the small angles of
  pore/wrinkle detail ``|a - b|`` grows like the angle, so no separate cosine loss is needed.
* **Normals networks** (``Task.adversarial`` False): L1 alone, Adam lr 2e-4, betas (0.5, 0.999). The
  detail they add is a fraction of a degree (the shape normals are 0.2-0.8 degrees from the truth on
  held-out patches); the discriminator rewards pore-like texture wherever it looks plausible, and
  texture that is not aligned with the true pores costs more angle than it adds. Their generators
  add a scaled refinement and read the grey albedo's detail at unit spread (``Task.residual_scale``,
  ``gray_log_detail`` in :mod:`~avatarme_edu.nets.tasks`), so pix2pixHD's learning rate suits them.

**Weight average**: the weights that are validated and saved are an exponential moving average of
the trained ones (decay :data:`EMA_DECAY`, warmed up as ``min(decay, (1 + t) / (10 + t))``). With a
small batch and pix2pixHD's constant learning rate, the last step's weights jitter around the
minimum (the held-out angle of a normals run swung by 10 % between checkpoints); their average
sits nearer its centre, without a learning-rate schedule that would need to know when the run ends.
The average is part of the checkpoint, so resume stays exact.

**Pixel loss** (``pixel_loss``, networks without a discriminator): ``l1`` (RCAN's and pix2pixHD's) or ``l2``,
the mean squared error that PSNR measures. Where the input cannot tell the detail (pores under blur,
noise and JPEG), L1 is minimised by the median of the possible answers and L2 by their mean, which is
what scores best in PSNR. The log keeps both.

**Learning-rate schedule** (``lr_schedule``): ``constant`` (pix2pixHD's, and what a run stopped by
``--max-minutes`` needs) or ``cosine``: the rate falls from its start to zero along half a cosine over the
run's ``steps`` (Loshchilov & Hutter 2017), so the last steps refine instead of jitter; it needs ``steps``
to be the run's real length. The rate is set from the step number before each step, so resume stays exact.

**Precision** (``precision``): ``fp32``, or ``bf16``: the forward passes run under
``torch.autocast`` in bfloat16 (convolutions and matrix products; the weights, their gradients, Adam's
state, the losses and the weight average stay float32). On CPUs with AVX-512 BF16 (and on GPUs) a step
of the cpu RCAN takes about 2/3 of the float32 time, so a 30-minute run does 1.5x the steps. Validation,
the saved weights and inference are float32 either way.

**Augmentation** (``Task.augment``): ψ sees half its training patches' A_D as the pipeline will
make it - without detail finer than the fitted texture's texels, colour level a little off
(:mod:`~avatarme_edu.nets.augment`); validation and inference see the albedo as it is.

**Data**: ``make_batches()`` returns an iterable of batches (dicts of ``(N, C, P, P)`` tensors, see
:mod:`~avatarme_edu.nets.tasks`); it must give the same sequence each time it is called (a seeded
generator). That is all the loop needs, so any loader fits (the light stage's ``PatchDataset``, a
``torch.utils.data.DataLoader``).

**Exact resume**: a checkpoint holds weights, optimiser state, step and random state
(:mod:`~avatarme_edu.nets.checkpoint`); on resume the batch sequence is rebuilt and the batches
already trained on are skipped and the random state is set again after the skipping (a loader may draw
from torch's generator as it starts), so ``N`` steps equal ``N/2`` steps + resume + ``N/2`` steps bit for bit
(on the same machine and thread count), with no assumption about how the loader keeps its state.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable

import torch

from avatarme_edu.nets.augment import pipeline_albedo
from avatarme_edu.nets.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint
from avatarme_edu.nets.losses import FEATURE_MATCHING_WEIGHT, feature_matching_loss, lsgan_loss, masked_l1, masked_mse
from avatarme_edu.nets.tasks import Task, batch_mask, build_network, network_input, network_target
from avatarme_edu.nets.weights import save_weights
from avatarme_edu.profiles import Profile

L1_WEIGHT = 100.0  # pix2pix's weight of the L1 term (Isola et al. 2017)
EMA_DECAY = 0.995  # the saved weights average about the last 200 steps
#: RCAN's gradient-norm ceiling: typical norms are 0.01-0.06 on cpu patches. Without it a run at lr 2e-3
#: diverged after 27 minutes (held-out patches 35.8 -> 15.6 dB within 200 steps).
RCAN_CLIP_NORM = 0.1
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")
PIXEL_LOSSES = ("l1", "l2")
CHECKPOINT_NAME = "checkpoint.safetensors"
LOG_NAME = "log.json"


class Trainer:
    """The networks, optimisers and one training step of a task. ``G`` is the network being trained;
    ``D`` the multi-scale discriminator (translation tasks only). Weights are initialised from ``seed``."""

    def __init__(self, task: Task, profile: Profile, seed: int = 0, lr: float | None = None,
                 precision: str = "fp32", pixel_loss: str = "l1"):
        from avatarme_edu.nets.pix2pixhd import discriminator_from_profile

        if task.augment not in ("", "pipeline_albedo"):
            raise ValueError(f"task {task.name!r}: unknown augmentation {task.augment!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if pixel_loss not in PIXEL_LOSSES:
            raise ValueError(f"pixel_loss must be one of {', '.join(PIXEL_LOSSES)}, got {pixel_loss!r}")
        self.precision, self.pixel_loss = precision, pixel_loss
        self.task, self.profile, self.device = task, profile, profile.torch_device
        torch.manual_seed(seed)
        self.G = build_network(task, profile).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)  # what is validated and saved
        self.updates = 0
        self.D = None
        if task.network == "rcan":
            self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr or 1e-4, betas=(0.9, 0.999))
            self.optimizers = {"G": self.opt_G}
        elif not task.adversarial:
            self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr or 2e-4, betas=(0.5, 0.999))
            self.optimizers = {"G": self.opt_G}
        else:
            self.D = discriminator_from_profile(profile, task.in_channels + task.out_channels).to(self.device).train()
            self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr or 2e-4, betas=(0.5, 0.999))
            self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr or 2e-4, betas=(0.5, 0.999))
            self.optimizers = {"G": self.opt_G, "D": self.opt_D}
        if pixel_loss != "l1" and self.D is not None:
            raise ValueError(f"task {task.name!r} trains with pix2pixHD's L1 term; pixel_loss {pixel_loss!r} "
                             "is for the networks without a discriminator")

    def set_lr_factor(self, factor: float) -> None:
        """Every optimiser's rate = its starting rate x ``factor`` (the schedule's value at this step)."""
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        mods = {"G": self.G, "G_ema": self.G_ema}
        return mods if self.D is None else {**mods, "D": self.D}

    def _average(self) -> None:
        """One step of the weight average (module docstring)."""
        self.updates += 1
        decay = min(EMA_DECAY, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for avg, p in zip(self.G_ema.parameters(), self.G.parameters()):
                avg.lerp_(p, 1.0 - decay)

    def _tensors(self, batch: dict):
        x = network_input(self.task, batch).to(self.device)
        y = network_target(self.task, batch).to(self.device)
        m = batch_mask(self.task, batch)
        return x, y, (m.to(self.device) if m is not None else None)

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The loss terms of one batch without any update (for tests and validation)."""
        x, y, m = self._tensors(batch)
        with torch.no_grad():
            return {"l1": masked_l1(self.G(x), y, m)}

    def _autocast(self):
        """The forward passes' precision (module docstring); backward follows it by itself."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def step(self, batch: dict) -> dict[str, float]:
        """One optimisation step on ``batch``; returns the loss terms as floats."""
        if self.task.augment == "pipeline_albedo":  # training only: validation sees the measured albedo
            batch = pipeline_albedo(batch, "diffuse_albedo", self.profile.sr_scale, self.task.mask)
        x, y, m = self._tensors(batch)
        with self._autocast():
            fake = self.G(x)
        fake = fake.float()  # losses in float32
        l1 = masked_l1(fake, y, m)
        if self.D is None:
            loss = l1 if self.pixel_loss == "l1" else masked_mse(fake, y, m)
            self.opt_G.zero_grad(set_to_none=True)
            loss.backward()
            out = {"loss": loss.item(), "l1": l1.item()}
            if self.pixel_loss == "l2":
                out["l2"] = loss.item()
            if self.task.network == "rcan":
                norm = torch.nn.utils.clip_grad_norm_(self.G.parameters(), RCAN_CLIP_NORM)
                out["grad_norm"] = norm.item()  # before clipping
            self.opt_G.step()
            self._average()
            return out
        w = m.unsqueeze(1).to(fake.dtype) if m is not None else torch.ones_like(fake[:, :1])
        fake_pair, real_pair = torch.cat([x, fake * w], 1), torch.cat([x, y * w], 1)
        # pix2pixHD: every discriminator output comes from the same D, then G steps, then D steps.
        with self._autocast():
            d_fake_for_g = [[f.float() for f in fs] for fs in self.D(fake_pair)]
            d_real = [[f.float() for f in fs] for fs in self.D(real_pair)]
            d_fake = [[f.float() for f in fs] for fs in self.D(fake_pair.detach())]
        gan = lsgan_loss(d_fake_for_g, real=True)
        fm = feature_matching_loss(d_fake_for_g, d_real)
        loss_g = gan + FEATURE_MATCHING_WEIGHT * fm + L1_WEIGHT * l1
        loss_d = 0.5 * (lsgan_loss(d_fake, real=False) + lsgan_loss(d_real, real=True))
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_G.step()
        self.opt_D.zero_grad(set_to_none=True)  # drops the gradients loss_g left in D
        loss_d.backward()
        self.opt_D.step()
        self._average()
        return {"loss": loss_g.item(), "l1": l1.item(), "gan": gan.item(), "feature_matching": fm.item(),
                "d": loss_d.item()}


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The learning rate of step ``step`` (0-based) of ``steps``, as a fraction of the starting rate."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))
    raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}")


def _write_json(obj: dict, path: Path) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def train(task: Task, profile: Profile, make_batches: Callable[[], Iterable[dict]], out: str | os.PathLike,
          steps: int, seed: int = 0, lr: float | None = None, resume: bool = False, checkpoint_every: int = 100,
          validate: Callable[[torch.nn.Module, int], dict] | None = None, val_every: int = 0,
          progress: bool = True, info: dict | None = None, max_minutes: float | None = None,
          lr_schedule: str = "constant", precision: str = "fp32", pixel_loss: str = "l1") -> dict:
    """Train ``task`` for ``steps`` steps in total; writes under ``out``:

    * ``checkpoint.safetensors`` every ``checkpoint_every`` steps and at the end (for ``resume``);
    * ``log.json``: ``{"task", "profile", "seed", "info", "wall_s", "entries": [{"step", "loss", ...,
      "patches_per_s"}, {"step", "val": {...}}]}``;
    * ``<task>.safetensors``: the trained network (:func:`~avatarme_edu.nets.weights.save_weights`).

    ``validate(G, step)`` (every ``val_every`` steps) returns held-out numbers for the log.
    ``max_minutes``: stop early once the training steps have taken this long (a classroom budget on a
    loaded machine); the log's ``steps_done`` and the weights' ``steps`` say where it stopped, and
    ``--steps`` that number repeats the run exactly. ``lr_schedule``, ``precision``, ``pixel_loss``: see
    the module docstring. Returns the log.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an int >= 1, got {checkpoint_every!r}")
    lr_factor(lr_schedule, 0, steps)  # a bad schedule fails before any work
    out = Path(out)
    ckpt, log_path = out / CHECKPOINT_NAME, out / LOG_NAME
    trainer = Trainer(task, profile, seed, lr, precision, pixel_loss)
    log = {"task": task.name, "profile": profile.name, "seed": seed, "steps": steps, "lr_schedule": lr_schedule,
           "precision": precision, "pixel_loss": pixel_loss, "info": info or {}, "wall_s": 0.0, "entries": []}
    step = 0
    if resume:
        if not ckpt.is_file():
            raise FileNotFoundError(f"nothing to resume: no {CHECKPOINT_NAME} in {str(out)!r}")
        _, extra = checkpoint_info(ckpt)
        if (extra.get("task"), extra.get("profile")) != (task.name, profile.name):
            raise ValueError(f"{str(ckpt)!r} is a checkpoint of {extra.get('task')!r} ({extra.get('profile')!r}), "
                             f"not of {task.name!r} ({profile.name!r})")
        step, extra = load_checkpoint(ckpt, trainer.modules, trainer.optimizers)
        trainer.updates = step
        if log_path.is_file():
            old = json.loads(log_path.read_text())
            log["entries"] = [e for e in old["entries"] if e["step"] <= step]
        log["wall_s"] = float(extra.get("wall_s", 0.0))
    elif ckpt.exists():
        raise FileExistsError(f"{str(out)!r} already holds a training run; pass --resume to continue it "
                              "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    def checkpoint():
        extra = {"task": task.name, "profile": profile.name, "seed": seed, "wall_s": log["wall_s"]}
        save_checkpoint(ckpt, trainer.modules, trainer.optimizers, step, extra)
        _write_json(log, log_path)

    batches = iter(make_batches())
    if step:  # skip what was already trained on, then put back the checkpoint's random state: a loader
        # may draw from torch's generator as it starts (DataLoader does), which an uninterrupted run did
        # before its first step and a resumed one does now, before the draws of augmentation
        saved = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
        for _ in itertools.islice(batches, step):
            pass
        torch.set_rng_state(saved[0])
        if saved[1] is not None:
            torch.cuda.set_rng_state_all(saved[1])
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, initial=step, desc=f"train {task.name}", unit="step")
    while step < steps:
        batch = next(batches, None)
        if batch is None:
            raise ValueError(f"the batch source ended after {step} batches; {steps} steps need {steps} batches")
        t0 = time.perf_counter()
        trainer.set_lr_factor(lr_factor(lr_schedule, step, steps))
        losses = trainer.step(batch)
        dt = time.perf_counter() - t0
        log["wall_s"] += dt
        step += 1
        n = int(network_target(task, batch).shape[0])
        log["entries"].append({"step": step, **losses, "patches_per_s": n / dt})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.4f}", patches_s=f"{n / dt:.1f}")
        out_of_time = max_minutes is not None and log["wall_s"] >= 60 * max_minutes
        if validate is not None and val_every and (step % val_every == 0 or step == steps or out_of_time):
            log["entries"].append({"step": step, "val": validate(trainer.G_ema, step)})
        if step % checkpoint_every == 0 or step == steps or out_of_time:
            checkpoint()
        if out_of_time:
            break
    if bar is not None:
        bar.close()
    log["steps_done"] = step
    _write_json(log, log_path)
    save_weights(trainer.G_ema, out / f"{task.name}.safetensors", task, profile,
                 info={"steps": step, "seed": seed, "wall_s": round(log["wall_s"], 1), **(info or {})})
    return log
