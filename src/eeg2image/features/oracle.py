"""Oracle targets for the simulated dataset: the features that generated its EEG.

A simulated THINGS-EEG2 (``eeg2image simulate``) drives its EEG with three feature groups per image
(``data.simulate.image_features``: colour means on a 4x4 grid, orientation energy, one-hot concept
factors; 97 numbers, standardised over the image set). Writing them into the embedding store as encoder
``sim-features`` (view ``original``) gives a target that, unlike the offline EVNet encoder, carries all
of what the EEG encodes; so training and evaluation can be tested for "learns far above chance" on
simulated data. It plays the part a pretrained CLIP plays on real data and is labelled as an oracle
wherever it is used. Real datasets have no such features: this refuses them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.things_eeg2 import PARTITIONS, ImageSet
from ..io import DataFormatError, file_sha256, folder_lock
from .embed import EmbedResult, image_set_identity
from .store import EmbeddingStore

ORACLE_ENCODER = "sim-features"


def embed_simulation_features(dataset_root: str | Path, store_root: str | Path) -> list[EmbedResult]:

    root = Path(dataset_root)
    sim = root / "simulation.json"
    if not sim.is_file():
        raise DataFormatError(
            f"{sim}: missing; `{ORACLE_ENCODER}` exists only for datasets made by `eeg2image "
            "simulate` (a real dataset has no generating features)"
        )
    images = ImageSet.discover(root)
    images.check()
    with folder_lock(store_root, "embed"):
        return _embed_features(images, EmbeddingStore(store_root), sim)


def _embed_features(images: ImageSet, store: EmbeddingStore, sim: Path) -> list[EmbedResult]:
    from ..data.simulate.images import image_features

    feats = None
    results = []
    for p in PARTITIONS:
        rel, ihash = image_set_identity(images, p)
        ident = {
            "encoder": ORACLE_ENCODER,
            "simulation": file_sha256(sim),
            "images": ihash,
            "dtype": "float32",
            "features": "data.simulate.image_features: early 48 + mid 18 + semantic 31",
        }
        if store.status(p, "original", ORACLE_ENCODER, ident) == "valid":
            results.append(EmbedResult(p, "original", ORACLE_ENCODER, "cached", len(rel), -1))
            continue
        if feats is None:
            feats = image_features(images)
        table = np.concatenate([feats[p][k] for k in ("early", "mid", "semantic")], axis=1).astype(np.float32)
        status = store.compute(p, "original", ORACLE_ENCODER, ident, rel, lambda idx, t=table: t[idx], len(rel))
        results.append(EmbedResult(p, "original", ORACLE_ENCODER, status, len(rel), table.shape[1]))
    return results
