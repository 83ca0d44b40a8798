"""Can ψ's per-subject specular level be set from whole-face statistics of A_D? (Measured: hardly.)

ψ(A_D) -> A_S reads 128-texel patches, and its answer for a subject's overall specular level (the
sebum: oiliness, set by pore size, age and beard, ``lightstage/skin_params.py``) stays near the training
mean. This script fits three corrections of the face-mean log level of ψ's output on *training* identities
ψ never trained on (``--first-id`` on; ψ's data were ids 0-239; held-out ids, ``id % 5 == 4``, are never
used for a fit), then scores them on held-out seeds (PSNR over the valid texels):

* ``stretch``: an affine map of ψ's own log level;
* ``stats``: a ridge on ψ's level and whole-face statistics of A_D (fine-contrast spread and dark part at
  two blurs; beard-minus-cheek log level; face log level; beard-minus-cheek contrast ratio, dark part and
  red/blue log chroma);
* ``oracle``: the true level on ψ's output (what a perfect level would give).

    python benchmarks/specular_level.py [--ids 160] [--first-id 300] [--seeds 29 34 ... 99]

Measured (160 ids from 300, held-out seeds 29 ... 99): ψ 27.12 dB, mean map 24.98, stretch 27.00 (ψ's level
std 0.099 against the truth's 0.161, correlation 0.76), stats 27.49 (R² 0.11 of what ψ misses, leave-one-out),
oracle 28.61.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from sebum_trace import contrast_statistics  # this folder is on the path when a script here runs

NOT_SKIN = ("eyes", "brows", "lips", "eyeballs", "mouth_interior", "scalp", "ears", "neck")


def face_row(seed: int, profile, head, weights, means) -> tuple[dict, tuple]:
    """Statistics of one identity's neutral maps: features of A_D, true and ψ's log levels."""
    from avatarme_edu import stages
    from avatarme_edu.imaging import gaussian_blur
    from avatarme_edu.lightstage.dataset.subject_files import one_torch_thread
    from avatarme_edu.lightstage.subjects import make_subject_expressions

    with one_torch_thread():
        subject = make_subject_expressions(seed, profile, ["neutral"], head=head)[0]
    r, reg = subject.reflectance, subject.regions
    mask = r.mask.bool()
    skin = (reg["face"] > 0.5) & (sum(reg[k] for k in NOT_SKIN) < 0.2) & mask
    beard, cheeks = (reg["beard"] > 0.5) & mask, (reg["cheeks"] > 0.5) & mask
    gray = r.diffuse_albedo.mean(0, keepdim=True)
    feats = contrast_statistics(gray, mask, skin)
    log_gray = torch.log(gray[0] + 1e-3)
    feats += [float(log_gray[beard].mean() - log_gray[cheeks].mean()), float(log_gray[skin].mean())]
    low = gaussian_blur(gray, 1.0, mask)
    rel = ((gray - low) / (low + 1e-3))[0]
    feats += [float(rel[beard].std() / rel[cheeks].std()),
              float(rel[beard].clamp(max=0).mean() - rel[cheeks].clamp(max=0).mean())]
    chroma = torch.log(r.diffuse_albedo[0] + 1e-3) - torch.log(r.diffuse_albedo[2] + 1e-3)
    feats += [float(chroma[beard].mean() - chroma[cheeks].mean())]
    psi = stages.specular_albedo(r.diffuse_albedo, profile, weights, mask, means)
    level = float(torch.log(r.specular_albedo[0][mask].clamp_min(1e-4)).mean())
    psi_level = float(torch.log(psi[0][mask].clamp_min(1e-4)).mean())
    return {"features": feats, "level": level, "psi_level": psi_level}, (psi, r.specular_albedo, mask)


def ridge(z: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    penalty = lam * np.diag([0.0] + [1.0] * (z.shape[1] - 1))  # the intercept is free
    return np.linalg.solve(z.T @ z + penalty, z.T @ y)


def main() -> None:
    from avatarme_edu.fitting.synthetic import check_held_out
    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.lightstage.dataset import is_held_out
    from avatarme_edu.lightstage.dataset.means import load_training_means
    from avatarme_edu.metrics import psnr
    from avatarme_edu.nets.weights import WEIGHTS_DIR
    from avatarme_edu.profiles import get_profile

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ids", type=int, default=160, help="training identities to fit the corrections on")
    ap.add_argument("--first-id", type=int, default=300, help="the first of them (ψ trained on ids below 240)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(29, 100, 5)), help="held-out seeds")
    ap.add_argument("--ridge", type=float, default=3.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    profile, head = get_profile("cpu", "cpu"), load_eduhead()
    wdir = WEIGHTS_DIR / "cpu"
    weights, means = wdir / "specular_albedo.safetensors", load_training_means(wdir, profile)
    ids = [i for i in range(args.first_id, args.first_id + 2 * args.ids) if not is_held_out(i)][:args.ids]
    rows = [face_row(i, profile, head, weights, means)[0] for i in ids]
    psi_lv = np.array([r["psi_level"] for r in rows])
    level = np.array([r["level"] for r in rows])
    slope, intercept = np.polyfit(psi_lv, level, 1)
    x = np.array([[r["psi_level"]] + r["features"] for r in rows])
    mu, sd = x.mean(0), x.std(0)
    z = np.c_[np.ones(len(x)), (x - mu) / sd]
    miss = level - psi_lv
    loo = [miss[i] - z[i] @ ridge(np.delete(z, i, 0), np.delete(miss, i), args.ridge) for i in range(len(z))]
    w = ridge(z, miss, args.ridge)
    print(f"{len(ids)} training ids: psi level std {psi_lv.std():.3f}, true {level.std():.3f}, correlation "
          f"{np.corrcoef(psi_lv, level)[0, 1]:.2f}; stats explain {1 - np.var(loo) / np.var(miss):.2f} of what psi "
          f"misses (leave-one-out)")
    scores: dict[str, list] = {}
    for seed in check_held_out(args.seeds):
        row, (psi, truth, mask) = face_row(seed, profile, head, weights, means)
        q = row["psi_level"]
        zi = np.r_[1.0, (np.array([q] + row["features"]) - mu) / sd]
        gains = {"psi": 1.0, "stretch": math.exp(intercept + slope * q - q), "stats": math.exp(float(zi @ w)),
                 "oracle": math.exp(row["level"] - q)}
        res = {k: psnr((psi * g).clamp(0, 1), truth, mask) for k, g in gains.items()}
        res["mean_map"] = psnr(means["specular_albedo_map"] * mask, truth, mask)
        for k, v in res.items():
            scores.setdefault(k, []).append(v)
        print(seed, {k: round(v, 2) for k, v in res.items()}, flush=True)
    print("mean PSNR (dB):", {k: round(float(np.mean(v)), 2) for k, v in scores.items()})


if __name__ == "__main__":
    main()
