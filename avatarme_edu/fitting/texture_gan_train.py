"""Training the texture GAN on the virtual light stage's in-the-wild textures (training identities only).

``avatarme-edu train-gan DATASET --out DIR`` (or ``python -m avatarme_edu.fitting.texture_gan_train``)
reads the fitted textures ``texture_low`` ``(3, H, W)`` of every TRAINING identity of a dataset written
by :func:`~avatarme_edu.lightstage.dataset.make_dataset` - a held-out identity (``id % 5 == 4``) is
never opened, and the loader checks the rule itself rather than trusting the files - and trains
:class:`~avatarme_edu.fitting.texture_gan.TextureGAN` with two losses per step:

* **adversarial** (non-saturating logistic loss, with the R1 gradient penalty on real textures every
  ``r1_every`` steps, "lazy" as in StyleGAN2): random ``z`` must give textures the discriminator
  takes for real ones - this is what makes samples of the latent space plausible;
* **latent reconstruction** (GLO, Bojanowski et al. 2018): every training texture owns a learned
  ``z`` code, and the generator must rebuild the texture from it (masked L1). The fit will *search*
  the latent space for a texture, so the generator is taught directly that every training texture
  is reachable; on a CPU budget of minutes this is what makes the latent fit beat PCA at all.

Every ``checkpoint_every`` steps everything that decides the next step (networks, codes, the three
optimisers' states, the random generator's state, the log) goes to ``DIR/checkpoint.safetensors``;
running the same command again resumes exactly where it stopped (the same numbers as an
uninterrupted run). At the end the generator is written to ``DIR/texture_gan.safetensors``, and with
``--export`` also to the profile's committed weights (with its entry in ``MANIFEST.json``).

The committed cpu weights were trained in two stages: a first run at a constant learning rate, then
``--init-from`` its checkpoint with the reconstruction weighted higher and the learning rates falling
linearly to 0 (``--lr-decay-steps``), which is where the reconstruction settles (see the manifest).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avatarme_edu.fitting.texture_data import load_textures
from avatarme_edu.fitting.texture_gan import (Discriminator, GANConfig, TextureGAN, default_weights_path,
                                              save_texture_gan, update_manifest)
from avatarme_edu.profiles import Profile

CHECKPOINT = "checkpoint.safetensors"
LOG = "log.json"
WEIGHTS = "texture_gan.safetensors"


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training run (all of them are recorded with the weights)."""

    steps: int = 2000
    batch_size: int = 16
    lr_g: float = 2e-3
    lr_d: float = 2e-3
    lr_codes: float = 0.3  # high: each code moves only when its texture is in the batch
    rec_weight: float = 30.0  # weight of the latent reconstruction L1 against the adversarial loss
    r1_gamma: float = 1.0
    r1_every: int = 4
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    lr_decay_steps: int = 0  # > 0: the learning rates fall linearly to 0 over the last this many steps

    def __post_init__(self):
        if not isinstance(self.lr_decay_steps, int) or self.lr_decay_steps < 0:
            raise ValueError(f"lr_decay_steps must be an int >= 0, got {self.lr_decay_steps!r}")
        for k in ("steps", "batch_size", "r1_every", "checkpoint_every", "log_every"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{k} must be an int >= 1, got {v!r}")


# ----------------------------------------------------------------------------------------------
# State: networks, codes, optimisers, random stream - saved and restored exactly
# ----------------------------------------------------------------------------------------------


@dataclass
class _State:
    model: TextureGAN
    disc: Discriminator
    codes: nn.Embedding
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    opt_c: torch.optim.Optimizer
    rng: torch.Generator
    step: int = 0
    wall_s: float = 0.0


def _new_state(cfg: GANConfig, textures: Tensor, masks: Tensor, settings: TrainSettings) -> _State:
    torch.manual_seed(settings.seed)  # the networks' initial weights
    model, disc = TextureGAN(cfg), Discriminator(cfg)
    m = masks[:, None].float()
    model.generator.set_mean_texture((textures * m).sum(0) / m.sum(0).clamp_min(1.0))
    codes = nn.Embedding(textures.shape[0], cfg.z_dim, sparse=True)  # sparse: only the batch's codes move
    betas = (0.0, 0.99)  # StyleGAN's Adam: no momentum, which makes the two-player game oscillate
    opt_g = torch.optim.Adam(model.parameters(), lr=settings.lr_g, betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=settings.lr_d, betas=betas)
    opt_c = torch.optim.SparseAdam(codes.parameters(), lr=settings.lr_codes)
    return _State(model, disc, codes, opt_g, opt_d, opt_c, torch.Generator().manual_seed(settings.seed))


def _optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{pid}.{k}"] = v.contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for name, v in tensors.items():
        if name.startswith(prefix + "."):
            pid, k = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(pid), {})[k] = v
    for name, v in meta["scalars"].items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(state: _State, folder: Path, meta: dict) -> Path:
    """Write every tensor that decides the next step to ``folder/checkpoint.safetensors`` atomically."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v for k, v in state.model.state_dict().items()}
    tensors.update({f"disc.{k}": v for k, v in state.disc.state_dict().items()})
    tensors["codes"] = state.codes.weight.detach()
    opt_meta = {}
    for name in ("opt_g", "opt_d", "opt_c"):
        t, opt_meta[name] = _optimizer_tensors(getattr(state, name), name)
        tensors.update(t)
    tensors["rng"] = state.rng.get_state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    info = {**meta, "step": state.step, "wall_s": state.wall_s, "optimizers": opt_meta}
    f = folder / CHECKPOINT
    tmp = folder / f".tmp-{CHECKPOINT}"
    save_file(tensors, str(tmp), metadata={"info": json.dumps(info)})
    os.replace(tmp, f)
    return f


def checkpoint_info(file: str | os.PathLike) -> dict:
    """What a checkpoint records about its run: step, wall_s, settings, config, ids, init_from."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        info = json.loads(f.metadata()["info"])
    return {k: v for k, v in info.items() if k != "optimizers"}


