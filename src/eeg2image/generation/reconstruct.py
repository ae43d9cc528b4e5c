"""``eeg2image reconstruct``: images of what was seen, from the test EEG of a trained experts run and its aligners.

For every unit of the run and every subject it is evaluated on, and for every seed: the test EEG (each image's
repetitions averaged, as a retrieval query) goes through that seed's frozen experts, the aligner of that seed
turns their embeddings into the generator's space (``models.align``), and the generator makes the images:

- ``sdxl``: SDXL-Turbo with one IP-Adapter per aligner target (``generation.sdxl``; local weights only);
- ``nearest``: the training image nearest the predicted ``image`` embedding (``generation.gallery``), a labelled
  retrieval baseline for machines without diffusion weights.

Written: ``OUT/sub-XX/seed-S/round-R/<stimulus>.png`` (atomic; a rerun makes only what is missing) and
``OUT/sub-XX/manifest.json`` naming the generator, which ``eeg2image evaluate-recon OUT/sub-XX`` puts beside
the metrics. The test images themselves are never read here (only their ids, which name the files).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..config import to_dict
from ..data.preprocess import read_our_preprocessed
from ..data.things_eeg2 import ImageSet, resolve_channels
from ..io import (
    DataFormatError,
    MissingDataError,
    check_option,
    file_sha256,
    folder_lock,
    json_sha256,
    write_manifest,
)
from ..models.align import load_aligner
from ..models.retrieval import embed_eeg, load_stack
from ..runs import aligner_path, experts_weights, read_align_config, read_run_config, subject_folder, units_of
from .gallery import NearestTrainingImage
from .sdxl import IP_ADAPTER_REPO, SDXL_TURBO, GenerationConfig, Reconstructor, load_sdxl_pipeline

__all__ = ["GENERATORS", "ReconstructConfig", "eeg_queries", "reconstruct_run"]

GENERATORS = ("sdxl", "nearest")


@dataclass
class ReconstructConfig:
    """How ``eeg2image reconstruct`` generates: the generator, its settings and where its weights are."""

    generator: Literal["sdxl", "nearest"] = "sdxl"
    generate: GenerationConfig = field(default_factory=GenerationConfig)
    sdxl: str = SDXL_TURBO  # a local folder or a Hugging Face cache id (never downloaded)
    ip_adapter: str = IP_ADAPTER_REPO
    dtype: str = "float16"  # float16 (with the VAE's force_upcast), bfloat16 or float32
    device: str = "auto"
    nearest_size: int = 512  # the nearest generator's image size

    def __post_init__(self) -> None:
        check_option("generator", self.generator, GENERATORS, where="reconstruct.generator")


def eeg_queries(run_cfg, subject: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(queries (N, C, T): each test image's repetitions averaged, subject ids (N,)) of one subject, the channels
    picked as the run picked them."""
    eeg = read_our_preprocessed(subject_folder(run_cfg, subject), "test")
    # averaged on the memory-mapped array: no copy of every repetition (1 GB for a real subject's test set)
    data = torch.from_numpy(np.asarray(eeg.data).mean(axis=1, dtype=np.float32))
    if run_cfg.data.channels is not None:
        names = resolve_channels(run_cfg.data.channels)
        missing = [c for c in names if c not in eeg.ch_names]
        if missing:
            raise DataFormatError(f"{eeg.path}: channels {missing} are not in the preprocessed test data")
        data = data[:, [eeg.ch_names.index(c) for c in names]]
    return data, torch.full((data.shape[0],), subject, dtype=torch.long)


