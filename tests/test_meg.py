"""THINGS-MEG end to end: the simulated dataset in the official layout (MNE epochs, THINGS' images and metadata),
each reader against the writer that mirrors it, the peers' split, and retrieval trained and evaluated on it far
above chance, with every later stage unchanged."""

from __future__ import annotations

import os

import numpy as np
import pytest
from badinput import run_cli

from eeg2image.data.preprocess import read_our_preprocessed
from eeg2image.data.things_eeg2 import ImageSet, read_preprocessed
from eeg2image.data.things_meg import (
    CATCH_ID,
    MEG_CHANNELS,
    ThingsImages,
    read_meg_epochs,
    write_atm_meg,
    write_meg_epochs,
    write_things_metadata,
    write_ubp_meg_pt,
)

EPOCHS = "ds004212/derivatives/preprocessed/preprocessed_P1-epo.fif"


def test_the_simulated_meg_is_mne_epochs_in_the_official_layout_and_info_describes_it(tiny_meg, capsys):
    import mne

    epochs = mne.read_epochs(tiny_meg / EPOCHS, preload=False, verbose="error")
    assert epochs.ch_names == list(MEG_CHANNELS) and len(epochs.ch_names) == 271
    assert epochs.info["sfreq"] == 200.0 and len(epochs.times) == 281
    assert epochs.times[0] == pytest.approx(-0.1) and epochs.times[-1] == pytest.approx(1.3)
    locs = np.array([c["loc"][:3] for c in epochs.info["chs"]])
    assert np.all(np.linalg.norm(locs, axis=1) > 0.05)  # CTF sensor positions (m), MLO42 mirrored from MRO42
    assert {c["kind"] for c in epochs.info["chs"]} == {mne.io.constants.FIFF.FIFFV_MEG_CH}
    ids, counts = np.unique(epochs.events[:, 2], return_counts=True)
    assert CATCH_ID in ids and sorted(set(counts[ids != CATCH_ID].tolist())) == [1, 12]
    things = ThingsImages.discover(tiny_meg)
    assert all(things.file(i).is_file() for i in range(1, len(things.paths) + 1))
    assert ids[ids != CATCH_ID].max() <= len(things.paths)
    code, out, _ = run_cli(capsys, "info", tiny_meg, "--deep")
    assert code == 0, out
    assert "THINGS-MEG" in out and "271 sensors x 281 samples at 200 Hz" in out and "repeated (x12)" in out
    assert f"image_paths.csv: {len(things.paths)} images" in out


def test_epochs_round_trip_through_mne(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(6, 271, 281))
    events = np.array([3, 1, CATCH_ID, 2, 1, 5])
    write_meg_epochs(tmp_path / "preprocessed_P2-epo.fif", data, events, -0.1)
    back, ep = read_meg_epochs(tmp_path / "preprocessed_P2-epo.fif")
    np.testing.assert_allclose(back, data, rtol=1e-6, atol=1e-6)  # MNE stores single precision
    np.testing.assert_array_equal(ep.events, events)
    np.testing.assert_allclose(ep.load([5, 0]), back[[5, 0]])  # any order, as the split asks
    assert ep.ch_names == list(MEG_CHANNELS) and ep.sfreq == 200.0
    assert [p.name for p in tmp_path.iterdir()] == ["preprocessed_P2-epo.fif"]  # nothing left beside it


def test_things_metadata_round_trip(tmp_path):
    rows = ["images/aardvark/aardvark_01b.jpg", "images/aardvark/aardvark_02s.jpg", "images/zebra/zebra_01b.jpg"]
    write_things_metadata(tmp_path / "THINGS", rows, [1, 1, 1854])
    things = ThingsImages.discover(tmp_path)
    assert things.paths == rows and things.concept_index.tolist() == [1, 1, 1854]
    assert things.file(3) == tmp_path / "THINGS" / "Images" / "zebra" / "zebra_01b.jpg"
    assert things.folder_name(3) == "01854_zebra" and things.concept(1) == "aardvark"


@pytest.mark.parametrize("reps", [1, 12])
def test_ubp_and_atm_meg_files_round_trip(tmp_path, reps):
    """UBP's ``train.pt`` / ``test.pt`` (``eeg`` float16 and ``img`` only) and ATM's pickles, each written as its
    script writes it and read back through ``read_preprocessed``."""
    rng = np.random.default_rng(1)
    data = rng.normal(size=(24, reps, 271, 201)).astype(np.float32)
    img = [f"training_images/{k // 12 + 1:05d}_c/c_{k:02d}.jpg" for k in range(24)]
    ubp = read_preprocessed(write_ubp_meg_pt(tmp_path / "sub-01" / "train.pt", data, img))
    assert ubp.source == "ubp-meg" and ubp.ch_names == list(MEG_CHANNELS) and ubp.shape == data.shape
    np.testing.assert_array_equal(ubp.data, data.astype(np.float16))
    np.testing.assert_allclose(ubp.times, np.arange(201) / 200.0)
    name = "preprocessed_meg_training.pkl" if reps == 1 else "preprocessed_meg_zs_test.pkl"
    times = np.arange(201) / 200.0
    atm = read_preprocessed(write_atm_meg(tmp_path / "sub-01" / name, data, MEG_CHANNELS, times))
    assert atm.source == "atm-meg" and atm.shape == data.shape and atm.ch_names == list(MEG_CHANNELS)
    np.testing.assert_allclose(atm.data, data.astype(np.float64))


