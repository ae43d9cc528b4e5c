"""The offline generator: a small conditional decoder, the demo's stand-in for SDXL-Turbo.

Where no diffusion weights can be had (CI, a laptop, the demo), reconstruction still has to *draw* what the EEG
predicted, not pick a training image. This decoder does, from the same two things SDXL-Turbo is given in the field's
two-path pipelines (ATM's ``custom_pipeline_low_level``, jyang635/EEG_decoding, Perceptogram):

- the **semantic path**: one embedding per aligner target (``image``, ``edge``, ...: the aligner's predictions in
  the targets' space, in place of the IP-Adapter's ``image_embeds``);
- the **low-level path**: the stimulus' VAE latent (``AutoencoderKL``; the EEG-predicted one in place of SDXL's
  img2img init latent), optional.

It is trained on the training images only (``training.decoder``), so it has never seen a test concept: test
concepts are unseen combinations of seen factors, and a convolutional decoder conditioned by FiLM draws them from
the parts it learnt.

**Network.** The embeddings are standardised with the training targets' per-feature mean and sd (floored at a tenth
of the mean sd: ``floored_sd``) and concatenated;
each row is then rescaled to unit RMS (a ridge or regression prediction shrinks toward the mean: the decoder sees
its direction, not its shrunken length, as the reference notes advise for IP-Adapter embeddings). An MLP maps
them to a ``hidden``-d code. The latent, standardised per element and rescaled to unit RMS per image in the same
way, enters a 3x3 convolution at its own resolution (without a latent, a linear map of the code makes a 4 x 4 grid);
then blocks of [x2 nearest upsampling, 3x3 conv, GroupNorm, SiLU, 3x3 conv, FiLM by the code, SiLU] up to
``image_size``; a 3x3 convolution gives each pixel's mean (sigmoid) and log standard deviation.

**A generative model, sampled.** Trained by the Gaussian negative log-likelihood of the training images (per pixel,
learned variance), it is *sampled*: mean + ``temperature`` x sd x noise, seeded per (seed, stimulus, round), so the
rounds of one stimulus differ as SDXL's do. Its inputs are degraded in training as the EEG will degrade them
(Gaussian noise on the standardised embeddings; the latent pulled toward the mean and noised by a random
strength), so that it does not trust a predicted latent as it would the stimulus' own.

This is a stand-in, named so in every report: a few hundred thousand weights trained for a minute on a thousand
images cannot draw what SDXL-Turbo draws; it shows the pipeline end to end offline and lets the two paths and the
controls be compared on the same footing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import from_dict, to_dict
from ..io import DataFormatError, MissingDataError, check_range, save_safetensors

__all__ = ["DECODER_FILE", "ConditionalDecoder", "DecoderConfig", "floored_sd", "load_decoder", "save_decoder"]

DECODER_FILE = "decoder.safetensors"
LABEL = "offline conditional decoder (the demo's stand-in for SDXL-Turbo; trained on the training images only)"


@dataclass
class DecoderConfig:
    """The decoder's architecture and its training (``eeg2image train-decoder``)."""

    image_size: int = 32  # px of the decoded image (a power-of-two multiple of the latent's size)
    channels: list[int] = field(default_factory=lambda: [64, 32, 16])  # per resolution, coarse to fine
    hidden: int = 256  # the embeddings' code
    min_log_sd: float = -6.0
    max_log_sd: float = 0.0
    steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    cond_noise: float = 0.5  # sd of the noise on the standardised embeddings in training
    latent_strength: float = 0.8  # the latent in training: (1 - s) z + s mean + s sd noise, s ~ U(0, strength)
    hflip: bool = True
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        check_range("decoder.image_size", self.image_size, 8)
        if not self.channels:
            raise DataFormatError("decoder.channels is empty; expected one width per resolution, e.g. [64, 32, 16]")
        for c in self.channels:
            check_range("decoder.channels", c, 4)
            if c % 4:
                raise DataFormatError(f"decoder.channels: {c} is not a multiple of 4 (GroupNorm of 4 groups)")
        check_range("decoder.hidden", self.hidden, 1)
        check_range("decoder.steps", self.steps, 1)
        check_range("decoder.batch_size", self.batch_size, 1)
        check_range("decoder.lr", self.lr, 0, low_open=True)
        check_range("decoder.cond_noise", self.cond_noise, 0)
        check_range("decoder.latent_strength", self.latent_strength, 0, 1)
        check_range("decoder.checkpoint_every", self.checkpoint_every, 1)
        if self.min_log_sd >= self.max_log_sd:
            raise DataFormatError("decoder.min_log_sd must be below decoder.max_log_sd")


