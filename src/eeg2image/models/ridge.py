"""Ridge regression in closed form, its penalty chosen on held-out training concepts: the field's strong linear
baseline (Perceptogram, desa-lab/Perceptogram: ridge from EEG to CLIP and VAE latents; the brain-decoding
literature's ``RidgeCV``), and our ``align.method=ridge``, low-level path and ``linear`` control.

Features are standardised with the training rows' mean and sd, targets centred; one SVD of the training rows
gives every penalty's solution, ``W = V diag(s / (s^2 + alpha)) U^T Y``. The penalty grid is relative to the
mean squared singular value (scale-free). The chosen penalty is the one with the highest validation R^2 summed
over outputs on whole held-out concepts (never a test image); the map is then refitted on every training row.
Fitted maps are saved inside an aligner's weights file (``models.align.RidgeAligner``, ``save_aligner``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..io import DataFormatError, check_range

__all__ = ["RidgeConfig", "RidgeMap", "eeg_features", "fit_ridge"]


@dataclass
class RidgeConfig:
    """The penalty grid (multiples of the mean squared singular value) and the held-out share that picks one."""

    alphas: list[float] = field(default_factory=lambda: [10.0**k for k in np.arange(-3.0, 3.5, 0.5)])
    val_fraction: float = 0.2  # concept-disjoint share of the training rows that chooses the penalty
    val_seed: int = 0

    def __post_init__(self) -> None:
        if not self.alphas:
            raise ValueError("ridge.alphas must not be empty")
        for a in self.alphas:
            check_range("ridge.alphas", a, 0, low_open=True)
        check_range("ridge.val_fraction", self.val_fraction, 0, 1, high_open=True)
        self.alphas = [float(a) for a in self.alphas]


class RidgeMap(torch.nn.Module):
    """A fitted linear map, (N, P) features -> (N, D): ``((x - x_mean) / x_scale) @ weight + y_mean``."""

    def __init__(self, n_in: int, n_out: int, config: RidgeConfig | None = None):
        super().__init__()
        self.config = config or RidgeConfig()
        self.register_buffer("x_mean", torch.zeros(n_in))
        self.register_buffer("x_scale", torch.ones(n_in))
        self.register_buffer("weight", torch.zeros(n_in, n_out))
        self.register_buffer("y_mean", torch.zeros(n_out))
        self.alpha = float("nan")  # the chosen penalty (relative)
        self.history: list[dict[str, float]] = []  # validation R^2 per penalty

    @property
    def n_in(self) -> int:
        return self.weight.shape[0]

    @property
    def n_out(self) -> int:
        return self.weight.shape[1]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), -1).float()
        if x.shape[1] != self.n_in:
            raise DataFormatError(f"the ridge map takes {self.n_in} features per row; got {x.shape[1]}")
        return ((x - self.x_mean) / self.x_scale) @ self.weight + self.y_mean


class _Fitter:
    """Standardise, one SVD, then the solution for any penalty."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x_mean = x.mean(axis=0)
        sd = x.std(axis=0)
        self.x_scale = np.where(sd > 1e-12, sd, 1.0)
        self.y_mean = y.mean(axis=0)
        xs = (x - self.x_mean) / self.x_scale
        u, self.s, self.vt = np.linalg.svd(xs, full_matrices=False)
        self.uty = u.T @ (y - self.y_mean)
        self.scale = float(np.mean(self.s**2)) if len(self.s) else 1.0

    def weight(self, alpha: float) -> np.ndarray:
        d = self.s / (self.s**2 + alpha * self.scale)
        return self.vt.T @ (d[:, None] * self.uty)

    def predict(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return ((x - self.x_mean) / self.x_scale) @ w + self.y_mean


def fit_ridge(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    val_rows: np.ndarray,
    cfg: RidgeConfig | None = None,
) -> RidgeMap:
    """Fit ``x`` (N, ...) -> ``y`` (N, D) on training rows; the penalty is chosen by validation R^2 on
    ``val_rows`` (the rows of held-out concepts: ``datasets.concept_disjoint_split``), then the map is refitted on
    every row."""
    cfg = cfg or RidgeConfig()
    xa = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    ya = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if len(xa) != len(ya):
        raise DataFormatError(f"ridge: {len(xa)} feature rows but {len(ya)} target rows")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise DataFormatError("ridge: the features or targets hold NaN or Inf")
    va = np.asarray(val_rows, dtype=np.int64)
    tr = np.setdiff1d(np.arange(len(xa)), va)
    history = []
    if len(va) and len(tr) > 1:
        fit = _Fitter(xa[tr], ya[tr])
        sst = ((ya[va] - ya[va].mean(axis=0)) ** 2).sum()
        for a in cfg.alphas:
            sse = ((fit.predict(xa[va], fit.weight(a)) - ya[va]) ** 2).sum()
            history.append({"alpha": a, "val_r2": float(1 - sse / max(sst, 1e-30))})
        alpha = max(history, key=lambda h: h["val_r2"])["alpha"]
    else:  # too few concepts to hold any out: the middle of the grid
        alpha = sorted(cfg.alphas)[len(cfg.alphas) // 2]
    full = _Fitter(xa, ya)
    model = RidgeMap(xa.shape[1], ya.shape[1], cfg)
    model.x_mean.copy_(torch.from_numpy(full.x_mean))
    model.x_scale.copy_(torch.from_numpy(full.x_scale))
    model.weight.copy_(torch.from_numpy(full.weight(alpha)))
    model.y_mean.copy_(torch.from_numpy(full.y_mean))
    model.alpha, model.history = alpha, history
    return model


def eeg_features(q: torch.Tensor, stride: int) -> torch.Tensor:
    """Averaged EEG (N, C, T) -> the EEG ridge maps' features (N, C * ceil(T / stride)): every ``stride``-th
    sample, flattened (the ``linear`` control and the low-level path read the EEG this way)."""
    return q[..., ::stride].reshape(len(q), -1)