def test_the_split_is_the_peers(tiny_meg, tmp_path, capsys):
    """``preprocess`` on a THINGS-MEG root makes UBP's split (process_meg.py, written out here from its code):
    crop 0..1 s, sort by event id, drop the catch trials, test = the ids shown 12 times, training = the ids shown
    once whose concept is not a test concept; and the image set the rows are in the order of."""
    code, out, err = run_cli(capsys, "preprocess", tiny_meg, tmp_path / "out", "--quiet")
    assert code == 0, err
    data, ep = read_meg_epochs(tiny_meg / EPOCHS)
    things = ThingsImages.discover(tiny_meg)
    # UBP's steps, on the same file
    keep_t = (ep.times >= 0) & (ep.times <= 1.0 + 1e-9)
    order = np.argsort(ep.events, kind="stable")
    ev, x = ep.events[order], data[order][:, :, keep_t]
    x, ev = x[ev != CATCH_ID], ev[ev != CATCH_ID]
    ids, counts = np.unique(ev, return_counts=True)
    test_ids = ids[counts == 12]
    test_concepts = set(things.concept_index[test_ids - 1].tolist())
    train_mask = ~np.isin(ev, test_ids) & ~np.isin(things.concept_index[ev - 1], list(test_concepts))
    ubp_train = x[train_mask][:, None]
    ubp_test = x[np.isin(ev, test_ids)].reshape(len(test_ids), 12, *x.shape[1:])
    pre = tmp_path / "out" / "sub-01"
    train, test = read_our_preprocessed(pre, "training"), read_our_preprocessed(pre, "test")
    assert train.shape == ubp_train.shape == (12, 1, 271, 201) and test.shape == ubp_test.shape == (3, 12, 271, 201)
    np.testing.assert_allclose(train.data, ubp_train, rtol=1e-6, atol=1e-6)
    # the repetitions of a test image are in no defined order in either: compare their sets
    np.testing.assert_allclose(np.sort(test.data, axis=1), np.sort(ubp_test, axis=1), rtol=1e-6, atol=1e-6)
    assert np.allclose(train.times, np.arange(201) / 200.0) and train.ch_names == list(MEG_CHANNELS)
    # the image set: the rows' images, in its sorted order, linked to THINGS' files
    images = ImageSet.discover(tmp_path / "out")
    for p, events in (("training", ev[train_mask]), ("test", test_ids)):
        files = images.files(p)
        assert [os.path.realpath(f) for f in files] == [str(things.file(i).resolve()) for i in events]
        assert np.array_equal(np.load(pre / f"{p}_events.npy"), events)
    assert all(f.parent.name.split("_", 1)[0].isdigit() for f in images.files("test"))
    # UBP's own copy of the images (Image_set/, test folders numbered by THINGS concept): the same image list
    import shutil

    shutil.copytree(tmp_path / "out" / "image_set", tmp_path / "ubp" / "Image_set", symlinks=True)
    ubp = ImageSet.discover(tmp_path / "ubp")
    assert [f.name for f in ubp.files("test")] == [f.name for f in images.files("test")]
    numbers = [int(f.parent.name[:5]) for f in ubp.files("test")]
    assert numbers == sorted(numbers) and numbers != list(range(numbers[0], numbers[0] + len(numbers)))
    # a second participant's split shares the image set; a config change is a new split
    code, out, err = run_cli(capsys, "info", tmp_path / "out")
    assert code == 0 and "training (12, 1, 271, 201)" in out, out


