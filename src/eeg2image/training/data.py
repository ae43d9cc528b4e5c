"""Training data for retrieval: the training partition only.

Test data reach nothing but ``evaluation``: ``load_split`` refuses any other partition, and the
validation split is carved from the training concepts (concept-disjoint, seeded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..features.pairs import RetrievalSplit, load_pairs
from ..io import DataFormatError

__all__ = ["RetrievalSplit", "concept_disjoint_split", "load_split"]


def load_split(
    preprocessed: str | Path,
    store: str | Path,
    partition: str,
    views: list[str],
    image_encoder: str,
    evnet_encoder: str | None = None,
    channels: str | list[str] | None = None,
) -> RetrievalSplit:
    if partition != "training":
        raise DataFormatError(
            f"training code reads only the training partition, not {partition!r}; the test partition is read by "
            "evaluation alone"
        )
    return load_pairs(preprocessed, store, partition, views, image_encoder, evnet_encoder, channels)


def concept_disjoint_split(concept: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): whole concepts go to validation, about ``fraction`` of them."""
    uniq = np.unique(concept)
    rng = np.random.default_rng(seed)
    n_val = int(round(fraction * len(uniq)))
    val_concepts = set(rng.choice(uniq, size=n_val, replace=False).tolist()) if n_val else set()
    is_val = np.array([c in val_concepts for c in concept])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
