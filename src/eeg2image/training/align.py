"""Training STH-Align (``models.align``) on the training images only, its epoch selected on held-out training
concepts (never the test images: the released code selected its aligner checkpoint on the test set).

AdamW with OneCycle (max lr = 8 x lr, 15% warm-up, div 10, final div 1e4), gradient clipping at 1.0, as
CognitionCapturerPro's ``simple`` aligner; seeded; the weights file carries its ``AlignConfig``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets import concept_disjoint_split
from ..io import DataFormatError
from ..models.align import (
    AlignConfig,
    RidgeAligner,
    STHAlign,
    align_loss,
    aligner_inputs,
    load_aligner,
    save_aligner,
)
from ..models.prior import PriorConfig
from ..models.ridge import eeg_features
from ..runs import AlignStageConfig

__all__ = [
    "AlignResult",
    "align_run",
    "eeg_features",
    "load_aligner",
    "mean_cosine",
    "save_aligner",
    "train_aligner",
    "train_prior",
]


@dataclass
class AlignResult:
    model: torch.nn.Module  # STHAlign or DiffusionPriorAligner at its selected epoch, eval mode
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


def _steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Full batches only (the last partial one dropped); one batch of every row when there are fewer rows."""
    return max(1, n_rows // batch_size)


def _n_concepts(concept: np.ndarray, va: np.ndarray) -> int:
    return len(np.unique(np.asarray(concept)[va])) if len(va) else 0


@dataclass
class _Fit:
    """The loop both aligners train with: per epoch a seeded shuffle of the training rows, one clipped step per
    batch (a NaN/Inf loss stops it by name), then ``validate`` (returns the record's entries and a score, higher
    is better) keeps the best epoch's weights; without validation rows the last epoch is kept."""

    batch_size: int
    epochs: int
    clip: float
    name: str  # align | prior: names the progress bar and the error
    progress: bool = False

    def run(self, model, opt, sched, train_rows, gen, batch_loss, validate, n_val_concepts: int) -> AlignResult:
        from tqdm.auto import tqdm

        steps = _steps_per_epoch(len(train_rows), self.batch_size)
        best_score, best_state, best_epoch = -np.inf, None, None
        history: list[dict[str, Any]] = []
        for epoch in tqdm(range(self.epochs), desc=self.name, disable=not self.progress, unit="epoch"):
            model.train()
            order = train_rows[torch.randperm(len(train_rows), generator=gen).to(train_rows.device)]
            total = 0.0
            for b in range(steps):
                rows = order[b * self.batch_size : (b + 1) * self.batch_size] if steps > 1 else order
                loss = batch_loss(rows)
                if not torch.isfinite(loss):
                    raise DataFormatError(
                        f"{self.name} epoch {epoch + 1}: the loss became NaN/Inf; lower {self.name}.lr"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
                opt.step()
                sched.step()
                total += float(loss.detach())
            rec: dict[str, Any] = {"epoch": epoch + 1, "loss": total / steps}
            if validate is not None:
                entries, score = validate()
                rec.update(entries)
                if score > best_score:
                    best_score, best_epoch = score, epoch + 1
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            history.append(rec)
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            best_epoch = self.epochs  # no validation images: the final epoch
        return AlignResult(model.eval(), history, best_epoch, n_val_concepts)


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
    steps = _steps_per_epoch(len(tr), cfg.batch_size)
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

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        mask = None
        if cfg.mask_prob > 0:
            mask = (torch.rand(len(rows), len(cfg.inputs), generator=gen) >= cfg.mask_prob).float().to(dev)
        return align_loss(model(x[rows], mask), {t: y[t][rows] for t in cfg.targets}, cfg)[0]

    def validate() -> tuple[dict[str, Any], float]:
        va_t = torch.as_tensor(va, device=dev)
        cos = mean_cosine(model, x[va_t], {t: y[t][va_t] for t in cfg.targets})
        return {"val_cosine": cos}, float(np.mean(list(cos.values())))

    fit = _Fit(cfg.batch_size, cfg.epochs, cfg.clip, "align", progress)
    return fit.run(model, opt, sched, tr_t, gen, batch_loss, validate if len(va) else None, _n_concepts(concept, va))


# --------------------------------------------------------------------------------------------------
# `eeg2image align`: one aligner per seed of a trained experts run
# --------------------------------------------------------------------------------------------------


def align_run(cfg: AlignStageConfig, out: str | Path, *, progress: bool = True, log=print) -> Path:
    """Train one aligner per seed and unit of the experts run ``cfg.run`` into ``out`` (a rerun keeps what is
    done). Inputs: the frozen experts' embeddings of the training EEG (each image's repetitions averaged);
    targets: the ``cfg.encoder`` embeddings of each target's view of the same training images. Only the training
    partition is read; each aligner's epoch is selected on held-out training concepts."""
    from ..config import save_config, to_dict
    from ..io import file_sha256, folder_lock, write_manifest
    from ..models.retrieval import embed_eeg, load_stack
    from ..runs import aligner_path, config_changes, eeg_ridge_path, experts_weights, read_run_config, units_of
    from .run import load_unit_split

    out, run_dir = Path(out), Path(cfg.run)
    run_cfg = read_run_config(run_dir)
    experts = run_cfg.train.experts
    if experts is None:
        raise DataFormatError(
            f"{run_dir}: a run without experts (train.experts is not set); the aligner reads the experts' embeddings"
        )
    encoder = cfg.encoder or run_cfg.data.image_encoder
    inputs = [k for k in cfg.align.inputs if k in experts.keys()]
    if not inputs:
        raise DataFormatError(f"{run_dir}: the experts give {experts.keys()}; align.inputs asks for {cfg.align.inputs}")
    if inputs != list(cfg.align.inputs) and cfg.method == "sth_align":
        log(f"the run has no {[k for k in cfg.align.inputs if k not in inputs]} expert(s): the aligner reads {inputs}")
    acfg = AlignConfig(**{**to_dict(cfg.align), "inputs": inputs})
    saved = Path(out) / "config.yaml"
    changed = config_changes(saved, cfg)
    if changed and any((out / "units").rglob("*.safetensors")):
        raise DataFormatError(
            f"{out} holds aligners of another configuration (differs in {', '.join(changed)}); align into a new "
            "folder — nothing was overwritten"
        )
    target_views = {t: f"{cfg.target_views[t]}@{encoder}" for t in acfg.targets}
    latent_view = f"{cfg.low_level_view}@{cfg.low_level}" if cfg.low_level else ""
    conditions = {t: t for t in acfg.targets}  # the prior: each target conditioned on its own modality's expert
    if cfg.method == "diffusion_prior":
        missing = [t for t in conditions if t not in experts.keys()]
        if missing:
            raise DataFormatError(
                f"{run_dir}: the diffusion prior conditions each target on the same modality's expert; the run has "
                f"no {missing} expert(s) (it has {experts.keys()}): align fewer targets (--targets)"
            )
    with folder_lock(out, "align"):
        save_config(cfg, saved)
        for unit in units_of(run_cfg):
            wfile = experts_weights(run_dir, unit, cfg.weights)
            pending = [s for s in run_cfg.seeds if not aligner_path(out, unit.name, s).is_file()]
            linear_file = eeg_ridge_path(out, unit.name)
            if not pending and linear_file.is_file():
                log(f"{unit.name}: aligners of seeds {run_cfg.seeds} and the EEG ridge maps already there, kept")
                continue
            views = [*run_cfg.train.required_views(), *target_views.values()]
            if latent_view:
                views.append(latent_view)
            split = load_unit_split(run_cfg, unit, views=views)
            stack, meta = load_stack(wfile, engine=run_cfg.engine)
            q, sub, img = split.queries()
            val_rows, val_what = _ridge_val_rows(run_cfg, split, img, cfg)
            if not linear_file.is_file():
                _fit_eeg_ridge(
                    cfg,
                    split,
                    q,
                    img,
                    target_views,
                    latent_view,
                    (val_rows, val_what),
                    linear_file,
                    log,
                    unit.name,
                    run_cfg.data.store,
                )
            if not pending:
                continue
            eeg = embed_eeg(stack, q, sub)
            x = aligner_inputs(eeg, inputs, str(wfile))  # (S, N, K, D)
            targets = {t: split.views[v][torch.as_tensor(img)] for t, v in target_views.items()}
            concept = split.concept[img]
            log(f"{unit.name}: {len(q)} training rows, inputs {inputs} from {wfile.name}, targets {target_views}")
            target_fit, own = None, None
            if cfg.fit_on == "targets":  # one map for every seed: fitted on the images' embeddings, not on EEG
                keys = [k for k in inputs if k in experts.modalities]
                if not keys:
                    raise DataFormatError(f"fit_on=targets: none of the aligner's inputs {inputs} has a target view")
                if keys != inputs:
                    log(f"fit_on=targets: {[k for k in inputs if k not in keys]} has no target embedding, left out")
                own = torch.stack([split.views[experts.view_of(k)][torch.as_tensor(img)] for k in keys], dim=1)
                target_fit = RidgeAligner.fit(keys, own, targets, val_rows, cfg.ridge, normalize=True)
            for i, seed in enumerate(meta["seeds"]):
                if seed not in pending:
                    continue
                if cfg.method == "diffusion_prior":
                    rows = {k: v[i] for k, v in eeg.items()}
                    res = train_prior(cfg.prior, rows, targets, conditions, concept, seed=seed, progress=progress)
                elif cfg.method == "ridge" and target_fit is not None:
                    # the map fitted on the images' embeddings; this seed's expert outputs given their moments
                    model = copy.deepcopy(target_fit)
                    model.match_moments(x[i][:, [inputs.index(k) for k in model.inputs]], own)
                    log(f"{unit.name} seed {seed}: ridge fitted on the targets' embeddings ({val_what})")
                    res = AlignResult(model, [], None, len(val_rows))
                elif cfg.method == "ridge":
                    model = RidgeAligner.fit(inputs, x[i], targets, val_rows, cfg.ridge)
                    alphas = {t: m.alpha for t, m in model.maps.items()}
                    log(f"{unit.name} seed {seed}: ridge penalties {alphas} chosen on {val_what}")
                    res = AlignResult(model, [], None, len(val_rows))
                else:
                    res = train_aligner(acfg, x[i], targets, concept, seed=seed, progress=progress)
                extra = {
                    "run": str(run_dir),
                    "unit": unit.name,
                    "seed": seed,
                    "experts_weights": wfile.name,
                    "experts_sha256": file_sha256(wfile),
                    "encoder": encoder,
                    "target_views": target_views,
                    "best_epoch": res.best_epoch,
                    "val_images": res.val_images,
                    "history": res.history,
                }
                path = aligner_path(out, unit.name, seed)
                save_aligner(path, res.model, extra)
                if cfg.method == "ridge":
                    continue
                last = res.history[res.best_epoch - 1] if res.best_epoch else {}
                score = last.get("val_cosine", last.get("val_loss"))
                how = f"selected (validation {score})" if score is not None else "(the last: no validation split)"
                log(f"{unit.name} seed {seed}: epoch {res.best_epoch} {how}")
        write_manifest(
            out,
            stage="align",
            config=to_dict(cfg),
            inputs={"run_manifest": file_sha256(run_dir / "manifest.json")},
            outputs={"aligners": "units/<unit>/seed-<S>.safetensors"},
        )
    return out


def _fit_eeg_ridge(cfg, split, q, img, target_views, latent_view, val, path, log, unit: str, store: str) -> None:
    """Ridge maps from the averaged training EEG itself to every target and, with ``low_level``, to the latents:
    the ``linear`` control of both paths, and the low-level path's EEG -> latent map. One per unit (closed form:
    the same for every seed)."""
    ys = {t: split.views[v][torch.as_tensor(img)] for t, v in target_views.items()}
    if latent_view:
        ys["latent"] = split.views[latent_view][torch.as_tensor(img)]
    val_rows, what = val  # the held-out rows that choose the penalties, and what they are
    x = eeg_features(q, cfg.eeg_time_stride)
    model = RidgeAligner.fit(["eeg"], x[:, None, :], ys, val_rows, cfg.ridge)
    extra = {
        "run": str(cfg.run),
        "unit": unit,
        "features": f"averaged EEG {tuple(q.shape[1:])}, every {cfg.eeg_time_stride}-th sample, flattened",
        "eeg_time_stride": cfg.eeg_time_stride,
        "target_views": target_views,
        "latent_view": latent_view,
    }
    if latent_view:  # which table of latents (VAE, size) the map predicts: generators refuse any other
        from ..features.vae import latent_table

        _, info = latent_table(store, "training", cfg.low_level_view, cfg.low_level)
        extra["latent_table"] = info["key"]
        extra["latent_shape"] = list(info["latent_shape"])
        extra["latent_encoder"] = info["encoder"]
    save_aligner(path, model, extra)
    alphas = {t: m.alpha for t, m in model.maps.items()}
    log(f"{unit}: ridge from the EEG to {sorted(ys)}, penalties {alphas} chosen on {what}")


def _ridge_val_rows(run_cfg, split, img: np.ndarray, cfg: AlignStageConfig) -> tuple[np.ndarray, str]:
    """The training rows that choose the ridge penalties, and what they are: the concepts the experts held out
    for their own validation when the run has them (the experts never trained on those rows, so the penalty is
    chosen where the experts' outputs look as they will on unseen EEG), else ``ridge.val_fraction`` of the
    concepts."""
    d = run_cfg.data
    if d.val_fraction > 0:
        held = concept_disjoint_split(split.concept, d.val_fraction, d.val_seed)[1]
        what = f"the experts' {len(held)} held-out images (concepts they never trained on)"
    else:
        held = concept_disjoint_split(split.concept, cfg.ridge.val_fraction, cfg.ridge.val_seed)[1]
        what = f"{len(held)} images of held-out concepts"
    return np.flatnonzero(np.isin(img, held)), what


@torch.no_grad()
def _prior_val_loss(model, eeg, targets, seed: int) -> float:
    """The DDPM loss on the validation rows with fixed noise, timesteps and dropped conditions (comparable between
    epochs), eval mode."""
    was = model.training
    model.eval()
    loss = float(model.loss(eeg, targets, torch.Generator().manual_seed(seed + 1)))
    model.train(was)
    return loss


def train_prior(
    cfg: PriorConfig,
    eeg: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    conditions: dict[str, str],
    concept: np.ndarray,
    *,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
) -> AlignResult:
    """ATM's diffusion prior per target on the training rows (``eeg`` {key: (N, C)}, ``targets`` {target: (N, D)});
    Adam with a cosine schedule after ``warmup_steps``, clipping; the epoch with the lowest validation DDPM loss on
    held-out concepts is kept."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    from ..models.prior import DiffusionPriorAligner

    dev = torch.device(device)
    tr, va = concept_disjoint_split(np.asarray(concept), cfg.val_fraction, cfg.val_seed)
    e = {k: v.float().to(dev) for k, v in eeg.items()}
    y = {t: targets[t].float().to(dev) for t in conditions}
    dims = {y[t].shape[1] for t in conditions}
    cond_dims = {e[conditions[t]].shape[1] for t in conditions}
    if len(dims) != 1 or len(cond_dims) != 1:
        raise DataFormatError(f"the prior's targets or conditions differ in width: {sorted(dims)}, {sorted(cond_dims)}")
    torch.manual_seed(seed)
    model = DiffusionPriorAligner(cfg, conditions, dims.pop(), cond_dims.pop()).to(dev)
    steps = _steps_per_epoch(len(tr), cfg.batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = get_cosine_schedule_with_warmup(opt, min(cfg.warmup_steps, cfg.epochs * steps // 2), cfg.epochs * steps)
    gen = torch.Generator().manual_seed(seed)
    tr_t, va_t = torch.as_tensor(tr, device=dev), torch.as_tensor(va, device=dev)

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        return model.loss({k: v[rows] for k, v in e.items()}, {t: v[rows] for t, v in y.items()}, gen)

    def validate() -> tuple[dict[str, Any], float]:
        loss = _prior_val_loss(model, {k: v[va_t] for k, v in e.items()}, {t: v[va_t] for t, v in y.items()}, seed)
        return {"val_loss": loss}, -loss

    fit = _Fit(cfg.batch_size, cfg.epochs, cfg.clip, "prior", progress)
    return fit.run(model, opt, sched, tr_t, gen, batch_loss, validate if len(va) else None, _n_concepts(concept, va))
