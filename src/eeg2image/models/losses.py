"""Contrastive losses between EEG and stimulus embeddings."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ScaleMode = Literal["fixed", "exp", "softplus", "linear"]


class InfoNCE(nn.Module):
    """InfoNCE / CLIP loss, symmetric by default: ``(CE(s * e @ i.T, diag) + CE(s * i @ e.T, diag)) / 2``.

    Image-side embeddings are always L2-normalised. Options, each explicit because peers differ:

    - ``normalize_eeg``: L2-normalise the EEG embedding too (NICE) or not (ATM, UBP, the multi-level blur
      work, the reference system: then the EEG norm acts as a learned per-sample temperature).
    - ``scale``: the initial logit scale ``s`` (1/temperature). The multi-level blur work uses 1 (fixed);
      NICE 1/0.07 (fixed, since it left it out of its optimiser); CLIP 1/0.07 learnable.
    - ``scale_mode``: ``fixed``; ``exp`` (``s = exp(p)``, CLIP); ``softplus`` (``s = softplus(p)``, UBP);
      ``linear`` (``s = p``, learnable: ATM used its ``log(1/0.07)``-initialised parameter without ``exp``, so
      ``s`` starts at 2.659). ``p`` is initialised so that ``s`` starts at ``scale`` (UBP initialised
      ``p = log(1/0.07)``, i.e. ``s = softplus(2.659) = 2.727``: pass ``scale=2.727`` to reproduce it).
    - ``symmetric``: False keeps the EEG -> image term only, ``CE(s * e @ i.T, diag)`` (NeuralBench's
      ``ClipLoss(norm_kind="y", temperature=False, symmetric=False)``: the images normalised, scale 1).
    - ``mmd_sigmas``: also SAMGA's coarse-stage term (Jiang et al. 2026, ``loss.py``): the loss becomes
      ``m * MMD^2(e, i) + (1 - m) * InfoNCE`` with ``m`` the buffer ``mmd_weight`` (set per epoch by the trainer's
      coarse-to-fine schedule; 0 in the fine stage), MMD^2 unbiased, on the un-normalised embeddings, with an RBF
      kernel averaged over the bandwidths ``mmd_sigmas``.
    """

    def __init__(
        self,
        scale: float = 1.0,
        scale_mode: ScaleMode = "fixed",
        normalize_eeg: bool = False,
        symmetric: bool = True,
        mmd_sigmas: tuple[float, ...] = (),
    ):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"logit scale must be positive, got {scale}")
        self.scale_mode, self.normalize_eeg, self.symmetric = scale_mode, normalize_eeg, symmetric
        self.mmd_sigmas = tuple(float(s) for s in mmd_sigmas)
        if self.mmd_sigmas:
            self.register_buffer("mmd_weight", torch.tensor(0.0))
        if scale_mode == "fixed":
            self.register_buffer("p", torch.tensor(float(scale)))
        elif scale_mode == "exp":
            self.p = nn.Parameter(torch.tensor(math.log(scale)))
        elif scale_mode == "softplus":
            self.p = nn.Parameter(torch.tensor(scale + math.log(-math.expm1(-scale))))  # softplus^-1
        elif scale_mode == "linear":
            self.p = nn.Parameter(torch.tensor(float(scale)))
        else:
            raise ValueError(f"scale_mode must be fixed, exp, softplus or linear, got {scale_mode!r}")

    @property
    def logit_scale(self) -> torch.Tensor:
        if self.scale_mode == "exp":
            return self.p.exp()
        if self.scale_mode == "softplus":
            return F.softplus(self.p)
        return self.p

    def logits(self, eeg: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        image = F.normalize(image, dim=-1)
        if self.normalize_eeg:
            eeg = F.normalize(eeg, dim=-1)
        return self.logit_scale * eeg @ image.T

    def diagonal_logits(self, eeg: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The logits of the true pairs, ``logits(eeg, image).diagonal()`` without the (B, B) matrix."""
        if self.normalize_eeg:
            eeg = F.normalize(eeg, dim=-1)
        return self.logit_scale * (eeg * F.normalize(image, dim=-1)).sum(dim=-1)

    def forward(self, eeg: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if eeg.shape[0] != image.shape[0] or eeg.shape[0] < 2:
            raise ValueError(f"InfoNCE needs matching batches of >= 2 pairs, got {eeg.shape[0]} and {image.shape[0]}")
        logits = self.logits(eeg, image)
        target = torch.arange(logits.shape[0], device=logits.device)
        loss = F.cross_entropy(logits, target)
        if self.symmetric:
            loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
        if self.mmd_sigmas:
            loss = self.mmd_weight * mmd2(eeg, image, self.mmd_sigmas) + (1 - self.mmd_weight) * loss
        return loss


def mmd2(x: torch.Tensor, y: torch.Tensor, sigmas: tuple[float, ...]) -> torch.Tensor:
    """Unbiased squared maximum mean discrepancy between the samples ``x`` (n, D) and ``y`` (m, D), with the RBF
    kernel ``mean over sigma of exp(-|a - b|^2 / (2 sigma^2))`` (Gretton et al., JMLR 2012, eq. 3)."""
    n, m = x.shape[0], y.shape[0]

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = (a.square().sum(-1)[:, None] + b.square().sum(-1)[None, :] - 2 * a @ b.T).clamp_min(0)
        return torch.stack([torch.exp(-d2 / (2 * s * s)) for s in sigmas]).mean(dim=0)

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    off_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    off_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return off_x + off_y - 2 * kxy.mean()
