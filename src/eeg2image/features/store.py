"""The embedding store: one safetensors file per (image set, partition, view, encoder), plus a manifest.

```
<store>/<partition>/<view>__<encoder>.safetensors   {"embeddings": float32 (n_images, dim)}
<store>/<partition>/<view>__<encoder>.json          what made it (encoder id + checkpoint fingerprint,
                                                    view recipe, hash of the ordered image list, ...)
<store>/<partition>/<view>__<encoder>.partial/      finished batches of an unfinished run (resume)
```

Rows are in the dataset's canonical image order (row ``i`` = image ``i`` = stim id ``i + 1``). A file is
used only if its manifest's key (encoder, view, image list, dtype) matches the request; otherwise it is
recomputed. Batches of an interrupted run are kept under the same key, so a killed ``embed`` resumes
without redoing them and never mixes rows made under another key.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import (
    DataFormatError,
    MissingDataError,
    atomic_path,
    json_sha256,
    package_versions,
    read_json,
    save_safetensors,
    write_json,
)

EMBEDDING_KEY = "embeddings"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-")


def image_list_hash(rel_paths: Sequence[str], sizes: Sequence[int]) -> str:
    return json_sha256([[p, int(s)] for p, s in zip(rel_paths, sizes, strict=True)])


@dataclass
class EmbeddingTable:
    """Embeddings of one partition under one (view, encoder), with lookups by image id and path."""

    embeddings: np.ndarray  # (n_images, dim) float32
    rel_paths: list[str]
    manifest: dict

    def row(self, image_id: int) -> np.ndarray:
        """Embedding of the image with stim id ``image_id`` (1-based, as in the raw files)."""
        if not 1 <= image_id <= len(self.rel_paths):
            raise DataFormatError(f"image id {image_id} outside 1..{len(self.rel_paths)}")
        return self.embeddings[image_id - 1]

    def by_path(self, rel_path: str) -> np.ndarray:
        try:
            return self.embeddings[self.rel_paths.index(rel_path)]
        except ValueError as exc:
            raise DataFormatError(f"{rel_path!r} is not in this embedding table") from exc

    def normalized(self) -> np.ndarray:
        return self.embeddings / np.linalg.norm(self.embeddings, axis=1, keepdims=True).clip(1e-12)


class EmbeddingStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def paths(self, partition: str, view: str, encoder: str) -> tuple[Path, Path, Path]:
        stem = self.root / partition / f"{slug(view)}__{slug(encoder)}"
        return stem.with_suffix(".safetensors"), stem.with_suffix(".json"), stem.with_name(stem.name + ".partial")

    @staticmethod
    def key(identity: dict) -> str:
        return json_sha256(identity)

    def status(self, partition: str, view: str, encoder: str, identity: dict) -> str:
        """``valid``, ``missing``, ``stale`` (made under another key) or ``corrupt``."""
        data, meta, _ = self.paths(partition, view, encoder)
        if not data.is_file() or not meta.is_file():
            return "missing"
        try:
            man = read_json(meta)
        except DataFormatError:
            return "corrupt"
        if man.get("key") != self.key(identity):
            return "stale"
        try:
            arr = self._read_array(data)
        except DataFormatError:
            return "corrupt"
        if tuple(arr.shape) != (man["n_images"], man["dim"]):
            return "corrupt"
        return "valid"

    @staticmethod
    def _read_array(path: Path) -> np.ndarray:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(str(path))[EMBEDDING_KEY]
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise DataFormatError(
                f"{path}: unreadable embedding file ({exc}); rerun `eeg2image embed` (it recomputes the table)."
            ) from exc

    def load(self, partition: str, view: str, encoder: str, identity: dict | None = None) -> EmbeddingTable:
        data, meta, _ = self.paths(partition, view, encoder)
        if not meta.is_file():
            raise MissingDataError(
                f"{meta}: no embeddings for view {view!r} and encoder {encoder!r} ({partition}); run `eeg2image embed`."
            )
        man = read_json(meta)
        if identity is not None and man.get("key") != self.key(identity):
            raise DataFormatError(f"{meta}: made with another recipe (stale); rerun `eeg2image embed`.")
        arr = self._read_array(data)
        if tuple(arr.shape) != (man["n_images"], man["dim"]):
            raise DataFormatError(
                f"{data}: shape {arr.shape} differs from its manifest ({man['n_images']}, {man['dim']})."
            )
        return EmbeddingTable(embeddings=arr, rel_paths=list(man["images"]), manifest=man)

    def writer(
        self, partition: str, view: str, encoder: str, identity: dict, rel_paths: Sequence[str], batch_size: int
    ) -> TableWriter:
        return TableWriter(self, partition, view, encoder, identity, list(rel_paths), batch_size)

    def compute(
        self,
        partition: str,
        view: str,
        encoder: str,
        identity: dict,
        rel_paths: Sequence[str],
        batches: Callable[[list[int]], np.ndarray],
        batch_size: int,
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Make (or reuse) one table; ``batches(indices)`` returns embeddings (len(indices), dim).

        Returns what happened: ``cached``, ``computed``, ``recomputed`` (was stale/corrupt) or ``resumed``.
        """
        w = self.writer(partition, view, encoder, identity, rel_paths, batch_size)
        if w.state == "valid":
            return "cached"
        for start, idx in w.batches():
            if not w.has(start):
                w.write(start, batches(idx))
            if progress:
                progress(len(idx))
        return w.finish()


