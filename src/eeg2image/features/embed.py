"""``eeg2image embed``: every (view, encoder) embedding of an image set, computed once, into the store.

Images are decoded once per batch (in worker processes when ``workers > 0``), every pending view is
applied to them there, and each view's batch is encoded by every encoder given and written; finished
batches survive a kill. Several encoders in one call share the views: an expensive view (a depth map
from Depth Anything) is computed once per image, not once per encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.things_eeg2 import PARTITIONS, ImageSet, Partition, load_image
from ..io import DataFormatError, fault_point, folder_lock, json_sha256
from .encoders import ImageEncoder, TextEncoder, compute_identity
from .store import EmbeddingStore, image_list_hash
from .views import View

DEFAULT_TEMPLATE = "This picture is {concept}"


@dataclass
class EmbedResult:
    partition: str
    view: str
    encoder: str
    status: str  # cached | computed | recomputed | resumed
    n_images: int
    dim: int


class _ViewBatches:
    """Map-style dataset over images: item ``i`` -> {view name: uint8 array} (decoded once, all views)."""

    def __init__(self, files: Sequence[Path], views: Sequence[View]):
        self.files, self.views = list(files), list(views)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        img = np.asarray(load_image(self.files[i]))
        return {v.name: v(img) for v in self.views}


def _collate(items):
    return items


def image_set_identity(images: ImageSet, partition: Partition) -> tuple[list[str], str]:
    rel = images.relative_paths(partition)
    sizes = [f.stat().st_size for f in images.files(partition)]
    return rel, image_list_hash(rel, sizes)


def embed_images(
    dataset_root: str | Path,
    store_root: str | Path,
    views: Sequence[View],
    encoder: ImageEncoder | Sequence[ImageEncoder],
    *,
    partitions: Sequence[Partition] = PARTITIONS,
    batch_size: int | None = None,
    workers: int = 0,
    progress: bool = True,
) -> list[EmbedResult]:
    """Embed every (view, encoder) table of the image set; ``encoder`` may be several (views computed once)."""
    encoders = [encoder] if isinstance(encoder, ImageEncoder) else list(encoder)
    images = ImageSet.discover(dataset_root)
    images.check()
    with folder_lock(store_root, "embed"):
        return _embed_images(
            images, EmbeddingStore(store_root), views, encoders, partitions, batch_size, workers, progress
        )


def _embed_images(images, store, views, encoders, partitions, batch_size, workers, progress) -> list[EmbedResult]:
    import torch

    from ..allocator import keep_freed_memory

    keep_freed_memory()  # glibc: the batches' large temporaries reuse freed pages (effnet-lite0 47 -> 116 images/s)

    bs = batch_size or min(e.batch_size for e in encoders)
    results: list[EmbedResult] = []
    for p in partitions:
        rel, ihash = image_set_identity(images, p)
        writers = {}  # (encoder name, view name) -> TableWriter
        for enc in encoders:
            for v in views:
                ident = {"encoder": enc.identity(), "view": v.recipe(), "images": ihash, "dtype": "float32"}
                ident.update(compute_identity(enc))  # empty on the CPU: a GPU-made table never shares its key
                writers[enc.name, v.name] = store.writer(p, v.name, enc.name, ident, rel, bs)
        pending = [key for key, w in writers.items() if w.state != "valid"]
        for (enc_name, view_name), w in writers.items():
            if w.state == "valid":
                results.append(EmbedResult(p, view_name, enc_name, "cached", len(rel), -1))
        if not pending:
            continue
        pending_views = [v for v in views if any(view == v.name for _, view in pending)]
        by_name = {e.name: e for e in encoders}
        first = writers[pending[0]]
        todo = [(s, idx) for s, idx in first.batches() if any(not writers[key].has(s) for key in pending)]
        loader = torch.utils.data.DataLoader(
            _ViewBatches(images.files(p), pending_views),
            batch_sampler=[idx for _, idx in todo],
            num_workers=workers,
            collate_fn=_collate,
        )
        desc = f"embed {p} ({', '.join(by_name)})"
        with tqdm(total=len(rel) * len(pending), desc=desc, disable=not progress, unit="img") as bar:
            bar.update((len(rel) - sum(len(i) for _, i in todo)) * len(pending))
            for (start, idx), batch in zip(todo, loader, strict=True):
                for enc_name, view_name in pending:
                    w = writers[enc_name, view_name]
                    if not w.has(start):
                        w.write(start, by_name[enc_name].encode([item[view_name] for item in batch]))
                        fault_point("embed-batch")
                    bar.update(len(idx))
        for enc_name, view_name in pending:
            status = writers[enc_name, view_name].finish()
            results.append(EmbedResult(p, view_name, enc_name, status, len(rel), by_name[enc_name].dim))
    return results


def concept_texts(
    images: ImageSet, partition: Partition, template: str = DEFAULT_TEMPLATE, captions: dict[str, str] | None = None
) -> list[str]:
    """One text per image: its caption (keyed by relative path or concept) or the template on the concept
    name, underscores read as spaces (``aircraft_carrier`` -> ``aircraft carrier``)."""
    out = []
    for rel, concept in zip(images.relative_paths(partition), images.concepts(partition), strict=True):
        if captions is not None:
            text = captions.get(rel, captions.get(concept))
            if text is None:
                raise DataFormatError(f"captions file has no entry for {rel!r} or concept {concept!r}")
            out.append(text)
        else:
            out.append(template.format(concept=concept.replace("_", " ")))
    return out


def embed_texts(
    dataset_root: str | Path,
    store_root: str | Path,
    encoder: TextEncoder,
    *,
    template: str = DEFAULT_TEMPLATE,
    captions: dict[str, str] | None = None,
    partitions: Sequence[Partition] = PARTITIONS,
    progress: bool = True,
) -> list[EmbedResult]:
    images = ImageSet.discover(dataset_root)
    images.check()
    with folder_lock(store_root, "embed"):
        return _embed_texts(images, EmbeddingStore(store_root), encoder, template, captions, partitions, progress)


def _embed_texts(images, store, encoder, template, captions, partitions, progress) -> list[EmbedResult]:
    results = []
    for p in partitions:
        rel, ihash = image_set_identity(images, p)
        texts = concept_texts(images, p, template, captions)
        source = "captions" if captions is not None else "template"
        view = f"text-{source}"
        ident = {
            "encoder": encoder.identity(),
            **compute_identity(encoder),
            "texts": json_sha256(texts),
            "source": source,
            "template": None if captions is not None else template,
            "images": ihash,
        }
        bar = tqdm(total=len(rel), desc=f"embed {p} texts ({encoder.name})", disable=not progress)

        def batch(idx: list[int], texts: list[str] = texts) -> np.ndarray:
            return encoder.encode([texts[i] for i in idx])

        try:
            status = store.compute(p, view, encoder.name, ident, rel, batch, encoder.batch_size, progress=bar.update)
        finally:
            bar.close()
        results.append(EmbedResult(p, view, encoder.name, status, len(rel), encoder.dim))
    return results
