"""``eeg2image train``: a run folder from a typed ``RunConfig`` (preset -> YAML -> flags).

A run trains one or more *units*; each unit is one ``train_seeds`` call (all seeds stacked):

- ``per_subject``: one unit per subject, evaluated on that subject;
- ``joint``: one unit on the training data of every subject (rows tagged with their subject), evaluated on
  each subject;
- ``loso``: leave one subject out: for each subject, a unit trained on the others and evaluated on it
  (with the shared / unknown-subject token of subject-aware encoders).

Run folder::

    RUN/config.yaml                      resolved RunConfig
    RUN/manifest.json                    what made it (config hash, inputs, versions, command)
    RUN/units/<unit>/checkpoint/         state.safetensors + state.json (resume)
    RUN/units/<unit>/final.safetensors   stacked weights of every seed after the last epoch
    RUN/units/<unit>/best.safetensors    each seed at its validation-selected epoch (when validating)
    RUN/units/<unit>/history.json        per-epoch loss and validation metrics of every seed
    RUN/units/<unit>/curves.png          training curves

Only the training partition is read here (``training.data.load_split``); the validation images are
concept-disjoint from the rest of the training images. ``eeg2image evaluate`` reads the test partition.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import ConfigError, from_dict, save_config, to_dict
from ..io import DataFormatError, atomic_path, file_sha256, json_sha256, write_json, write_manifest
from ..models.fusion import TargetConfig, TargetModel
from .data import concept_disjoint_split, load_split
from .trainer import TrainConfig, TrainingError, check_dims, train_seeds


@dataclass
class DataConfig:
    """Where the inputs are and which subjects a run uses."""

    preprocessed: str = ""  # folder holding sub-XX/ from `eeg2image preprocess`
    store: str = ""  # embedding store from `eeg2image embed`
    dataset: str = ""  # dataset root (only for pictures of the images; optional)
    subjects: list[int] = field(default_factory=lambda: [1])
    mode: Literal["per_subject", "joint", "loso"] = "per_subject"
    image_encoder: str = "evnet"  # encoder of the target views in the store
    evnet_encoder: str | None = None  # encoder of the ``evnet:<view>`` view (EVNet fusion)
    channels: str | list[str] | None = None  # pick channels of the preprocessed EEG: ubp17, ... or names (None: all)
    val_fraction: float = 0.1  # share of training concepts held out for validation (0: none)
    val_seed: int = 0


@dataclass
class EvalConfig:
    kway: list[int] = field(default_factory=lambda: [2, 4, 10, 50, 100])
    distractor_seed: int = 0
    hungarian: bool = True  # also the transductive one-to-one assignment, reported apart
    picture_queries: int = 8


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seeds: list[int] = field(default_factory=lambda: [0])
    select_on: Literal["top1", "mrr"] = "top1"
    device: str = "auto"
    engine: Literal["auto", "vmap", "loop"] = "auto"  # auto: vmap on CUDA, loop on CPU
    checkpoint_every: int = 1


BLUR8_VIEWS = [f"blur-k{k:02d}" for k in (1, 3, 15, 21, 33, 45, 57, 63)]

#: Named starting points. ``reference`` is the reference system (multi-level blur + EVNet, one subject,
#: 10 seeds, final epoch, trained on every training image); ``demo`` runs in about a minute on 2 CPU cores.
RUN_PRESETS: dict[str, dict[str, Any]] = {
    "reference": {
        "data": {
            "image_encoder": "openclip:RN50/openai",
            "evnet_encoder": "evnet-clip:RN50/openai",
            "val_fraction": 0.0,
        },
        "train": {
            "eeg_encoder": "ved",
            "epochs": 200,
            "batch_size": 1024,
            "lr": 1e-3,
            "weight_decay": 0.01,
            "logit_scale": 1.0,
            "scale_mode": "fixed",
            "normalize_eeg": False,
            "drop_last": True,
            "amp": False,  # the reference trained in float32; --set train.amp=true for bf16 speed on GPUs
            "target": {"blur_views": BLUR8_VIEWS, "evnet_view": "original", "adapter": True},
        },
        "seeds": list(range(21, 31)),  # the reference's seeds 21..30
    },
    "nice": {  # NICE (Song et al., ICLR 2024) on our data: its recipe, our concept-disjoint validation
        "data": {"image_encoder": "openclip:ViT-L-14/openai", "val_fraction": 0.045},  # NICE: 740 of 16,540 images
        "train": {
            "eeg_encoder": "nice",
            "epochs": 200,
            "batch_size": 1000,
            "lr": 2e-4,
            "betas": [0.5, 0.999],
            "weight_decay": 0.0,  # Adam without weight decay
            "drop_last": False,
            "logit_scale": 14.2857,  # 1/0.07, fixed (NICE left it out of its optimiser)
            "scale_mode": "fixed",
            "normalize_eeg": True,
            "amp": False,
            "target": {"plain_view": "original", "adapter": False},
        },
        "seeds": [0, 1, 2, 3, 4],
    },
    "atms": {  # ATM-S (Li et al., NeurIPS 2024) on our data; without its 0.01 text term and test-set selection
        "data": {"image_encoder": "openclip:ViT-H-14/laion2b_s32b_b79k", "val_fraction": 0.1},
        "train": {
            "eeg_encoder": "atms",
            "epochs": 40,
            "batch_size": 64,
            "lr": 3e-4,
            "weight_decay": 0.01,
            "drop_last": True,
            "logit_scale": 2.6593,  # log(1/0.07), used without exp (scale_mode linear), learnable
            "scale_mode": "linear",
            "normalize_eeg": False,
            "reps_per_sample": 1,  # ATM trains on single trials; here one random repetition per image and step
            "amp": False,
            "target": {"plain_view": "original", "adapter": False},
        },
        "seeds": [0],
    },
    "ubp": {  # UBP (Wu et al., CVPR 2025), intra-subject: 17 channels, EEGProjectLayer, uncertainty-aware fovea blur
        "data": {"image_encoder": "openclip:RN50/openai", "channels": "ubp17", "val_fraction": 0.0},
        "train": {
            "eeg_encoder": "eegproject",
            "epochs": 50,  # UBP: at most 50, early stopping on the training loss (not built: final epoch here)
            "batch_size": 1024,
            "lr": 1e-4,
            "weight_decay": 1e-4,
            "logit_scale": 2.7269,  # softplus(log(1/0.07)), learnable
            "scale_mode": "softplus",
            "normalize_eeg": False,
            "drop_last": False,
            "amp": False,
            "target": {"uncertainty_views": ["fovea-k45-g3", "fovea-k51-g3", "fovea-k57-g3"], "adapter": False},
        },
        "seeds": [0],
    },
    "demo": {
        "data": {"image_encoder": "sim-features", "val_fraction": 0.1},
        "train": {
            "eeg_encoder": "ved",
            "epochs": 20,
            "batch_size": 128,
            "lr": 1e-3,
            "target": {"plain_view": "original", "adapter": False},
        },
        "seeds": [0, 1, 2],
    },
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_config(preset: str | None = None, yaml_path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Preset, then a YAML file, then ``overrides`` given as dotted keys (``train.epochs=5``) or sections."""
    import yaml

    data: dict[str, Any] = {}
    if preset:
        if preset not in RUN_PRESETS:
            raise ConfigError(f"unknown run preset {preset!r}; known: {', '.join(RUN_PRESETS)}")
        data = _merge(data, RUN_PRESETS[preset])
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found.")
        data = _merge(data, yaml.safe_load(path.read_text()) or {})
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(RunConfig, data)


