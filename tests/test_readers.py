"""Readers accept every real layout and reject each bad input with a message naming file, key, shape."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

from eeg2image.data.preprocess import read_our_preprocessed
from eeg2image.data.things_eeg2 import (
    NICE_CHANNEL_ORDER,
    OFFICIAL_17_CHANNELS,
    RAW_CHANNEL_ORDER,
    ImageSet,
    find_preprocessed_file,
    find_raw_file,
    load_image,
    read_preprocessed,
    read_raw_file,
    write_preprocessed_dict,
    write_raw_file,
    write_ubp_pt,
)
from eeg2image.io import DataFormatError, MissingDataError, load_pickled


def test_official_17_channel_order_is_the_authors_regex_order():
    assert OFFICIAL_17_CHANNELS == (
        "Pz",
        "P3",
        "P7",
        "O1",
        "Oz",
        "O2",
        "P4",
        "P8",
        "P1",
        "P5",
        "PO7",
        "PO3",
        "POz",
        "PO4",
        "PO8",
        "P6",
        "P2",
    )
    assert sorted(RAW_CHANNEL_ORDER) == sorted(NICE_CHANNEL_ORDER) and len(set(RAW_CHANNEL_ORDER)) == 63


def test_raw_reader(tiny_dataset):
    rec = read_raw_file(find_raw_file(tiny_dataset, 1, 2, "test"))
    assert rec.data.shape[0] == 64 and rec.data.dtype == np.float64
    assert rec.ch_names == [*RAW_CHANNEL_ORDER, "stim"] and rec.sfreq == 1000.0
    assert np.abs(rec.data[:63]).max() < 1e-3  # volts


def test_every_preprocessed_layout_reads_the_same_shapes(tiny_dataset, tiny_sim_config, tiny_nice):
    n_train = tiny_sim_config.n_train_concepts * tiny_sim_config.images_per_concept
    n_test = tiny_sim_config.n_test_concepts
    official = {p: read_preprocessed(find_preprocessed_file(tiny_dataset, 1, p)) for p in ("training", "test")}
    assert official["training"].source == "official"
    assert official["training"].shape == (n_train, 4, 17, 100)
    assert official["test"].shape == (n_test, 80, 17, 100)
    assert official["test"].ch_names == list(OFFICIAL_17_CHANNELS)
    np.testing.assert_allclose(official["test"].times, np.arange(-20, 80) / 100)

    nice = read_preprocessed(tiny_dataset / "Preprocessed_data_250Hz/sub-01/preprocessed_eeg_training.npy")
    assert nice.source == "nice" and nice.shape == (n_train, 4, 63, 250)
    raw_pickle = pickle.load(open(nice.path, "rb"))  # our own fixture file: plain pickle is fine here
    assert len(raw_pickle["times"]) == 300  # the uncropped times of the real NICE files
    np.testing.assert_allclose(nice.times, np.arange(250) / 250)  # aligned to the data: times[50:]

    ubp = read_preprocessed(tiny_dataset / "Preprocessed_data_250Hz_whiten/sub-01/test.pt")
    assert ubp.source == "ubp" and ubp.shape == (n_test, 80, 63, 250) and ubp.data.dtype == np.float16
    assert ubp.ch_names == list(NICE_CHANNEL_ORDER)
    assert set(np.unique(ubp.sessions)) == {1, 2, 3, 4}

    ours = read_our_preprocessed(tiny_nice, "training")
    np.testing.assert_allclose(ours.data, nice.data, rtol=1e-5, atol=1e-6)  # same NICE pipeline, same numbers


def test_image_set_order_and_metadata(tiny_dataset, tiny_sim_config):
    images = ImageSet.discover(tiny_dataset)
    files = images.files("training")
    assert len(files) == tiny_sim_config.n_train_concepts * tiny_sim_config.images_per_concept
    assert files == sorted(files)  # sorted folders then sorted files == sorted full paths
    assert files[0].parent.name.startswith("00001_") and files[0].name.endswith("_01b.jpg")
    per = tiny_sim_config.images_per_concept
    assert images.image_for_event("training", per + 1).parent.name.startswith("00002_")
    assert list(images.concept_index("training")[: 2 * per]) == [0] * per + [1] * per
    images.check_metadata()
    assert load_image(files[0], size=32).size == (32, 32)


def test_nested_layouts_are_found(dataset_copy):
    root = dataset_copy
    # sub-XX/sub-XX/ses-YY (unzipped into a folder named like the zip)
    sub = root / "raw_data" / "sub-01"
    inner = sub / "sub-01"
    inner.mkdir()
    for ses in sorted(sub.glob("ses-*")):
        shutil.move(ses, inner / ses.name)
    assert find_raw_file(root, 1, 3, "training") == inner / "ses-03" / "raw_eeg_training.npy"
    # image_set/image_set/train_images (NICE nesting + UBP folder name)
    shutil.move(root / "image_set", root / "tmp")
    (root / "image_set").mkdir()
    shutil.move(root / "tmp", root / "image_set" / "image_set")
    shutil.move(root / "image_set/image_set/training_images", root / "image_set/image_set/train_images")
    images = ImageSet.discover(root)
    assert images.training_dir.name == "train_images" and len(images.files("training")) > 0


# ---------------------------------------------------------------- bad input, one clear error each


def test_missing_subject_and_session(dataset_copy):
    with pytest.raises(MissingDataError, match=r"subject folder sub-02 not found \(have: sub-01\)"):
        find_raw_file(dataset_copy, 2, 1, "training")
    (dataset_copy / "raw_data/sub-01/ses-04/raw_eeg_test.npy").unlink()
    with pytest.raises(MissingDataError, match=r"ses-04/raw_eeg_test.npy"):
        find_raw_file(dataset_copy, 1, 4, "test")


def _rewrite(path, mutate):
    d = np.load(path, allow_pickle=True).item()  # our own simulated file, written by this test session
    mutate(d)
    np.save(path, d, allow_pickle=True)


def test_wrong_key(dataset_copy):
    path = dataset_copy / "raw_data/sub-01/ses-01/raw_eeg_test.npy"
    _rewrite(path, lambda d: d.update(eeg=d.pop("raw_eeg_data")))
    with pytest.raises(DataFormatError, match=r"raw_eeg_test.npy: missing key\(s\) \['raw_eeg_data'\]"):
        read_raw_file(path)


def test_wrong_shape(dataset_copy):
    path = dataset_copy / "raw_data/sub-01/ses-01/raw_eeg_test.npy"
    _rewrite(path, lambda d: d.update(raw_eeg_data=d["raw_eeg_data"][:60]))
    with pytest.raises(DataFormatError, match=r"raw_eeg_test.npy: key 'raw_eeg_data' has 60 rows.*\(64, n_samples\)"):
        read_raw_file(path)
    pre = dataset_copy / "preprocessed_data/sub-01/preprocessed_eeg_test.npy"
    _rewrite(pre, lambda d: d.update(preprocessed_eeg_data=d["preprocessed_eeg_data"][:, :, :16]))
    with pytest.raises(DataFormatError, match=r"key 'preprocessed_eeg_data' has 16 channels.*'ch_names' lists 17"):
        read_preprocessed(pre)


def test_nan_and_inf(dataset_copy):
    path = dataset_copy / "raw_data/sub-01/ses-02/raw_eeg_training.npy"

    def poison(d):
        d["raw_eeg_data"][5, 1234] = np.nan

    _rewrite(path, poison)
    with pytest.raises(
        DataFormatError, match=r"raw_eeg_training.npy: key 'raw_eeg_data' contains NaN or Inf.*\(5, 1234\)"
    ):
        read_raw_file(path)
    pre = dataset_copy / "preprocessed_data/sub-01/preprocessed_eeg_training.npy"

    def poison_pre(d):
        d["preprocessed_eeg_data"][3, 1, 2, 4] = np.inf

    _rewrite(pre, poison_pre)
    with pytest.raises(DataFormatError, match=r"contains NaN or Inf \(first at index \(3, 1, 2, 4\)\)"):
        read_preprocessed(pre)


def test_truncated_file(dataset_copy):
    path = dataset_copy / "raw_data/sub-01/ses-01/raw_eeg_training.npy"
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * 0.7)])
    with pytest.raises(DataFormatError, match=r"raw_eeg_training.npy: the file is truncated or corrupt"):
        read_raw_file(path)


def test_missing_or_unreadable_image(dataset_copy):
    images = ImageSet.discover(dataset_copy)
    victim = images.files("test")[1]
    victim.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataFormatError, match=rf"{victim.name}: unreadable image"):
        ImageSet.discover(dataset_copy).verify_images("test")
    with pytest.raises(DataFormatError, match=rf"{victim.name}: unreadable image"):
        load_image(victim)
    victim.unlink()
    with pytest.raises(MissingDataError, match=rf"{victim.name}: image file not found"):
        load_image(victim)
    with pytest.raises(DataFormatError, match=rf"{victim.parent.name}: concept folder holds no images"):
        ImageSet.discover(dataset_copy).files("test")


def test_metadata_that_disagrees_with_the_folders(dataset_copy):
    images = ImageSet.discover(dataset_copy)
    victim = images.files("training")[5]
    victim.rename(victim.with_name("zz_" + victim.name))
    with pytest.raises(MissingDataError, match=rf"{victim.name}: image missing.*zz_{victim.name} is there but not"):
        ImageSet.discover(dataset_copy).check_metadata()
    victim.with_name("zz_" + victim.name).rename(victim)
    meta = load_pickled(images.metadata_path)
    meta["train_img_files"][5], meta["train_img_files"][6] = meta["train_img_files"][6], meta["train_img_files"][5]
    np.save(images.metadata_path, meta)  # the same images, listed in another order than the sorted folders
    with pytest.raises(DataFormatError, match=r"train_img_files'\[5\].*EEG-to-image order would be wrong"):
        ImageSet.discover(dataset_copy).check_metadata()


def test_ubp_file_with_wrong_session_shape(dataset_copy):
    import torch

    path = dataset_copy / "Preprocessed_data_250Hz_whiten/sub-01/test.pt"
    obj = torch.load(path, weights_only=False)  # our own fixture
    obj["session"] = obj["session"][:, :3]
    torch.save(obj, path)
    with pytest.raises(DataFormatError, match=r"test.pt: key 'session' has shape"):
        read_preprocessed(path)


def test_each_writer_round_trips_through_the_reader_it_mirrors(tmp_path, tiny_dataset):
    rng = np.random.default_rng(0)
    raw = np.zeros((64, 3000))
    raw[:63] = rng.normal(scale=1e-5, size=(63, 3000))
    raw[63, [1000, 1200, 1400]] = [2, 1, 99999]
    write_raw_file(tmp_path / "raw" / "raw_eeg_test.npy", raw)
    rec = read_raw_file(tmp_path / "raw" / "raw_eeg_test.npy")
    np.testing.assert_array_equal(rec.data, raw)
    assert rec.ch_names == [*RAW_CHANNEL_ORDER, "stim"] and rec.sfreq == 1000.0

    images = ImageSet.discover(tiny_dataset)
    n_test = len(images.files("test"))
    eeg = rng.normal(size=(n_test, 2, 63, 10))
    times = np.arange(-2, 10) / 10  # uncropped: the data are the last 10
    for container, source in (("npy", "official"), ("pickle", "nice")):
        path = write_preprocessed_dict(tmp_path / container, "test", eeg, NICE_CHANNEL_ORDER, times, container)
        back = read_preprocessed(path)
        assert back.source == source and back.ch_names == list(NICE_CHANNEL_ORDER)
        np.testing.assert_array_equal(back.data, eeg)
        np.testing.assert_array_equal(back.times, times[2:])

    sessions = np.tile([1, 3], (n_test, 1))
    path = write_ubp_pt(tmp_path / "ubp", "test", eeg, sessions, images, NICE_CHANNEL_ORDER, times)
    back = read_preprocessed(path)
    assert path.name == "test.pt" and back.source == "ubp" and back.data.dtype == np.float16
    np.testing.assert_array_equal(back.data, eeg.astype(np.float16))
    np.testing.assert_array_equal(back.sessions, sessions)
