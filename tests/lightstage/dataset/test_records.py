"""Every dataset file is checked: corruption is an error naming the file, never NaN in a batch."""

import json
import shutil

import pytest

from avatarme_edu.lightstage import dataset as ds

# every test here reads a dataset that a fixture writes first (seconds): slow
pytestmark = pytest.mark.slow


@pytest.fixture
def copy(small_data, tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(small_data, path)
    return path


def test_a_clean_dataset_verifies(small_data):
    assert ds.verify_dataset(small_data) == []
    rec = ds.read_subject_record(small_data / "subject_0000")
    assert set(rec["checksums"]) == {"neutral.safetensors"} and len(rec["checksums"]["neutral.safetensors"]) == 64


def test_ff_bytes_in_the_payload_are_caught_by_name(copy, tiny):
    # Found: 4 KiB of 0xFF in a payload gave thousands of NaNs from load_maps and NaN batches.
    f = copy / "subject_0001" / "neutral.safetensors"
    data = bytearray(f.read_bytes())
    data[20_000:24_096] = b"\xff" * 4096
    f.write_bytes(bytes(data))
    with pytest.raises(ds.DatasetError, match="subject_0001/neutral.safetensors.*corrupt"):
        ds.load_maps(copy / "subject_0001")
    problems = ds.verify_dataset(copy)
    assert len(problems) == 1 and "subject_0001/neutral.safetensors" in problems[0]
    dset = ds.PatchDataset(copy, "train", tiny, length=64)
    with pytest.raises(ds.DatasetError, match="subject_0001"):
        for i in range(len(dset)):
            dset[i]


def test_nan_in_a_map_is_an_error_even_with_a_matching_checksum(copy):
    from avatarme_edu.lightstage.dataset.records import sha256_file
    from avatarme_edu.maps_io import load_tensors, save_tensors

    folder = copy / "subject_0002"
    maps = load_tensors(folder / "neutral.safetensors")
    maps["depth"][0, 10, 10] = float("nan")
    save_tensors(folder / "neutral.safetensors", maps)
    rec = json.loads((folder / "subject.json").read_text())
    rec["checksums"]["neutral.safetensors"] = sha256_file(folder / "neutral.safetensors")
    (folder / "subject.json").write_text(json.dumps(ds.records.seal(rec)))  # every checksum matches
    with pytest.raises(ds.DatasetError, match=r"subject_0002/neutral.safetensors.*'depth'.*NaN"):
        ds.load_maps(folder)


def test_truncated_and_missing_files_name_the_file(copy):
    f = copy / "subject_0003" / "neutral.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(ds.DatasetError, match="subject_0003/neutral.safetensors"):
        ds.load_maps(copy / "subject_0003")
    f.unlink()
    with pytest.raises(ds.DatasetError, match="subject_0003/neutral.safetensors.*missing"):
        ds.load_maps(copy / "subject_0003")


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]"])
def test_empty_or_corrupt_json_names_the_file(copy, content):
    # Found: "Expecting value: line 1 column 1" with no file name.
    (copy / "subject_0000" / "subject.json").write_bytes(content)
    with pytest.raises(ds.DatasetError, match="subject_0000/subject.json"):
        ds.read_subject_record(copy / "subject_0000")
    assert any("subject_0000/subject.json" in p for p in ds.verify_dataset(copy))
    (copy / "manifest.json").write_bytes(content)
    with pytest.raises(ds.DatasetError, match="manifest.json"):
        ds.read_manifest(copy)


def test_unlisted_and_mislabelled_subjects_are_reported(copy):
    shutil.copytree(copy / "subject_0000", copy / "subject_0099")
    man = json.loads((copy / "manifest.json").read_text())
    man["subjects"][4]["split"] = "train"
    (copy / "manifest.json").write_text(json.dumps(ds.records.seal(man)))  # as a buggy writer would
    problems = ds.verify_dataset(copy)
    assert any("subject_0099" in p and "not listed" in p for p in problems)
    assert any("identity 4" in p for p in problems)


def test_a_changed_value_in_a_record_is_caught(copy):
    man = json.loads((copy / "manifest.json").read_text())
    man["map_hw"] = [96, 144]
    (copy / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ds.DatasetError, match="manifest.json.*own SHA-256"):
        ds.read_manifest(copy)
    rec = json.loads((copy / "subject_0001" / "subject.json").read_text())
    rec["wild"]["neutral"]["exposure"] += 0.5
    (copy / "subject_0001" / "subject.json").write_text(json.dumps(rec))
    with pytest.raises(ds.DatasetError, match="subject_0001/subject.json.*own SHA-256"):
        ds.load_maps(copy / "subject_0001")


@pytest.mark.parametrize("seed", range(12))
def test_a_byte_flipped_anywhere_is_reported(small_data, tmp_path, seed):
    import random

    rng = random.Random(seed)
    path = tmp_path / "flip"
    shutil.copytree(small_data, path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    f = rng.choice(files)
    data = bytearray(f.read_bytes())
    at = rng.randrange(len(data))
    data[at] ^= rng.randrange(1, 256)
    f.write_bytes(bytes(data))
    if f.name == "manifest.json":
        try:  # whitespace turned into other whitespace changes nothing: nothing to report
            if json.loads(bytes(data)) == json.loads((small_data / "manifest.json").read_bytes()):
                return
        except ValueError:
            pass
    problems = ds.verify_dataset(path)
    assert problems and any(f.name in p for p in problems), (f, at, problems)
