"""Fixtures and options shared by the whole suite.

* ``tiny``: the cpu profile shrunk to test sizes (96x144 maps, 24x36 fitted textures, 32-texel
  patches), one object for the whole session (a ``Profile`` is frozen, so sharing it is safe).
* ``texture8``: the 8-bit encodings a viewer texture must hold, written out in the test suite
  (sRGB formula, ``n * 0.5 + 0.5``), so viewer tests do not take their expected values from the
  library's own export helpers.
* ``--update-baselines``: the notebook tests write the numbers they measure into
  ``tests/baselines/notebooks.json`` instead of comparing (``make baselines``; commit the diff).
* Tests marked ``slow`` are left out by ``pytest -m "not slow"``, the fast loop while editing;
  ``make test`` runs everything.
* Every process runs one torch thread unless ``OMP_NUM_THREADS`` is set.
"""

from __future__ import annotations

import os
import signal

# One thread per process unless OMP_NUM_THREADS says otherwise: the tests are many small tensor ops,
# which extra threads only slow down on a shared 2-core machine (and `make test` runs two processes).
# Set before torch is imported, so notebook kernels and CLI subprocesses inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from avatarme_edu.profiles import Profile, get_profile  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# A shell starts background jobs (`nohup make test &`) with ctrl-c ignored, and children inherit that:
# the tests that interrupt a CLI subprocess would then see it run to the end. Give ctrl-c back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: Test modules whose tests take tens of seconds each (papermill notebooks, whole reconstructions, CLI
#: subprocesses). They run first, so that `make test`'s two workers share them, instead of one worker
#: finishing them alone while the other waits (that tail cost CI about three minutes).
LONG_FIRST = ("test_notebooks.py", "test_end_to_end.py", "test_pipeline.py", "test_pipeline_input.py",
              "test_cli.py", "test_write.py", "test_fit_eval.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))  # stable: the rest keep their order


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


@pytest.fixture(scope="session")
def texture8():
    """``encode(map, kind)``: a ``(C, H, W)`` map as the ``(H, W, C)`` 0..255 values of an 8-bit texture.

    ``kind``: ``"srgb"`` (linear colour through the sRGB curve), ``"linear"`` (stored as is) or
    ``"normal"`` (unit vector stored as ``n * 0.5 + 0.5``). Compare inside the mask with ``atol=1``.
    """
    def encode(m, kind: str) -> np.ndarray:
        x = m.detach().cpu().double().permute(1, 2, 0).numpy()
        if kind == "srgb":
            x = np.clip(x, 0, 1)
            x = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
        elif kind == "normal":
            x = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-12) * 0.5 + 0.5
        elif kind != "linear":
            raise ValueError(f"kind must be srgb, linear or normal, got {kind!r}")
        return np.floor(np.clip(x, 0, 1) * 255 + 0.5)

    return encode