def init_from_checkpoint(state: _State, file: Path, meta: dict) -> None:
    """Start from another run's networks and codes (fresh optimisers and step 0): a second training stage."""
    from safetensors import safe_open

    if not Path(file).is_file():
        raise FileNotFoundError(f"no checkpoint at {str(file)!r} to start from")
    with safe_open(str(file), framework="pt") as f:
        info = json.loads(f.metadata()["info"])
        tensors = {k: f.get_tensor(k) for k in f.keys() if k.split(".")[0] in ("model", "disc", "codes")}
    for key in ("config", "ids"):
        if info.get(key) != meta[key]:
            raise ValueError(f"{str(file)!r} was trained with other {key}; it cannot start this run")
    state.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state.disc.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("disc.")})
    with torch.no_grad():
        state.codes.weight.copy_(tensors["codes"])


def load_checkpoint(state: _State, file: Path, meta: dict) -> None:
    """Restore ``state`` from a checkpoint; refuses one made with other settings or data."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        info = json.loads(f.metadata()["info"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for key in ("config", "settings", "ids", "init_from"):
        old, new = info.get(key), meta.get(key)
        if key == "settings":  # more steps (or another checkpoint rhythm) may be asked for on resuming
            old = {**dataclasses.asdict(TrainSettings()), **(old or {})}  # settings added later: defaults
            old = {k: v for k, v in old.items() if k not in ("steps", "checkpoint_every")}
            new = {k: v for k, v in new.items() if k not in ("steps", "checkpoint_every")}
        if old != new:
            raise ValueError(f"{str(file)!r} was made with other {key} ({old} != {new}); use another --out "
                             "or start afresh with --no-resume")
    state.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state.disc.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("disc.")})
    with torch.no_grad():
        state.codes.weight.copy_(tensors["codes"])
    for name in ("opt_g", "opt_d", "opt_c"):
        _load_optimizer(getattr(state, name), name, tensors, info["optimizers"][name])
    state.rng.set_state(tensors["rng"])
    state.step, state.wall_s = int(info["step"]), float(info["wall_s"])


# ----------------------------------------------------------------------------------------------
# One step, and the loop
# ----------------------------------------------------------------------------------------------


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error over valid texels: ``pred``/``target`` ``(N, 3, H, W)``, ``mask`` ``(N, H, W)``."""
    m = mask[:, None].to(pred.dtype)
    return ((pred - target).abs() * m).sum() / (m.sum() * pred.shape[1]).clamp_min(1.0)


