"""Seeds: the one place that says what a valid seed is.

``torch.Generator.manual_seed`` accepts any integer and silently folds it: ``-1`` gives the stream
of ``2**64 - 1``, ``2**63`` aliases other seeds, ``2**64`` fails with "Overflow when unpacking long
long". So every seed in the project (subjects, identities, datasets, the command line) goes through
:func:`check_seed` first: an ``int`` in ``[0, 2**63 - 1]``, each giving its own stream.

A seed names an identity: ``avatarme-edu head --seed N``, ``make_subject(N, ...)`` and subject
``N`` of a dataset (identities ``seed .. seed + n - 1``) are the same person.
"""

from __future__ import annotations

import argparse

MAX_SEED = 2**63 - 1


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` if it is an int in ``[0, 2**63 - 1]``; else ``ValueError`` naming ``name``."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, {MAX_SEED}] (2**63 - 1), got {seed!r}")
    return seed


def seed_arg(text: str) -> int:
    """``argparse`` type for ``--seed``: the same rule, as a parser error."""
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer in [0, {MAX_SEED}] (2**63 - 1), "
                                         f"got {text!r}") from None
