"""The retrieval model: what a seed learns, how the seeds of one configuration are stacked, and how a trained
model is rebuilt from its weights file alone.

- ``ModelConfig``: everything needed to build the model (EEG encoder and its options, the data's shape, the
  target model, the loss's scale); saved as JSON in the metadata of every weights file, so
  ``load_stack(path)`` rebuilds a trained model without the run's config or any training code.
- ``RetrievalModel``: EEG encoder + image-side target model + symmetric InfoNCE with its (possibly learned)
  logit scale.
- ``SeedStack``: S copies of one architecture with stacked weights (leading axis: seed), run together under
  ``torch.func.vmap`` (``engine="vmap"``) or one after another (``engine="loop"``).
- ``embed_eeg`` / ``embed_targets``: eval-mode inference of every seed at once; ranking is ``models.ranking``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..config import from_dict, to_dict
from ..io import DataFormatError, MissingDataError, check_option, save_safetensors
from .dropout import keyed_dropout, use_keyed_dropout
from .eeg_encoders import build_eeg_encoder
from .experts import ExpertsConfig, ModalityExperts
from .fusion import TargetConfig, TargetModel
from .losses import InfoNCE, ScaleMode

__all__ = [
    "ModelConfig",
    "RetrievalModel",
    "SeedStack",
    "build_models",
    "check_views",
    "embed_eeg",
    "embed_targets",
    "load_stack",
    "load_weights",
    "resolve_engine",
    "save_weights",
]

Engine = Literal["vmap", "loop"]


@dataclass
class ModelConfig:
    """What builds one ``RetrievalModel``: the EEG side (encoder, its options, the EEG's shape and rate), the
    image side (``target``, embeddings of ``dim``) and the loss (scale, how it is learned, EEG normalisation)."""

    eeg_encoder: str
    n_chans: int
    n_times: int
    dim: int
    sfreq: float = 250.0
    n_subjects: int = 10
    eeg_options: dict[str, Any] = field(default_factory=dict)
    target: TargetConfig = field(default_factory=TargetConfig)
    logit_scale: float = 1.0
    scale_mode: ScaleMode = "fixed"
    normalize_eeg: bool = False
    # CognitionCapturerPro's brain side instead of one encoder and target (``models.experts``); then the
    # embedding width of each modality's view
    experts: ExpertsConfig | None = None
    modality_dims: dict[str, int] = field(default_factory=dict)
    # the shared space (Shallow Alignment, SAMGA): the EEG encoder's width when a linear EEG projector follows it
    # (0: the encoder outputs the space itself); one Linear applied to both sides' embeddings (SAMGA's share
    # encoder); the widths of the target's views when they differ (the layer router)
    embed_dim: int = 0
    shared_head: bool = False
    view_dims: dict[str, int] = field(default_factory=dict)
    # the loss: both directions (CLIP) or EEG -> image only (NeuralBench); SAMGA's MMD term's kernel bandwidths
    loss_direction: Literal["symmetric", "eeg_to_image"] = "symmetric"
    mmd_sigmas: tuple[float, ...] = ()

    @property
    def space_dim(self) -> int:
        """The width of the space the EEG and image embeddings meet in."""
        return self.target.projector_dim or self.dim

    def required_views(self) -> list[str]:
        return self.experts.required_views() if self.experts else self.target.required_views()

    def uncertainty_groups(self) -> dict[str, list[str]]:
        """Output view -> its [less, medium, more] views, for each target trained with uncertainty-aware blur."""
        if self.experts:
            return {self.experts.view_of(m): v for m, v in self.experts.uncertainty_groups().items()}
        t = self.target
        return {t.single_view: list(t.uncertainty_views)} if t.uncertainty_views else {}


def build_seed_model(cfg: ModelConfig) -> nn.Module:
    """What one seed learns: a ``RetrievalModel``, or ``ModalityExperts`` when ``cfg.experts`` is set."""
    if cfg.experts is not None:
        model = ModalityExperts(cfg.experts, cfg.n_chans, cfg.n_times, cfg.modality_dims or cfg.dim, cfg.sfreq)
        model.model_config = cfg  # its own ``config`` is the ExpertsConfig
        return model
    return RetrievalModel(cfg)


class RetrievalModel(nn.Module):
    """EEG encoder (+ a linear EEG projector) + image-side target model (+ a head shared by both sides) + loss (with
    its temperature): everything a seed learns."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        space = cfg.space_dim
        self.eeg = build_eeg_encoder(
            cfg.eeg_encoder,
            n_chans=cfg.n_chans,
            n_times=cfg.n_times,
            out_dim=cfg.embed_dim or space,
            sfreq=cfg.sfreq,
            n_subjects=cfg.n_subjects,
            where="train.eeg_options",
            **cfg.eeg_options,
        )
        self.eeg_projector = nn.Linear(cfg.embed_dim, space) if cfg.embed_dim else None
        self.target = TargetModel(cfg.target, cfg.dim, cfg.view_dims, cfg.n_subjects)
        self.shared_head = nn.Linear(space, space) if cfg.shared_head else None
        self.loss = InfoNCE(
            cfg.logit_scale,
            cfg.scale_mode,
            cfg.normalize_eeg,
            symmetric=cfg.loss_direction == "symmetric",
            mmd_sigmas=cfg.mmd_sigmas,
        )

    def embed(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        e = self.eeg(x, subject)
        if self.eeg_projector is not None:
            e = self.eeg_projector(e)
        return e if self.shared_head is None else self.shared_head(e)

    def targets(self, views: dict[str, torch.Tensor], subject: torch.Tensor | None = None) -> torch.Tensor:
        t = self.target(views, subject)
        return t if self.shared_head is None else self.shared_head(t)

    def forward(self, a: Any, b: Any = None, subject: torch.Tensor | None = None, mode: str = "both") -> Any:
        if mode == "both":  # (EEG batch, views) -> (EEG embeddings, targets)
            return self.embed(a, subject), self.targets(b, subject)
        if mode == "eeg":
            return self.embed(a, subject)
        if mode == "target":
            return self.targets(b)
        if mode == "loss":  # (EEG embeddings, targets) -> scalar loss
            return self.loss(a, b)
        if mode == "diag":  # (EEG embeddings, targets) -> the true pairs' logits
            return self.loss.diagonal_logits(a, b)
        check_option("mode", mode, ("both", "eeg", "target", "loss", "diag"))
        raise AssertionError(mode)  # unreachable: check_option raised


def build_models(
    cfg: ModelConfig, seeds: list[int], train_views: dict[str, torch.Tensor] | None = None
) -> list[nn.Module]:
    """One model per seed, each initialised from ``torch.manual_seed(seed)`` as if built alone; with
    ``train_views`` (the training images' embeddings) the target's centring means are set from them."""
    models = []
    for s in seeds:
        torch.manual_seed(s)
        model = use_keyed_dropout(build_seed_model(cfg))
        if train_views is not None and isinstance(model, RetrievalModel):
            model.target.set_centers(train_views)
        models.append(model)
    return models


def resolve_engine(engine: str, device: torch.device) -> Engine:
    """``auto``: vmap on CUDA (one batched kernel per layer for all seeds); loop on CPU, where vmap's batched
    kernels measured 2x slower per seed than a loop over seeds (benchmarks/train_speed.py, 2 cores)."""
    check_option("engine", engine, ("auto", "vmap", "loop"))
    if engine == "auto":
        return "vmap" if device.type == "cuda" else "loop"
    return engine  # type: ignore[return-value]


def _mangle(name: str) -> str:
    return name.replace(".", "__")


def tree_map(fn: Callable[[torch.Tensor], Any], x: Any) -> Any:
    """``fn`` on every tensor of a (nested) dict / tuple / list of tensors, the structure kept."""
    if isinstance(x, dict):
        return {k: tree_map(fn, v) for k, v in x.items()}
    if isinstance(x, tuple | list):
        return type(x)(tree_map(fn, v) for v in x)
    return fn(x)


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def tree_stack(items: list[Any], dim: int = 0) -> Any:
    """Per-seed outputs of one structure -> one structure of stacked tensors (the leading axis: seed)."""
    first = items[0]
    if isinstance(first, dict):
        return {k: tree_stack([it[k] for it in items], dim) for k in first}
    if isinstance(first, tuple | list):
        return type(first)(tree_stack(list(group), dim) for group in zip(*items, strict=True))
    return torch.stack(items, dim)


def tree_cat(items: list[Any], dim: int) -> Any:
    first = items[0]
    if isinstance(first, dict):
        return {k: tree_cat([it[k] for it in items], dim) for k in first}
    return torch.cat(items, dim)


class SeedStack(nn.Module):
    """S copies of one seed model's architecture (``RetrievalModel`` or ``ModalityExperts``) with stacked weights
    (leading axis: seed). Inputs and outputs may be tensors or dicts / tuples of them."""

    def __init__(self, models: list[nn.Module], engine: Engine = "vmap"):
        super().__init__()
        check_option("engine", engine, ("vmap", "loop"))
        self.n_seeds, self.engine = len(models), engine
        self.config: ModelConfig = getattr(models[0], "model_config", models[0].config)
        params, buffers = stack_module_state(models)
        self.param_names, self.buffer_names = list(params), list(buffers)
        for n, p in params.items():
            # a frozen part (a probed pretrained encoder) stays frozen: no gradient, so the optimiser leaves it alone
            self.register_parameter(_mangle(n), nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
        for n, b in buffers.items():
            self.register_buffer(_mangle(n), b.clone())
        base = copy.deepcopy(models[0]).to("meta")
        object.__setattr__(self, "_base", base)  # not a submodule: its (meta) weights are never trained
        # torch.compile every seed's call (per mode; benchmarks/train_speed.py --compile). Off by default: on the
        # 2-core CPU a compiled step was slower than eager (docs/performance.md); unmeasured on a GPU so far
        self.compile = False
        self._compiled: dict[tuple, Callable] = {}

    def train(self, mode: bool = True) -> SeedStack:
        super().train(mode)
        self._base.train(mode)
        return self

    def params(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, _mangle(n)) for n in self.param_names}

    def buffers_dict(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, _mangle(n)) for n in self.buffer_names}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {**self.params(), **self.buffers_dict()}

    @property
    def device(self) -> torch.device:
        """Where the seeds' tensors live (a closed-form encoder has buffers and no parameters)."""
        return next(iter(self.state_tensors().values())).device

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        own = self.state_tensors()
        missing = sorted(n for n in set(own) - set(tensors) if own[n].numel())  # empty ones: a switch that is off
        if missing:
            raise DataFormatError(f"{source}: missing weights {missing[:5]}; it was made by another configuration")
        with torch.no_grad():
            for n, t in own.items():
                if n not in tensors:
                    continue
                if tensors[n].shape != t.shape:
                    got, want = tuple(tensors[n].shape), tuple(t.shape)
                    raise DataFormatError(f"{source}: {n} has shape {got}, expected {want}")
                t.copy_(tensors[n])

    def _compiled_call(self, key: tuple, fn: Callable) -> Callable:
        """The compiled ``fn`` of this call signature (compiled once; a closure over the same base and mode)."""
        if key not in self._compiled:
            self._compiled[key] = torch.compile(fn)
        return self._compiled[key]

    def run(
        self,
        mode: str,
        a: Any = None,
        b: Any = None,
        subject: torch.Tensor | None = None,
        keys: torch.Tensor | None = None,
        shared: bool = False,
        row_offset: int = 0,
    ) -> Any:
        """Call every seed's model. Inputs have a leading seed axis unless ``shared`` (then every seed sees the
        same ``a``/``b``/``subject``); ``keys`` (S,) are the seeds' dropout keys of this step."""
        base = self._base

        def one(p, bufs, a, b, subject, key):
            with keyed_dropout(key, row_offset):
                return functional_call(base, (p, bufs), (a, b), {"subject": subject, "mode": mode}, strict=True)

        p, bufs = self.params(), self.buffers_dict()
        if self.engine == "vmap":
            d = None if shared else 0
            in_dims = (
                0,
                0,
                None if a is None else d,
                None if b is None else d,
                None if subject is None else d,
                None if keys is None else 0,
            )
            fn = vmap(one, in_dims=in_dims, randomness="error")
            if self.compile:
                fn = self._compiled_call(("vmap", mode, row_offset, in_dims), fn)
            return fn(p, bufs, a, b, subject, keys)
        if self.compile:
            one = self._compiled_call(("loop", mode, row_offset), one)
        # one unbind per tensor, not an index per seed: the backward of S indexings writes S gradients into S
        # zero-filled stack-sized tensors and adds them up; the backward of unbind stacks them once
        p_seed = {k: v.unbind(0) for k, v in p.items()}
        b_seed = {k: v.unbind(0) for k, v in bufs.items()}
        outs = []
        for s in range(self.n_seeds):

            def pick(x, s=s):
                if x is None or shared:
                    return x
                return tree_map(lambda t, s=s: t[s], x)

            outs.append(
                one(
                    {k: v[s] for k, v in p_seed.items()},
                    {k: v[s] for k, v in b_seed.items()},
                    pick(a),
                    pick(b),
                    pick(subject),
                    None if keys is None else keys[s],
                )
            )
        return tree_stack(outs)

    def forward(
        self,
        x: torch.Tensor,
        views: dict[str, torch.Tensor],
        subject: torch.Tensor,
        keys: torch.Tensor,
        row_offset: int = 0,
        gather: Callable | None = None,
        with_diag: bool = False,
    ) -> Any:
        """One training step's per-seed losses, (S,) or (S, K) for a model with K keys: embed, gather the batch
        across processes, InfoNCE. ``with_diag``: also the true pairs' logits of the whole batch, (S, B) or (S, G, B)
        for G targets under uncertainty-aware blur, detached."""
        e, t = self.run("both", x, views, subject, keys, row_offset=row_offset)
        if gather is not None:
            e, t = tree_map(gather, e), tree_map(gather, t)
        e, t = tree_map(_full_precision, e), tree_map(_full_precision, t)  # the loss in full precision under autocast
        losses = self.run("loss", e, t)
        if with_diag:
            with torch.no_grad():
                return losses, self.run("diag", tree_map(torch.Tensor.detach, e), tree_map(torch.Tensor.detach, t))
        return losses


@torch.no_grad()
def embed_eeg(stack: SeedStack, eeg_mean: torch.Tensor, subject: torch.Tensor, batch: int = 1024) -> Any:
    """(N, C, T) averaged EEG -> (S, N, D) embeddings of every seed (eval mode, shared input); a dict of them by
    key for ``ModalityExperts``."""
    stack.eval()
    dev = stack.device
    outs = [
        stack.run("eeg", eeg_mean[i : i + batch].to(dev), subject=subject[i : i + batch].to(dev), shared=True)
        for i in range(0, eeg_mean.shape[0], batch)
    ]
    return tree_map(lambda v: v.float(), tree_cat(outs, dim=1))


@torch.no_grad()
def embed_targets(stack: SeedStack, views: dict[str, torch.Tensor]) -> Any:
    """{view: (N, D)} -> (S, N, D) target embeddings of every seed (eval mode); a dict by key for experts."""
    stack.eval()
    dev = stack.device
    out = stack.run("target", b={k: v.to(dev) for k, v in views.items()}, shared=True)
    return tree_map(lambda v: v.float(), out)


def check_views(views: dict[str, torch.Tensor], target: TargetConfig | ExpertsConfig) -> None:
    """Every view the target needs is there, with one embedding dimension (experts: one per modality)."""
    missing = [v for v in target.required_views() if v not in views]
    if missing:
        raise DataFormatError(f"the target needs views {missing}, the loaded embeddings hold {sorted(views)}")
    if isinstance(target, ExpertsConfig):
        for m, vs in target.modalities.items():
            dims = {v: views[v].shape[1] for v in vs}
            if len(set(dims.values())) != 1:
                raise DataFormatError(f"the views of modality {m!r} have different embedding dimensions: {dims}")
        return
    if target.layer_views:  # the layer router projects every layer from its own width
        return
    dims = {k: v.shape[1] for k, v in views.items()}
    if len(set(dims.values())) != 1:
        raise DataFormatError(f"the target's views have different embedding dimensions: {dims}")


# --------------------------------------------------------------------------------------------------
# Weights files: stacked tensors + seeds + the model config (safetensors metadata)
# --------------------------------------------------------------------------------------------------

_MODEL_KEY = "model_config"


def save_weights(
    path: Path,
    tensors: dict[str, torch.Tensor],
    seeds: list[int],
    extra: dict[str, Any] | None = None,
    config: ModelConfig | None = None,
) -> None:
    """Stacked weights of every seed, with ``seeds``, ``extra`` and the ``ModelConfig`` that builds them in the
    file's metadata (JSON values). Written atomically."""
    meta = {"seeds": list(seeds), **(extra or {})}
    if config is not None:
        meta[_MODEL_KEY] = to_dict(config)
    save_safetensors(
        path,
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
        {k: json.dumps(v) for k, v in meta.items()},
    )


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) of a weights file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: missing; train the run first (`eeg2image train`)")
    with safe_open(str(path), "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return load_file(str(path)), meta


def load_stack(path: Path, engine: str = "auto", device: str | torch.device = "cpu") -> tuple[SeedStack, dict]:
    """Rebuild the trained ``SeedStack`` saved at ``path`` (its ``ModelConfig`` is in the file) on ``device``;
    returns it (eval mode) with the file's metadata (``seeds``, ``epoch``, ...)."""
    tensors, meta = load_weights(path)
    if _MODEL_KEY not in meta:
        raise DataFormatError(f"{path}: no model config in the file (made by an older version); train it again")
    cfg = from_dict(ModelConfig, meta[_MODEL_KEY], where=_MODEL_KEY)
    seeds = meta.get("seeds") or []
    dev = torch.device(device)
    stack = SeedStack(build_models(cfg, list(seeds)), resolve_engine(engine, dev))
    stack.load_state_tensors(tensors, str(path))
    return stack.to(dev).eval(), meta
