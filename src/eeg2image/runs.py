"""The run folder as a format, read and written by training, evaluation and the pipeline alike.

A run trains one or more *units*; each unit is one training call with all seeds stacked:

- ``per_subject``: one unit per subject, evaluated on that subject;
- ``joint``: one unit on the training data of every subject (rows tagged with their subject), evaluated on
  each subject;
- ``loso``: leave one subject out: for each subject, a unit trained on the others and evaluated on it
  (subject-aware encoders use their shared / unknown-subject token for every row, trained on the others' data).

Run folder::

    RUN/config.yaml                      resolved RunConfig
    RUN/manifest.json                    what made it (config hash, inputs, versions, command)
    RUN/units/<unit>/checkpoint/         state.safetensors (resume, one file; training's own)
    RUN/units/<unit>/final.safetensors   stacked weights of every seed after the last epoch (+ ModelConfig)
    RUN/units/<unit>/best.safetensors    each seed at its validation-selected epoch (when validating)
    RUN/units/<unit>/history.json        per-epoch loss and validation metrics of every seed
    RUN/units/<unit>/curves.png          training curves
    RUN/metrics.json, report.md, top5.png, distractors.json, evaluation/manifest.json   (evaluation)

The weights files carry their ``ModelConfig``: ``models.retrieval.load_stack(path)`` rebuilds a trained model
from the file alone. The presets of ``RunConfig`` are YAML files in ``eeg2image/configs/run/``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import ConfigError, from_dict, read_yaml, stage_config, to_dict
from .io import check_option, check_range
from .models.align import TARGET_VIEWS, AlignConfig
from .models.eeg_encoders import EEG_ENCODERS, check_eeg_encoder_name, check_eeg_options
from .models.experts import ExpertsConfig
from .models.fusion import TargetConfig
from .models.prior import PriorConfig
from .models.retrieval import ModelConfig
from .models.ridge import RidgeConfig

__all__ = [
    "RUN_INPUTS",
    "SELECTIONS",
    "AlignStageConfig",
    "CoarseToFineConfig",
    "DataConfig",
    "EvalConfig",
    "RunConfig",
    "TrainConfig",
    "Unit",
    "absolute_path",
    "aligner_path",
    "check_recorded_inputs",
    "config_changes",
    "config_summary",
    "eeg_ridge_path",
    "experts_weights",
    "read_align_config",
    "read_run_config",
    "run_config",
    "subject_folder",
    "unit_folder",
    "units_of",
]

#: What a run's protocol says of the shuffled control (``data.shuffle_pairs``).
SHUFFLED_CONTROL = "shuffled training pairs (data.shuffle_pairs): expected at chance"
#: Weight selections a unit may hold: file name per selection.
SELECTIONS = {"final": "final.safetensors", "validation_selected": "best.safetensors"}


@dataclass
class DataConfig:
    """Where the inputs are and which subjects a run uses."""

    preprocessed: str = ""  # folder holding sub-XX/ from `eeg2image preprocess`
    store: str = ""  # embedding store from `eeg2image embed`
    dataset: str = ""  # dataset root (only for pictures of the images; optional)
    subjects: list[int] = field(default_factory=lambda: [1])
    mode: Literal["per_subject", "joint", "loso"] = "per_subject"
    image_encoder: str = "effnet-lite0"  # encoder of the target views in the store (`eeg2image embed`'s default)
    evnet_encoder: str | None = None  # encoder of the ``evnet:<view>`` view (EVNet fusion)
    channels: str | list[str] | None = None  # pick channels of the preprocessed EEG: ubp17, ... or names (None: all)
    val_fraction: float = 0.1  # share of training concepts held out for validation (0: none)
    val_seed: int = 0
    # the shuffled control: the training EEG paired with shuffled images (validation and test pairs kept true)
    shuffle_pairs: bool = False

    def __post_init__(self) -> None:
        # recorded absolute: a run folder works from any directory (a relative path meant the caller's directory)
        self.preprocessed, self.store, self.dataset = map(absolute_path, (self.preprocessed, self.store, self.dataset))
        check_range("data.val_fraction", self.val_fraction, 0, 1, high_open=True)
        for s in self.subjects:
            check_range("data.subjects", s, 1)
        if len(set(self.subjects)) != len(self.subjects):
            raise ConfigError(f"data.subjects: {self.subjects} lists a subject twice")


@dataclass
class CoarseToFineConfig:
    """SAMGA's coarse-to-fine schedule (Jiang et al. 2026, LinJiang8/SAMGA ``train.py``): for the first
    ``coarse_epochs`` the loss is ``m * MMD^2 + (1 - m) * InfoNCE`` with ``m`` ramped linearly from ``mmd_start`` to
    ``mmd_end`` (the coarse stage settles the shared geometry); then the optimiser starts afresh at ``fine_lr``
    (constant), the loss is InfoNCE alone and the shared head (``train.shared_head``) is frozen (the fine stage
    sharpens instance retrieval)."""

    coarse_epochs: int = 20
    mmd_start: float = 0.9
    mmd_end: float = 0.5
    sigmas: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.5, 1.0, 2.0])
    fine_lr: float = 5e-5
    freeze_shared_head: bool = True

    def __post_init__(self) -> None:
        check_range("train.coarse_to_fine.coarse_epochs", self.coarse_epochs, 1)
        check_range("train.coarse_to_fine.mmd_start", self.mmd_start, 0, 1)
        check_range("train.coarse_to_fine.mmd_end", self.mmd_end, 0, 1)
        check_range("train.coarse_to_fine.fine_lr", self.fine_lr, 0, low_open=True)
        if not self.sigmas:
            raise ConfigError("train.coarse_to_fine.sigmas: expected one or more kernel bandwidths")
        for i, sg in enumerate(self.sigmas):
            check_range(f"train.coarse_to_fine.sigmas[{i}]", sg, 0, low_open=True)

    def is_fine(self, epoch: int) -> bool:
        """Whether the 0-based ``epoch`` is in the fine stage."""
        return epoch >= self.coarse_epochs

    def mmd_weight(self, epoch: int) -> float:
        """``m`` of the 0-based ``epoch`` (0 in the fine stage)."""
        if self.is_fine(epoch):
            return 0.0
        frac = epoch / (self.coarse_epochs - 1) if self.coarse_epochs > 1 else 0.0
        return self.mmd_start + (self.mmd_end - self.mmd_start) * frac


@dataclass
class TrainConfig:
    """How one configuration is trained (the seeds are listed by the run, not here). The model's part
    (encoder, options, target, loss scale) becomes the ``ModelConfig`` saved with the weights."""

    eeg_encoder: str = "ved"
    eeg_options: dict[str, Any] = field(default_factory=dict)
    target: TargetConfig = field(default_factory=TargetConfig)
    epochs: int = 200
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01  # AdamW's (decoupled); 0 with betas (0.5, 0.999) is NICE's Adam
    betas: tuple[float, float] = (0.9, 0.999)
    drop_last: bool = True  # drop the last, smaller batch of an epoch (VED, the reference); False: train on it
    # onecycle: PyTorch's OneCycleLR learning rates (peak lr at 30 % of the steps, from lr/25 down to lr/25e4,
    # cosine; the momentum is not cycled), as NeuralBench trains
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    warmup_epochs: int = 0
    grad_clip: float = 0.0  # each seed's gradient norm clipped to this (0: off; NeuralBench 1.0)
    logit_scale: float = 1.0
    scale_mode: Literal["fixed", "exp", "softplus", "linear"] = "fixed"
    normalize_eeg: bool = False
    loss_direction: Literal["symmetric", "eeg_to_image"] = "symmetric"  # eeg_to_image: NeuralBench's ClipLoss
    # the shared space (models.retrieval.ModelConfig): the EEG encoder's width before a linear EEG projector
    # (0: none), one Linear shared by both sides (SAMGA); SAMGA's coarse-to-fine schedule
    embed_dim: int = 0
    shared_head: bool = False
    coarse_to_fine: CoarseToFineConfig | None = None
    reps_per_sample: int = 0  # 0: average all repetitions; k: average a random k of them at every step
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on CPU); the peers trained in float32
    # CognitionCapturerPro's brain side (models.experts): per-modality experts + fusion replace eeg_encoder and
    # target, which must then keep their defaults
    experts: ExpertsConfig | None = None

    def __post_init__(self) -> None:  # a typo in the encoder or its options fails here, before any data is read
        check_eeg_encoder_name(self.eeg_encoder, where="train.eeg_encoder")
        check_eeg_options(self.eeg_encoder, self.eeg_options, where="train.eeg_options")
        check_range("train.epochs", self.epochs, 1)
        check_range("train.batch_size", self.batch_size, 2)  # InfoNCE needs a negative
        check_range("train.lr", self.lr, 0, low_open=True)
        check_range("train.weight_decay", self.weight_decay, 0)
        for i, b in enumerate(self.betas):
            check_range(f"train.betas[{i}]", b, 0, 1, high_open=True)
        check_range("train.warmup_epochs", self.warmup_epochs, 0, self.epochs)
        check_range("train.logit_scale", self.logit_scale, 0, low_open=True)
        check_range("train.reps_per_sample", self.reps_per_sample, 0)
        check_range("train.grad_clip", self.grad_clip, 0)
        check_range("train.embed_dim", self.embed_dim, 0)
        if self.coarse_to_fine is not None and self.coarse_to_fine.coarse_epochs >= self.epochs:
            raise ConfigError(
                f"train.coarse_to_fine.coarse_epochs ({self.coarse_to_fine.coarse_epochs}) leaves no fine stage in "
                f"train.epochs ({self.epochs})"
            )
        if self.schedule == "onecycle" and self.warmup_epochs:
            raise ConfigError("train.warmup_epochs: the onecycle schedule has its own warm-up; set it to 0")
        if self.experts is not None:
            unused = [k for k, v in _DEFAULTS.items() if getattr(self, k) != v]
            if unused:
                raise ConfigError(
                    f"train.{unused[0]} is set, but train.experts replaces the EEG encoder and the target: set the "
                    "experts' own options (train.experts.expert, train.experts.expert_options, "
                    "train.experts.modalities) instead"
                )

    def required_views(self) -> list[str]:
        """The stored views this configuration trains against."""
        return self.experts.required_views() if self.experts else self.target.required_views()

    def model_config(
        self,
        n_chans: int,
        n_times: int,
        dim: int,
        sfreq: float | None = None,
        n_subjects: int = 10,
        modality_dims: dict[str, int] | None = None,
        view_dims: dict[str, int] | None = None,
        ch_names: tuple[str, ...] | None = None,
    ) -> ModelConfig:
        """The model these settings train on EEG of ``n_chans`` x ``n_times`` at ``sfreq`` and ``dim``-d targets."""
        options = dict(self.eeg_options)
        if ch_names and "ch_names" in EEG_ENCODERS[self.eeg_encoder].known_options() and "ch_names" not in options:
            options["ch_names"] = list(ch_names)  # a montage-aware encoder gets the data's channels
        return ModelConfig(
            eeg_encoder=self.eeg_encoder,
            n_chans=n_chans,
            n_times=n_times,
            dim=dim,
            sfreq=float(sfreq) if sfreq else 250.0,
            n_subjects=n_subjects,
            eeg_options=options,
            target=self.target,
            logit_scale=self.logit_scale,
            scale_mode=self.scale_mode,
            normalize_eeg=self.normalize_eeg,
            experts=self.experts,
            modality_dims=dict(modality_dims or {}),
            embed_dim=self.embed_dim,
            shared_head=self.shared_head,
            view_dims=dict(view_dims or {}),
            loss_direction=self.loss_direction,
            mmd_sigmas=tuple(self.coarse_to_fine.sigmas) if self.coarse_to_fine else (),
        )


_DEFAULTS = {
    "eeg_encoder": "ved",
    "eeg_options": {},
    "target": TargetConfig(),
    "embed_dim": 0,
    "shared_head": False,
    "loss_direction": "symmetric",
    "coarse_to_fine": None,
}


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

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: {self.seeds}; expected one or more distinct seeds")
        check_range("checkpoint_every", self.checkpoint_every, 1)


def run_config(preset: str | None = None, yaml_path: str | Path | None = None, **overrides: Any) -> RunConfig:
    """Preset (``configs/run/<preset>.yaml``), then a YAML file, then ``overrides`` given as dotted keys
    (``train.epochs=5``) or whole sections; ``None`` values are skipped."""
    return stage_config(RunConfig, "run", preset, yaml_path, overrides)


@dataclass
class Unit:
    name: str
    train_subjects: list[int]
    eval_subjects: list[int]
    # False under LOSO: the held-out subject has no token of its own, so every row, in training and at test, goes
    # through the shared (unknown-subject) token, which is thus trained on every training subject's data (what
    # ATM's LOSO code amounts to: one token for the whole run); per-subject tokens stay unused
    subject_aware: bool = True


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
    """The preprocessed EEG of ``subject`` (``DIR/sub-XX`` from ``eeg2image preprocess``)."""
    return Path(cfg.data.preprocessed) / f"sub-{subject:02d}"


def unit_folder(run_dir: str | Path, unit: Unit | str) -> Path:
    return Path(run_dir) / "units" / (unit if isinstance(unit, str) else unit.name)


def absolute_path(path: str) -> str:
    """``path`` made absolute against the current directory ("" stays "": not given)."""
    return str(Path(path).expanduser().absolute()) if path else path


#: The inputs a run folder records, which later stages read from the recorded paths.
RUN_INPUTS = ("data.preprocessed", "data.store", "data.dataset")


def check_recorded_inputs(path: Path, saved: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Every input path recorded in the config file ``path`` (``saved``, as read) is there; one that is not is
    named as moved, with the path that was recorded."""
    from .io import MissingDataError

    for key in keys:
        value: Any = saved
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value and not Path(str(value)).expanduser().exists():
            raise MissingDataError(
                f"{path}: {key} was recorded as {value}, which is not there (moved or deleted?); put it back there "
                f"or set {key} in {path} to where it is now"
            )


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config a run folder was made with (its recorded inputs checked to be where they were)."""
    path = Path(run_dir) / "config.yaml"
    saved = _read_saved(path, must_exist=True)
    check_recorded_inputs(path, saved, RUN_INPUTS)
    return from_dict(RunConfig, saved)


def _read_saved(path: Path, must_exist: bool = False) -> dict[str, Any]:
    from .io import MissingDataError

    if not path.is_file():
        if must_exist:
            raise MissingDataError(f"{path}: missing; is {path.parent} a run folder (`eeg2image train`)?")
        return {}
    return read_yaml(path)


def config_changes(path: str | Path, cfg: RunConfig) -> list[str]:
    """The keys in which the run config saved at ``path`` differs from ``cfg`` ([] when there is none). Compared
    as saved: a key the saved file lacks (written by an older version) is a difference, not today's default."""
    if not Path(path).is_file():
        return []
    return _diff(_read_saved(Path(path)), to_dict(cfg))


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}")
    return out