@dataclass
class Unit:
    name: str
    train_subjects: list[int]
    eval_subjects: list[int]
    subject_aware_eval: bool = True  # False under LOSO: the held-out subject has no token of its own


def units_of(cfg: RunConfig) -> list[Unit]:
    subs = list(cfg.data.subjects)
    if not subs:
        raise ConfigError("data.subjects is empty")
    if cfg.data.mode == "per_subject":
        return [Unit(f"sub-{s:02d}", [s], [s]) for s in subs]
    if cfg.data.mode == "joint":
        return [Unit("joint", subs, subs)]
    if len(subs) < 2:
        raise ConfigError("leave-one-subject-out needs at least 2 subjects")
    return [Unit(f"loso-sub-{s:02d}", [o for o in subs if o != s], [s], False) for s in subs]


def subject_folder(cfg: RunConfig, subject: int) -> Path:
    return Path(cfg.data.preprocessed) / f"sub-{subject:02d}"


def required_views(target: TargetConfig) -> list[str]:
    return TargetModel(target, 1).required_views()


def training_inputs(cfg: RunConfig, subjects: list[int]) -> dict[str, Any]:
    """Fingerprints of what a unit reads (the training partition only): preprocess manifests and the
    embedding tables' manifests."""
    from ..features.pairs import view_table_names
    from ..features.store import EmbeddingStore

    out: dict[str, Any] = {}
    for s in subjects:
        man = subject_folder(cfg, s) / "manifest.json"
        if not man.is_file():
            raise DataFormatError(f"{man}: missing; run `eeg2image preprocess` for subject {s} first")
        out[f"preprocess/sub-{s:02d}"] = file_sha256(man)
    st = EmbeddingStore(cfg.data.store)
    names = view_table_names(required_views(cfg.train.target), cfg.data.image_encoder, cfg.data.evnet_encoder)
    for name, (view, enc) in names.items():
        meta = st.paths("training", view, enc)[1]
        if not meta.is_file():
            cmd = f"eeg2image embed {cfg.data.dataset or 'ROOT'} {cfg.data.store} --encoder {enc} --views {view}"
            raise DataFormatError(f"{meta}: no training embeddings for view {view!r} of encoder {enc!r}; run `{cmd}`")
        out[f"embeddings/{name}"] = file_sha256(meta)
    return out


