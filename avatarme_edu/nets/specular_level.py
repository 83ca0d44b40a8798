"""ψ's level head: a subject's overall specular strength, read from the whole face's diffuse albedo.

**Why.** ψ(A_D) -> A_S is a pix2pixHD generator trained on 128-texel patches. It draws the specular
*pattern* well (oily T-zone, wet lips, dry pores, weak highlights on hair), but its answer for the
subject's overall *level* stays near the training mean: over 160 training identities it never trained
on, its face-mean log level has 0.6x the spread of the truth (correlation 0.76). The level is the
sebum, which the skin painter sets from pore size, age and beard (``lightstage/skin_params.py``), and
those show over the whole face - pores on the cheeks, lines on the forehead, stubble on the chin - more
than in any one patch. Given the true level, ψ's map gains 1.5 dB (``benchmarks/specular_level.py``).

**The head.** A linear reader of statistics of A_D pooled over fixed parts of the head:

* from ``log gray(A_D)`` (a pore or wrinkle floor darkens the albedo by a *fraction*, so its log tells
  the floor's depth whatever the skin tone): the high-pass at two scales (Gaussian sigma 1 and 2 texels,
  the finest band and the band ψ's ``gray_log_detail`` input reads), each as its mean square (how much
  relief), its mean dark part (how deep the floors) and, for the wider band, its mean size;
* the log grey level and the red/blue log chroma (hair and the beard shadow are darker and less red
  than skin);
* each averaged over the valid texels of every cell of a :data:`GRID` over the UV map, and over the
  whole map. The UV layout is EduHead's, the same for every subject, so a cell is a fixed part of the
  head: the beard, the forehead, a cheek.

The level is ``w . standardised(features) + b``, a ridge regression fitted in closed form on training
identities' neutral maps, its strength chosen by leave-one-out on those identities
(:func:`fit_level_head`; ``avatarme-edu train-specular-level``, :mod:`~.specular_level_train`).
:func:`set_level` then scales ψ's map so its face-mean log level is the head's: ψ keeps the pattern,
the head sets the level. ψ itself is trained on every subject scaled to one level, the training
subjects' mean (:func:`normalise_levels`, ``avatarme-edu train specular_albedo --normalise-level``): a patch
cannot tell the level, so ψ should not spend itself guessing it; alone it answers at that mean level.

**Where it applies.** It reads pores, so it needs an albedo that shows them: a measured one (the light
stage's, the check of ``avatarme-edu evaluate``). At the cpu profile the pipeline's albedo (δ of a
super-resolved 96x144 texture) has no pores - its finest band holds δ's own noise at a quarter of a
measured albedo's energy - and the head would read dry skin there; the pipeline keeps ψ's own level (the training mean)
(measured: ``results/reflectance_training.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from avatarme_edu.imaging import gaussian_blur

#: Cells of the UV map the statistics are pooled over (rows, columns); plus the whole map.
GRID = (4, 6)
#: The statistics per cell, in order (see the module docstring).
STATISTICS = ("band2_energy", "band2_dark", "band2_size", "band1_energy", "band1_dark", "log_gray", "log_chroma")
#: The floor under the albedo before its log (as ``nets/tasks.py``'s log encodings) and the unit of the bands
#: (their spread on the training patches, so the statistics are of order one).
LOG_FLOOR = 0.01
BAND_UNIT = 0.1
#: The floor under the specular albedo before its log, for the face-mean level.
LEVEL_FLOOR = 1e-4
#: Ridge strengths tried by :func:`fit_level_head` (on standardised features); leave-one-out picks one.
RIDGES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
FORMAT = "avatarme-edu-specular-level"


def _band(log_gray: torch.Tensor, sigma: float, mask: torch.Tensor) -> torch.Tensor:
    """``(H, W)``: ``log_gray`` minus its blur over the valid texels, in :data:`BAND_UNIT`; 0 outside."""
    return (log_gray - gaussian_blur(log_gray, sigma, mask)) * mask / BAND_UNIT


def statistic_maps(diffuse_albedo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(len(STATISTICS), H, W)`` float64: the per-texel quantities whose cell means are the features.

    ``diffuse_albedo`` ``(3, H, W)`` linear RGB in [0, 1]; ``mask`` ``(H, W)`` bool, the valid texels."""
    ad = diffuse_albedo.detach().double().clamp(0, 1)
    mask = mask.bool()
    log_gray = torch.log(ad.mean(0) + LOG_FLOOR) * mask
    band1, band2 = _band(log_gray, 1.0, mask), _band(log_gray, 2.0, mask)
    chroma = (torch.log(ad[0] + LOG_FLOOR) - torch.log(ad[2] + LOG_FLOOR)) * mask
    return torch.stack([band2.square(), band2.clamp(max=0), band2.abs(), band1.square(), band1.clamp(max=0),
                        log_gray, chroma])


