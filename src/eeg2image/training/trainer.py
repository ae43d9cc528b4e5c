"""Training for EEG -> image retrieval: all seeds of one configuration at once, in one process.

The seeds' model copies are stacked (``torch.func.stack_module_state``) and run together under
``torch.func.vmap`` (``engine="vmap"``) or one after another on the same stacked weights (``engine="loop"``).
Nothing a seed computes depends on which other seeds share the run:

- its initial weights come from ``torch.manual_seed(seed)``, exactly as a model built alone;
- its batch order and repetition sub-averaging come from its own ``torch.Generator(seed)``;
- its dropout masks are keyed on (seed, step, layer, row, element) (``models.dropout``);
- the loss of the stack is the sum of per-seed losses, and AdamW acts element-wise, so each seed's update
  is its own.

So ``train_seeds(cfg, [0, 1, 2], ...)`` gives seed 1 the same weights as ``train_seeds(cfg, [1], ...)`` (to
float rounding of batched kernels; tested). The EEG of the training images stays one tensor on the device.

Under ``torchrun`` (``distributed=True``) every process takes a slice of each batch; EEG and image
embeddings are all-gathered (with gradient) before the loss, so the contrastive loss sees the whole batch, and
``DistributedDataParallel`` averages the gradients: the same update as one process, except that batch norm
statistics are computed per process (as DDP does by default).

Checkpoints (safetensors) are written at epoch ends; ``train_seeds`` resumes from the last one and then
continues exactly as an uninterrupted run would (tested).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..io import DataFormatError, Eeg2ImageError, atomic_path, read_json, write_json
from ..models.dropout import keyed_dropout, step_key, use_keyed_dropout
from ..models.eeg_encoders import build_eeg_encoder
from ..models.fusion import TargetConfig, TargetModel
from .data import RetrievalSplit
from .losses import SymmetricInfoNCE
from .uncertainty import UncertainBlurState


@dataclass
class TrainConfig:
    """How one configuration is trained (the seeds are listed by the run, not here)."""

    eeg_encoder: str = "ved"
    eeg_options: dict[str, Any] = field(default_factory=dict)
    target: TargetConfig = field(default_factory=TargetConfig)
    epochs: int = 200
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01  # AdamW's (decoupled); 0 with betas (0.5, 0.999) is NICE's Adam
    betas: tuple[float, float] = (0.9, 0.999)
    drop_last: bool = True  # drop the last, smaller batch of an epoch (VED, the reference); False: train on it
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = 0
    logit_scale: float = 1.0
    scale_mode: Literal["fixed", "exp", "softplus", "linear"] = "fixed"
    normalize_eeg: bool = False
    reps_per_sample: int = 0  # 0: average all repetitions; k: average a random k of them at every step
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on CPU); the peers trained in float32


class TrainingError(Eeg2ImageError):
    """Training cannot go on (NaN loss, a checkpoint of another configuration, bad data)."""


class RetrievalModel(nn.Module):
    """EEG encoder + image-side target model + loss (with its temperature): everything a seed learns."""

    def __init__(self, cfg: TrainConfig, n_chans: int, n_times: int, dim: int, sfreq: float | None = None):
        super().__init__()
        options = {**({"sfreq": sfreq} if sfreq else {}), **cfg.eeg_options}
        self.eeg = build_eeg_encoder(cfg.eeg_encoder, n_chans=n_chans, n_times=n_times, out_dim=dim, **options)
        self.target = TargetModel(cfg.target, dim)
        self.loss = SymmetricInfoNCE(cfg.logit_scale, cfg.scale_mode, cfg.normalize_eeg)

    def forward(self, a: Any, b: Any = None, subject: torch.Tensor | None = None, mode: str = "both") -> Any:
        if mode == "both":  # (EEG batch, views) -> (EEG embeddings, targets)
            return self.eeg(a, subject), self.target(b)
        if mode == "eeg":
            return self.eeg(a, subject)
        if mode == "target":
            return self.target(b)
        if mode == "loss":  # (EEG embeddings, targets) -> scalar loss
            return self.loss(a, b)
        if mode == "diag":  # (EEG embeddings, targets) -> the true pairs' logits
            return self.loss.diagonal_logits(a, b)
        raise ValueError(f"unknown mode {mode!r}")


def build_models(
    cfg: TrainConfig,
    seeds: list[int],
    n_chans: int,
    n_times: int,
    dim: int,
    sfreq: float | None = None,
    train_views: dict[str, torch.Tensor] | None = None,
) -> list[RetrievalModel]:
    """One model per seed, each initialised from ``torch.manual_seed(seed)`` as if built alone; with
    ``train_views`` (the training images' embeddings) the target's centring means are set from them."""
    models = []
    for s in seeds:
        torch.manual_seed(s)
        model = use_keyed_dropout(RetrievalModel(cfg, n_chans, n_times, dim, sfreq))
        if train_views is not None:
            model.target.set_centers(train_views)
        models.append(model)
    return models


def _mangle(name: str) -> str:
    return name.replace(".", "__")


class SeedStack(nn.Module):
    """S copies of one ``RetrievalModel`` architecture with stacked weights (leading axis: seed)."""

    def __init__(self, models: list[RetrievalModel], engine: Literal["vmap", "loop"] = "vmap"):
        super().__init__()
        if engine not in ("vmap", "loop"):
            raise ValueError(f"engine must be vmap or loop, got {engine!r}")
        self.n_seeds, self.engine = len(models), engine
        params, buffers = stack_module_state(models)
        self.param_names, self.buffer_names = list(params), list(buffers)
        for n, p in params.items():
            self.register_parameter(_mangle(n), nn.Parameter(p.detach().clone()))
        for n, b in buffers.items():
            self.register_buffer(_mangle(n), b.clone())
        base = copy.deepcopy(models[0]).to("meta")
        object.__setattr__(self, "_base", base)  # not a submodule: its (meta) weights are never trained

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

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        own = self.state_tensors()
        missing = sorted(n for n in set(own) - set(tensors) if own[n].numel())  # empty ones: a switch that is off
        if missing:
            raise TrainingError(f"{source}: missing weights {missing[:5]}; it was made by another configuration")
        with torch.no_grad():
            for n, t in own.items():
                if n not in tensors:
                    continue
                if tensors[n].shape != t.shape:
                    raise TrainingError(f"{source}: {n} has shape {tuple(tensors[n].shape)}, expected {tuple(t.shape)}")
                t.copy_(tensors[n])

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
            return vmap(one, in_dims=in_dims, randomness="error")(p, bufs, a, b, subject, keys)
        outs = []
        for s in range(self.n_seeds):

            def pick(x, s=s):
                if x is None or shared:
                    return x
                return {k: v[s] for k, v in x.items()} if isinstance(x, dict) else x[s]

            outs.append(
                one(
                    {k: v[s] for k, v in p.items()},
                    {k: v[s] for k, v in bufs.items()},
                    pick(a),
                    pick(b),
                    pick(subject),
                    None if keys is None else keys[s],
                )
            )
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(o) for o in zip(*outs, strict=True))
        return torch.stack(outs)

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
        """One training step's per-seed losses (S,): embed, gather the batch across processes, InfoNCE.
        ``with_diag``: also the true pairs' logits of the whole batch (S, B), detached."""
        e, t = self.run("both", x, views, subject, keys, row_offset=row_offset)
        if gather is not None:
            e, t = gather(e), gather(t)
        if e.dtype in (torch.float16, torch.bfloat16):  # the loss in full precision under autocast
            e, t = e.float(), t.float()
        losses = self.run("loss", e, t)
        if with_diag:
            with torch.no_grad():
                return losses, self.run("diag", e.detach(), t.detach())
        return losses


def average_reps(eeg: torch.Tensor, k: int, gen: torch.Generator | None) -> torch.Tensor:
    """Mean over repetitions (axis 1): all of them, or a random ``k`` per sample (drawn on the CPU)."""
    picks = _rep_picks(eeg.shape[1], k, eeg.shape[0], gen)
    return _average(eeg, None if picks is None else picks.to(eeg.device))


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    total = max(1, cfg.epochs * steps_per_epoch)
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    return cfg.lr


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_engine(engine: str, device: torch.device) -> Literal["vmap", "loop"]:
    """``auto``: vmap on CUDA (one batched kernel per layer for all seeds); loop on CPU, where vmap's batched
    kernels measured 2x slower per seed than a loop over seeds (benchmarks/train_speed.py, 2 cores)."""
    if engine == "auto":
        return "vmap" if device.type == "cuda" else "loop"
    if engine not in ("vmap", "loop"):
        raise ValueError(f"engine must be auto, vmap or loop, got {engine!r}")
    return engine  # type: ignore[return-value]


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1


def _gather_rows(world: int, sizes: list[int], group: Any = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """All-gather (S, b_rank, D) along the batch axis with gradient (ranks may hold unequal slices). ``group``:
    a process group of its own, so that these collectives never interleave with DDP's gradient all-reduce."""
    import torch.distributed.nn.functional as dnf

    width = max(sizes)

    def gather(x: torch.Tensor) -> torch.Tensor:
        # batch axis first, so that every piece (and every gradient piece handed back to the collective in
        # the backward pass) is a contiguous block: gloo silently mishandles non-contiguous ones
        rows = x.transpose(0, 1)
        pad = width - rows.shape[0]
        if pad:
            rows = torch.cat([rows, rows.new_zeros(pad, *rows.shape[1:])])
        parts = dnf.all_gather(rows.contiguous(), group=group)
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]).transpose(0, 1)

    return gather


