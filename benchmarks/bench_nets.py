"""Training speed of every cpu-profile network: patches per second for one full training step.

One step = forward + backward + Adam update of the network (and, for the pix2pixHD translation
networks, the three discriminator passes and its update), on patches of the profile's training size.
The numbers size the 30-minute-per-network budget of the cpu profile.

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_nets.py [--batch 4] [--steps 3] [--threads 1]``
"""

from __future__ import annotations

import argparse
import time

import torch

from avatarme_edu.nets.tasks import TASKS, example_batch
from avatarme_edu.nets.train import Trainer
from avatarme_edu.profiles import get_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    batch = example_batch(args.batch, profile.patch_size, profile.sr_scale, torch.Generator().manual_seed(0))
    print(f"{profile.name} profile on {profile.device}, patch {profile.patch_size}, batch {args.batch}, "
          f"{args.threads} thread(s)")
    print(f"{'network':<24}{'G params':>10}{'s/step':>8}{'patches/s':>11}{'patches in 30 min':>19}")
    for name, task in TASKS.items():
        trainer = Trainer(task, profile, seed=0)
        trainer.step(batch)  # warm-up: first-call allocations
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.step(batch)
        dt = (time.perf_counter() - t0) / args.steps
        n = sum(p.numel() for p in trainer.G.parameters())
        print(f"{name:<24}{n:>10,}{dt:>8.2f}{args.batch / dt:>11.1f}{int(1800 * args.batch / dt):>19,}")


if __name__ == "__main__":
    main()
