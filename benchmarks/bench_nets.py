"""Training speed of every cpu-profile network: patches per second for one full training step.

One step = forward + backward + Adam update of the network (and, for the pix2pixHD translation
networks, the three discriminator passes and its update), on patches of the profile's training size.
The numbers size the 30-minute-per-network budget of the cpu profile. Each network is timed in float32
and with ``train --precision bf16`` (forward passes under bfloat16 autocast), side by side, and the ratio
printed: below 1 where the CPU has bfloat16 hardware (AVX-512 BF16, AMX), above 1 where it is emulated.

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_nets.py [--batch 4] [--steps 3] [--threads 1]
[--networks sr,delight]``
"""

from __future__ import annotations

import argparse
import time

import torch

from avatarme_edu.nets.tasks import TASKS, example_batch
from avatarme_edu.nets.train import PRECISIONS, Trainer
from avatarme_edu.nets.train_command import machine_description
from avatarme_edu.profiles import get_profile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--networks", default=",".join(TASKS), help="comma-separated task names (default: all)")
    args = ap.parse_args()
    unknown = sorted(set(args.networks.split(",")) - set(TASKS))
    if unknown:
        ap.error(f"unknown networks {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    torch.set_num_threads(args.threads)
    profile = get_profile(args.profile)
    batch = example_batch(args.batch, profile.patch_size, profile.sr_scale, torch.Generator().manual_seed(0))
    print(f"{profile.name} profile on {profile.device}, patch {profile.patch_size}, batch {args.batch}, "
          f"{args.threads} thread(s); {machine_description(profile)}")
    print(f"{'network':<24}{'G params':>10}{'fp32 s/step':>13}{'bf16 s/step':>13}{'bf16/fp32':>11}"
          f"{'fp32 patches in 30 min':>24}")
    for name in args.networks.split(","):
        task = TASKS[name]
        seconds = {}
        for precision in PRECISIONS:
            trainer = Trainer(task, profile, seed=0, precision=precision)
            trainer.step(batch)  # warm-up: first-call allocations
            t0 = time.perf_counter()
            for _ in range(args.steps):
                trainer.step(batch)
            seconds[precision] = (time.perf_counter() - t0) / args.steps
        n = sum(p.numel() for p in trainer.G.parameters())
        fp32, bf16 = seconds["fp32"], seconds["bf16"]
        print(f"{name:<24}{n:>10,}{fp32:>13.3f}{bf16:>13.3f}{bf16 / fp32:>11.2f}{int(1800 * args.batch / fp32):>24,}")


if __name__ == "__main__":
    main()