class TableWriter:
    """Writes one table batch by batch (each batch a file, atomically), then assembles it.

    Batches left by an interrupted run under the same key are reused; batches under another key are
    deleted first, so rows of two recipes are never mixed.
    """

    def __init__(
        self,
        store: EmbeddingStore,
        partition: str,
        view: str,
        encoder: str,
        identity: dict,
        rel_paths: list[str],
        batch_size: int,
    ):
        self.store, self.partition, self.view, self.encoder = store, partition, view, encoder
        self.identity, self.rel_paths, self.batch_size = identity, rel_paths, batch_size
        self.state = store.status(partition, view, encoder, identity)
        self.data, self.meta, self.partial = store.paths(partition, view, encoder)
        self.key = store.key(identity)
        self.resumed = False
        if self.state == "valid":
            return
        part_meta = self.partial / "key.json"
        if self.partial.is_dir():
            if part_meta.is_file() and read_json(part_meta).get("key") == self.key:
                self.resumed = any(self.partial.glob("*.npy"))
            else:
                shutil.rmtree(self.partial)

    def _open_partial(self) -> None:
        """The resume folder, made when the first batch is written (a refused run leaves nothing behind)."""
        part_meta = self.partial / "key.json"
        if not part_meta.is_file():
            self.partial.mkdir(parents=True, exist_ok=True)
            write_json(part_meta, {"key": self.key})

    def batches(self):
        n = len(self.rel_paths)
        for start in range(0, n, self.batch_size):
            yield start, list(range(start, min(n, start + self.batch_size)))

    def _chunk(self, start: int) -> Path:
        return self.partial / f"{start:09d}.npy"

    def has(self, start: int) -> bool:
        chunk = self._chunk(start)
        if not chunk.is_file():
            return False
        want = min(self.batch_size, len(self.rel_paths) - start)
        try:
            return np.load(chunk, mmap_mode="r").shape[0] == want
        except ValueError:
            return False

    def write(self, start: int, emb: np.ndarray) -> None:
        emb = np.asarray(emb, dtype=np.float32)
        want = min(self.batch_size, len(self.rel_paths) - start)
        if emb.ndim != 2 or emb.shape[0] != want:
            raise DataFormatError(f"encoder returned shape {emb.shape} for a batch of {want} images")
        if not np.isfinite(emb).all():
            raise DataFormatError(f"encoder {self.encoder!r} produced NaN/Inf for images {start}..{start + want - 1}")
        self._open_partial()
        with atomic_path(self._chunk(start)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, emb)

    def finish(self) -> str:
        parts = [np.load(self._chunk(s)) for s, _ in self.batches()]
        table = np.concatenate(parts, axis=0)
        # the manifest goes first and comes back last: a kill in between leaves a table without one (incomplete,
        # recomputed from the kept batches), never a new table under an old manifest
        self.meta.unlink(missing_ok=True)
        save_safetensors(self.data, {EMBEDDING_KEY: np.ascontiguousarray(table)})
        write_json(
            self.meta,
            {
                "key": self.key,
                "identity": self.identity,
                "partition": self.partition,
                "view": self.view,
                "encoder": self.encoder,
                "n_images": int(table.shape[0]),
                "dim": int(table.shape[1]),
                "dtype": "float32",
                "normalized": False,
                "images": list(self.rel_paths),
                "versions": package_versions(),
            },
        )
        shutil.rmtree(self.partial, ignore_errors=True)
        if self.resumed:
            return "resumed"
        return "recomputed" if self.state in ("stale", "corrupt") else "computed"
