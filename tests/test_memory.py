"""Work that cannot fit is refused before it starts, saying what would fit."""

import pytest

from avatarme_edu import memory
from avatarme_edu.profiles import get_profile


def test_estimates_grow_with_the_map():
    small, cpu = memory.subject_memory((48, 72)), memory.subject_memory((384, 576))
    assert memory.SUBJECT_FIXED_BYTES < small < cpu < 1 << 30  # the cpu profile fits any laptop
    paper = memory.subject_memory((4096, 6144))
    assert paper > 16 << 30  # measured ~700 B / texel: 4096x6144 needs ~18 GB on a CPU
    assert memory.capture_memory((384, 576)) > cpu


def test_a_huge_capture_is_refused_with_a_size_that_fits():
    # Found: capture --map-size 20000x30000 ran minutes, then died in the allocator.
    prof = get_profile("cpu", "cpu").replace(map_hw=(20000, 30000))
    with pytest.raises(MemoryError) as err:
        memory.check_memory(memory.capture_memory, prof, "the capture")
    msg = str(err.value)
    assert "GiB" in msg and "--map-size" in msg and "GPU" in msg
    side = int(msg.split("--map-size ")[1].split("x")[0])
    fits = get_profile("cpu", "cpu").replace(map_hw=(side, side * 3 // 2))
    memory.check_memory(memory.capture_memory, fits, "the capture")  # the hint does fit


def test_disk_check_refuses_what_cannot_be_written(tmp_path):
    with pytest.raises(OSError) as err:
        memory.check_disk(tmp_path / "new" / "ds", 10**18, "1000000000 subjects")
    assert err.value.errno == 28 and err.value.filename == str(tmp_path / "new" / "ds")
    memory.check_disk(tmp_path, 1000, "a little")
