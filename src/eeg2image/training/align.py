"""Training STH-Align (``models.align``) on the training images only, its epoch selected on held-out training
concepts (never the test images: the released code selected its aligner checkpoint on the test set).

AdamW with OneCycle (max lr = 8 x lr, 15% warm-up, div 10, final div 1e4), gradient clipping at 1.0, as
CognitionCapturerPro's ``simple`` aligner; seeded; the weights file carries its ``AlignConfig``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import from_dict, to_dict
from ..datasets import concept_disjoint_split
from ..io import DataFormatError, MissingDataError, save_safetensors
from ..models.align import AlignConfig, STHAlign, align_loss

__all__ = ["AlignResult", "load_aligner", "mean_cosine", "save_aligner", "train_aligner"]


@dataclass
class AlignResult:
    model: STHAlign  # at its selected epoch (the best validation cosine), eval mode
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    val_images: int = 0


def _check(inputs: torch.Tensor, targets: dict[str, torch.Tensor], concept: np.ndarray, cfg: AlignConfig) -> None:
    if inputs.ndim != 3 or inputs.shape[1] != len(cfg.inputs):
        raise DataFormatError(
            f"aligner inputs have shape {tuple(inputs.shape)}; expected (N, {len(cfg.inputs)}, D): the EEG embeddings "
            f"of {cfg.inputs}"
        )
    for t in cfg.targets:
        if t not in targets:
            raise DataFormatError(f"no {t!r} targets for the aligner; expected {cfg.targets}")
        if targets[t].ndim != 2 or len(targets[t]) != len(inputs):
            raise DataFormatError(
                f"{t!r} targets have shape {tuple(targets[t].shape)}; expected ({len(inputs)}, D), one per input row"
            )
    if len(concept) != len(inputs):
        raise DataFormatError(f"{len(concept)} concept labels for {len(inputs)} aligner rows")
    if not torch.isfinite(inputs).all() or not all(torch.isfinite(targets[t]).all() for t in cfg.targets):
        raise DataFormatError("aligner inputs or targets hold NaN or Inf")


@torch.no_grad()
def mean_cosine(model: STHAlign, inputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per head, the mean cosine of predictions and targets (eval mode)."""
    was = model.training
    model.eval()
    pred = model(inputs)
    model.train(was)
    return {t: float(F.cosine_similarity(u, targets[t], dim=-1).mean()) for t, u in pred.items()}


def train_aligner(
    cfg: AlignConfig,
    inputs: torch.Tensor,
    targets: dict[str, torch.Tensor],
    concept: np.ndarray,
    *,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> AlignResult:
    """Train on the rows of ``inputs`` (N, K, D) -> ``targets`` {name: (N, D')} of the training images; whole
    concepts (``cfg.val_fraction`` of them) are held out to select the epoch by mean cosine."""
    _check(inputs, targets, concept, cfg)
    dev = torch.device(device)
    tr, va = concept_disjoint_split(np.asarray(concept), cfg.val_fraction, cfg.val_seed)
    x = inputs.float().to(dev)
    y = {t: targets[t].float().to(dev) for t in cfg.targets}
    out_dims = {y[t].shape[1] for t in cfg.targets}
    if len(out_dims) != 1:
        raise DataFormatError(f"the aligner's targets differ in dimension: {sorted(out_dims)}")
    torch.manual_seed(seed)
    model = STHAlign(cfg, in_dim=x.shape[2], out_dim=out_dims.pop()).to(dev)
    tr_t = torch.as_tensor(tr, device=dev)
    model.target_norm.copy_(torch.stack([y[t][tr_t].norm(dim=-1).mean() for t in cfg.targets]))
    steps = max(1, len(tr) // cfg.batch_size) if len(tr) >= cfg.batch_size else 1
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=cfg.lr * cfg.max_lr_factor,
        total_steps=cfg.epochs * steps,
        pct_start=0.15,
        div_factor=10.0,
        final_div_factor=1e4,
    )
    gen = torch.Generator().manual_seed(seed)
    best_score, best_state, best_epoch = -np.inf, None, None
    history: list[dict[str, Any]] = []
    from tqdm.auto import tqdm

    for epoch in tqdm(range(cfg.epochs), desc="align", disable=not progress, unit="epoch"):
        model.train()
        order = tr_t[torch.randperm(len(tr), generator=gen).to(dev)]
        total = 0.0
        for b in range(steps):
            rows = order[b * cfg.batch_size : (b + 1) * cfg.batch_size] if steps > 1 else order
            mask = None
            if cfg.mask_prob > 0:
                mask = (torch.rand(len(rows), len(cfg.inputs), generator=gen) >= cfg.mask_prob).float().to(dev)
            loss, _ = align_loss(model(x[rows], mask), {t: y[t][rows] for t in cfg.targets}, cfg)
            if not torch.isfinite(loss):
                raise DataFormatError(f"align epoch {epoch + 1}: the loss became NaN/Inf; lower align.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            sched.step()
            total += float(loss.detach())
        rec: dict[str, Any] = {"epoch": epoch + 1, "loss": total / steps}
        if len(va):
            va_t = torch.as_tensor(va, device=dev)
            cos = mean_cosine(model, x[va_t], {t: y[t][va_t] for t in cfg.targets})
            rec["val_cosine"] = cos
            score = float(np.mean(list(cos.values())))
            if score > best_score:
                best_score, best_epoch = score, epoch + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(rec)
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = cfg.epochs  # no validation images: the final epoch
    return AlignResult(model.eval(), history, best_epoch, len(np.unique(np.asarray(concept)[va])) if len(va) else 0)


def save_aligner(path: Path, model: STHAlign, extra: dict[str, Any] | None = None) -> None:
    """The aligner's weights with its ``AlignConfig`` and dimensions in the metadata (atomic, byte-stable)."""
    meta = {
        "align_config": to_dict(model.config),
        "in_dim": model.in_dim,
        "out_dim": model.out_dim,
        **(extra or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_safetensors(path, tensors, {k: json.dumps(v) for k, v in meta.items()})


def load_aligner(path: Path) -> tuple[STHAlign, dict[str, Any]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: missing; run `eeg2image align` first")
    with safe_open(str(path), "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    if "align_config" not in meta:
        raise DataFormatError(f"{path}: not an aligner weights file (no align_config in its metadata)")
    cfg = from_dict(AlignConfig, meta["align_config"], where="align_config")
    model = STHAlign(cfg, meta["in_dim"], meta["out_dim"])
    model.load_state_dict(load_file(str(path)))
    return model.eval(), meta
