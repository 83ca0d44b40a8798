import pytest

from avatarme_edu.lightstage import dataset as ds
from avatarme_edu.profiles import get_profile


@pytest.fixture(scope="package")
def tiny():
    return get_profile("cpu", device="cpu").replace(map_hw=(48, 72), texture_hw=(12, 18), patch_size=16)


@pytest.fixture(scope="package")
def small_data(tiny, tmp_path_factory):
    """Identities 0..5 (4 held out), written in this process."""
    path = tmp_path_factory.mktemp("small") / "ls"
    ds.make_dataset(6, 0, tiny, path, progress=False, workers=0)
    return path
