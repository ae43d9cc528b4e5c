"""Shared fixtures: one tiny simulated THINGS-EEG2 (written once per test session) and its preprocessing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from eeg2image.data.preprocess import PreprocessConfig, preprocess_subject, preset_config
from eeg2image.data.simulate import simulate_dataset, simulation_config


def pytest_configure(config):
    """Share the cores out among pytest-xdist's workers. Each would otherwise start as many math threads as there
    are cores: on CI's 2 cores, two workers ran 4 spinning threads and the suite took twice as long (440 s against
    224 s). Subprocesses the tests start inherit the setting."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_sim_config():
    return simulation_config("tiny", seed=3)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_sim_config) -> Path:
    """A tiny simulated dataset with every layout: raw, official, NICE pickle and UBP .pt files."""
    root = tmp_path_factory.mktemp("things") / "dataset"
    simulate_dataset(root, tiny_sim_config, formats=("nice", "ubp"), progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_nice(tiny_dataset, tmp_path_factory) -> Path:
    return preprocess_subject(tiny_dataset, tmp_path_factory.mktemp("pre"), 1, PreprocessConfig(), progress=False)


@pytest.fixture(scope="session")
def tiny_unwhitened(tiny_dataset, tmp_path_factory) -> Path:
    cfg = preset_config("nice", mvnn="none", shuffle_repetitions=False)
    return preprocess_subject(tiny_dataset, tmp_path_factory.mktemp("pre_raw"), 1, cfg, progress=False)


@pytest.fixture()
def dataset_copy(tiny_dataset, tmp_path) -> Path:
    """A private copy to damage."""
    dst = tmp_path / "copy"
    shutil.copytree(tiny_dataset, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_oracle_store(tiny_dataset, tmp_path_factory) -> Path:
    """The tiny dataset's generating features as an embedding store (encoder ``sim-features``)."""
    from eeg2image.features.oracle import embed_simulation_features

    store = tmp_path_factory.mktemp("oracle") / "store"
    embed_simulation_features(tiny_dataset, store)
    return store


#: The ``learnable`` dataset's test images: chance is 1/40 top-1, 5/40 top-5.
LEARNABLE_TEST_IMAGES = 40


@pytest.fixture(scope="session")
def learnable(tmp_path_factory) -> Path:
    """300 training images, 40 test images, stronger image-specific EEG than the default simulation,
    preprocessed like the authors' files (17 channels, 100 Hz), oracle targets (the generating features).
    Shared: read it, never write below it."""
    from eeg2image.data.preprocess import preset_config
    from eeg2image.features.oracle import embed_simulation_features

    root = tmp_path_factory.mktemp("learnable")
    cfg = simulation_config("small", seed=5, n_test_concepts=LEARNABLE_TEST_IMAGES, specific_uv=12.0)
    simulate_dataset(root / "ds", cfg, progress=False)
    preprocess_subject(root / "ds", root / "pre", 1, preset_config("authors"), progress=False)
    shutil.rmtree(root / "ds" / "raw_data")  # most of its size on disk; its tests start from the preprocessed EEG
    embed_simulation_features(root / "ds", root / "store")
    return root


#: The tiny VAE and decoder trained on the ``learnable`` dataset (``learnable_generator``).
VAE_SETS = ["image_size=16", "block_out_channels=[8,16]", "steps=120", "batch_size=32", "lr=5e-3", "kl=1e-4"]
DECODER_SETS = [
    "decoder.image_size=16",
    "decoder.channels=[32,16]",
    "decoder.steps=300",
    "decoder.checkpoint_every=100",
]


@pytest.fixture(scope="session")
def learnable_generator(learnable, tmp_path_factory):
    """The low-level path and the offline generator on the ``learnable`` dataset: a tiny VAE (``train-vae``), its
    latents in a copy of the store (``embed --encoder vae:``), and a decoder (``train-decoder``) conditioned on the
    simulator's features (view ``original``, the aligner's ``image`` target there) and the latents. Returns (folder
    holding store/, vae/, dec/; the train-decoder command). Shared: read it, never write below it."""
    from badinput import as_sets

    from eeg2image.cli import main

    root = tmp_path_factory.mktemp("generator")
    shutil.copytree(learnable / "store", root / "store")

    def run(*args) -> None:
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        assert exc.value.code == 0

    run("train-vae", learnable / "ds", root / "vae", "--quiet", *as_sets(VAE_SETS))
    run("embed", learnable / "ds", root / "store", "--encoder", f"vae:{root / 'vae'}", "--views", "original")
    args = ["train-decoder", learnable / "ds", root / "store", root / "dec", "--encoder", "sim-features"]
    args += ["--targets", "image", "--latents", f"vae:{root / 'vae'}", "--quiet", *as_sets(DECODER_SETS)]
    run(*args)
    return root, args


#: The tiny THINGS-MEG: 6 training and 3 test concepts x 2 images shown once, 3 test images shown 12 times.
TINY_MEG = {"n_train_concepts": 6, "images_per_concept": 2, "n_test_concepts": 3, "modality": "meg", "seed": 4}


@pytest.fixture(scope="session")
def tiny_meg(tmp_path_factory) -> Path:
    """A tiny simulated THINGS-MEG in the official layout (ds004212 epochs + THINGS images and metadata). Shared:
    read it, never write below it."""
    root = tmp_path_factory.mktemp("meg") / "things-meg"
    simulate_dataset(root, simulation_config("tiny", **TINY_MEG), progress=False)
    return root


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face hub cache of this test's own, offline (``hfcache.fake_hf_cache`` fills it)."""
    import huggingface_hub.constants as hc

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache
