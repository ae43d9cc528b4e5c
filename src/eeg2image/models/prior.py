"""ATM's diffusion prior as an alternative aligner: EEG embedding -> the generator's embedding space, sampled.

Li et al., NeurIPS 2024 (dongyangli-del/EEG_Image_decode ``Generation/diffusion_prior.py``), as
CognitionCapturerPro's ``--model_type diffusion`` uses it (one prior per target modality, each conditioned on the
same modality's EEG embedding). The denoiser is an MLP U-Net over the embedding: input Linear + LayerNorm + SiLU to
``hidden[0]``; an encoder of Linear + LayerNorm + SiLU + Dropout blocks down ``hidden`` (1024, 512, 256, 128, 64)
and a mirrored decoder with skip connections; before every block the timestep embedding (sinusoidal 512 ->
``TimestepEmbedding``) and a Linear of the condition are added (not concatenated); a Linear back to the embedding.
Trained as DDPM (1000 steps, linear betas, epsilon prediction, MSE) with the condition dropped for 10 % of the rows;
sampled in 50 steps with classifier-free guidance 5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..io import DataFormatError, check_range

__all__ = ["DiffusionPriorAligner", "PriorConfig", "PriorUNet"]


@dataclass
class PriorConfig:
    """The prior and how it is trained and sampled (ATM's settings)."""

    hidden: list[int] = field(default_factory=lambda: [1024, 512, 256, 128, 64])
    time_embed_dim: int = 512
    dropout: float = 0.1
    train_timesteps: int = 1000
    cond_drop: float = 0.1  # share of training rows without their condition (for guidance)
    steps: int = 50  # sampling steps
    guidance: float = 5.0
    lr: float = 1e-3
    warmup_steps: int = 500  # cosine schedule after a linear warm-up
    epochs: int = 150
    batch_size: int = 1024
    clip: float = 1.0
    val_fraction: float = 0.1  # concept-disjoint share of the training images that selects the epoch
    val_seed: int = 0

    def __post_init__(self) -> None:
        if len(self.hidden) < 2:
            raise DataFormatError(f"prior.hidden: {self.hidden}; expected two or more widths")
        for h in self.hidden:
            check_range("prior.hidden", h, 1)
        check_range("prior.dropout", self.dropout, 0, 1, high_open=True)
        check_range("prior.cond_drop", self.cond_drop, 0, 1, high_open=True)
        check_range("prior.steps", self.steps, 1, self.train_timesteps)
        check_range("prior.guidance", self.guidance, 0)
        check_range("prior.lr", self.lr, 0, low_open=True)
        check_range("prior.epochs", self.epochs, 1)
        check_range("prior.batch_size", self.batch_size, 2)
        check_range("prior.val_fraction", self.val_fraction, 0, 1, high_open=True)


def _block(i: int, o: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, o), nn.LayerNorm(o), nn.SiLU(), nn.Dropout(dropout))


class PriorUNet(nn.Module):
    """The denoiser: (x_t (B, D), t (B,), condition (B, C) or None) -> predicted noise (B, D)."""

    def __init__(self, cfg: PriorConfig, embed_dim: int, cond_dim: int):
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        h = list(cfg.hidden)
        self.time_proj = Timesteps(cfg.time_embed_dim, True, 0)
        self.input = nn.Sequential(nn.Linear(embed_dim, h[0]), nn.LayerNorm(h[0]), nn.SiLU())
        down = range(len(h) - 1)
        up = range(len(h) - 1, 0, -1)
        self.down_time = nn.ModuleList(TimestepEmbedding(cfg.time_embed_dim, h[i]) for i in down)
        self.down_cond = nn.ModuleList(nn.Linear(cond_dim, h[i]) for i in down)
        self.down = nn.ModuleList(_block(h[i], h[i + 1], cfg.dropout) for i in down)
        self.up_time = nn.ModuleList(TimestepEmbedding(cfg.time_embed_dim, h[i]) for i in up)
        self.up_cond = nn.ModuleList(nn.Linear(cond_dim, h[i]) for i in up)
        self.up = nn.ModuleList(_block(h[i], h[i - 1], cfg.dropout) for i in up)
        self.output = nn.Linear(h[0], embed_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        temb = self.time_proj(t).to(x.dtype)
        x = self.input(x)
        skips = []
        for time, con, block in zip(self.down_time, self.down_cond, self.down, strict=True):
            skips.append(x)
            x = block(x + time(temb) + (con(cond) if cond is not None else 0))
        for time, con, block, skip in zip(self.up_time, self.up_cond, self.up, reversed(skips), strict=True):
            x = block(x + time(temb) + (con(cond) if cond is not None else 0)) + skip
        return self.output(x)


def _scheduler(cfg: PriorConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg.train_timesteps)


class DiffusionPriorAligner(nn.Module):
    """One :class:`PriorUNet` per target, each conditioned on the EEG embedding of the same modality
    (``conditions[target]``). ``predict`` samples; ``loss`` is the DDPM training loss."""

    def __init__(self, cfg: PriorConfig, conditions: dict[str, str], embed_dim: int, cond_dim: int):
        super().__init__()
        self.config, self.conditions = cfg, dict(conditions)
        self.embed_dim, self.cond_dim = embed_dim, cond_dim
        self.priors = nn.ModuleDict({t: PriorUNet(cfg, embed_dim, cond_dim) for t in conditions})

    def loss(
        self, eeg: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], generator: torch.Generator
    ) -> torch.Tensor:
        """Summed over targets: MSE of the predicted noise at random timesteps; ``cond_drop`` of the rows (the
        same rows for every target) see no condition. Randomness from ``generator`` (CPU), so it is seeded."""
        b = next(iter(targets.values())).shape[0]
        dev = next(self.parameters()).device
        sched = _scheduler(self.config)
        keep = (torch.rand(b, generator=generator) >= self.config.cond_drop).to(dev)[:, None]
        total = torch.zeros((), device=dev)
        for t, prior in self.priors.items():
            x0 = targets[t]
            noise = torch.randn(x0.shape, generator=generator).to(dev, x0.dtype)
            steps = torch.randint(0, self.config.train_timesteps, (b,), generator=generator).to(dev)
            xt = sched.add_noise(x0, noise, steps)
            cond = eeg[self.conditions[t]] * keep.to(x0.dtype)
            total = total + F.mse_loss(prior(xt, steps, cond), noise)
        return total

    @torch.no_grad()
    def predict(
        self, eeg: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """{target: (N, D)} sampled for the EEG embeddings {key: (N, C)}: ``steps`` DDPM steps with guidance."""
        cfg = self.config
        dev = next(self.parameters()).device
        out = {}
        for t, prior in self.priors.items():
            cond = eeg[self.conditions[t]].to(dev)
            sched = _scheduler(cfg)
            sched.set_timesteps(cfg.steps)
            x = torch.randn(cond.shape[0], self.embed_dim, generator=generator).to(dev, cond.dtype)
            for step in sched.timesteps:
                ts = torch.full((cond.shape[0],), int(step), device=dev, dtype=torch.long)
                eps = prior(x, ts, cond)
                if cfg.guidance != 1.0:
                    eps_free = prior(x, ts, None)
                    eps = eps_free + cfg.guidance * (eps - eps_free)
                x = sched.step(eps, step, x, generator=generator).prev_sample
            out[t] = x
        return out