def train_step(state: _State, textures: Tensor, masks: Tensor, settings: TrainSettings) -> dict:
    """One generator step (adversarial + reconstruction) and one discriminator step; returns the losses."""
    model, disc = state.model, state.disc
    n_levels, B = model.cfg.n_levels, settings.batch_size
    if settings.lr_decay_steps:  # a function of the step alone, so resuming gives the same rates
        left = max(0, settings.steps - state.step)
        factor = min(1.0, left / settings.lr_decay_steps)
        for opt, lr in ((state.opt_g, settings.lr_g), (state.opt_d, settings.lr_d), (state.opt_c, settings.lr_codes)):
            for group in opt.param_groups:
                group["lr"] = lr * factor
    idx = torch.randint(textures.shape[0], (B,), generator=state.rng)
    real, mask = textures[idx], masks[idx]
    z = torch.randn(B, model.cfg.z_dim, generator=state.rng)

    # generator: random z must look real; each texture's own code must rebuild it
    disc.requires_grad_(False)
    w = model.mapping(torch.cat([z, state.codes(idx)]))
    out = model.generator(w[:, None].expand(-1, n_levels, -1))
    fake, rec = out[:B], out[B:]
    adv = F.softplus(-disc(fake)).mean()
    rec_l1 = masked_l1(rec, real, mask)
    state.opt_g.zero_grad(set_to_none=True)
    state.opt_c.zero_grad(set_to_none=True)
    (adv + settings.rec_weight * rec_l1).backward()
    state.opt_g.step()
    state.opt_c.step()
    disc.requires_grad_(True)

    # discriminator: real textures against this step's samples, R1 penalty every r1_every steps
    r1_now = state.step % settings.r1_every == 0
    real_in = real.detach().requires_grad_(r1_now)
    d_real, d_fake = disc(real_in), disc(fake.detach())
    d_loss = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
    r1 = torch.zeros(())
    if r1_now:
        (grad,) = torch.autograd.grad(d_real.sum(), real_in, create_graph=True)
        r1 = grad.square().sum((1, 2, 3)).mean()
        d_loss = d_loss + settings.r1_gamma / 2 * r1 * settings.r1_every
    state.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    state.opt_d.step()
    state.step += 1
    with torch.no_grad():
        mse = (((rec - real) ** 2) * mask[:, None]).sum() / (mask.sum() * 3)
    return {"d_loss": float(d_loss.detach()), "g_adv": float(adv.detach()), "rec_l1": float(rec_l1.detach()),
            "rec_psnr": float(-10 * torch.log10(mse.clamp_min(1e-10))), "r1": float(r1.detach())}


