"""``eeg2image train``: train every unit of a ``RunConfig`` into a run folder (format: ``eeg2image.runs``).

Only the training partition is read here (``datasets.load_split``); the validation images are concept-disjoint
from the rest of the training images. ``eeg2image evaluate`` reads the test partition. A killed run resumes
from its checkpoints; a folder holding a run of another configuration is refused, nothing overwritten.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import save_config, to_dict
from ..datasets import concept_disjoint_split, join_subjects, load_split, view_table_names
from ..features.store import EmbeddingStore
from ..io import MissingDataError, file_sha256, folder_lock, json_sha256, write_json, write_manifest
from ..models.retrieval import check_views, save_weights
from ..runs import SELECTIONS, RunConfig, Unit, config_changes, subject_folder, unit_folder, units_of
from .distributed import DistInfo, init_distributed
from .trainer import TrainingError, train_seeds

__all__ = ["load_unit_data", "load_unit_split", "train_run", "training_inputs"]


def train_run(cfg: RunConfig, out: str | Path, *, progress: bool = True, log=print) -> Path:
    """Train every unit of ``cfg`` into the run folder ``out`` (resuming what a killed run left). Under
    ``torchrun`` every process trains a slice of each batch; only rank 0 writes.

    Everything that can be checked is checked before anything is written: the inputs of every unit exist, the
    first unit's data loads and fits, and ``out`` holds no run of another configuration (a folder whose run never
    trained, e.g. after a failed first attempt, takes the new config). Rank 0 holds the folder's lock while it
    works, so a second ``train`` (or an ``evaluate``) on the same folder is refused by name."""
    out = Path(out)
    distributed = init_distributed(cfg.device)
    dist = DistInfo.current(distributed)
    if dist.rank != 0:
        progress, log = False, (lambda *a, **k: None)
    units = units_of(cfg)
    _check_config(out, cfg)
    all_inputs = {u.name: training_inputs(cfg, u.train_subjects) for u in units}
    pending = [u for u in units if not unit_done(out, u)]
    first = (pending[0].name, load_unit_data(cfg, pending[0])) if pending else None
    with folder_lock(out, "train") if dist.rank == 0 else contextlib.nullcontext():
        if dist.rank == 0:
            replaced = _check_config(out, cfg)  # again, under the lock: another process may have finished meanwhile
            if replaced:
                log(f"{out}: its run never trained; its config is replaced ({', '.join(replaced)})")
            save_config(cfg, out / "config.yaml")
        for unit in units:
            if unit not in pending:
                log(f"{unit.name}: already trained, kept")
                continue
            data = first[1] if first is not None and first[0] == unit.name else load_unit_data(cfg, unit)
            first = None
            _train_unit(cfg, out, unit, data, all_inputs[unit.name], dist, distributed, progress, log)
        if dist.rank == 0:
            outputs = {u.name: f"units/{u.name}" for u in units}
            write_manifest(out, stage="train", config=to_dict(cfg), inputs=all_inputs, outputs=outputs)
    return out


def unit_done(out: Path, unit: Unit) -> bool:
    folder = unit_folder(out, unit)
    return (folder / SELECTIONS["final"]).is_file() and (folder / "history.json").is_file()


def _check_config(out: Path, cfg: RunConfig) -> list[str]:
    """The keys in which ``out``'s saved config differs from ``cfg``; refused when ``out`` holds weights or
    checkpoints (a run of another configuration), accepted ([] or the keys) when nothing was trained there."""
    changed = config_changes(out / "config.yaml", cfg)
    if changed and any((out / "units").rglob("*.safetensors")):
        raise TrainingError(
            f"{out} holds a run of another configuration (differs in {', '.join(changed)}); "
            "train into a new folder — nothing was overwritten"
        )
    return changed


def _train_unit(cfg, out, unit, data, inputs, dist, distributed, progress, log) -> None:
    folder = unit_folder(out, unit)
    train, val = data
    n_val = 0 if val is None else val.n_images
    log(
        f"{unit.name}: {len(train)} training rows ({train.n_images} images), {n_val} validation images, "
        f"seeds {cfg.seeds}"
    )
    t0 = time.perf_counter()
    res = train_seeds(
        cfg.train,
        list(cfg.seeds),
        train,
        val,
        device=cfg.device,
        engine=cfg.engine,
        checkpoint_dir=folder / "checkpoint",
        checkpoint_every=cfg.checkpoint_every,
        fingerprint=fingerprint(cfg, unit, inputs),
        select_on=cfg.select_on,
        progress=progress,
        distributed=distributed,
    )
    seconds = time.perf_counter() - t0
    if dist.rank == 0:
        model = res.stack.config
        save_weights(
            folder / SELECTIONS["final"], res.stack.state_tensors(), cfg.seeds, {"epoch": cfg.train.epochs}, model
        )
        if res.best is not None:
            save_weights(
                folder / SELECTIONS["validation_selected"], res.best, cfg.seeds, {"epoch": res.best_epoch}, model
            )
        history = {
            "seeds": list(cfg.seeds),
            "epochs": res.history,
            "best_epoch": res.best_epoch,
            "select_on": cfg.select_on,
            "seconds": seconds,
            "resumed_from": res.resumed_from,
        }
        chance = (math.log(min(cfg.train.batch_size, len(train))), None if val is None else 1 / val.n_images)
        plot_curves(res.history, list(cfg.seeds), folder / "curves.png", title=unit.name, chance=chance)
        write_json(folder / "history.json", history)  # last: with final.safetensors it marks the unit done
        log(f"{unit.name}: trained in {seconds:.0f} s -> {folder}")
    dist.barrier()  # the other ranks wait while rank 0 writes this unit's files


def training_inputs(cfg: RunConfig, subjects: list[int]) -> dict[str, Any]:
    """Fingerprints of what a unit reads (the training partition only): preprocess manifests and the
    embedding tables' manifests."""
    out: dict[str, Any] = {}
    for s in subjects:
        man = subject_folder(cfg, s) / "manifest.json"
        if not man.is_file():
            raise MissingDataError(f"{man}: missing; run `eeg2image preprocess` for subject {s} first")
        out[f"preprocess/sub-{s:02d}"] = file_sha256(man)
    st = EmbeddingStore(cfg.data.store)
    names = view_table_names(cfg.train.required_views(), cfg.data.image_encoder, cfg.data.evnet_encoder)
    for name, (view, enc) in names.items():
        meta = st.paths("training", view, enc)[1]
        if not meta.is_file():
            cmd = f"eeg2image embed {cfg.data.dataset or 'ROOT'} {cfg.data.store} --encoder {enc} --views {view}"
            raise MissingDataError(f"{meta}: no training embeddings for view {view!r} of encoder {enc!r}; run `{cmd}`")
        out[f"embeddings/{name}"] = file_sha256(meta)
    return out


