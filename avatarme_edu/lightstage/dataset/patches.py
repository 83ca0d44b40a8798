"""Training samples: aligned random patches of a written dataset, as a ``torch.utils.data.Dataset``.

>>> data = PatchDataset("data/ls", "train", profile, seed=0)                # doctest: +SKIP
>>> for batch in torch.utils.data.DataLoader(data, batch_size=8, num_workers=2):  # doctest: +SKIP
...     loss = net(batch["texture"].to(dev)) - batch["diffuse_albedo"].to(dev)

**A batch** (what ``DataLoader``'s default collation makes of the items) is a dict:

* one ``(N, C, P, P)`` float32 tensor per map key (:data:`MAP_KEYS`: ``texture``, ``diffuse_albedo``
  (3), ``specular_albedo`` (1), ``diffuse_normals`` (3, object space, unit), ``specular_normals`` (3,
  tangent space, unit), ``position``, ``normals_object``, ``normals_tangent`` (3), ``depth``,
  ``height`` (1)), every one the SAME crop of one subject-expression, ``P = profile.patch_size``;
* ``mask``: ``(N, P, P)`` bool;
* ``texture_low``: ``(N, 3, P / r, P / r)``, the matching crop of the fitted texture, when
  ``r = map_hw / texture_hw`` is whole (4 in the cpu profile); ``mask_low`` likewise ``(N, P/r, P/r)``;
* ``subject_id`` ``(N,)`` int64, ``expression`` (list of str), ``corner`` ``(N, 2)`` int64
  ``(top, left)`` at ``map_hw`` (at ``texture_hw`` for super-resolution pairs).

**Super-resolution pairs** (``keys=SR_KEYS``): at the paper profile 4096 / 384 is not whole, so
``texture_low`` cannot be cut in step with the maps. Instead each item is a ``texture_low`` crop of
``q = patch_size / sr_scale`` texels at ``texture_hw`` and ``texture_sr``, the same area of the sharp
texture resampled to ``profile.sr_hw`` (bilinear, exactly ``F.interpolate(..., align_corners=False)``
of the whole map, computed on a crop): ``(3, q * sr_scale, q * sr_scale)``.

**Randomness and workers.** Item ``i`` draws its subject-expression and corner from its own generator
seeded by ``(seed, epoch, i)``, so the batches are the same with ``num_workers=0`` (the CPU default)
or any number of workers, and each worker is seeded by the items it is given;
:meth:`PatchDataset.set_epoch` gives a new draw per epoch. Safetensors files are opened lazily in
each worker process (a crop reads only its rows).

**The split** is decided by :func:`~avatarme_edu.lightstage.dataset.records.is_held_out`, checked
against the manifest and every ``subject.json``: a ``"train"`` dataset refuses to open if a held-out
identity is listed as training data, and never reads one. **Integrity**: each ``subject.json`` is
checked against the manifest's SHA-256 when the dataset opens, each data file against its own the
first time a process reads it (``verify=False`` skips the latter), and a crop holding NaN or Inf is an
error naming the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from avatarme_edu.lightstage.dataset.records import (
    MAP_KEYS, NORMAL_KEYS, TEXTURE_KEYS, DatasetError, check_file, check_split, is_held_out, read_manifest,
    read_subject_record, sha256_file, split_of,
)
from avatarme_edu.lightstage.subjects import unit_vectors
from avatarme_edu.profiles import Profile
from avatarme_edu.seeds import MAX_SEED, check_seed

#: What the loader yields by default (every stored map but the skin height, and texture_low when whole).
DEFAULT_PATCH_KEYS = tuple(k for k in MAP_KEYS if k != "height") + ("texture_low",)
#: The super-resolution pair: the fitted texture's crop and the same area at ``profile.sr_hw``.
SR_KEYS = ("texture_low", "texture_sr", "mask_low")


@dataclass
class _Entry:
    id: int
    expression: str
    file: Path
    record: dict


class PatchDataset(torch.utils.data.Dataset):
    """Aligned random patches of one split of a dataset written by ``make_dataset`` (module docstring).

    ``split``: ``"train"`` or ``"held_out"``. ``keys``: the maps to crop (default
    :data:`DEFAULT_PATCH_KEYS`, without ``texture_low`` where the size ratio is not whole), or
    :data:`SR_KEYS` for super-resolution pairs. ``length``: items per epoch (default: enough patches to
    cover each subject-expression's map once). ``seed``: the draw. ``min_valid``: the least fraction
    of surface texels in a patch.
    """

    def __init__(self, path: str | os.PathLike, split: str, profile: Profile, keys=None, length: int | None = None,
                 seed: int = 0, min_valid: float = 0.5, verify: bool = True):
        self.path = Path(path)
        self.split = check_split(split)
        self.profile = profile
        self.seed = check_seed(seed)
        self.epoch = 0
        self.min_valid = float(min_valid)
        self.verify = bool(verify)
        self.keys = tuple(DEFAULT_PATCH_KEYS if keys is None else keys)
        self.sr = "texture_sr" in self.keys
        known = set(MAP_KEYS) | set(TEXTURE_KEYS) | {"texture_sr"}
        unknown = [k for k in self.keys if k not in known]
        if unknown or not self.keys:
            raise ValueError(f"unknown patch keys {unknown}; valid keys are: {', '.join(sorted(known))}")
        if self.sr and not set(self.keys) <= set(SR_KEYS):
            raise ValueError(f"super-resolution pairs hold only {SR_KEYS}; got keys {self.keys}")
        manifest = read_manifest(self.path)
        if manifest.get("format") != "safetensors":
            raise ValueError(f"the patch loader reads safetensors datasets; {str(self.path)!r} is "
                             f"{manifest.get('format')!r}")
        if [manifest["map_hw"], manifest["texture_hw"]] != [list(profile.map_hw), list(profile.texture_hw)]:
            raise ValueError(f"the dataset has map_hw={manifest['map_hw']}, texture_hw={manifest['texture_hw']} "
                             f"but profile {profile.name!r} has {list(profile.map_hw)}, {list(profile.texture_hw)}")
        self._sizes(keys is None)
        self.entries = self._entries(manifest)
        if length is None:
            H, W = profile.map_hw
            length = len(self.entries) * max(1, (H * W) // (self.patch ** 2))
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be an int >= 1, got {length!r}")
        self.length = length
        self._handles: dict[Path, object] = {}
        self._corners: dict[Path, tuple[torch.Tensor, int]] = {}

    def _sizes(self, default_keys: bool) -> None:
        """The patch side ``self.patch`` at ``map_hw`` and the texture ratio (or the SR scale)."""
        prof = self.profile
        H, W = prof.map_hw
        p = int(prof.patch_size)
        if not 0 < p <= min(H, W):
            raise ValueError(f"profile.patch_size must be in [1, {min(H, W)}] for {H}x{W} maps, got {p}")
        self.patch = p
        if self.sr:
            q = p // prof.sr_scale
            if q < 1 or q * prof.sr_scale != p or q > min(prof.texture_hw):
                raise ValueError(f"super-resolution pairs need patch_size {p} to be a multiple of sr_scale "
                                 f"{prof.sr_scale} with patch_size / sr_scale <= {min(prof.texture_hw)}")
            self.ratio = None
            return
        th, tw = prof.texture_hw
        r = H // th if H % th == 0 and W % tw == 0 and H // th == W // tw else None
        self.ratio = r if r is not None and p % r == 0 else None
        if default_keys and self.ratio is None:
            self.keys = tuple(k for k in self.keys if k not in TEXTURE_KEYS)
        if set(self.keys) & set(TEXTURE_KEYS) and self.ratio is None:
            raise ValueError(f"texture_low patches need map_hw {tuple(prof.map_hw)} to be a whole multiple r of "
                             f"texture_hw {tuple(prof.texture_hw)} with patch_size {p} divisible by r; "
                             "leave 'texture_low' out of keys, or ask for super-resolution pairs (SR_KEYS)")

    def _entries(self, manifest: dict) -> list[_Entry]:
        """The split's subject-expressions: by the rule, checked against what the files say."""
        for s in manifest["subjects"]:
            if s["split"] != split_of(s["id"]):
                raise DatasetError(f"manifest lists identity {s['id']} as {s['split']!r} but it is "
                                   f"{split_of(s['id'])!r} by the rule; refusing to read this dataset")
        bad = [i for i in manifest["split"]["train"] if is_held_out(i)]
        if self.split == "train" and bad:
            raise DatasetError(f"manifest's train split contains held-out identities {bad}; refusing to read it")
        entries = []
        for s in manifest["subjects"]:
            if split_of(s["id"]) != self.split:
                continue  # never opened
            folder = self.path / s["dir"]
            want = s.get("record_sha256")
            if want is not None and sha256_file(folder / "subject.json") != want:
                raise DatasetError(f"{str(folder / 'subject.json')!r} is corrupt: its SHA-256 does not match "
                                   "the manifest")
            rec = read_subject_record(folder)
            if rec["id"] != s["id"] or split_of(rec["id"]) != self.split:
                raise DatasetError(f"{str(folder)!r} holds identity {rec['id']}, not {s['id']}; refusing to read it")
            entries += [_Entry(int(rec["id"]), e, folder / f"{e}.safetensors", rec) for e in rec["expressions"]]
        if not entries:
            raise ValueError(f"the {self.split!r} split of {str(self.path)!r} is empty")
        return entries

    def __len__(self) -> int:
        return self.length

    @property
    def identities(self) -> list[int]:
        return sorted({e.id for e in self.entries})

    def set_epoch(self, epoch: int) -> None:
        """Draw other patches in epoch ``epoch`` (call before iterating a DataLoader over it)."""
        self.epoch = int(epoch)

    def __getstate__(self) -> dict:  # open files stay in the process that opened them
        return {**self.__dict__, "_handles": {}}

    def _handle(self, entry: _Entry):
        from safetensors import SafetensorError, safe_open

        if entry.file not in self._handles:
            if self.verify:
                check_file(entry.file.parent, entry.file.name, entry.record)
            try:
                self._handles[entry.file] = safe_open(str(entry.file), framework="pt")
            except (SafetensorError, OSError) as e:
                raise DatasetError(f"{str(entry.file)!r} cannot be read ({e})") from None
        return self._handles[entry.file]

    def _accepted(self, entry: _Entry, side: int) -> tuple[torch.Tensor, int]:
        """Flat indices of the corners whose ``side``-patch has ``min_valid`` surface, and the row length.

        The rule (and the draw in :meth:`__getitem__`) of :func:`avatarme_edu.tiling.sample_patches`,
        computed once per file: recomputing it per patch takes 4 s on a paper-size mask.
        """
        if entry.file not in self._corners:
            key = "mask_low" if (self.ratio is not None or self.sr) else "mask"
            m = self._handle(entry).get_tensor(key).bool()
            s = F.pad(m.to(torch.int64).cumsum(0).cumsum(1), (1, 0, 1, 0))  # summed-area table
            counts = s[side:, side:] - s[:-side, side:] - s[side:, :-side] + s[:-side, :-side]
            accepted = torch.nonzero((counts >= math.ceil(self.min_valid * side * side - 1e-9)).flatten()).squeeze(1)
            if accepted.numel() == 0:
                raise DatasetError(f"{str(entry.file)!r}: no {side}x{side} patch with {self.min_valid:.0%} surface "
                                   f"in its {key!r}; lower min_valid or the patch size")
            self._corners[entry.file] = (accepted, counts.shape[1])
        return self._corners[entry.file]

    def __getitem__(self, index: int) -> dict:
        """One patch of every key (module docstring), drawn by ``(seed, epoch, index)``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        g = torch.Generator().manual_seed((self.seed * 0x9E3779B1 + self.epoch * 1_000_003 + index) % MAX_SEED)
        entry = self.entries[int(torch.randint(len(self.entries), (1,), generator=g))]
        side = self.patch // self.profile.sr_scale if self.sr else self.patch // (self.ratio or 1)
        accepted, ncols = self._accepted(entry, side)
        flat = int(accepted[torch.randint(accepted.numel(), (1,), generator=g)])
        t, l = flat // ncols, flat % ncols
        f = self._handle(entry)
        item = {}
        for k in self.keys:
            if k == "texture_sr":
                crop = self._sr_crop(f, t, l, side)
            elif self.sr or k in TEXTURE_KEYS:
                sl = f.get_slice(k)  # at texture_hw: the sampled corner itself
                crop = sl[t:t + side, l:l + side] if k == "mask_low" else sl[:, t:t + side, l:l + side]
            else:
                r = self.ratio or 1
                tt, ll, p = t * r, l * r, self.patch
                sl = f.get_slice(k)
                crop = sl[tt:tt + p, ll:ll + p] if k == "mask" else sl[:, tt:tt + p, ll:ll + p]
            if k.startswith("mask"):
                item[k] = crop.bool()
                continue
            crop = crop.float()
            if not bool(torch.isfinite(crop).all()):
                raise DatasetError(f"{str(entry.file)!r}: map {k!r} holds NaN or infinite values; the file is corrupt")
            item[k] = unit_vectors(crop) if k in NORMAL_KEYS else crop
        r = 1 if self.sr else (self.ratio or 1)
        item["subject_id"] = torch.tensor(entry.id, dtype=torch.int64)
        item["expression"] = entry.expression
        item["corner"] = torch.tensor([t * r, l * r], dtype=torch.int64)
        return item

    def _sr_crop(self, f, t: int, l: int, q: int) -> torch.Tensor:
        """The sharp texture resampled to ``sr_hw``, rows/cols ``[t*s, (t+q)*s)``: (3, q*s, q*s)."""
        s = self.profile.sr_scale
        H, W = self.profile.map_hw
        Hs, Ws = self.profile.sr_hw
        rows = _bilinear_taps(t * s, q * s, H, Hs)
        cols = _bilinear_taps(l * s, q * s, W, Ws)
        r0, r1 = int(rows[0].min()), int(rows[1].max()) + 1
        c0, c1 = int(cols[0].min()), int(cols[1].max()) + 1
        src = f.get_slice("texture")[:, r0:r1, c0:c1].float()
        (ya, yb, wy), (xa, xb, wx) = (rows[0] - r0, rows[1] - r0, rows[2]), (cols[0] - c0, cols[1] - c0, cols[2])
        v = src[:, ya] * (1 - wy)[None, :, None] + src[:, yb] * wy[None, :, None]
        return v[:, :, xa] * (1 - wx) + v[:, :, xb] * wx


def _bilinear_taps(start: int, n: int, size_in: int, size_out: int):
    """Source indices and weight of output samples ``start .. start + n`` when resizing ``size_in`` to
    ``size_out`` as ``F.interpolate(mode="bilinear", align_corners=False)`` does (negative clamped to 0)."""
    j = torch.arange(start, start + n, dtype=torch.float64)
    x = ((j + 0.5) * (size_in / size_out) - 0.5).clamp_min(0)
    a = x.floor().long().clamp_max(size_in - 1)
    b = (a + 1).clamp_max(size_in - 1)
    return a, b, (x - a).float()


def patch_loader(path: str | os.PathLike, split: str, profile: Profile, batch_size: int,
                 generator: torch.Generator | None = None, keys=None, n_batches: int | None = None,
                 num_workers: int = 0, seed: int | None = None) -> Iterator[dict]:
    """Batches of aligned random patches from one split, on ``profile.device``, through ``DataLoader``.

    ``seed`` (or one number drawn from ``generator``) seeds :class:`PatchDataset`; ``n_batches``
    batches, endless (a new epoch each pass) when None. ``num_workers``: DataLoader processes; the
    batches do not depend on it.

    >>> for batch in patch_loader("data/ls", "train", profile, 8, seed=0, n_batches=100):
    ...     loss = net(batch["texture"]) - batch["diffuse_albedo"]   # doctest: +SKIP
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if seed is None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        seed = 0 if generator is None else int(torch.randint(2**62, (1,), generator=generator))
    length = batch_size * n_batches if n_batches is not None else None
    data = PatchDataset(path, split, profile, keys, length=length, seed=seed)
    data.length = max(data.length, batch_size)  # an epoch holds at least one whole batch
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, drop_last=True,
                                         num_workers=num_workers)
    return _batches(data, loader, profile.torch_device, n_batches is None)


def _batches(data: PatchDataset, loader, device, endless: bool) -> Iterator[dict]:
    epoch = 0
    while True:
        data.set_epoch(epoch)
        for batch in loader:
            yield {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        epoch += 1
        if not endless:
            return
