"""The virtual light-stage dataset on disk, its fixed train / held-out split, and training patches.

:func:`make_dataset` writes ``n_subjects`` identities, each in the chosen expressions, with an
in-the-wild texture per expression (:mod:`~avatarme_edu.lightstage.wild`)::

    path/
      manifest.json            what is in here: seed, profile, split, subjects (+ SHA-256 of each
                               subject.json), versions
      subject_0000/
        subject.json           identity, skin parameters, wild-texture parameters, split, SHA-256 of each file
        neutral.safetensors    every map of this subject in this expression (see MAP_KEYS)
        smile.safetensors ...
      subject_0001/ ...

**Identities and the split.** A dataset with ``seed`` s holds the identities s, s + 1, ..., s + n - 1
(the identity number is the :func:`~avatarme_edu.lightstage.subjects.make_subject` seed, and
``avatarme-edu head --seed N`` exports the same person). **Every fifth identity (id % 5 == 4) is held
out** (:func:`is_held_out`), in every dataset ever written, with all its expressions: an identity
held out in one dataset can never be a training identity of another, and the loader checks the rule
itself instead of trusting the files.

**Files.** Maps are stored as safetensors, float16, ``(C, H, W)`` (a crop of a tensor can be read
without reading the rest of the file, which keeps the patch loader fast). Masks are uint8; mesh
vertices float32. ``fmt="png"`` writes PNG files with :mod:`avatarme_edu.maps_io` instead (the
bundled sample ``avatarme_edu/data/subject_0000``).

**Trustworthy.** Each identity appears at once, complete (written beside, renamed); every file's
SHA-256 is recorded and checked on reading (:func:`verify_dataset`, ``avatarme-edu dataset --verify``);
a resume re-verifies what it keeps and rewrites what fails; the same inputs give the same bytes with
any number of workers or threads (:mod:`.write`).

The modules: :mod:`.records` (keys, split, checksums, JSON), :mod:`.subject_files` (one identity on
disk), :mod:`.workers` (processes), :mod:`.write` (a dataset, resumable), :mod:`.read` (loading
subjects), :mod:`.patches` (the ``torch.utils.data.Dataset`` of patches).
"""

from avatarme_edu.lightstage.dataset.patches import (
    DEFAULT_PATCH_KEYS, SR_KEYS, PatchDataset, patch_loader,
)
from avatarme_edu.lightstage.dataset.read import (
    SAMPLE_SUBJECT_DIR, load_maps, load_sample_subject, load_subject,
)
from avatarme_edu.lightstage.dataset.records import (
    DEFAULT_EXPRESSIONS, FORMAT_VERSION, HELD_OUT_EVERY, MAP_KEYS, SPLITS, TEXTURE_KEYS, DatasetError,
    is_held_out, read_manifest, read_subject_record, split_of, verify_dataset, verify_subject, wild_generator,
)
from avatarme_edu.lightstage.dataset.subject_files import mesh_checksum, write_subject
from avatarme_edu.lightstage.dataset.write import make_dataset, write_sample_subject

__all__ = [
    "DEFAULT_EXPRESSIONS", "DEFAULT_PATCH_KEYS", "FORMAT_VERSION", "HELD_OUT_EVERY", "MAP_KEYS", "SAMPLE_SUBJECT_DIR",
    "SPLITS", "SR_KEYS", "TEXTURE_KEYS", "DatasetError", "PatchDataset", "is_held_out", "load_maps",
    "load_sample_subject", "load_subject", "make_dataset", "mesh_checksum", "patch_loader", "read_manifest",
    "read_subject_record", "split_of", "verify_dataset", "verify_subject", "wild_generator",
    "write_sample_subject", "write_subject",
]
