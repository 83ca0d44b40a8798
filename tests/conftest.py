"""Fixtures and options shared by the whole suite.

* ``tiny``: the cpu profile shrunk to test sizes (96x144 maps, 24x36 fitted textures, 32-texel
  patches), one object for the whole session (a ``Profile`` is frozen, so sharing it is safe).
* ``--update-baselines``: the notebook tests write the numbers they measure into
  ``tests/baselines/notebooks.json`` instead of comparing (``make baselines``; commit the diff).
* Tests marked ``slow`` are left out by ``pytest -m "not slow"``, the fast loop while editing;
  ``make test`` runs everything.
"""

from __future__ import annotations

import pytest

from avatarme_edu.profiles import Profile, get_profile


def pytest_addoption(parser):
    parser.addoption("--update-baselines", action="store_true", default=False,
                     help="notebook tests: store the measured numbers as the new baselines instead of comparing")


@pytest.fixture(scope="session")
def tiny() -> Profile:
    """The cpu profile at test sizes: maps (96, 144), fitted textures (24, 36), patches 32."""
    return get_profile("cpu", device="cpu").replace(map_hw=(96, 144), texture_hw=(24, 36), patch_size=32)


@pytest.fixture(scope="session")
def update_baselines(request) -> bool:
    return bool(request.config.getoption("--update-baselines"))
