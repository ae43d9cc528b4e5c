"""Uncertainty-aware blur (UBP: Wu et al., CVPR 2025, HaitaoWuTJU/Uncertainty-aware-Blur-Prior, ``main.py``).

Every training pair (EEG row, image) keeps a running average of its diagonal logit, the similarity the loss
gives the true pair: ``avg = gamma * logit + (1 - gamma) * avg`` (``gamma`` 0.3, ``avg`` starts at 1). After
each step, the pairs of the batch whose *current* logit lies above ``mean + z * sd`` of the batch's running
averages (a good match) are labelled for the less blurred view, those below ``mean - z * sd`` (a poor match) for
the more blurred one, the rest for the medium one (``z`` = 1.96, sd with ddof 1). The labels take effect at the
next epoch, as UBP pushes them to its dataset at epoch ends; the first epoch uses the medium view throughout.

What we do differently from UBP's code, on purpose: only training steps update the averages (UBP's bookkeeping
also ran in validation and test steps, overwriting the entries of 200 training pairs with test-pair
similarities); the three views are the intended kernels 45 / 51 / 57 (UBP's in-place config edit made 45 /
45 / 51). State is kept per seed, so stacked seeds stay independent, and is saved with checkpoints.
"""

from __future__ import annotations

import torch

LESS, MEDIUM, MORE = 0, 1, 2


class UncertainBlurState:
    """Per-seed running diagonal logits and blur labels of every training row: (S, n_rows) tensors."""

    def __init__(self, n_seeds: int, n_rows: int, gamma: float = 0.3, z: float = 1.96, device=None):
        self.gamma, self.z = gamma, z
        self.avg = torch.ones(n_seeds, n_rows, dtype=torch.float64, device=device)
        self.label = torch.full((n_seeds, n_rows), MEDIUM, dtype=torch.int64, device=device)
        self.active = self.label.clone()  # the labels used in this epoch

    def select(self, banks: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """Per seed and pair, the view its active label names: banks [less, medium, more] of (S, B, D) -> (S, B, D)."""
        stacked = torch.stack(banks)  # (3, S, B, D)
        lab = self.active.gather(1, rows)  # (S, B)
        return stacked.gather(0, lab[None, :, :, None].expand(1, *stacked.shape[1:]))[0]

    @torch.no_grad()
    def update(self, rows: torch.Tensor, diag: torch.Tensor) -> None:
        """One training step: ``rows`` (S, B) the pairs of the whole batch, ``diag`` (S, B) their logits."""
        d = diag.detach().to(self.avg.dtype)
        avg = self.gamma * d + (1 - self.gamma) * self.avg.gather(1, rows)
        mean, sd = avg.mean(dim=1, keepdim=True), avg.std(dim=1, correction=1, keepdim=True)
        lab = torch.full_like(rows, MEDIUM)
        lab[d > mean + self.z * sd] = LESS
        lab[d < mean - self.z * sd] = MORE
        self.avg.scatter_(1, rows, avg)
        self.label.scatter_(1, rows, lab)

    def end_epoch(self) -> None:
        self.active = self.label.clone()

    def counts(self) -> dict[str, list[int]]:
        """How many pairs each seed will train with less / medium / more blur next epoch."""
        return {
            name: (self.label == v).sum(dim=1).tolist()
            for name, v in (("less", LESS), ("medium", MEDIUM), ("more", MORE))
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"avg": self.avg, "label": self.label, "active": self.active}

    def load(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        from .trainer import TrainingError

        for name, own in self.tensors().items():
            t = tensors.get(name)
            if t is None or t.shape != own.shape:
                got = "missing" if t is None else tuple(t.shape)
                raise TrainingError(f"{source}: uncertainty state {name!r} is {got}, expected {tuple(own.shape)}")
            own.copy_(t)
