"""Learn the landmark embedding of :mod:`~avatarme_edu.fitting.landmark_embedding` from dlib on renders
of training subjects (held-out identities refused); ``python -m avatarme_edu.fitting.landmark_calibration``
(about 3 minutes for 32 identities x 2 poses on one core) writes ``data/eduhead/dlib_landmarks.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from avatarme_edu.fitting.landmark_embedding import (EMBEDDING_FILE, INNER_RADIUS_M, JAW_RADIUS_M, YAW_BINS_DEG,
                                                     LandmarkEmbedding, yaw_deg)
from avatarme_edu.resources import data_path


def _candidates(head, centre_ids: torch.Tensor, radius: float) -> list[torch.Tensor]:
    """Per landmark, the vertex ids (first copies, not eyeballs or mouth interior) within ``radius``."""
    mean = head.vertices().detach()
    regions = head.vertex_regions()
    hidden = torch.stack([regions[k] for k in ("eyeballs", "mouth_interior") if k in regions]).amax(0) > 0.5
    first = head.weld == torch.arange(head.n_vertices)
    allowed = first & ~hidden
    out = []
    for c in centre_ids.tolist():
        near = ((mean - mean[c]).norm(dim=-1) < radius) & allowed
        near[int(head.weld[c])] = True
        out.append(torch.nonzero(near)[:, 0])
    return out


def collect(ids, poses: int, profile, head, max_yaw: float = 32.0, progress: bool = True) -> list[dict]:
    """Render training subjects ``ids`` from ``poses`` random poses each; dlib's points, the true mesh
    and camera. Held-out identities are refused."""
    from avatarme_edu.fitting.landmarks import face_near
    from avatarme_edu.fitting.synthetic import subject_photo
    from avatarme_edu.lightstage.dataset import is_held_out

    bad = [i for i in ids if is_held_out(i)]
    if bad:
        raise ValueError(f"identities {bad} are held out (id % 5 == 4); the landmark embedding learns from "
                         "training identities only")
    samples = []
    for i in ids:
        for k in range(poses):
            sp = subject_photo(i, profile, pose_seed=10_000 + 97 * i + k, max_yaw=max_yaw, head=head)
            lo, hi = sp.landmarks.min(0).values, sp.landmarks.max(0).values
            face = face_near(sp.photo, (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])))
            if face is None:
                continue
            samples.append({"id": i, "dlib": torch.as_tensor(face.landmarks, dtype=torch.float32),
                            "vertices": sp.subject.mesh.vertices.detach().cpu(), "camera": sp.camera,
                            "yaw": yaw_deg(sp.camera.rotation)})
            if progress:
                print(f"id {i} pose {k}: yaw {samples[-1]['yaw']:+.1f}", flush=True)
    return samples


def learn(samples: list[dict], head, yaw_bins=YAW_BINS_DEG, all_by_yaw: bool = False) -> tuple[LandmarkEmbedding, dict]:
    """Per landmark (and per yaw bin for the jaw; for every point with ``all_by_yaw``) the candidate
    vertex closest to dlib on average."""
    base = head.landmark_ids.cpu()
    inner = _candidates(head, base, INNER_RADIUS_M)
    jaw = _candidates(head, base[:17], JAW_RADIUS_M)
    cands = jaw + inner[17:]
    # (S, 68, n_k) pixel distance of every candidate to dlib's point, per sample
    dists = [[] for _ in range(68)]
    for s in samples:
        for k in range(68):
            xy = s["camera"].project(s["vertices"][cands[k]])[0]
            dists[k].append((xy - s["dlib"][k]).norm(dim=-1))
    yaws = torch.tensor([s["yaw"] for s in samples], dtype=torch.float64)
    bins = torch.tensor(yaw_bins, dtype=torch.float64)
    emb = LandmarkEmbedding(base[None].repeat(len(bins), 1), bins.float(), {})
    w = torch.stack([emb.weights(float(y)) for y in yaws]).double()  # (S, B)
    ids = base[None].repeat(len(bins), 1).clone()
    iod = torch.stack([(s["dlib"][36:42].mean(0) - s["dlib"][42:48].mean(0)).norm() for s in samples]).double()
    sigma = torch.zeros(68, dtype=torch.float64)
    before, after = [], []
    for k in range(68):
        d = torch.stack(dists[k]).double()  # (S, n_k)
        orig = int((cands[k] == int(head.weld[base[k]])).nonzero()[0, 0])
        before.append(float(d[:, orig].mean()))
        if k < 17 or all_by_yaw:
            for b in range(len(bins)):
                wb = w[:, b]
                if float(wb.sum()) < 0.5:  # too few samples near this bin: keep the neighbours' choice later
                    ids[b, k] = -1
                    continue
                ids[b, k] = cands[k][int(((wb[:, None] * d).sum(0) / wb.sum()).argmin())]
            filled = ids[:, k]
            for b in range(len(bins)):  # empty bins take the nearest filled one
                if filled[b] < 0:
                    near = [j for j in range(len(bins)) if filled[j] >= 0]
                    filled[b] = filled[min(near, key=lambda j: abs(j - b))] if near else base[k]
            chosen = torch.stack([d[:, (cands[k] == ids[b, k]).nonzero()[0, 0]] for b in range(len(bins))], 1)
            after.append(float((w * chosen).sum(1).mean()))
            sigma[k] = (((w * chosen).sum(1) / iod) ** 2).mean().sqrt()
        else:
            j = int(d.mean(0).argmin())
            ids[:, k] = cands[k][j]
            after.append(float(d[:, j].mean()))
            sigma[k] = ((d[:, j] / iod) ** 2).mean().sqrt()
    stats = {"samples": len(samples), "identities": sorted({s["id"] for s in samples}),
             "yaw_range_deg": [round(float(yaws.min()), 1), round(float(yaws.max()), 1)],
             "mean_px_to_dlib_hand_placed": {"jaw": round(sum(before[:17]) / 17, 2),
                                             "inner": round(sum(before[17:]) / 51, 2)},
             "mean_px_to_dlib_learned": {"jaw": round(sum(after[:17]) / 17, 2), "inner": round(sum(after[17:]) / 51, 2)}}
    stats["sigma_eye_distances"] = {"jaw": round(float(sigma[:17].median()), 3),
                                    "inner": round(float(sigma[17:].median()), 3)}
    return LandmarkEmbedding(ids, bins.float(), stats, sigma.float()), stats


def save_embedding(emb: LandmarkEmbedding, command: str) -> None:
    from safetensors.torch import save_file

    from avatarme_edu.atomic import atomic_path

    path = data_path(*EMBEDDING_FILE)
    with atomic_path(path) as tmp:
        tensors = {"ids": emb.ids.to(torch.int64).contiguous(), "yaw_deg": emb.yaw.float().contiguous()}
        if emb.sigma is not None:
            tensors["sigma"] = emb.sigma.float().contiguous()
        save_file(tensors, str(tmp),
                  metadata={"info": json.dumps({**emb.info, "command": command})})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avatarme_edu.fitting.landmark_calibration",
                                     description="Learn which EduHead vertex is each of dlib's 68 landmarks.")
    parser.add_argument("--ids", type=int, nargs="+", default=[i for i in range(40) if i % 5 != 4])
    parser.add_argument("--poses", type=int, default=3)
    parser.add_argument("--all-by-yaw", action="store_true", help="every point per yaw bin, not only the jaw")
    args = parser.parse_args(argv)
    from avatarme_edu.geometry.head import load_eduhead
    from avatarme_edu.profiles import get_profile

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        profile = get_profile("cpu", "cpu")
        head = load_eduhead()
        samples = collect(args.ids, args.poses, profile, head)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    emb, stats = learn(samples, head, all_by_yaw=args.all_by_yaw)
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    emb.info = stats
    save_embedding(emb, "python -m avatarme_edu.fitting.landmark_calibration " + " ".join(sys.argv[1:] if argv is None
                                                                                     else argv))
    print(json.dumps(stats, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