def load_unit_data(cfg: RunConfig, unit: Unit):
    """(train split, validation split or None) of one unit, from the training partition only."""
    from ..features.pairs import join_subjects

    views = required_views(cfg.train.target)
    splits = {
        s: load_split(
            subject_folder(cfg, s),
            cfg.data.store,
            "training",
            views,
            cfg.data.image_encoder,
            cfg.data.evnet_encoder,
            cfg.data.channels,
        )
        for s in unit.train_subjects
    }
    split = join_subjects(splits)
    check_dims(split, cfg.train.target)
    if cfg.data.val_fraction <= 0:
        return split, None
    tr, va = concept_disjoint_split(split.concept, cfg.data.val_fraction, cfg.data.val_seed)
    return split.subset(tr), split.subset(va)


def fingerprint(cfg: RunConfig, unit: Unit, inputs: dict[str, Any]) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: everything that changes the numbers."""
    c = to_dict(cfg)
    for k in ("device", "engine", "checkpoint_every", "eval"):
        c.pop(k)
    c["data"] = {k: v for k, v in c["data"].items() if k not in ("dataset", "preprocessed", "store")}
    return {"config_sha256": json_sha256(c), "unit": unit.name, "inputs_sha256": json_sha256(inputs)}


def save_weights(path: Path, tensors: dict, seeds: list[int], extra: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file

    meta = {"seeds": json.dumps(list(seeds)), **{k: json.dumps(v) for k, v in (extra or {}).items()}}
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def load_weights(path: Path) -> tuple[dict, dict[str, Any]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataFormatError(f"{path}: missing; train the run first (`eeg2image train`)")
    with safe_open(str(path), "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return load_file(str(path)), meta


def init_distributed(device: str) -> bool:
    """Under ``torchrun`` (WORLD_SIZE > 1): join the process group (NCCL on GPUs, gloo on CPU)."""
    import os

    import torch
    import torch.distributed as td

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not td.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        td.init_process_group("nccl" if cuda else "gloo")
    return True


def train_run(cfg: RunConfig, out: str | Path, *, progress: bool = True, log=print) -> Path:
    """Train every unit of ``cfg`` into the run folder ``out`` (resuming what a killed run left). Under
    ``torchrun`` every process trains a slice of each batch; only rank 0 writes."""
    out = Path(out)
    distributed = init_distributed(cfg.device)
    rank = 0
    if distributed:
        import torch.distributed as td

        rank = td.get_rank()
        if rank != 0:
            progress, log = False, (lambda *a, **k: None)
    cfg_path = out / "config.yaml"
    changed = config_changes(cfg_path, cfg)
    if changed:
        raise TrainingError(
            f"{out} holds a run of another configuration (differs in {', '.join(changed)}); "
            "train into a new folder — nothing was overwritten"
        )
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, cfg_path)
    all_inputs = {}
    for unit in units_of(cfg):
        folder = out / "units" / unit.name
        inputs = training_inputs(cfg, unit.train_subjects)
        all_inputs[unit.name] = inputs
        if (folder / "final.safetensors").is_file() and (folder / "history.json").is_file():
            log(f"{unit.name}: already trained, kept")
            continue
        train, val = load_unit_data(cfg, unit)
        log(
            f"{unit.name}: {len(train)} training rows ({train.n_images} images), "
            f"{0 if val is None else val.n_images} validation images, seeds {cfg.seeds}"
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
        if rank != 0:
            _barrier(distributed)  # rank 0 is writing this unit's files
            continue
        save_weights(folder / "final.safetensors", res.stack.state_tensors(), cfg.seeds, {"epoch": cfg.train.epochs})
        if res.best is not None:
            save_weights(folder / "best.safetensors", res.best, cfg.seeds, {"epoch": res.best_epoch})
        write_json(
            folder / "history.json",
            {
                "seeds": list(cfg.seeds),
                "epochs": res.history,
                "best_epoch": res.best_epoch,
                "select_on": cfg.select_on,
                "seconds": seconds,
                "resumed_from": res.resumed_from,
            },
        )
        chance = (math.log(min(cfg.train.batch_size, len(train))), None if val is None else 1 / val.n_images)
        plot_curves(res.history, list(cfg.seeds), folder / "curves.png", title=unit.name, chance=chance)
        log(f"{unit.name}: trained in {seconds:.0f} s -> {folder}")
        _barrier(distributed)
    if rank == 0:
        write_manifest(
            out,
            stage="train",
            config=to_dict(cfg),
            inputs=all_inputs,
            outputs={u.name: f"units/{u.name}" for u in units_of(cfg)},
        )
    return out


def _barrier(distributed: bool) -> None:
    if distributed:
        import torch.distributed as td

        td.barrier()


def config_changes(path: Path, cfg: RunConfig) -> list[str]:
    """The keys in which the run config saved at ``path`` differs from ``cfg`` ([] when there is none). Compared
    as saved: a key the saved file lacks (written by an older version) is a difference, not today's default."""
    import yaml

    if not Path(path).is_file():
        return []
    saved = yaml.safe_load(Path(path).read_text()) or {}
    return _diff(saved, to_dict(cfg))


def read_config_file(path: Path) -> RunConfig:
    import yaml

    return from_dict(RunConfig, yaml.safe_load(Path(path).read_text()) or {})


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}")
    return out


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


def config_summary(cfg: RunConfig) -> dict[str, Any]:
    """The protocol every number is written with."""
    t = cfg.train
    return {
        "subjects": cfg.data.subjects,
        "mode": cfg.data.mode,
        "seeds": cfg.seeds,
        "eeg_encoder": t.eeg_encoder,
        "image_encoder": cfg.data.image_encoder,
        "evnet_encoder": cfg.data.evnet_encoder,
        "target": dataclasses.asdict(t.target),
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "val_fraction": cfg.data.val_fraction,
        "select_on": cfg.select_on,
    }


__all__ = [
    "RUN_PRESETS",
    "DataConfig",
    "EvalConfig",
    "RunConfig",
    "Unit",
    "load_weights",
    "run_config",
    "train_run",
    "units_of",
]
