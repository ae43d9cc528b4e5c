"""EEG paired with the stimulus embeddings of the same images (rows in canonical image order).

Used by training (training partition only, see ``training.data``) and by evaluation (the test partition).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.preprocess import read_our_preprocessed
from ..io import DataFormatError
from .store import EmbeddingStore


@dataclass
class RetrievalSplit:
    eeg: torch.Tensor  # (n_images, n_reps, C, T) float32
    views: dict[str, torch.Tensor]  # view name -> (n_images, D)
    concept: np.ndarray  # (n_images,) concept index

    def __len__(self) -> int:
        return self.eeg.shape[0]

    def subset(self, idx: np.ndarray) -> RetrievalSplit:
        t = torch.as_tensor(idx, dtype=torch.long)
        return RetrievalSplit(self.eeg[t], {k: v[t] for k, v in self.views.items()}, self.concept[idx])


def concept_of(rel_paths: list[str]) -> np.ndarray:
    folders = [p.split("/")[1] for p in rel_paths]
    uniq = {f: i for i, f in enumerate(sorted(set(folders)))}
    return np.array([uniq[f] for f in folders], dtype=np.int64)


def view_table_names(views: list[str], image_encoder: str, evnet_encoder: str | None) -> dict[str, tuple[str, str]]:
    """Target view name -> (stored view, stored encoder). ``evnet:<view>`` reads ``<view>`` of ``evnet_encoder``."""
    out = {}
    for v in views:
        if v.startswith("evnet:"):
            if not evnet_encoder:
                raise DataFormatError(f"target view {v!r} needs an EVNet encoder (evnet_encoder)")
            out[v] = (v.split(":", 1)[1], evnet_encoder)
        else:
            out[v] = (v, image_encoder)
    return out


def load_pairs(preprocessed: str | Path, store: str | Path, partition: str, views: list[str], image_encoder: str,
               evnet_encoder: str | None = None) -> RetrievalSplit:  # fmt: skip
    """EEG + embeddings of one partition, checked to refer to the same images in the same order."""
    eeg = read_our_preprocessed(preprocessed, partition)
    st = EmbeddingStore(store)
    tables, rel = {}, None
    for name, (view, enc) in view_table_names(views, image_encoder, evnet_encoder).items():
        table = st.load(partition, view, enc)
        if rel is None:
            rel = table.rel_paths
        elif table.rel_paths != rel:
            raise DataFormatError(f"embeddings {view!r}/{enc!r} list other images than {views[0]!r}; re-embed")
        tables[name] = torch.from_numpy(np.asarray(table.embeddings, dtype=np.float32))
    if rel is None or len(rel) != eeg.shape[0]:
        raise DataFormatError(
            f"{preprocessed}: {eeg.shape[0]} {partition} EEG rows but {0 if rel is None else len(rel)} embedded images"
        )
    data = torch.from_numpy(np.array(eeg.data, dtype=np.float32))  # a writable copy on the host
    return RetrievalSplit(data, tables, concept_of(rel))