def level_features(diffuse_albedo: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int] = GRID) -> torch.Tensor:
    """``(F,)`` float64 with ``F = len(STATISTICS) * (rows * cols + 1)``: each statistic's mean over the
    valid texels of each cell of ``grid`` (row by row), then over the whole map. A cell without valid
    texels gives zeros (the same cells for every subject: the UV layout is fixed)."""
    if not torch.is_tensor(diffuse_albedo) or diffuse_albedo.ndim != 3 or diffuse_albedo.shape[0] != 3:
        raise ValueError(f"diffuse_albedo must be a (3, H, W) tensor, got "
                         f"{tuple(diffuse_albedo.shape) if torch.is_tensor(diffuse_albedo) else type(diffuse_albedo).__name__}")
    if not torch.is_tensor(mask) or tuple(mask.shape) != tuple(diffuse_albedo.shape[-2:]):
        raise ValueError(f"mask must be an (H, W) tensor matching the albedo {tuple(diffuse_albedo.shape[-2:])}")
    mask = mask.to(diffuse_albedo.device).bool()
    if not mask.any():
        raise ValueError("the mask holds no valid texel")
    stats, m = statistic_maps(diffuse_albedo, mask), mask.double()
    (h, w), (rows, cols) = mask.shape, grid
    out = []
    for i in range(rows):
        for j in range(cols):
            cell = (slice(i * h // rows, (i + 1) * h // rows), slice(j * w // cols, (j + 1) * w // cols))
            n = m[cell].sum()
            out.append(stats[(slice(None), *cell)].sum((1, 2)) / n if n > 0 else torch.zeros(len(STATISTICS)))
    out.append(stats.sum((1, 2)) / m.sum())
    return torch.cat([o.to(torch.float64).cpu() for o in out])


def face_log_level(specular_albedo: torch.Tensor, mask: torch.Tensor) -> float:
    """The mean of ``log(A_S)`` over the valid texels: ``specular_albedo`` ``(1, H, W)``, ``mask`` ``(H, W)``."""
    mask = mask.to(specular_albedo.device).bool()
    return float(torch.log(specular_albedo[0][mask].double().clamp_min(LEVEL_FLOOR)).mean())


def set_level(specular_albedo: torch.Tensor, mask: torch.Tensor, level: float) -> torch.Tensor:
    """``specular_albedo`` ``(1, H, W)`` times the one gain that makes its face-mean log level ``level``,
    clipped to [0, 1]."""
    gain = math.exp(level - face_log_level(specular_albedo, mask))
    return (specular_albedo * gain).clamp(0, 1)


def subject_levels(dataset) -> dict[tuple[int, str], float]:
    """``(identity, expression) -> face_log_level`` of every subject-expression of a
    :class:`~avatarme_edu.lightstage.dataset.PatchDataset` split (each file checked as it is read)."""
    from avatarme_edu.lightstage.dataset.read import load_maps

    levels = {}
    for entry in dataset.entries:
        maps = load_maps(entry.file.parent, entry.expression)
        levels[(entry.id, entry.expression)] = face_log_level(maps["specular_albedo"], maps["mask"])
    return levels


def normalise_levels(batch: dict, levels: dict[tuple[int, str], float], reference: float,
                     key: str = "specular_albedo") -> dict:
    """``batch`` with each patch's ``batch[key]`` ``(N, 1, P, P)`` scaled by its subject's
    ``exp(reference - level)``: every subject at one face-mean log level, so a network trained on it
    learns the pattern and leaves the level to the head (``avatarme-edu train --normalise-level``).
    The patches' subjects come from ``batch["subject_id"]`` and ``batch["expression"]``."""
    ids, expressions = batch["subject_id"].tolist(), batch["expression"]
    missing = [(i, e) for i, e in zip(ids, expressions) if (i, e) not in levels]
    if missing:
        raise KeyError(f"no level for subject-expressions {missing[:3]}")
    gain = torch.tensor([math.exp(reference - levels[(i, e)]) for i, e in zip(ids, expressions)])
    out = dict(batch)
    out[key] = (batch[key].float() * gain.view(-1, 1, 1, 1)).clamp(0, 1)
    return out


@dataclass
class LevelHead:
    """The fitted reader: ``level = coef . (features - mean) / std + intercept``."""

    mean: torch.Tensor  # (F,) float64
    std: torch.Tensor  # (F,) float64
    coef: torch.Tensor  # (F,) float64
    intercept: float
    ridge: float
    map_hw: tuple[int, int]  # the maps it was fitted on: its statistics are per texel, so only that size
    grid: tuple[int, int] = GRID

    def predict_features(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, F)`` or ``(F,)`` features -> ``(N,)`` or ``()`` face-mean log levels."""
        return ((features.double() - self.mean) / self.std) @ self.coef + self.intercept

    def predict(self, diffuse_albedo: torch.Tensor, mask: torch.Tensor) -> float:
        """The face-mean log specular level read from ``diffuse_albedo`` ``(3, H, W)`` over ``mask`` ``(H, W)``."""
        if tuple(diffuse_albedo.shape[-2:]) != tuple(self.map_hw):
            raise ValueError(f"this level head was fitted on {tuple(self.map_hw)} maps, the albedo is "
                             f"{tuple(diffuse_albedo.shape[-2:])}: its statistics are per texel, fit one for this size")
        return float(self.predict_features(level_features(diffuse_albedo, mask, self.grid)))

    def save(self, path: str | Path, info: dict | None = None) -> Path:
        """Write a safetensors file (tensors, and the grid, ridge and ``info`` as metadata), atomically."""
        import json

        from safetensors.torch import save_file

        from avatarme_edu.atomic import atomic_path

        tensors = {"mean": self.mean.double(), "std": self.std.double(), "coef": self.coef.double(),
                   "intercept": torch.tensor([self.intercept], dtype=torch.float64)}
        meta = {"format": FORMAT, "grid": json.dumps(list(self.grid)), "map_hw": json.dumps(list(self.map_hw)), "statistics": json.dumps(STATISTICS),
                "ridge": repr(self.ridge), "info": json.dumps(info or {})}
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path


def load_level_head(path: str | Path) -> LevelHead:
    """Read a file written by :meth:`LevelHead.save`; a file of anything else is refused."""
    import json

    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no specular level head at {str(path)!r}; make one with "
                                f"`avatarme-edu train-specular-level --out DIR`")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{str(path)!r} is not a specular level head (format {meta.get('format')!r})")
        if json.loads(meta["statistics"]) != list(STATISTICS):
            raise ValueError(f"{str(path)!r} was made with other statistics: {meta['statistics']}")
        t = {k: f.get_tensor(k) for k in ("mean", "std", "coef", "intercept")}
    return LevelHead(t["mean"], t["std"], t["coef"], float(t["intercept"][0]), float(meta["ridge"]),
                     tuple(json.loads(meta["map_hw"])), tuple(json.loads(meta["grid"])))


def _ridge_solution(z: torch.Tensor, y: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of ``[1, z] -> y`` (the intercept not penalised) and the leave-one-out residuals."""
    x = torch.cat([torch.ones(len(z), 1, dtype=z.dtype), z], 1)
    penalty = ridge * torch.eye(x.shape[1], dtype=z.dtype)
    penalty[0, 0] = 0
    inv = torch.linalg.inv(x.T @ x + penalty)
    w = inv @ x.T @ y
    hat_diag = ((x @ inv) * x).sum(1)  # leave-one-out by the hat matrix: no refitting per identity
    return w, (y - x @ w) / (1 - hat_diag)


def fit_level_head(features: torch.Tensor, levels: torch.Tensor, map_hw: tuple[int, int], ridges=RIDGES,
                   grid: tuple[int, int] = GRID) -> tuple[LevelHead, dict[float, float]]:
    """Fit the reader on training identities: ``features`` ``(N, F)`` of ``map_hw`` maps, ``levels`` ``(N,)``
    (their true face-mean log levels). Returns the head at the ridge with the smallest leave-one-out error, and the
    leave-one-out R² for every ridge tried."""
    features, levels = features.double(), levels.double()
    if features.ndim != 2 or len(features) != len(levels) or len(levels) < 3:
        raise ValueError(f"need (N, F) features and (N,) levels with N >= 3, got {tuple(features.shape)} "
                         f"and {tuple(levels.shape)}")
    mean, std = features.mean(0), features.std(0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # an empty cell: constant, weight 0
    z = (features - mean) / std
    r2 = {}
    for ridge in ridges:
        _, loo = _ridge_solution(z, levels, float(ridge))
        r2[float(ridge)] = float(1 - loo.var() / levels.var())
    best = max(r2, key=r2.get)
    w, _ = _ridge_solution(z, levels, best)
    return LevelHead(mean, std, w[1:], float(w[0]), best, tuple(map_hw), tuple(grid)), r2
