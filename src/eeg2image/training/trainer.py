"""Training for EEG -> image retrieval: all seeds of one configuration at once, in one process.

``train_seeds`` is a short loop over named steps: build the state, then per epoch ``train_epoch`` (one
optimisation step per batch), ``validate`` (the shared ranking rule of ``models.ranking``, so the number a
checkpoint is selected on is the number evaluation reports) and ``save_state`` (checkpoint).

The seeds' model copies are stacked (``models.retrieval.SeedStack``). Nothing a seed computes depends on
which other seeds share the run:

- its initial weights come from ``torch.manual_seed(seed)``, exactly as a model built alone;
- its batch order and repetition sub-averaging come from its own ``torch.Generator(seed)``;
- its dropout masks are keyed on (seed, step, layer, row, element) (``models.dropout``);
- the loss of the stack is the sum of per-seed losses, and AdamW acts element-wise, so each seed's update
  is its own.

So ``train_seeds(cfg, [0, 1, 2], ...)`` gives seed 1 the same weights as ``train_seeds(cfg, [1], ...)`` (to
float rounding of batched kernels; tested). The EEG of the training images stays one tensor on the device.
Under ``torchrun`` (``distributed=True``) every process takes a slice of each batch (``training.distributed``).
Checkpoints are written at epoch ends; a call resumes from the last one and then continues exactly as an
uninterrupted run would (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..allocator import keep_freed_memory
from ..datasets import RetrievalSplit
from ..io import Eeg2ImageError, fault_point
from ..models.dropout import step_key
from ..models.experts import MASK_KEY, modality_mask
from ..models.ranking import cosine_similarity, validation_metrics
from ..models.retrieval import SeedStack, build_models, embed_eeg, embed_targets, resolve_engine
from ..runs import TrainConfig
from .checkpoint import has_checkpoint, load_state, read_meta, save_state
from .closed_form import fit_closed_form, is_closed_form
from .distributed import DistInfo, gather_rows, wrap
from .uncertainty import UncertainBlurState

__all__ = ["TrainConfig", "TrainResult", "TrainingError", "average_reps", "lr_at", "train_seeds"]


# where ``train.amp`` turns on bf16 autocast: CUDA only. On the 2-core AVX-512 CPU (no AMX) bf16 matrix products run
# at 0.55x the float32 rate and a step took longer (docs/performance.md); train_speed.py --precision bf16 adds "cpu"
AMP_DEVICES = {"cuda"}


class TrainingError(Eeg2ImageError):
    """Training cannot go on (NaN loss, a checkpoint of another configuration, bad data)."""


@dataclass
class TrainResult:
    stack: SeedStack
    history: list[dict[str, Any]]
    best: dict[str, torch.Tensor] | None  # stacked weights, each seed at its validation-selected epoch
    best_epoch: list[int] | None
    resumed_from: int  # epochs already done when this call started


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
    compile: bool = False,
) -> TrainResult:
    """Train ``cfg`` for every seed in ``seeds`` together; validate on ``val`` (concept-disjoint images of the
    training partition) after every epoch and keep each seed's best weights. With ``checkpoint_dir`` the run
    resumes from its last checkpoint, after checking ``fingerprint`` (the run's configuration and inputs).
    ``compile``: ``torch.compile`` the seeds' calls (``SeedStack.compile``; the same numbers to float rounding)."""
    check_inputs(seeds, train)
    state = TrainState.build(cfg, seeds, train, val, DistInfo.current(distributed), device, engine)
    if is_closed_form(cfg.eeg_encoder):  # the classical baselines: one closed-form fit, no epochs
        history, best, best_epoch = fit_closed_form(state, train, val, select_on)
        return TrainResult(state.stack, history, best, best_epoch, 0)
    if state.dev.type == "cpu":
        keep_freed_memory()  # glibc: large temporaries reuse freed pages instead of fresh ones every step
    state.stack.compile = compile
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    start = state.restore(ckpt, fingerprint)
    bar = progress_bar(progress and state.dist.rank == 0, cfg.epochs, start, f"train {len(seeds)} seed(s)")
    for epoch in range(start, cfg.epochs):
        rec = train_epoch(state, epoch)
        if val is not None:
            rec.update(validate(state, epoch, select_on))
        state.history.append(rec)
        done = epoch + 1
        if ckpt is not None and state.dist.rank == 0 and (done % checkpoint_every == 0 or done == cfg.epochs):
            state.save(ckpt, done, fingerprint)
        state.dist.barrier()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(rec['loss']):.3f}")
        if on_epoch_end is not None:
            on_epoch_end(done, rec)
    if bar is not None:
        bar.close()
    return TrainResult(state.stack, state.history, state.best, state.best_epoch, start)


