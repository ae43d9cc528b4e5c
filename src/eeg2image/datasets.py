"""EEG rows joined with the stimulus embeddings of the images they saw (rows in canonical image order), and
the partition guard.

Training reads ``load_split`` (the training partition only: any other is refused) and carves its validation
images from the training concepts (``concept_disjoint_split``); evaluation alone reads the test partition
(``load_pairs(..., "test", ...)``). Both get a ``RetrievalSplit``; ``RetrievalSplit.queries()`` is the one
definition of a retrieval query (the mean of all repetitions of an image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.preprocess import read_our_preprocessed
from .data.things_eeg2 import resolve_channels
from .features.store import EmbeddingStore
from .io import ConfigError, DataFormatError


@dataclass
class RetrievalSplit:
    """EEG rows and the stimulus embeddings of the images they saw.

    ``eeg[r]`` is the EEG of image ``image[r]`` seen by subject ``subject[r]``; one subject gives one row per
    image (``image = arange``), several subjects trained jointly give one row per subject and image.
    """

    eeg: torch.Tensor  # (n_rows, n_reps, C, T) float32
    views: dict[str, torch.Tensor]  # view name -> (n_images, D)
    concept: np.ndarray  # (n_images,) concept index
    image: np.ndarray | None = None  # (n_rows,) image index of each row; None: row r is image r
    subject: np.ndarray | None = None  # (n_rows,) 1-based subject number of each row; None: unknown (0)
    sfreq: float | None = None  # sampling rate of the EEG (Hz), when known
    ch_names: tuple[str, ...] | None = None  # the EEG's channels, in order, when known (montage-aware encoders)

    def __post_init__(self) -> None:
        n_rows = self.eeg.shape[0]
        if self.image is None:
            self.image = np.arange(n_rows)
        if self.subject is None:
            self.subject = np.zeros(n_rows, dtype=np.int64)
        if not len(self.image) == len(self.subject) == n_rows:
            raise DataFormatError(f"{n_rows} EEG rows but {len(self.image)} image and {len(self.subject)} subject ids")

    def __len__(self) -> int:
        return self.eeg.shape[0]

    @property
    def n_images(self) -> int:
        return len(self.concept)

    def queries(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """(EEG averaged over all repetitions (rows, C, T), subject per row, image index per row)."""
        return self.eeg.mean(dim=1), torch.as_tensor(self.subject), self.image

    def subset(self, images: np.ndarray) -> RetrievalSplit:
        """The images ``images`` (indices) and every EEG row of them, images renumbered 0..len-1."""
        images = np.asarray(images)
        new_index = np.full(self.n_images, -1)
        new_index[images] = np.arange(len(images))
        rows = np.flatnonzero(new_index[self.image] >= 0)
        t = torch.as_tensor(images, dtype=torch.long)
        views = {k: v[t] for k, v in self.views.items()}
        return RetrievalSplit(
            self.eeg[torch.as_tensor(rows)],
            views,
            self.concept[images],
            new_index[self.image[rows]],
            self.subject[rows],
            self.sfreq,
            self.ch_names,
        )


def join_subjects(splits: dict[int, RetrievalSplit]) -> RetrievalSplit:
    """One split from the splits of several subjects that saw the same images (rows concatenated)."""
    first = next(iter(splits.values()))
    for s, sp in splits.items():
        if sp.n_images != first.n_images or not np.array_equal(sp.concept, first.concept):
            raise DataFormatError(f"subject {s} saw other images than subject {next(iter(splits))}")
    return RetrievalSplit(
        torch.cat([sp.eeg for sp in splits.values()]),
        first.views,
        first.concept,
        np.concatenate([sp.image for sp in splits.values()]),
        np.concatenate([np.full(len(sp), s, dtype=np.int64) for s, sp in splits.items()]),
        first.sfreq,
        first.ch_names,
    )


def concept_of(rel_paths: list[str]) -> np.ndarray:
    folders = [p.split("/")[1] for p in rel_paths]
    uniq = {f: i for i, f in enumerate(sorted(set(folders)))}
    return np.array([uniq[f] for f in folders], dtype=np.int64)


def view_table_names(views: list[str], image_encoder: str, evnet_encoder: str | None) -> dict[str, tuple[str, str]]:
    """Target view name -> (stored view, stored encoder). ``evnet:<view>`` reads ``<view>`` of ``evnet_encoder``;
    ``<view>@<encoder>`` reads ``<view>`` of ``<encoder>`` (one split may mix encoders, e.g. a text model's
    captions beside an image model's views); a bare ``<view>`` reads ``image_encoder``'s."""
    out = {}
    for v in views:
        if "@" in v:
            view, _, enc = v.partition("@")
            if not view or not enc:
                raise ConfigError(f"view {v!r}: expected <view>@<encoder>, e.g. text-template@minilm")
            out[v] = (view, enc)
        elif v.startswith("evnet:"):
            if not evnet_encoder:
                raise ConfigError(f"target view {v!r} needs an EVNet encoder (data.evnet_encoder)")
            out[v] = (v.split(":", 1)[1], evnet_encoder)
        else:
            out[v] = (v, image_encoder)
    return out


def load_pairs(
    preprocessed: str | Path,
    store: str | Path,
    partition: str,
    views: list[str],
    image_encoder: str,
    evnet_encoder: str | None = None,
    channels: str | list[str] | None = None,
) -> RetrievalSplit:
    """EEG + embeddings of one partition, checked to refer to the same images in the same order. ``channels``:
    a named channel set (``ubp17``, ...) or names, picked from the preprocessed channels (None: all of them)."""
    eeg = read_our_preprocessed(preprocessed, partition)
    pick = None
    if channels is not None:
        names = resolve_channels(channels)
        missing = [c for c in names if c not in eeg.ch_names]
        if missing:
            raise DataFormatError(
                f"{preprocessed}: channels {missing} are not in the preprocessed data "
                f"({len(eeg.ch_names)} channels: {', '.join(eeg.ch_names)})"
            )
        pick = [eeg.ch_names.index(c) for c in names]
    st = EmbeddingStore(store)
    tables, rel = {}, None
    for name, (view, enc) in view_table_names(views, image_encoder, evnet_encoder).items():
        table = st.load(partition, view, enc)
        canonical = sorted(table.rel_paths, key=lambda r: r.split("/"))
        if table.rel_paths != canonical:
            first = next(i for i, (a, b) in enumerate(zip(table.rel_paths, canonical, strict=True)) if a != b)
            raise DataFormatError(
                f"{st.paths(partition, view, enc)[1]}: key 'images' is not in the image set's sorted order (first at "
                f"row {first}: {table.rel_paths[first]!r}); EEG row i is image i of that order: re-embed"
            )
        if rel is None:
            rel = table.rel_paths
        elif table.rel_paths != rel:
            raise DataFormatError(f"embeddings {view!r}/{enc!r} list other images than {views[0]!r}; re-embed")
        tables[name] = torch.from_numpy(np.asarray(table.embeddings, dtype=np.float32))
    if rel is None or len(rel) != eeg.shape[0]:
        raise DataFormatError(
            f"{preprocessed}: {eeg.shape[0]} {partition} EEG rows but {0 if rel is None else len(rel)} embedded images"
        )
    data = np.asarray(eeg.data)
    data = torch.from_numpy(np.array(data if pick is None else data[:, :, pick], dtype=np.float32))  # a host copy
    ch_names = tuple(eeg.ch_names) if pick is None else tuple(eeg.ch_names[i] for i in pick)
    return RetrievalSplit(data, tables, concept_of(rel), sfreq=float(eeg.sfreq), ch_names=ch_names)


def load_split(
    preprocessed: str | Path,
    store: str | Path,
    partition: str,
    views: list[str],
    image_encoder: str,
    evnet_encoder: str | None = None,
    channels: str | list[str] | None = None,
) -> RetrievalSplit:
    """What training may read: ``load_pairs`` of the training partition, and nothing else."""
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
