"""Training groundwork: the loop learns on simulated data, and training code cannot open the test set."""

from __future__ import annotations

import pytest
import torch

from eeg2image.features.embed import embed_images
from eeg2image.features.encoders import build_image_encoder
from eeg2image.features.views import parse_views
from eeg2image.io import DataFormatError
from eeg2image.models.fusion import TargetConfig
from eeg2image.training.data import concept_disjoint_split, load_split
from eeg2image.training.trainer import TrainConfig, average_reps, train_one_seed


@pytest.fixture(scope="module")
def tiny_store(tiny_dataset, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    embed_images(tiny_dataset, store, parse_views("original"), build_image_encoder("evnet", device="cpu"),
                 partitions=("training",), progress=False)  # fmt: skip
    return store


def test_training_code_cannot_read_the_test_partition(tiny_nice, tiny_store):
    with pytest.raises(DataFormatError, match="reads only the training partition"):
        load_split(tiny_nice, tiny_store, "test", ["original"], "evnet")


def test_loop_fits_the_training_pairs(tiny_nice, tiny_store):
    train = load_split(tiny_nice, tiny_store, "training", ["original"], "evnet")
    assert train.eeg.shape[:2] == (64, 4) and train.views["original"].shape == (64, 1024)
    cfg = TrainConfig(eeg_encoder="linear", epochs=40, batch_size=32, lr=1e-3, target=TargetConfig(adapter=False))
    _, hist = train_one_seed(cfg, train)
    assert hist[-1] < 0.5 * hist[0]
    _, again = train_one_seed(cfg, train)
    assert again == hist  # seeded: the same run twice


def test_concept_disjoint_split_and_rep_subaveraging():
    import numpy as np

    concept = np.repeat(np.arange(20), 5)
    tr, va = concept_disjoint_split(concept, 0.2, seed=1)
    assert len(va) == 20 and not set(concept[tr]) & set(concept[va])
    x = torch.arange(2 * 4 * 1 * 1, dtype=torch.float32).view(2, 4, 1, 1)
    assert torch.equal(average_reps(x, 0, None), x.mean(1))
    sub = average_reps(x, 2, torch.Generator().manual_seed(0))
    assert sub.shape == (2, 1, 1) and not torch.equal(sub, x.mean(1))