def load_unit_split(cfg: RunConfig, unit: Unit, views: list[str] | None = None):
    """Every training row of one unit (the training partition only), with ``views`` (default: the run's)."""
    d = cfg.data
    views = cfg.train.required_views() if views is None else views
    splits = {
        s: load_split(subject_folder(cfg, s), d.store, "training", views, d.image_encoder, d.evnet_encoder, d.channels)
        for s in unit.train_subjects
    }
    split = join_subjects(splits)
    if not unit.subject_aware:  # LOSO: the shared token learns from every training subject (see runs.Unit)
        split.subject = np.zeros_like(split.subject)
    return split


def load_unit_data(cfg: RunConfig, unit: Unit):
    """(train split, validation split or None) of one unit, from the training partition only."""
    d = cfg.data
    split = load_unit_split(cfg, unit)
    check_views(split.views, cfg.train.experts or cfg.train.target)
    if d.val_fraction <= 0:
        return shuffled_pairs(split, d.val_seed) if d.shuffle_pairs else split, None
    tr, va = concept_disjoint_split(split.concept, d.val_fraction, d.val_seed)
    train = split.subset(tr)
    return shuffled_pairs(train, d.val_seed) if d.shuffle_pairs else train, split.subset(va)


def shuffled_pairs(split, seed: int):
    """The shuffled control (``data.shuffle_pairs``): the training EEG rows (with their subject) dealt to the images
    in a seeded random order, so no row is paired with the image it saw (but by chance). Validation and test keep
    their true pairs: a model trained so should score at chance there."""
    perm = torch.as_tensor(np.random.default_rng([seed, 0x5EED]).permutation(len(split)))
    split.eeg, split.subject = split.eeg[perm], split.subject[perm.numpy()]
    return split


def fingerprint(cfg: RunConfig, unit: Unit, inputs: dict[str, Any]) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: everything that changes the numbers."""
    c = to_dict(cfg)
    for k in ("device", "engine", "checkpoint_every", "eval"):
        c.pop(k)
    c["data"] = {k: v for k, v in c["data"].items() if k not in ("dataset", "preprocessed", "store")}
    return {"config_sha256": json_sha256(c), "unit": unit.name, "inputs_sha256": json_sha256(inputs)}


def plot_curves(
    history: list[dict[str, Any]],
    seeds: list[int],
    path: Path,
    title: str = "",
    chance: tuple[float | None, float | None] = (None, None),
) -> None:
    """Training loss and validation top-1 per seed; ``chance``: (loss, top-1) of a model that knows nothing,
    drawn dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    epochs = [h["epoch"] for h in history]
    has_val = bool(history) and "val_top1" in history[0]
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(9 if has_val else 4.5, 3.2), squeeze=False)
    for i, s in enumerate(seeds):
        axes[0, 0].plot(epochs, [h["loss"][i] for h in history], lw=1, label=f"seed {s}")
        if has_val:
            axes[0, 1].plot(epochs, [h["val_top1"][i] for h in history], lw=1)
    axes[0, 0].set(xlabel="epoch", ylabel="training loss (InfoNCE)", title=title)
    if chance[0] is not None:
        axes[0, 0].axhline(chance[0], color="grey", ls="--", lw=1, label="chance")
    if has_val:
        axes[0, 1].set(xlabel="epoch", ylabel="validation top-1 (concept-disjoint)")
        if chance[1] is not None:
            axes[0, 1].axhline(chance[1], color="grey", ls="--", lw=1)
    if len(seeds) <= 10:
        axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
