"""A plain training loop for EEG -> image retrieval (one seed). Read it top to bottom in a few minutes.

The EEG of the training images is one tensor on the device; each step draws a batch of image indices,
averages their repetitions (or a random subset of them: augmentation), embeds the EEG and the image
targets, and minimises the symmetric InfoNCE loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..models.eeg_encoders import build_eeg_encoder
from ..models.fusion import TargetConfig, TargetModel
from .data import RetrievalSplit
from .losses import SymmetricInfoNCE


@dataclass
class TrainConfig:
    eeg_encoder: str = "ved"
    eeg_options: dict = field(default_factory=dict)
    target: TargetConfig = field(default_factory=TargetConfig)
    epochs: int = 200
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01
    logit_scale: float = 1.0
    scale_mode: str = "fixed"
    normalize_eeg: bool = False
    reps_per_sample: int = 0  # 0: average all repetitions; k: average a random k of them at every step
    seed: int = 0


class RetrievalModel(nn.Module):
    def __init__(self, cfg: TrainConfig, n_chans: int, n_times: int, dim: int):
        super().__init__()
        self.eeg = build_eeg_encoder(cfg.eeg_encoder, n_chans=n_chans, n_times=n_times, out_dim=dim, **cfg.eeg_options)
        self.target = TargetModel(cfg.target, dim)
        self.loss = SymmetricInfoNCE(cfg.logit_scale, cfg.scale_mode, cfg.normalize_eeg)


def average_reps(eeg: torch.Tensor, k: int, gen: torch.Generator | None) -> torch.Tensor:
    """Mean over repetitions (axis 1): all of them, or a random ``k`` per sample."""
    if k <= 0 or k >= eeg.shape[1]:
        return eeg.mean(dim=1)
    scores = torch.rand(eeg.shape[0], eeg.shape[1], generator=gen, device=eeg.device)
    pick = scores.argsort(dim=1)[:, :k]
    idx = pick[:, :, None, None].expand(-1, -1, eeg.shape[2], eeg.shape[3])
    return eeg.gather(1, idx).mean(dim=1)


def train_one_seed(cfg: TrainConfig, train: RetrievalSplit, device: str = "cpu", progress: bool = False):
    """Train and return ``(model, history)``; ``history`` holds the mean training loss per epoch."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    dim = next(iter(train.views.values())).shape[1]
    model = RetrievalModel(cfg, train.eeg.shape[2], train.eeg.shape[3], dim).to(device)
    eeg = train.eeg.to(device)
    views = {k: v.to(device) for k, v in train.views.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = eeg.shape[0]
    history = []
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen, device=device)
        losses = []
        for lo in range(0, n, cfg.batch_size):
            idx = order[lo : lo + cfg.batch_size]
            if len(idx) < 2:
                continue
            x = average_reps(eeg[idx], cfg.reps_per_sample, gen)
            loss = model.loss(model.eeg(x), model.target({k: v[idx] for k, v in views.items()}))
            if not torch.isfinite(loss):
                raise FloatingPointError("the training loss became NaN/Inf")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
    return model, history


@torch.no_grad()
def embed_split(model: RetrievalModel, split: RetrievalSplit, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(EEG embeddings of the mean of all repetitions, target embeddings of the images), eval mode."""
    model.eval()
    e = model.eeg(split.eeg.to(device).mean(dim=1))
    t = model.target({k: v.to(device) for k, v in split.views.items()})
    return e.cpu().numpy(), t.cpu().numpy()
