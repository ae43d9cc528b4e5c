"""The classical baselines' fit (``train.eeg_encoder: ridge | riemann``): closed form, on the same training rows and
targets as every trained encoder, the penalty chosen on the same validation concepts by the same ranking rule.

``train_seeds`` hands a closed-form encoder here instead of to the epoch loop. The target is the run's target model
as given (it must have nothing to learn: ``train.target.adapter: false``); the queries are the training EEG
averaged over its repetitions. For each penalty of the grid (``models.ridge``) the map is fitted on the training
rows and the validation images are ranked (``models.ranking``, as validation ranks every model); the best penalty
(the larger on a tie) is kept. Without validation concepts the middle of the grid is used. The fit is deterministic,
so every seed of the stack holds the same map (sd 0 over seeds, said so in the history). The result is an ordinary
``TrainResult``: the run folder, ``evaluate`` and ``table`` treat these rows as any other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..datasets import RetrievalSplit
from ..io import ConfigError
from ..models.eeg_encoders import EEG_ENCODERS, ClosedFormEncoder, check_eeg_encoder_name
from ..models.ranking import cosine_similarity, validation_metrics
from ..models.retrieval import embed_targets
from ..models.ridge import RidgeConfig, _Fitter
from ..runs import TrainConfig

__all__ = ["fit_closed_form", "is_closed_form"]


def is_closed_form(name: str) -> bool:
    check_eeg_encoder_name(name)
    return bool(getattr(EEG_ENCODERS[name], "closed_form", False))


def fit_closed_form(state, train: RetrievalSplit, val: RetrievalSplit | None, select_on: str = "top1"):
    """Fit every seed's closed-form encoder of ``state`` (a ``TrainState``) in place; returns (history, best
    weights, best epochs) as the epoch loop would."""
    cfg: TrainConfig = state.cfg
    stack = state.stack
    learnable = [
        n
        for n, p in stack.params().items()
        if n.startswith(("target.", "shared_head.", "eeg_projector.")) and p.requires_grad
    ]
    if cfg.experts is not None or learnable:
        raise ConfigError(
            f"train.eeg_encoder {cfg.eeg_encoder!r} is fitted in closed form to the targets as given; its target "
            "model must have nothing to learn (set train.target.adapter=false; it has "
            f"{', '.join(learnable[:3]) or 'experts'})"
        )
    with torch.no_grad():
        enc = _seed_encoder(stack)
        queries = train.eeg.mean(dim=1).to(state.dev)  # averaged over the repetitions
        targets = embed_targets(stack, train.views)[0].cpu().numpy()[train.image]
        if hasattr(enc, "ref_isqrt"):
            enc.ref_isqrt.copy_(_riemannian_isqrt(enc, queries))
        x = enc.features(queries).double().cpu().numpy()
        fit = _Fitter(x, targets.astype(np.float64))
        grid = RidgeConfig().alphas
        history: list[dict[str, Any]] = []
        if val is not None:
            q, _, img = val.queries()
            xv = enc.features(q.to(state.dev)).double().cpu().numpy()
            tv = embed_targets(stack, val.views)[0].cpu().numpy()
            for a in sorted(grid, reverse=True):  # strictly better wins: the larger penalty on a tie
                m = validation_metrics(cosine_similarity(fit.predict(xv, fit.weight(a)), tv), img, val.concept)
                history.append({"alpha": a, **{k: float(v) for k, v in m.items()}})
            alpha = max(history, key=lambda h: h[select_on])["alpha"]
        else:
            alpha = sorted(grid)[len(grid) // 2]
        enc.x_mean.copy_(torch.from_numpy(fit.x_mean))
        enc.x_scale.copy_(torch.from_numpy(fit.x_scale))
        enc.weight.copy_(torch.from_numpy(fit.weight(alpha)))
        enc.y_mean.copy_(torch.from_numpy(fit.y_mean))
        tensors = stack.state_tensors()
        one = {f"eeg.{k}": v for k, v in enc.state_dict().items()}
        for name, value in one.items():  # every seed the same map
            tensors[name] = value.to(tensors[name].dtype).expand_as(tensors[name]).clone()
        stack.load_state_tensors(tensors, source="the closed-form fit")
    n = len(state.seeds)
    chosen = next((h for h in history if h["alpha"] == alpha), {})
    record = {
        "epoch": 1,
        "loss": [float("nan")] * n,
        "closed_form": f"{cfg.eeg_encoder}: penalty {alpha:g} (x the mean squared singular value), chosen on "
        + ("the validation concepts' " + select_on if history else "no validation: the middle of the grid"),
        "alpha": alpha,
        "alphas": history,
        **{f"val_{k}": [chosen[k]] * n for k in ("top1", "top5", "mrr") if k in chosen},
    }
    best = {k: v.detach().clone() for k, v in stack.state_tensors().items()}
    return [record], best, [1] * n


def _seed_encoder(stack) -> ClosedFormEncoder:
    """A standalone copy of seed 0's encoder, to fit (its buffers are then copied into every seed)."""
    from ..models.eeg_encoders import build_eeg_encoder_from_config

    cfg = stack.config
    enc = build_eeg_encoder_from_config(
        {
            "name": cfg.eeg_encoder,
            "n_chans": cfg.n_chans,
            "n_times": cfg.n_times,
            "out_dim": cfg.dim,
            "sfreq": cfg.sfreq,
            "n_subjects": cfg.n_subjects,
            "options": dict(cfg.eeg_options),
        }
    )
    return enc.to(next(iter(stack.state_tensors().values())).device)


def _riemannian_isqrt(enc, queries: torch.Tensor) -> torch.Tensor:
    """C_ref^(-1/2) of the training trials' Riemannian mean (pyRiemann's ``mean_riemann``, as ``TangentSpace.fit``)."""
    from pyriemann.utils.base import invsqrtm
    from pyriemann.utils.mean import mean_riemann

    covs = enc.covariances(queries).cpu().numpy()
    return torch.from_numpy(invsqrtm(mean_riemann(covs)))