# --------------------------------------------------------------------------------------------------
# The state of a run, and its checkpoint
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything one call trains with: the stacked models, optimiser, the seeds' generators, the training data
    on the device, UBP's per-pair state, and the history and best weights so far."""

    cfg: TrainConfig
    seeds: list[int]
    dev: torch.device
    dist: DistInfo
    stack: SeedStack
    model: nn.Module  # the stack, or DDP around it
    gather_group: Any
    opt: torch.optim.Optimizer
    gens: list[torch.Generator]
    eeg: torch.Tensor  # (rows, reps or 1, C, T) on the device
    image: torch.Tensor
    subject: torch.Tensor
    views: dict[str, torch.Tensor]
    steps_per_epoch: int
    val: RetrievalSplit | None
    val_queries: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None
    # uncertainty-aware blur: output view -> (its state, its [less, medium, more] views); one per UM target
    blur_states: dict[str, tuple[UncertainBlurState, list[str]]]
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, torch.Tensor] | None = None
    best_epoch: list[int] | None = None
    best_score: np.ndarray | None = None

    @classmethod
    def build(cls, cfg, seeds, train, val, dist: DistInfo, device: str, engine: str) -> TrainState:
        dev = dist.device(resolve_device(device))
        dim = next(iter(train.views.values())).shape[1]
        n_subjects = max(10, int(np.max(train.subject)))
        dims = {m: train.views[cfg.experts.view_of(m)].shape[1] for m in cfg.experts.modalities} if cfg.experts else {}
        if dims:  # the experts' shared width: the fusion's (the image modality's when there is one)
            dim = dims.get("image", next(iter(dims.values())))
        view_dims = {v: train.views[v].shape[1] for v in cfg.target.layer_views} if not cfg.experts else {}
        if view_dims:  # the layer router's views keep their own widths
            dim = view_dims[cfg.target.layer_views[0]]
        mcfg = cfg.model_config(
            train.eeg.shape[2], train.eeg.shape[3], dim, train.sfreq, n_subjects, dims, view_dims, train.ch_names
        )
        stack = SeedStack(build_models(mcfg, seeds, train.views), resolve_engine(engine, dev)).to(dev)
        model, group = wrap(stack, dev, dist)
        # fused: one kernel per step for all tensors (CPU and CUDA), ~16% of a training step on CPU at 1280-d
        params = list(stack.parameters())  # none: a closed-form encoder (training.closed_form) with a fixed target
        opt = (
            torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=True)
            if params
            else None
        )
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        eeg = train.eeg.to(dev)
        if cfg.reps_per_sample <= 0 or cfg.reps_per_sample >= eeg.shape[1]:
            eeg = eeg.mean(dim=1, keepdim=True)  # averaged once: no (batch, reps, C, T) gathers in the loop
        n = len(train)
        # drop_last keeps whole batches only (at least one: a split smaller than a batch is one batch)
        steps = max(1, n // cfg.batch_size) if cfg.drop_last else math.ceil(n / cfg.batch_size)
        val_queries = None
        if val is not None:
            q, sub, img = val.queries()
            val_queries = (q.to(dev), sub.to(dev), img)
        # UBP: each pair's target view follows how well it matches
        um = cfg.experts or cfg.target
        blur_states = {
            out: (UncertainBlurState(len(seeds), n, um.uncertainty_gamma, um.uncertainty_z, device=dev), views)
            for out, views in mcfg.uncertainty_groups().items()
        }
        return cls(
            cfg=cfg,
            seeds=list(seeds),
            dev=dev,
            dist=dist,
            stack=stack,
            model=model,
            gather_group=group,
            opt=opt,
            gens=gens,
            eeg=eeg,
            image=torch.as_tensor(train.image, device=dev),
            subject=torch.as_tensor(train.subject, device=dev),
            views={k: v.to(dev) for k, v in train.views.items()},
            steps_per_epoch=steps,
            val=val,
            val_queries=val_queries,
            blur_states=blur_states,
            best_score=np.full(len(seeds), -np.inf),
        )

    def restore(self, folder: Path | None, fingerprint: dict[str, Any] | None) -> int:
        """Load the checkpoint in ``folder`` if there is one (refusing one of another configuration); returns
        the number of epochs already done."""
        if not has_checkpoint(folder):
            return 0
        if fingerprint is not None and read_meta(folder).get("fingerprint") != fingerprint:
            raise TrainingError(
                f"{folder}: the checkpoint there was made by another configuration or other inputs; "
                "train into a new folder (or delete that one) — nothing was overwritten"
            )
        best, meta = load_state(folder, self.stack, self.opt, self.gens, self.uncertainty())
        self.history = meta["history"]
        if best:
            self.best = {k: v.to(self.dev) for k, v in best.items()}
            self.best_epoch, self.best_score = meta["best_epoch"], np.array(meta["best_score"])
        return meta["epoch"]

    def save(self, folder: Path, epoch: int, fingerprint: dict[str, Any] | None) -> None:
        meta = {
            "epoch": epoch,
            "history": self.history,
            "seeds": self.seeds,
            "fingerprint": fingerprint,
            "best_epoch": self.best_epoch,
            "best_score": self.best_score.tolist(),
        }
        save_state(folder, self.stack, self.opt, self.gens, self.best, meta, self.uncertainty())

    def uncertainty(self) -> dict[str, UncertainBlurState]:
        """The UM states by checkpoint name: ``""`` for a single target (the retrieval model), else the view."""
        states = {out: st for out, (st, _) in self.blur_states.items()}
        if self.cfg.experts is None:
            return {"": next(iter(states.values()))} if states else {}  # at most one
        return states

    @property
    def loss_keys(self) -> list[str] | None:
        """The names of a multi-key model's losses (experts), None for one loss."""
        return self.cfg.experts.keys() if self.cfg.experts else None


# --------------------------------------------------------------------------------------------------
# One epoch, one step, validation
# --------------------------------------------------------------------------------------------------


def train_epoch(s: TrainState, epoch: int) -> dict[str, Any]:
    """One pass over the training rows in every seed's own order; returns the epoch's record."""
    s.stack.train()
    orders = [torch.randperm(len(s.image), generator=g) for g in s.gens]
    keys = s.loss_keys
    totals = torch.zeros(len(s.seeds), *([len(keys)] if keys else []), dtype=torch.float64)
    counted = 0
    stage = begin_epoch(s, epoch)
    for b in range(s.steps_per_epoch):
        step = epoch * s.steps_per_epoch + b
        for group in s.opt.param_groups:
            group["lr"] = lr_at(s.cfg, step, s.steps_per_epoch)
        batch = [o[b * s.cfg.batch_size : (b + 1) * s.cfg.batch_size] for o in orders]
        if len(batch[0]) < 2:
            continue
        totals += train_step(s, epoch, b, step, batch)
        fault_point("train-step")
        counted += 1
    mean = totals / max(counted, 1)
    rec: dict[str, Any] = {"epoch": epoch + 1, "lr": s.opt.param_groups[0]["lr"], "steps": counted, **stage}
    if keys:  # the trained loss is the sum of the active keys; each key's own is recorded too
        active = s.cfg.experts.active_keys(epoch)
        rec["loss"] = mean[:, [keys.index(k) for k in active]].sum(dim=1).tolist()
        rec["active_keys"] = active
        rec.update({f"loss_{k}": mean[:, i].tolist() for i, k in enumerate(keys)})
    else:
        rec["loss"] = mean.tolist()
    for out, (st, _) in s.blur_states.items():
        st.end_epoch()
        prefix = "blur_" if s.cfg.experts is None else f"blur_{out}_"
        rec.update({f"{prefix}{k}": v for k, v in st.counts().items()})
    return rec


def train_step(s: TrainState, epoch: int, b: int, step: int, batch: list[torch.Tensor]) -> torch.Tensor:
    """One optimisation step of every seed on its batch (row indices, one tensor per seed); returns the
    per-seed losses on the CPU: (S,), or (S, K) for a model with K keys (experts; the step trains the sum of the
    keys active in this epoch)."""
    lo, sizes = s.dist.batch_slice(batch[0])
    n_mine = sizes[s.dist.rank]
    x, sub, im, rows, masks = [], [], [], [], []
    averaged = s.eeg.shape[1] == 1  # repetitions averaged once (build): one gather of every seed's rows below
    for seed_i, idx in enumerate(batch):
        # every process draws the whole batch's sub-averaging, then keeps its slice
        picks = _rep_picks(s.eeg.shape[1], s.cfg.reps_per_sample, len(idx), s.gens[seed_i])
        mine = idx[lo : lo + n_mine].to(s.dev)
        if not averaged:
            x.append(_average(s.eeg[mine], None if picks is None else picks[lo : lo + n_mine].to(s.dev)))
        sub.append(s.subject[mine])
        im.append(s.image[mine])
        rows.append(mine)
        if s.cfg.experts is not None:  # the modalities fusion_mod loses in this step, from the seed's generator
            e = s.cfg.experts
            masks.append(modality_mask(n_mine, e.mask_count, s.gens[seed_i], len(e.modalities)).to(s.dev))
    im_t = torch.stack(im)
    rows_t = torch.stack(rows)
    if averaged:  # (S, n, C, T) straight from the (N, C, T) EEG: no per-seed copies, no stacking
        x_t = s.eeg[:, 0].index_select(0, rows_t.flatten()).view(*rows_t.shape, *s.eeg.shape[2:])
    else:
        x_t = torch.stack(x)
    views = {k: v[im_t] for k, v in s.views.items()}
    for out, (st, group) in s.blur_states.items():
        views[out] = st.select([views[v] for v in group], rows_t)
    if masks:
        views[MASK_KEY] = torch.stack(masks)
    with_diag = bool(s.blur_states)
    keys = torch.tensor([step_key(seed, step) for seed in s.seeds], dtype=torch.int64, device=s.dev)
    gather = gather_rows(s.dist.world, sizes, s.gather_group)
    with torch.autocast(s.dev.type, dtype=torch.bfloat16, enabled=s.cfg.amp and s.dev.type in AMP_DEVICES):
        out = s.model(
            x_t,
            views,
            torch.stack(sub),
            keys,
            row_offset=lo,
            gather=gather,
            with_diag=with_diag,
        )
    losses, diag = out if with_diag else (out, None)
    if not torch.isfinite(losses).all():
        bad = [s.seeds[i] for i in torch.nonzero(~torch.isfinite(losses)).flatten().tolist()]
        raise TrainingError(
            f"epoch {epoch + 1}, step {b + 1}: the loss of seed(s) {bad} became NaN/Inf; "
            "lower the learning rate or check the inputs"
        )
    s.opt.zero_grad(set_to_none=True)
    if s.loss_keys:
        active = s.cfg.experts.active_keys(epoch)
        losses[:, [s.loss_keys.index(k) for k in active]].sum().backward()
        # a key switched off (text after its epochs) is not stepped at all, as when the released code stopped
        # calling its optimiser: its modules' gradients (zeros, not None, through the stacked losses) are
        # dropped, so AdamW's momentum and weight decay leave them alone
        off = tuple(p for k in s.loss_keys if k not in active for p in (f"experts.{k}.", f"losses.{k}."))
        if off:
            for name, param in s.stack.params().items():
                if name.startswith(off):
                    param.grad = None
    else:
        losses.sum().backward()
    c2f = s.cfg.coarse_to_fine
    if c2f is not None and c2f.freeze_shared_head and c2f.is_fine(epoch):  # SAMGA: the fine stage leaves it alone
        for name, param in s.stack.params().items():
            if name.startswith("shared_head."):
                param.grad = None
    if s.cfg.grad_clip > 0:
        clip_each_seed(s.stack.params(), s.cfg.grad_clip)
    s.opt.step()
    if with_diag:
        diag = diag if diag.ndim == 3 else diag[:, None]  # (S, G, B): one row per UM target
        whole = torch.stack(batch).to(s.dev)
        for g, (st, _) in enumerate(s.blur_states.values()):
            st.update(whole, diag[:, g])
    return losses.detach().double().cpu()


def validate(s: TrainState, epoch: int, select_on: str) -> dict[str, Any]:
    """Rank the validation images for every seed (``models.ranking``: the rule evaluation reports, in galleries of one
    image per concept as the test's) and keep each
    seed's weights at its best epoch so far; returns the ``val_*`` entries of the epoch's record."""
    q, sub, img = s.val_queries
    eeg, targets = embed_eeg(s.stack, q, sub), embed_targets(s.stack, s.val.views)
    if s.cfg.experts is not None:  # each key ranked; the configured key selects
        per_key = {
            k: validation_metrics(cosine_similarity(eeg[k].cpu().numpy(), targets[k].cpu().numpy()), img, s.val.concept)
            for k in eeg
        }
        m = per_key[s.cfg.experts.select_key]
        extra = {f"val_{k}_{name}": v.tolist() for k, mk in per_key.items() for name, v in mk.items()}
    else:
        m = validation_metrics(cosine_similarity(eeg.cpu().numpy(), targets.cpu().numpy()), img, s.val.concept)
        extra = {}
    score = m[select_on]
    improved = score > s.best_score
    if s.best is None:
        s.best = {k: v.detach().clone() for k, v in s.stack.state_tensors().items()}
        s.best_epoch = [epoch + 1] * len(s.seeds)
    elif improved.any():
        sel = torch.as_tensor(improved, device=s.dev)
        for k, v in s.stack.state_tensors().items():
            s.best[k][sel] = v.detach()[sel]
    s.best_epoch = [epoch + 1 if imp else be for imp, be in zip(improved, s.best_epoch, strict=True)]
    s.best_score = np.where(improved, score, s.best_score)
    return {**{f"val_{k}": v.tolist() for k, v in m.items()}, **extra}


# --------------------------------------------------------------------------------------------------
# Small pieces
# --------------------------------------------------------------------------------------------------


def check_inputs(seeds: list[int], train: RetrievalSplit) -> None:
    if not seeds or len(set(seeds)) != len(seeds):
        raise TrainingError(f"seeds must be distinct and non-empty, got {seeds}")
    if len(train) < 2:
        raise TrainingError(f"need at least 2 training rows, got {len(train)}")
    if not torch.isfinite(train.eeg).all():
        raise TrainingError("the training EEG holds NaN or Inf values; check the preprocessing output")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    if cfg.coarse_to_fine is not None and cfg.coarse_to_fine.is_fine(step // max(1, steps_per_epoch)):
        return cfg.coarse_to_fine.fine_lr
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        return onecycle_lr(cfg.lr, step, total)
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    return cfg.lr


def onecycle_lr(max_lr: float, step: int, total: int, pct_start: float = 0.3) -> float:
    """The learning rate of ``torch.optim.lr_scheduler.OneCycleLR`` (its defaults: ``div_factor`` 25,
    ``final_div_factor`` 1e4, cosine annealing, three phases off) before optimiser step ``step`` of ``total``."""
    initial, final = max_lr / 25, max_lr / 25 / 1e4
    up_end = float(pct_start * total) - 1
    if step <= up_end:
        start, end, pct = initial, max_lr, step / up_end if up_end > 0 else 1.0
    else:
        start, end, pct = max_lr, final, (step - up_end) / max(1e-12, (total - 1) - up_end)
    return end + (start - end) / 2 * (math.cos(math.pi * min(pct, 1.0)) + 1)


def begin_epoch(s: TrainState, epoch: int) -> dict[str, Any]:
    """The coarse-to-fine schedule's state for ``epoch`` (set on the loss, the optimiser afresh at the fine stage's
    first epoch); what the epoch's record says of it."""
    c2f = s.cfg.coarse_to_fine
    if c2f is None:
        return {}
    w = c2f.mmd_weight(epoch)
    for name, buf in s.stack.buffers_dict().items():
        if name.endswith("loss.mmd_weight"):
            buf.fill_(w)
    if epoch == c2f.coarse_epochs:  # SAMGA rebuilds its optimiser here: fresh moments
        s.opt.state.clear()
    return {"stage": "fine" if c2f.is_fine(epoch) else "coarse", "mmd_weight": w}


@torch.no_grad()
def clip_each_seed(params: dict[str, torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` for every seed of a stack on its own: each seed's gradients (leading axis) scaled by
    ``min(1, max_norm / (norm + 1e-6))`` of that seed's total norm."""
    grads = [p.grad for p in params.values() if p.grad is not None]
    if not grads:
        return
    norm = torch.stack([g.flatten(1).double().square().sum(dim=1) for g in grads]).sum(dim=0).sqrt()
    coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype).view(-1, *[1] * (g.dim() - 1)))


def progress_bar(show: bool, total: int, initial: int, desc: str):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="epoch")


def average_reps(eeg: torch.Tensor, k: int, gen: torch.Generator | None) -> torch.Tensor:
    """Mean over repetitions (axis 1): all of them, or a random ``k`` per sample (drawn on the CPU)."""
    picks = _rep_picks(eeg.shape[1], k, eeg.shape[0], gen)
    return _average(eeg, None if picks is None else picks.to(eeg.device))


def _rep_picks(n_reps: int, k: int, n: int, gen: torch.Generator | None) -> torch.Tensor | None:
    if k <= 0 or k >= n_reps:
        return None
    return torch.rand(n, n_reps, generator=gen).argsort(dim=1)[:, :k]


def _average(eeg_rows: torch.Tensor, picks: torch.Tensor | None) -> torch.Tensor:
    if picks is None:
        return eeg_rows.mean(dim=1)
    idx = picks[:, :, None, None].expand(-1, -1, eeg_rows.shape[2], eeg_rows.shape[3])
    return eeg_rows.gather(1, idx).mean(dim=1)
