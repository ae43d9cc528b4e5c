"""Contrastive losses between EEG and stimulus embeddings."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ScaleMode = Literal["fixed", "exp", "softplus", "linear"]


class SymmetricInfoNCE(nn.Module):
    """Symmetric InfoNCE / CLIP loss: ``(CE(s * e @ i.T, diag) + CE(s * i @ e.T, diag)) / 2``.

    Image-side embeddings are always L2-normalised. Options, each explicit because peers differ:

    - ``normalize_eeg``: L2-normalise the EEG embedding too (NICE) or not (ATM, UBP, the multi-level blur
      work, the reference system: then the EEG norm acts as a learned per-sample temperature).
    - ``scale``: the initial logit scale ``s`` (1/temperature). The multi-level blur work uses 1 (fixed);
      NICE 1/0.07 (fixed, since it left it out of its optimiser); CLIP 1/0.07 learnable.
    - ``scale_mode``: ``fixed``; ``exp`` (``s = exp(p)``, CLIP); ``softplus`` (``s = softplus(p)``, UBP);
      ``linear`` (``s = p``, learnable: ATM used its ``log(1/0.07)``-initialised parameter without ``exp``, so
      ``s`` starts at 2.659). ``p`` is initialised so that ``s`` starts at ``scale`` (UBP initialised
      ``p = log(1/0.07)``, i.e. ``s = softplus(2.659) = 2.727``: pass ``scale=2.727`` to reproduce it).
    """

    def __init__(self, scale: float = 1.0, scale_mode: ScaleMode = "fixed", normalize_eeg: bool = False):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"logit scale must be positive, got {scale}")
        self.scale_mode, self.normalize_eeg = scale_mode, normalize_eeg
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
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
