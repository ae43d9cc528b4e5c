"""The offline generator: the training image nearest the predicted embedding (a labelled retrieval baseline).

Where no diffusion weights are available (CI, a laptop, the demo), reconstruction still ends with pictures: for
each predicted embedding, the training image whose stored embedding (``EmbeddingStore``, same view and encoder
as the prediction's space) has the highest cosine. It can only return images it has seen, never the test image
itself (test concepts are disjoint from training concepts), so it is a baseline for the metrics, named so in
every report, not a reconstruction method.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.things_eeg2 import ImageSet, load_image
from ..features.store import EmbeddingStore
from ..io import DataFormatError, atomic_path, fault_point

__all__ = ["NearestTrainingImage"]

LABEL = "nearest training image (retrieval baseline, not a generative reconstruction)"


class NearestTrainingImage:
    """``generate({modality: (N, D)}, stimuli)`` -> the nearest training image of each ``image`` embedding."""

    label = LABEL

    def __init__(self, dataset_root: str | Path, store_root: str | Path, view: str, encoder: str, size: int = 512):
        table = EmbeddingStore(store_root).load("training", view, encoder)
        images = ImageSet.discover(dataset_root)
        rel = images.relative_paths("training")
        if table.rel_paths != rel:
            raise DataFormatError(
                f"{store_root}: the training table of view {view!r} and encoder {encoder!r} lists other images than "
                f"the image set in {dataset_root}; re-embed"
            )
        self.files = images.files("training")
        self.rel_paths = rel
        self.gallery = F.normalize(torch.from_numpy(np.asarray(table.embeddings, dtype=np.float32)), dim=-1)
        self.size = size
        self.view, self.encoder = view, encoder

    def nearest(self, embeds: torch.Tensor) -> np.ndarray:
        """Index of the nearest training image (cosine) of each row of ``embeds`` (N, D)."""
        if embeds.ndim != 2 or embeds.shape[1] != self.gallery.shape[1]:
            raise DataFormatError(
                f"predicted embeddings have shape {tuple(embeds.shape)}; the gallery ({self.view!r} by "
                f"{self.encoder!r}) is {self.gallery.shape[1]}-d"
            )
        sims = F.normalize(embeds.float(), dim=-1) @ self.gallery.T
        return sims.argmax(dim=1).numpy()

    def generate(
        self, embeds: dict[str, torch.Tensor], stimuli: Sequence[str], seed: int = 0
    ) -> dict[tuple[int, int, str], np.ndarray]:
        idx = self.nearest(embeds["image"])
        return {
            (seed, 0, s): np.asarray(load_image(self.files[i], size=self.size))
            for s, i in zip(stimuli, idx, strict=True)
        }

    def generate_to(
        self, out: Path, embeds: dict[str, torch.Tensor], stimuli: Sequence[str], *, seed: int = 0, progress=False
    ) -> list[Path]:
        """``out/seed-S/round-0/<stimulus>.png`` (the layout of ``Reconstructor.generate_to``; one round: the
        nearest image does not change between rounds); a rerun writes only what is missing."""
        from PIL import Image

        written = []
        todo = [i for i, s in enumerate(stimuli) if not (out / f"seed-{seed}" / "round-0" / f"{s}.png").is_file()]
        if not todo:
            return written
        picks = self.nearest(embeds["image"][todo])
        for i, j in zip(todo, picks, strict=True):
            path = out / f"seed-{seed}" / "round-0" / f"{stimuli[i]}.png"
            img = np.asarray(load_image(self.files[j], size=self.size))
            with atomic_path(path) as tmp:
                Image.fromarray(img).save(tmp, format="PNG")
            written.append(path)
            fault_point("generate-batch")
        return written