def test_retrieval_on_the_simulated_meg_beats_chance_far(tmp_path, capsys):
    """simulate --modality meg -> preprocess (the split) -> embed -> train -> evaluate, every stage as for EEG."""
    import json

    ds, out, run = tmp_path / "meg", tmp_path / "split", tmp_path / "run"
    sets = ["--set", "specific_uv=12.0"]  # the small preset: 60 training concepts x 5 images, 20 test images
    steps = [
        ["simulate", ds, "--modality", "meg", "--preset", "small", *sets],
        ["preprocess", ds, out, "--quiet"],
        ["embed", out, out / "store", "--encoder", "sim-features"],
        [
            *["train", run, "--preset", "demo", "--preprocessed", out, "--store", out / "store", "--dataset", out],
            *["--encoder", "linear", "--epochs", "30", "--seeds", "0", "--quiet", "--set", "train.batch_size=64"],
        ],
        ["evaluate", run],
    ]
    for args in steps:
        code, _, err = run_cli(capsys, *args)
        assert code == 0, (args[0], err)
    a = json.loads((run / "metrics.json").read_text())["final"]["sub-01"]["aggregate"]
    # 20 test images: chance 5 % top-1, 25 % top-5; measured 0.65 / 0.95 (seed 0)
    assert a["top1"]["mean"] >= 0.3 and a["top5"]["mean"] >= 0.6, a
    # the shuffled control: the same run with the training MEG dealt to shuffled images
    code, _, err = run_cli(
        capsys, *steps[3][:1], tmp_path / "shuffled", *steps[3][2:], "--set", "data.shuffle_pairs=true"
    )
    assert code == 0, err
    assert run_cli(capsys, "evaluate", tmp_path / "shuffled")[0] == 0
    s = json.loads((tmp_path / "shuffled" / "metrics.json").read_text())["final"]["sub-01"]["aggregate"]
    # measured 0.10 / 0.30 (chance 0.05 / 0.25)
    assert s["top1"]["mean"] <= 0.15 and s["top1"]["mean"] < a["top1"]["mean"] - 0.2, (s, a)
    # the reconstruction side, unchanged: an image expert, its aligner (ridge on the targets), the nearest-image
    # generator, scored against the shuffled control
    experts = "train.experts={modalities: {image: [original]}, expert: ved, mask_count: 0}"
    chain = [
        [
            *["train", tmp_path / "experts", "--preprocessed", out, "--store", out / "store", "--dataset", out],
            *["--epochs", "10", "--seeds", "0", "--quiet", "--set", "data.image_encoder=sim-features"],
            *["--set", experts, "--set", "train.batch_size=64"],
        ],
        ["align", tmp_path / "experts", "--targets", "image", "--set", "method=ridge", "--set", "fit_on=targets"],
        [
            *["reconstruct", tmp_path / "experts" / "align", "--out", tmp_path / "rec", "--generator", "nearest"],
            *["--rows", "eeg,shuffled"],
        ],
        ["evaluate-recon", tmp_path / "rec", "--dataset", out, "--metrics", "pixcorr"],
    ]
    for args in chain:
        code, _, err = run_cli(capsys, *args)
        assert code == 0, (args[0], err)
    two_way = {
        row: json.loads((tmp_path / "rec" / row / "sub-01" / "metrics.json").read_text())["over_seeds"][
            "image_embedding_2way"
        ]["mean"]
        for row in ("eeg", "shuffled")
    }
    # measured 0.91 against 0.56 for the shuffled control (chance 0.5)
    assert two_way["eeg"] >= 0.7 and two_way["eeg"] - two_way["shuffled"] >= 0.1, two_way


@pytest.mark.parametrize("name", ["ved", "nice", "atms", "eegproject", "eegnet", "shallow", "linear", "cogcap"])
def test_every_encoder_takes_meg_sensors_and_samples(name):
    """271 sensors x 201 samples at 200 Hz: each registered encoder builds, embeds and takes a training step."""
    import torch

    from eeg2image.models.eeg_encoders import build_eeg_encoder
    from eeg2image.models.losses import InfoNCE

    torch.manual_seed(0)
    enc = build_eeg_encoder(name, n_chans=271, n_times=201, sfreq=200.0, out_dim=16)
    out = enc(torch.randn(4, 271, 201), torch.ones(4, dtype=torch.long))
    assert out.shape == (4, 16) and torch.isfinite(out).all()
    InfoNCE()(out, torch.randn(4, 16)).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_meg_channel_sets_are_named_by_the_sensor_groups():
    from eeg2image.data.things_eeg2 import resolve_channels

    occ, op = resolve_channels("meg-occipital"), resolve_channels("meg-occipitoparietal")
    assert len(resolve_channels("meg271")) == 271 and len(occ) == 39 and len(op) == 84
    assert all(c[2] == "O" for c in occ) and set(occ) < set(op) and "MRO11-1609" not in resolve_channels("meg271")


def test_info_describes_the_peers_meg_files(tmp_path, capsys):
    """UBP's ``Preprocessed_data/sub-XX/{train,test}.pt`` and ATM's ``sub-XX/preprocessed_meg_*.pkl``, opened by
    ``info --deep`` through the readers."""
    rng = np.random.default_rng(2)
    train, test = rng.normal(size=(24, 1, 271, 201)), rng.normal(size=(3, 12, 271, 201))
    ubp = tmp_path / "ubp" / "Preprocessed_data" / "sub-01"
    write_ubp_meg_pt(ubp / "train.pt", train, ["training_images/00001_a/a_01b.jpg"] * 24)
    write_ubp_meg_pt(ubp / "test.pt", test, ["test_images/00002_b/b_01b.jpg"] * 3)
    times = np.arange(201) / 200.0
    write_atm_meg(tmp_path / "atm" / "sub-01" / "preprocessed_meg_training.pkl", train, MEG_CHANNELS, times)
    write_atm_meg(tmp_path / "atm" / "sub-01" / "preprocessed_meg_zs_test.pkl", test, MEG_CHANNELS, times)
    for folder, source in (("ubp", "ubp-meg"), ("atm", "atm-meg")):
        code, out, _ = run_cli(capsys, "info", tmp_path / folder, "--deep")
        assert code == 0, out
        assert f"{source} format, (24, 1, 271, 201)" in out and f"{source} format, (3, 12, 271, 201)" in out, out
