"""The offline generator at work: images drawn by the conditional decoder (``models.decoder``) from predicted
embeddings and latents, written as ``reconstruct`` writes SDXL-Turbo's (``OUT/seed-S/round-R/<stimulus>.png``).

Each image is sampled with its own generator, seeded by (seed, stimulus, round) as SDXL's are
(``generation.sdxl.image_seed``), and decoded alone (the CPU's convolution kernels may round differently for other
batch sizes), so an image never depends on which others were made with it (a resumed run's images are the same,
byte for byte) and the rounds of one stimulus differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io import DataFormatError, atomic_path, fault_point
from ..models.decoder import DECODER_FILE, LABEL, load_decoder
from .sdxl import image_seed

__all__ = ["DecoderGenerator"]


class DecoderGenerator:
    """``generate_to(out, {target: (N, D)}, latents (N, C*h*w) or None, stimuli, seed=, rounds=)``."""

    def __init__(self, folder: str | Path, temperature: float = 1.0):
        self.folder = Path(folder)
        self.model, self.meta = load_decoder(self.folder)
        self.temperature = float(temperature)
        self.targets = list(self.model.targets)
        self.label = f"{LABEL}, {self.model.config.image_size} px, temperature {self.temperature:g}"

    def weights(self) -> dict:
        """The decoder's weights file with its ``file_fingerprint`` (a manifest's record)."""
        from ..features.weights import file_fingerprint

        path = self.folder / DECODER_FILE if self.folder.is_dir() else self.folder
        return {"decoder": str(path), "files": {path.name: file_fingerprint(path)}}

    @property
    def needs_latents(self) -> bool:
        return self.model.latent_shape is not None

    def check_conditioning(self, encoder: str, target_views: dict[str, str], where: str) -> None:
        """Refuse embeddings of another encoder or view than the decoder was trained on, by name."""
        trained = self.meta.get("target_views", {})
        for t in self.targets:
            given = target_views.get(t)
            if given is None:
                raise DataFormatError(
                    f"{where}: no {t!r} target; the decoder {self.folder} is conditioned on {trained}"
                )
            if given != trained.get(t):
                raise DataFormatError(
                    f"{where}: the {t!r} target is {given!r}; the decoder {self.folder} was trained on "
                    f"{trained.get(t)!r} (encoder {self.meta.get('encoder')!r}); train a decoder on these targets"
                )

    def sample(
        self,
        embeds: dict[str, torch.Tensor],
        latents: torch.Tensor | None,
        keys: Sequence[tuple[int, int, str]],
    ) -> np.ndarray:
        """uint8 images (N, S, S, 3), one per (seed, round, stimulus) key, each decoded alone."""
        rows = []
        for i, (s, r, stim) in enumerate(keys):
            gen = [torch.Generator().manual_seed(image_seed(s, stim, r))]
            one = {t: e[i : i + 1] for t, e in embeds.items()}
            rows.append(self.model.sample(one, None if latents is None else latents[i : i + 1], gen, self.temperature))
        x = torch.cat(rows)
        if not torch.isfinite(x).all():
            raise DataFormatError("the decoder produced NaN pixels (inputs with NaN or Inf?)")
        return (x * 255).round().byte().permute(0, 2, 3, 1).numpy()

    def generate_to(
        self,
        out: Path,
        embeds: dict[str, torch.Tensor],
        latents: torch.Tensor | None,
        stimuli: Sequence[str],
        *,
        seed: int = 0,
        rounds: int = 1,
    ) -> list[Path]:
        """``out/seed-S/round-R/<stimulus>.png`` for every image not yet there (a rerun resumes)."""
        from PIL import Image

        if self.needs_latents and latents is None:
            raise DataFormatError(
                f"the decoder {self.folder} was trained with latents ({self.meta.get('latents')}); the align folder "
                "has no EEG -> latent map (align with --set low_level=vae:FOLDER)"
            )
        latents = latents if self.needs_latents else None

        def path(r: int, s: str) -> Path:
            return out / f"seed-{seed}" / f"round-{r}" / f"{s}.png"

        todo = [(r, i) for r in range(rounds) for i, s in enumerate(stimuli) if not path(r, s).is_file()]
        written = []
        for b in range(0, len(todo), 16):  # 16 images written between fault points
            batch = todo[b : b + 16]
            idx = [i for _, i in batch]
            keys = [(seed, r, stimuli[i]) for r, i in batch]
            images = self.sample(
                {t: embeds[t][idx] for t in self.targets}, None if latents is None else latents[idx], keys
            )
            for (_, r, s), img in zip(keys, images, strict=True):
                with atomic_path(path(r, s)) as tmp:
                    Image.fromarray(img).save(tmp, format="PNG")
                written.append(path(r, s))
            fault_point("generate-batch")
        return written
