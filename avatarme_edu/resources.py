"""Where the library finds the data it ships with: one function, :func:`data_path`.

The stored EduHead model and the sample subject of the virtual light stage live inside the package,
under ``avatarme_edu/data/``, and are installed with it as package data (``pyproject.toml``,
``[tool.setuptools.package-data]``). They are found through :mod:`importlib.resources`, so the same
code works in a source checkout, an editable install and a wheel installed anywhere
(``tests/test_packaging.py`` checks the last one). The layout is described in ``docs/design.md``.

>>> data_path("eduhead", "eduhead.safetensors").name
'eduhead.safetensors'
>>> data_path("eduhead").is_dir()
True
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["data_path"]


def data_path(*parts: str) -> Path:
    """The path of a bundled file or folder, ``avatarme_edu/data/<parts...>``.

    The path need not exist (callers that write, such as the rebuild commands, create it). The package
    must be installed as plain files (a wheel or a checkout, not a zip archive), since the loaders
    open these files by path.
    """
    root = resources.files("avatarme_edu").joinpath("data")
    if not isinstance(root, Path):
        raise RuntimeError(f"avatarme_edu's data must be plain files, but the package is loaded from {root!r}; "
                           "install the wheel with pip instead of importing it from a zip archive")
    return root.joinpath(*parts)