@torch.no_grad()
def embed_eeg(stack: SeedStack, eeg_mean: torch.Tensor, subject: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """(N, C, T) averaged EEG -> (S, N, D) embeddings of every seed (eval mode, shared input)."""
    stack.eval()
    dev = next(stack.parameters()).device
    outs = [
        stack.run("eeg", eeg_mean[i : i + batch].to(dev), subject=subject[i : i + batch].to(dev), shared=True)
        for i in range(0, eeg_mean.shape[0], batch)
    ]
    return torch.cat(outs, dim=1).float()


@torch.no_grad()
def embed_targets(stack: SeedStack, views: dict[str, torch.Tensor]) -> torch.Tensor:
    """{view: (N, D)} -> (S, N, D) target embeddings of every seed (eval mode)."""
    stack.eval()
    dev = next(stack.parameters()).device
    return stack.run("target", b={k: v.to(dev) for k, v in views.items()}, shared=True).float()


def split_queries(split: RetrievalSplit) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(EEG averaged over all repetitions (rows, C, T), subject per row, image index per row)."""
    return split.eeg.mean(dim=1), torch.as_tensor(split.subject), split.image


def rank_metrics(q: torch.Tensor, g: torch.Tensor, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per-seed top-1 / top-5 / MRR of queries (S, Q, D) against galleries (S, N, D); ties count against."""
    qn = torch.nn.functional.normalize(q.double(), dim=-1)
    gn = torch.nn.functional.normalize(g.double(), dim=-1)
    sim = qn @ gn.transpose(1, 2)  # (S, Q, N)
    t = torch.as_tensor(targets)
    true = sim[:, torch.arange(len(t)), t][..., None]
    ranks = ((sim > true).sum(-1) + (sim == true).sum(-1) - 1).numpy()
    return {"top1": (ranks < 1).mean(1), "top5": (ranks < 5).mean(1), "mrr": (1.0 / (ranks + 1)).mean(1)}


@dataclass
class TrainResult:
    stack: SeedStack
    history: list[dict[str, Any]]
    best: dict[str, torch.Tensor] | None  # stacked weights, each seed at its validation-selected epoch
    best_epoch: list[int] | None
    resumed_from: int  # epochs already done when this call started


_STATE, _STATE_JSON = "state.safetensors", "state.json"


def _save_state(
    folder: Path,
    stack: SeedStack,
    opt: torch.optim.Optimizer,
    gens: list[torch.Generator],
    best: dict[str, torch.Tensor] | None,
    meta: dict[str, Any],
    blur_state: UncertainBlurState | None = None,
) -> None:
    from safetensors.torch import save_file

    tensors = {f"model/{n}": t.detach().cpu().contiguous() for n, t in stack.state_tensors().items()}
    if best is not None:
        tensors.update({f"best/{n}": t.cpu().contiguous() for n, t in best.items()})
    names = {id(p): n for n, p in stack.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                tensors[f"opt/{names[id(p)]}/{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    for i, g in enumerate(gens):
        tensors[f"gen/{i}"] = g.get_state()
    if blur_state is not None:
        tensors.update({f"uncertainty/{k}": v.cpu().contiguous() for k, v in blur_state.tensors().items()})
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / _STATE) as tmp:
        save_file(tensors, str(tmp))
    write_json(folder / _STATE_JSON, meta)  # written last: it names the epoch the tensors belong to


def _load_state(
    folder: Path,
    stack: SeedStack,
    opt: torch.optim.Optimizer,
    gens: list[torch.Generator],
    blur_state: UncertainBlurState | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    meta = read_json(folder / _STATE_JSON)
    tensors = load_file(str(folder / _STATE))
    stack.load_state_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, str(folder / _STATE))
    opt_state = {}
    for n, p in stack.named_parameters():
        st = {k.rsplit("/", 1)[1]: v.to(p.device) for k, v in tensors.items() if k.startswith(f"opt/{n}/")}
        if st:
            st["step"] = st["step"].cpu()
            opt_state[p] = st
    opt.state.clear()
    opt.state.update(opt_state)
    for i, g in enumerate(gens):
        g.set_state(tensors[f"gen/{i}"])
    if blur_state is not None:
        blur_state.load({k[12:]: v for k, v in tensors.items() if k.startswith("uncertainty/")}, str(folder / _STATE))
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
    return best, meta


def train_seeds(
    cfg: TrainConfig,
    seeds: list[int],
    train: RetrievalSplit,
    val: RetrievalSplit | None = None,
    *,
    device: str = "auto",
    engine: Literal["auto", "vmap", "loop"] = "auto",
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    fingerprint: dict[str, Any] | None = None,
    select_on: Literal["top1", "mrr"] = "top1",
    distributed: bool = False,
    progress: bool = False,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``cfg`` for every seed in ``seeds`` together; validate on ``val`` (concept-disjoint images of the
    training partition) after every epoch and keep each seed's best weights. With ``checkpoint_dir`` the run
    resumes from its last checkpoint, after checking ``fingerprint`` (the run's configuration and inputs)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise TrainingError(f"seeds must be distinct and non-empty, got {seeds}")
    if len(train) < 2:
        raise TrainingError(f"need at least 2 training rows, got {len(train)}")
    if not torch.isfinite(train.eeg).all():
        raise TrainingError("the training EEG holds NaN or Inf values; check the preprocessing output")
    dist = DistInfo()
    if distributed:
        import torch.distributed as td

        dist = DistInfo(td.get_rank(), td.get_world_size())
    dev = resolve_device(device)
    if dist.world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", dist.rank % torch.cuda.device_count())
    dim = next(iter(train.views.values())).shape[1]
    n_chans, n_times = train.eeg.shape[2], train.eeg.shape[3]
    engine = resolve_engine(engine, dev)
    stack = SeedStack(build_models(cfg, seeds, n_chans, n_times, dim, train.sfreq, train.views), engine).to(dev)
    model: nn.Module = stack
    gather_group = None
    if dist.world > 1:
        import torch.distributed as td

        gather_group = td.new_group(backend=td.get_backend())
        model = nn.parallel.DistributedDataParallel(stack, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.AdamW(stack.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    gens = [torch.Generator().manual_seed(s) for s in seeds]

    eeg = train.eeg.to(dev)
    if cfg.reps_per_sample <= 0 or cfg.reps_per_sample >= eeg.shape[1]:
        eeg = eeg.mean(dim=1, keepdim=True)  # averaged once: no (batch, reps, C, T) gathers in the loop
    image = torch.as_tensor(train.image, device=dev)
    subject = torch.as_tensor(train.subject, device=dev)
    views = {k: v.to(dev) for k, v in train.views.items()}
    n = len(train)
    # drop_last keeps whole batches only (at least one: a split smaller than a batch is one batch)
    steps_per_epoch = max(1, n // cfg.batch_size) if cfg.drop_last else math.ceil(n / cfg.batch_size)
    val_q = val_sub = None
    if val is not None:
        vq, vs, val_img = split_queries(val)
        val_q, val_sub = vq.to(dev), vs.to(dev)

    tcfg = cfg.target
    blur_state = None
    if tcfg.uncertainty_views:  # UBP: each pair's target view follows how well it matches (training.uncertainty)
        blur_state = UncertainBlurState(len(seeds), n, tcfg.uncertainty_gamma, tcfg.uncertainty_z, device=dev)
    history: list[dict[str, Any]] = []
    best: dict[str, torch.Tensor] | None = None
    best_epoch: list[int] | None = None
    best_score = np.full(len(seeds), -np.inf)
    start = 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt is not None and (ckpt / _STATE_JSON).is_file():
        meta = read_json(ckpt / _STATE_JSON)
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise TrainingError(
                f"{ckpt}: the checkpoint there was made by another configuration or other inputs; "
                "train into a new folder (or delete that one) — nothing was overwritten"
            )
        best_loaded, meta = _load_state(ckpt, stack, opt, gens, blur_state)
        start, history = meta["epoch"], meta["history"]
        if best_loaded:
            best = {k: v.to(dev) for k, v in best_loaded.items()}
            best_epoch, best_score = meta["best_epoch"], np.array(meta["best_score"])
    amp = cfg.amp and dev.type == "cuda"
    bar = None
    if progress and dist.rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.epochs, initial=start, desc=f"train {len(seeds)} seed(s)", unit="epoch")
    for epoch in range(start, cfg.epochs):
        stack.train()
        orders = [torch.randperm(n, generator=g) for g in gens]
        totals = torch.zeros(len(seeds), dtype=torch.float64)
        counted = 0
        for b in range(steps_per_epoch):
            step = epoch * steps_per_epoch + b
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step, steps_per_epoch)
            idx_full = [o[b * cfg.batch_size : (b + 1) * cfg.batch_size] for o in orders]
            if len(idx_full[0]) < 2:
                continue
            sizes = [len(c) for c in torch.tensor_split(idx_full[0], dist.world)]
            lo = sum(sizes[: dist.rank])
            xs, subs, img, rows = [], [], [], []
            for s, idx in enumerate(idx_full):
                # every process draws the whole batch's sub-averaging, then keeps its slice
                picks = _rep_picks(eeg.shape[1], cfg.reps_per_sample, len(idx), gens[s])
                mine = idx[lo : lo + sizes[dist.rank]].to(dev)
                xs.append(_average(eeg[mine], None if picks is None else picks[lo : lo + sizes[dist.rank]].to(dev)))
                subs.append(subject[mine])
                img.append(image[mine])
                rows.append(mine)
            x, sub, im = torch.stack(xs), torch.stack(subs), torch.stack(img)
            vb = {k: v[im] for k, v in views.items()}
            if blur_state is not None:
                vb[tcfg.single_view] = blur_state.select([vb[v] for v in tcfg.uncertainty_views], torch.stack(rows))
            keys = torch.tensor([step_key(s, step) for s in seeds], dtype=torch.int64, device=dev)
            gather = _gather_rows(dist.world, sizes, gather_group) if dist.world > 1 else None
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x, vb, sub, keys, row_offset=lo, gather=gather, with_diag=blur_state is not None)
            losses, diag = out if blur_state is not None else (out, None)
            if not torch.isfinite(losses).all():
                bad = [seeds[i] for i in torch.nonzero(~torch.isfinite(losses)).flatten().tolist()]
                raise TrainingError(
                    f"epoch {epoch + 1}, step {b + 1}: the loss of seed(s) {bad} became NaN/Inf; "
                    "lower the learning rate or check the inputs"
                )
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            if blur_state is not None:
                blur_state.update(torch.stack(idx_full).to(dev), diag)
            totals += losses.detach().double().cpu()
            counted += 1
        rec: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": opt.param_groups[0]["lr"],
            "steps": counted,
            "loss": (totals / max(counted, 1)).tolist(),
        }
        if blur_state is not None:
            blur_state.end_epoch()
            rec.update({f"blur_{k}": v for k, v in blur_state.counts().items()})
        if val is not None:
            m = rank_metrics(embed_eeg(stack, val_q, val_sub), embed_targets(stack, val.views), val_img)
            rec.update({f"val_{k}": v.tolist() for k, v in m.items()})
            score = m[select_on]
            improved = score > best_score
            if best is None:
                best = {k: v.detach().clone() for k, v in stack.state_tensors().items()}
                best_epoch = [epoch + 1] * len(seeds)
            elif improved.any():
                sel = torch.as_tensor(improved, device=dev)
                for k, v in stack.state_tensors().items():
                    best[k][sel] = v.detach()[sel]
            best_epoch = [epoch + 1 if imp else be for imp, be in zip(improved, best_epoch, strict=True)]
            best_score = np.where(improved, score, best_score)
        history.append(rec)
        done = epoch + 1
        if ckpt is not None and dist.rank == 0 and (done % checkpoint_every == 0 or done == cfg.epochs):
            meta = {
                "epoch": done,
                "history": history,
                "seeds": list(seeds),
                "fingerprint": fingerprint,
                "best_epoch": best_epoch,
                "best_score": best_score.tolist(),
            }
            _save_state(ckpt, stack, opt, gens, best, meta, blur_state)
        if dist.world > 1:
            import torch.distributed as td

            td.barrier()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(rec['loss']):.3f}")
        if on_epoch_end is not None:
            on_epoch_end(done, rec)
    if bar is not None:
        bar.close()
    return TrainResult(stack, history, best, best_epoch, start)


def _rep_picks(n_reps: int, k: int, n: int, gen: torch.Generator | None) -> torch.Tensor | None:
    if k <= 0 or k >= n_reps:
        return None
    return torch.rand(n, n_reps, generator=gen).argsort(dim=1)[:, :k]


def _average(eeg_rows: torch.Tensor, picks: torch.Tensor | None) -> torch.Tensor:
    if picks is None:
        return eeg_rows.mean(dim=1)
    idx = picks[:, :, None, None].expand(-1, -1, eeg_rows.shape[2], eeg_rows.shape[3])
    return eeg_rows.gather(1, idx).mean(dim=1)


def check_dims(train: RetrievalSplit, target: TargetConfig) -> None:
    """Every view the target needs is there, with one embedding dimension."""
    needed = TargetModel(target, 1).required_views()
    missing = [v for v in needed if v not in train.views]
    if missing:
        raise DataFormatError(f"the target needs views {missing}, the loaded embeddings hold {sorted(train.views)}")
    dims = {k: v.shape[1] for k, v in train.views.items()}
    if len(set(dims.values())) != 1:
        raise DataFormatError(f"the target's views have different embedding dimensions: {dims}")
