"""Public faces of the subpackages: names listed in ``__all__``, loaded from their modules on first use.

``from avatarme_edu.lightstage import make_subject`` works, yet ``import avatarme_edu.lightstage`` stays
instant and imports none of its modules (PEP 562 module ``__getattr__``). That also lets
``python -m avatarme_edu.lightstage.dataset`` run its module once, as ``__main__`` only.
"""

from __future__ import annotations

import importlib
import sys


def public_face(package: str, homes: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package`` whose public ``name`` lives in module ``homes[name]``."""

    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{homes[name]}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__