def config_summary(cfg: RunConfig) -> dict[str, Any]:
    """The protocol every number is written with."""
    t = cfg.train
    return {
        "subjects": cfg.data.subjects,
        "mode": cfg.data.mode,
        "seeds": cfg.seeds,
        "eeg_encoder": f"{t.experts.expert} experts ({', '.join(t.experts.modalities)}) + fusion"
        if t.experts
        else t.eeg_encoder,
        "image_encoder": cfg.data.image_encoder,
        "evnet_encoder": cfg.data.evnet_encoder,
        "target": dataclasses.asdict(t.target),
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "val_fraction": cfg.data.val_fraction,
        **({"control": SHUFFLED_CONTROL} if cfg.data.shuffle_pairs else {}),
        "select_on": cfg.select_on,
    }


# --------------------------------------------------------------------------------------------------
# The align folder (``eeg2image align``): ALIGN/config.yaml, ALIGN/manifest.json,
# ALIGN/units/<unit>/seed-<S>.safetensors (one aligner per unit and seed of the experts run)
# --------------------------------------------------------------------------------------------------

ALIGN_WEIGHTS = ("validation_selected", "final")
ALIGN_METHODS = ("sth_align", "diffusion_prior", "ridge")


@dataclass
class AlignStageConfig:
    """``eeg2image align``: the experts run it reads, the targets' encoder, which weights, how it trains."""

    run: str = ""  # the run folder of a trained experts run (`eeg2image train` with train.experts)
    encoder: str = ""  # encoder of the targets in the run's store ("": the run's data.image_encoder); the
    # reference: ipadapter:h94/IP-Adapter (the adapter's own image_embeds)
    weights: str = "validation_selected"  # or final; validation_selected falls back to final when not validating
    # target -> the stored view its embeddings are read from (e.g. depth: depth-depth-anything-base-hf for the
    # Depth Anything V1 ViT-B the reference used)
    target_views: dict[str, str] = field(default_factory=lambda: dict(TARGET_VIEWS))
    # sth_align (CognitionCapturerPro's STH-Align, the method), diffusion_prior (ATM's prior, one per target,
    # each conditioned on the same modality's expert) or ridge (closed-form linear maps, the field's baseline)
    method: str = "sth_align"
    align: AlignConfig = field(default_factory=AlignConfig)  # STH-Align's settings (and the targets of all)
    prior: PriorConfig = field(default_factory=PriorConfig)  # the diffusion prior's
    ridge: RidgeConfig = field(default_factory=RidgeConfig)  # the ridge maps' penalty grid (aligner, EEG maps)
    # what the ridge aligner is fitted on: eeg (the experts' outputs for the training EEG, as released) or targets
    # (the experts' own target embeddings of the training images, L2-normalised: the experts' space -> the
    # generator's, free of what the experts memorised of their training EEG; each seed's expert outputs are then
    # given those embeddings' per-feature mean and sd; the fusion key has no target, so it is left out)
    fit_on: str = "eeg"
    # the low-level path: the encoder of the VAE latents in the run's store (``vae:<folder>``, from `embed`) and
    # their view; "" for none. A ridge map from the averaged EEG to them is fitted with the linear control's
    low_level: str = ""
    low_level_view: str = "original"
    eeg_time_stride: int = 2  # the EEG ridge maps read every k-th sample of the averaged EEG (250 Hz -> 125)

    def __post_init__(self) -> None:
        self.run = absolute_path(self.run)  # recorded absolute: the align folder works from any directory
        check_range("eeg_time_stride", self.eeg_time_stride, 1)
        check_option("fit_on", self.fit_on, ("eeg", "targets"), where="align fit_on")
        if self.fit_on == "targets" and self.method != "ridge":
            raise ConfigError(f"fit_on=targets is built for method=ridge; method is {self.method!r}")
        check_option("weights", self.weights, ALIGN_WEIGHTS, where="align weights")
        check_option("method", self.method, ALIGN_METHODS, where="align method")
        self.target_views = {**TARGET_VIEWS, **self.target_views}  # one view given: the others keep their defaults
        for t in self.align.targets:
            check_option("aligner target", t, TARGET_VIEWS, where="align.targets")
            if t not in self.target_views:
                raise ConfigError(f"target_views has no view for aligner target {t!r}")


def aligner_path(out: Path, unit: str, seed: int) -> Path:
    return Path(out) / "units" / unit / f"seed-{seed}.safetensors"


def eeg_ridge_path(out: Path, unit: str) -> Path:
    """The unit's ridge maps from the averaged EEG itself (the ``linear`` control and the low-level path)."""
    return Path(out) / "units" / unit / "eeg-ridge.safetensors"


def experts_weights(run_dir: Path, unit, weights: str) -> Path:
    """The experts weights file of ``unit`` an aligner reads (``best`` when asked and present, else ``final``)."""
    folder = unit_folder(run_dir, unit)
    path = folder / SELECTIONS[weights]
    return path if path.is_file() else folder / SELECTIONS["final"]


def read_align_config(folder: str | Path) -> AlignStageConfig:
    """The config an align folder was made with (the run it read checked to be where it was)."""
    path = Path(folder) / "config.yaml"
    saved = _read_saved(path, must_exist=True)
    check_recorded_inputs(path, saved, ("run",))
    return from_dict(AlignStageConfig, saved)