def machine() -> dict:
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def train_texture_gan(data: str | os.PathLike, out: str | os.PathLike, profile: Profile,
                      settings: TrainSettings = TrainSettings(), cfg: GANConfig | None = None,
                      resume: bool = True, progress: bool = True, command: str | None = None,
                      init_from: str | os.PathLike | None = None) -> dict:
    """Train (or resume training) a texture GAN on the training textures of ``data``; returns the summary.

    Writes ``out/checkpoint.safetensors`` (every ``settings.checkpoint_every`` steps and at the end),
    ``out/log.json`` (losses every ``settings.log_every`` steps) and ``out/texture_gan.safetensors``
    (the trained generator). ``resume``: continue from ``out``'s checkpoint when there is one.
    ``init_from``: a checkpoint of an earlier stage to start from (its networks and codes; used when
    ``out`` has no checkpoint of its own yet).
    """
    from tqdm.auto import tqdm

    if profile.torch_device.type != "cpu":
        raise ValueError("train-gan runs on the CPU (its networks are a few hundred thousand parameters); "
                         "use --device cpu")
    data_ = load_textures(data, "train", profile)
    textures, masks, ids = data_["textures"], data_["masks"], data_["ids"]
    cfg = cfg or GANConfig.for_texture(profile.texture_hw)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": cfg.as_dict(), "settings": dataclasses.asdict(settings), "ids": ids,
            "init_from": str(init_from) if init_from else None}
    meta = json.loads(json.dumps(meta))  # tuples as lists, as they come back from the file
    state = _new_state(cfg, textures, masks, settings)
    log: list[dict] = []
    if resume and (out / CHECKPOINT).is_file():
        load_checkpoint(state, out / CHECKPOINT, meta)
        if (out / LOG).is_file():
            log = [r for r in json.loads((out / LOG).read_text())["records"] if r["step"] <= state.step]
    elif init_from is not None:
        init_from_checkpoint(state, Path(init_from), meta)

    def write_log():
        tmp = out / f".tmp-{LOG}"
        tmp.write_text(json.dumps({"settings": meta["settings"], "records": log}, indent=1))
        os.replace(tmp, out / LOG)

    bar = tqdm(total=settings.steps, initial=min(state.step, settings.steps), desc="texture GAN",
               unit="step", disable=not progress)
    t_log = time.perf_counter()
    n_since = 0
    while state.step < settings.steps:
        t0 = time.perf_counter()
        losses = train_step(state, textures, masks, settings)
        state.wall_s += time.perf_counter() - t0
        n_since += settings.batch_size
        bar.update(1)
        if state.step % settings.log_every == 0 or state.step == settings.steps:
            rate = n_since / max(time.perf_counter() - t_log, 1e-9)
            t_log, n_since = time.perf_counter(), 0
            log.append({"step": state.step, **{k: round(v, 5) for k, v in losses.items()},
                        "textures_per_s": round(rate, 2), "wall_s": round(state.wall_s, 1)})
            bar.set_postfix(d=f"{losses['d_loss']:.3f}", adv=f"{losses['g_adv']:.3f}",
                            rec=f"{losses['rec_psnr']:.1f}dB", tex_s=f"{rate:.1f}")
        if state.step % settings.checkpoint_every == 0 or state.step == settings.steps:
            save_checkpoint(state, out, meta)
            write_log()
    bar.close()
    write_log()

    state.model.update_w_stats()
    summary = {
        "command": command, "init_from": meta["init_from"],
        "init_from_run": ({k: v for k, v in checkpoint_info(init_from).items() if k in ("step", "wall_s", "settings")}
                          if init_from else None),
        "data": str(data), "data_command": data_["data_command"], "data_seed": data_["seed"],
        "n_identities": len(set(ids)),
        "n_textures": len(ids), "held_out_rule": "identity id % 5 == 4 never read", "steps": state.step,
        "batch_size": settings.batch_size, "settings": meta["settings"], "config": meta["config"],
        "wall_s": round(state.wall_s, 1), "machine": machine(),
        "final": log[-1] if log else None,
    }
    save_texture_gan(state.model, out / WEIGHTS, summary)
    return summary


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainSettings()
    p.add_argument("data", help="a dataset written by `avatarme-edu dataset` (its training identities are used)")
    p.add_argument("--out", default="outputs/texture_gan", help="checkpoints, log and weights (re-running resumes)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--rec-weight", type=float, default=d.rec_weight, help="latent reconstruction loss weight")
    p.add_argument("--lr-codes", type=float, default=d.lr_codes, help="learning rate of the per-texture codes")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--lr-decay-steps", type=int, default=d.lr_decay_steps,
                   help="learning rates fall linearly to 0 over the last N steps (0: constant)")
    p.add_argument("--init-from", default=None, help="start from this checkpoint of an earlier stage")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if --out holds a checkpoint")
    p.add_argument("--export", action="store_true",
                   help="also write the weights to the profile's committed weights and MANIFEST.json")
    p.add_argument("--no-progress", action="store_true")
    if not any(a.dest == "profile" for a in p._actions):
        from avatarme_edu.profiles import PROFILE_NAMES

        p.add_argument("--profile", choices=PROFILE_NAMES, default=None)
        p.add_argument("--device", default=None)
        p.add_argument("--seed", type=int, default=0)


def add_train_gan_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``train-gan`` to an ``argparse`` sub-parser set (used by ``avatarme-edu``)."""
    p = subparsers.add_parser("train-gan", help="train the texture GAN on a dataset's training textures")
    _add_arguments(p)
    p.set_defaults(func=run_train_gan)
    return p


def run_train_gan(args: argparse.Namespace) -> int:
    from avatarme_edu.profiles import get_profile

    profile = get_profile(args.profile, args.device)
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, rec_weight=args.rec_weight,
                             lr_codes=args.lr_codes, lr_decay_steps=args.lr_decay_steps,
                             seed=args.seed, checkpoint_every=args.checkpoint_every)
    command = getattr(args, "command_line", None) or "avatarme-edu " + " ".join(sys.argv[1:])
    summary = train_texture_gan(args.data, args.out, profile, settings, resume=not args.no_resume,
                                progress=not args.no_progress, command=command, init_from=args.init_from)
    print(f"trained {summary['steps']} steps on {summary['n_textures']} textures of {summary['n_identities']} "
          f"training identities in {summary['wall_s']:.0f} s: {Path(args.out) / WEIGHTS}")
    if args.export:
        from avatarme_edu.fitting.texture_gan import load_texture_gan

        model = load_texture_gan(profile, Path(args.out) / WEIGHTS)
        dest = save_texture_gan(model, default_weights_path(profile), summary)
        # a new model: its entry replaces the old one (whose evaluation was of other weights)
        update_manifest(profile, "texture_gan", {**summary, "file": dest.name}, replace=True)
        print(f"exported to {dest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m avatarme_edu.fitting.texture_gan_train",
                                description="Train the texture GAN (training identities only).")
    _add_arguments(p)
    args = p.parse_args(argv)
    args.command_line = "python -m avatarme_edu.fitting.texture_gan_train " + " ".join(
        sys.argv[1:] if argv is None else argv)
    try:
        return run_train_gan(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