class _FiLM(nn.Module):
    def __init__(self, code: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(code, 2 * channels)

    def forward(self, h: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        gain, bias = self.proj(code).chunk(2, dim=-1)
        return h * (1 + gain[..., None, None]) + bias[..., None, None]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1)
    )


def floored_sd(x: torch.Tensor, floor: float = 0.1) -> torch.Tensor:
    """Per-feature sd over the rows of ``x``, at least ``floor`` x its mean over features: a feature (nearly) constant
    in the training images (a ReLU channel no training image drives) would otherwise blow up the standardised value
    of an image that does drive it (seen: unit-RMS test embeddings of RMS 90 with a 1e-6 floor, 1.1 with this)."""
    sd = x.std(0)
    return sd.clamp_min(floor * float(sd.mean()) + 1e-12)


def _unit_rms(x: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, x.ndim))
    return x / x.pow(2).mean(dim=dims, keepdim=True).sqrt().clamp_min(1e-6)


class ConditionalDecoder(nn.Module):
    """(embeddings {target: (N, D_t)}, latent (N, C, h, w) or None) -> per-pixel mean and log sd (N, 3, S, S).

    ``targets``: {name: width} in order; ``latent_shape``: (C, h, w) or None. The normalisation statistics are
    buffers (set from the training targets by ``set_statistics``), saved with the weights."""

    def __init__(self, cfg: DecoderConfig, targets: dict[str, int], latent_shape: tuple[int, int, int] | None):
        super().__init__()
        if not targets:
            raise DataFormatError("the decoder needs at least one conditioning embedding (an aligner target)")
        self.config = cfg
        self.targets = dict(targets)
        self.latent_shape = tuple(latent_shape) if latent_shape else None
        base = self.latent_shape[1] if self.latent_shape else 4
        if self.latent_shape and self.latent_shape[1] != self.latent_shape[2]:
            raise DataFormatError(f"the decoder takes square latents; got {self.latent_shape}")
        n_up, size = 0, base
        while size < cfg.image_size:
            size, n_up = size * 2, n_up + 1
        if size != cfg.image_size:
            raise DataFormatError(
                f"decoder.image_size {cfg.image_size} is not the latent's size {base} times a power of two"
            )
        d = sum(self.targets.values())
        self.register_buffer("cond_mean", torch.zeros(d))
        self.register_buffer("cond_sd", torch.ones(d))
        shape = self.latent_shape or (1, 1, 1)
        self.register_buffer("latent_mean", torch.zeros(shape))
        self.register_buffer("latent_sd", torch.ones(shape))
        ch = [cfg.channels[min(i, len(cfg.channels) - 1)] for i in range(n_up + 1)]
        self.code = nn.Sequential(nn.Linear(d, cfg.hidden), nn.SiLU())
        if self.latent_shape:
            self.stem = nn.Conv2d(self.latent_shape[0], ch[0], 3, padding=1)
        else:
            self.stem = nn.Linear(cfg.hidden, ch[0] * base * base)
        self.base = base
        self.blocks = nn.ModuleList([_block(ch[0], ch[0])] + [_block(ch[i], ch[i + 1]) for i in range(n_up)])
        self.films = nn.ModuleList([_FiLM(cfg.hidden, ch[0])] + [_FiLM(cfg.hidden, ch[i + 1]) for i in range(n_up)])
        self.head = nn.Conv2d(ch[-1], 6, 3, padding=1)

    @torch.no_grad()
    def set_statistics(self, embeds: dict[str, torch.Tensor], latents: torch.Tensor | None) -> None:
        """The training targets' per-feature mean and sd (and the latents' per-element ones)."""
        x = self._concat(embeds)
        self.cond_mean.copy_(x.mean(0))
        self.cond_sd.copy_(floored_sd(x))
        if self.latent_shape is not None and latents is not None:
            z = latents.reshape(len(latents), *self.latent_shape).float()
            self.latent_mean.copy_(z.mean(0))
            self.latent_sd.copy_(floored_sd(z))

    def _concat(self, embeds: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for t, d in self.targets.items():
            if t not in embeds:
                raise DataFormatError(f"the decoder is conditioned on {list(self.targets)}; no {t!r} embeddings given")
            e = embeds[t]
            if e.ndim != 2 or e.shape[1] != d:
                raise DataFormatError(f"{t!r} embeddings have shape {tuple(e.shape)}; the decoder takes (N, {d})")
            parts.append(e.float())
        return torch.cat(parts, dim=1)

    def standardise(self, embeds: dict[str, torch.Tensor]) -> torch.Tensor:
        """The conditioning vector before unit-RMS scaling (training adds its noise here)."""
        return (self._concat(embeds) - self.cond_mean) / self.cond_sd

    def standardise_latent(self, latents: torch.Tensor) -> torch.Tensor:
        if self.latent_shape is None:
            raise DataFormatError("this decoder was trained without latents")
        z = latents.reshape(len(latents), -1)
        n = 1
        for s in self.latent_shape:
            n *= s
        if z.shape[1] != n:
            raise DataFormatError(
                f"latents have {z.shape[1]} values per image; the decoder takes {tuple(self.latent_shape)} ({n})"
            )
        return (z.reshape(len(z), *self.latent_shape).float() - self.latent_mean) / self.latent_sd

    def forward(self, cond: torch.Tensor, latent: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``cond``: standardised (N, D); ``latent``: standardised (N, C, h, w) or None -> (mean, log sd)."""
        code = self.code(_unit_rms(cond))
        if self.latent_shape is not None:
            if latent is None:
                raise DataFormatError("this decoder was trained with latents; give the low-level latents")
            h = self.stem(_unit_rms(latent))
        else:
            h = self.stem(code).view(len(code), -1, self.base, self.base)
        for i, (block, film) in enumerate(zip(self.blocks, self.films, strict=True)):
            if i:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = F.silu(film(block(h), code))
        out = self.head(h)
        return torch.sigmoid(out[:, :3]), out[:, 3:].clamp(self.config.min_log_sd, self.config.max_log_sd)

    @torch.no_grad()
    def sample(
        self,
        embeds: dict[str, torch.Tensor],
        latents: torch.Tensor | None,
        generators: list[torch.Generator] | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Images (N, 3, S, S) in [0, 1]: each row's mean plus ``temperature`` x sd x noise drawn from its own
        generator (None or temperature 0: the mean)."""
        mean, log_sd = self(self.standardise(embeds), None if latents is None else self.standardise_latent(latents))
        if generators is not None and temperature > 0:
            if len(generators) != len(mean):
                raise DataFormatError(f"{len(generators)} generators for {len(mean)} images")
            noise = torch.stack([torch.randn(mean.shape[1:], generator=g) for g in generators])
            mean = mean + temperature * log_sd.exp() * noise
        return mean.clamp(0, 1)

    def nll(self, images: torch.Tensor, cond: torch.Tensor, latent: torch.Tensor | None) -> torch.Tensor:
        """Mean Gaussian negative log-likelihood (less a constant) of ``images`` (N, 3, S, S) in [0, 1]."""
        mean, log_sd = self(cond, latent)
        return (0.5 * ((images - mean) / log_sd.exp()) ** 2 + log_sd).mean()


def save_decoder(path: Path, model: ConditionalDecoder, extra: dict[str, Any] | None = None) -> None:
    """Weights and statistics, with what rebuilds the decoder (config, targets, latent shape) in the metadata."""
    meta = {
        "decoder_config": to_dict(model.config),
        "targets": model.targets,
        "latent_shape": list(model.latent_shape) if model.latent_shape else None,
        **(extra or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_safetensors(path, tensors, {k: json.dumps(v) for k, v in meta.items()})


def load_decoder(folder: str | Path) -> tuple[ConditionalDecoder, dict[str, Any]]:
    """The decoder of a ``train-decoder`` folder (eval mode) and its metadata; anything else is named."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    folder = Path(folder)
    path = folder / DECODER_FILE if folder.is_dir() or not folder.suffix else folder
    if not path.is_file():
        raise MissingDataError(f"{path}: no decoder there; train one with `eeg2image train-decoder`")
    try:
        with safe_open(str(path), "pt") as f:
            raw = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a readable decoder file ({exc}); train it again") from exc
    try:
        meta = {k: json.loads(v) for k, v in raw.items()}
    except ValueError:
        meta = {}
    if "decoder_config" not in meta or "targets" not in meta:
        raise DataFormatError(f"{path}: not a decoder weights file (no decoder_config in its metadata)")
    cfg = from_dict(DecoderConfig, meta["decoder_config"], where=f"{path}: decoder_config")
    shape = meta.get("latent_shape")
    model = ConditionalDecoder(cfg, meta["targets"], tuple(shape) if shape else None)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise DataFormatError(f"{path}: the weights do not fit the decoder its metadata describes ({exc})") from exc
    return model.eval(), meta