def _device(device: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def reconstruct_run(
    align_dir: str | Path,
    out: str | Path,
    cfg: ReconstructConfig,
    *,
    dataset: str | Path | None = None,
    pipeline_factory: Callable[[int], Any] | None = None,
    prompt_embeds: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool = True,
    log=print,
) -> list[Path]:
    """Generate every missing image; returns the per-subject folders. ``pipeline_factory(n_adapters)`` replaces
    ``load_sdxl_pipeline`` (tests pass a tiny pipeline and its ``prompt_embeds``)."""
    align_dir, out = Path(align_dir), Path(out)
    acfg = read_align_config(align_dir)
    run_dir = Path(acfg.run)
    run_cfg = read_run_config(run_dir)
    root = dataset or run_cfg.data.dataset
    if not root:
        raise MissingDataError("no dataset root: pass --dataset (the test images' ids name the output files)")
    stimuli = ImageSet.discover(root).stimulus_ids("test")
    targets = list(acfg.align.targets)
    generator, label = None, ""
    folders = []
    with folder_lock(out, "reconstruct"):
        for unit in units_of(run_cfg):
            wfile = experts_weights(run_dir, unit, acfg.weights)
            stack, meta = load_stack(wfile, engine=run_cfg.engine, device=_device(cfg.device))
            sha = file_sha256(wfile)
            aligners, aligner_sha = {}, {}
            for seed in meta["seeds"]:
                model, ameta = load_aligner(aligner_path(align_dir, unit.name, seed))
                aligner_sha[str(seed)] = file_sha256(aligner_path(align_dir, unit.name, seed))
                if ameta.get("experts_sha256") != sha:
                    raise DataFormatError(
                        f"{aligner_path(align_dir, unit.name, seed)}: trained on other experts weights than "
                        f"{wfile} (retrained since?); run `eeg2image align` again into a new folder"
                    )
                aligners[seed] = model
            for subject in unit.eval_subjects:
                q, sub = eeg_queries(run_cfg, subject)
                if len(q) != len(stimuli):
                    raise DataFormatError(
                        f"{subject_folder(run_cfg, subject)}: {len(q)} test EEG rows, but {root} holds "
                        f"{len(stimuli)} test images"
                    )
                if not unit.subject_aware:
                    sub = torch.zeros_like(sub)
                eeg = embed_eeg(stack, q, sub)
                folder = out / f"sub-{subject:02d}"
                if generator is None:
                    generator, label = _generator(cfg, acfg, run_cfg, root, targets, pipeline_factory, prompt_embeds)
                # written first: a rerun resumes only images made from the same experts, aligners and settings
                inputs = {"experts": str(wfile), "experts_sha256": sha, "aligners_sha256": aligner_sha}
                inputs["settings_sha256"] = json_sha256({k: v for k, v in to_dict(cfg).items() if k != "device"})
                _claim(folder, inputs)
                write_manifest(
                    folder,
                    stage="reconstruct",
                    config={"reconstruct": to_dict(cfg), "align": to_dict(acfg)},
                    inputs=inputs,
                    outputs={"images": "seed-<S>/round-<R>/<stimulus>.png"},
                    extra={"generator": label, "subject": subject, "seeds": meta["seeds"], "unit": unit.name},
                )
                for i, seed in enumerate(meta["seeds"]):
                    # a sampling aligner (the diffusion prior) draws from the run seed's own generator
                    gen = torch.Generator().manual_seed(seed)
                    pred = aligners[seed].predict({k: v[i].cpu() for k, v in eeg.items()}, gen)
                    log(f"{unit.name}, subject {subject}, seed {seed}: {len(stimuli)} stimuli -> {folder}")
                    _generate(generator, cfg, folder, pred, stimuli, seed, progress)
                folders.append(folder)
    return folders


def _claim(folder: Path, inputs: dict[str, Any]) -> None:
    """Refuse a folder holding images made from other experts, aligners or settings (nothing is overwritten)."""
    from ..io import read_json

    man = folder / "manifest.json"
    if man.is_file() and any(folder.glob("seed-*/round-*/*.png")):
        old = read_json(man).get("inputs", {})
        changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
        if changed:
            raise DataFormatError(
                f"{folder} holds images made from other inputs (differ in {', '.join(changed)}); reconstruct into a "
                "new folder — nothing was overwritten"
            )


def _generator(cfg, acfg, run_cfg, root, targets, pipeline_factory, prompt_embeds):
    """(the generator, its label for reports)."""
    if cfg.generator == "nearest":
        encoder = acfg.encoder or run_cfg.data.image_encoder
        view = acfg.target_views["image"]
        gen = NearestTrainingImage(root, run_cfg.data.store, view, encoder, size=cfg.nearest_size)
        return gen, f"{gen.label}; gallery: training images by {encoder}"
    n = len(targets)
    if pipeline_factory is not None:
        pipe = pipeline_factory(n)
    else:
        pipe = load_sdxl_pipeline(cfg.sdxl, cfg.ip_adapter, n_adapters=n, dtype=cfg.dtype, device=_device(cfg.device))
    gcfg = dataclasses.replace(cfg.generate, modalities=targets)
    pe = prompt_embeds or (None, None)
    rec = Reconstructor(pipe, gcfg, pe[0], pe[1])
    label = (
        f"SDXL-Turbo + {n} IP-Adapter(s) ({', '.join(targets)}), {gcfg.steps} steps, guidance {gcfg.guidance_scale}, "
        f"{gcfg.size} px"
    )
    return rec, label


def _generate(generator, cfg: ReconstructConfig, folder: Path, pred, stimuli, seed: int, progress: bool) -> None:
    if isinstance(generator, NearestTrainingImage):
        generator.generate_to(folder, pred, stimuli, seed=seed)
        return
    generator.config = dataclasses.replace(generator.config, seed=seed)  # the image seeds follow the run's seed
    generator.generate_to(folder, pred, stimuli, progress=progress)
