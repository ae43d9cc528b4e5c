"""STH-Align: from the frozen EEG embeddings of the brain side to the generator's embedding space.

CognitionCapturerPro (Zhang et al., CVPR 2026, arXiv 2603.12722; XiaoZhangYES/CognitionCapturerPro
``align/``, ``--model_type simple``): the EEG embeddings of the image, depth, edge and fusion experts (4 x 1024,
fixed order) are concatenated into a shared trunk, Linear(4096, 1024) + LayerNorm + SiLU + Dropout(0.1), then
four blocks of Linear + LayerNorm + SiLU + Dropout; one head per target, Linear + LayerNorm + SiLU + Linear to
the target's dimension (1024: the IP-Adapter's OpenCLIP ViT-H-14 ``image_embeds`` of the image, its edge map and
its depth map). Loss per head: MSE + 0.5 (1 - cos) + 1e-4 mean(u^2), summed over heads.

Where we differ from the released code (docs/reconstruction.md): the outputs are not L2-normalised (the
targets are raw ``image_embeds``, and the adapter's projection is Linear then LayerNorm, so the norm trades the
content against the projection's bias); there is no identity "fusion" head (its target was the input itself);
modality masking of the inputs is an option (``mask_prob``), off by default as released.
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
from ..features.views import CannyEdges, DepthMap
from ..io import DataFormatError, MissingDataError, check_range, save_safetensors
from .ridge import RidgeConfig, RidgeMap, fit_ridge

__all__ = [
    "ALIGN_INPUTS",
    "ALIGN_TARGETS",
    "TARGET_VIEWS",
    "AlignConfig",
    "RidgeAligner",
    "STHAlign",
    "align_loss",
    "aligner_inputs",
    "load_aligner",
    "save_aligner",
]

#: The brain side's embeddings the aligner reads, in this order.
ALIGN_INPUTS = ("image", "depth", "edge", "fusion")
#: The generator-side targets it predicts (IP-Adapter ``image_embeds`` of these views of the stimulus).
ALIGN_TARGETS = ("image", "edge", "depth")
#: The stored view each target is embedded from (``eeg2image embed --views original,edges,depth``'s names).
TARGET_VIEWS = {"image": "original", "edge": CannyEdges().name, "depth": DepthMap().name}


@dataclass
class AlignConfig:
    """The aligner and how it is trained (CognitionCapturerPro's ``simple`` model and schedule)."""

    inputs: list[str] = field(default_factory=lambda: list(ALIGN_INPUTS))
    targets: list[str] = field(default_factory=lambda: list(ALIGN_TARGETS))
    hidden: int = 1024
    blocks: int = 4
    dropout: float = 0.1
    mask_prob: float = 0.0  # chance that each input modality is zeroed in a training step (paper: on; code: off)
    mse: float = 1.0
    cosine: float = 0.5
    magnitude: float = 1e-4  # weight of mean(u^2), the outputs' magnitude
    lr: float = 3e-4
    max_lr_factor: float = 8.0  # OneCycle: max_lr = 8 x lr, pct_start 0.15, div 10, final div 1e4
    weight_decay: float = 0.01
    epochs: int = 100
    batch_size: int = 1024
    clip: float = 1.0
    val_fraction: float = 0.1  # concept-disjoint share of the training images that selects the epoch
    val_seed: int = 0
    output_scale: str = "raw"  # raw | target_norm: rescale each output to the training targets' mean norm

    def __post_init__(self) -> None:
        check_range("align.hidden", self.hidden, 1)
        check_range("align.blocks", self.blocks, 0)
        check_range("align.dropout", self.dropout, 0, 1, high_open=True)
        check_range("align.mask_prob", self.mask_prob, 0, 1, high_open=True)
        check_range("align.lr", self.lr, 0, low_open=True)
        check_range("align.epochs", self.epochs, 1)
        check_range("align.batch_size", self.batch_size, 2)
        check_range("align.val_fraction", self.val_fraction, 0, 1, high_open=True)
        if self.output_scale not in ("raw", "target_norm"):
            raise ValueError(f"align.output_scale must be raw or target_norm, got {self.output_scale!r}")
        if not self.inputs or not self.targets:
            raise ValueError("align.inputs and align.targets must not be empty")


def _block(i: int, o: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, o), nn.LayerNorm(o), nn.SiLU(), nn.Dropout(dropout))


class STHAlign(nn.Module):
    """(B, len(inputs), in_dim) EEG embeddings -> {target: (B, out_dim)}."""

    def __init__(self, cfg: AlignConfig, in_dim: int = 1024, out_dim: int = 1024):
        super().__init__()
        self.config, self.in_dim, self.out_dim = cfg, in_dim, out_dim
        trunk = [_block(len(cfg.inputs) * in_dim, cfg.hidden, cfg.dropout)]
        trunk += [_block(cfg.hidden, cfg.hidden, cfg.dropout) for _ in range(cfg.blocks)]
        self.trunk = nn.Sequential(*trunk)
        self.heads = nn.ModuleDict(
            {
                t: nn.Sequential(
                    nn.Linear(cfg.hidden, cfg.hidden),
                    nn.LayerNorm(cfg.hidden),
                    nn.SiLU(),
                    nn.Linear(cfg.hidden, out_dim),
                )
                for t in cfg.targets
            }
        )
        # the training targets' mean norm per head (set by training; used when output_scale is target_norm)
        self.register_buffer("target_norm", torch.ones(len(cfg.targets)))

    @torch.no_grad()
    def predict(
        self, eeg: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """{target: (N, out_dim)} for the brain side's embeddings {key: (N, in_dim)} (deterministic: no sampling)."""
        return self(aligner_inputs(eeg, self.config.inputs, "the EEG model"))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``mask`` (B, len(inputs)) of 0/1 zeroes input modalities (training-time masking)."""
        if mask is not None:
            x = x * mask[:, :, None]
        h = self.trunk(x.flatten(1))
        out = {t: head(h) for t, head in self.heads.items()}
        if not self.training and self.config.output_scale == "target_norm":
            out = {t: F.normalize(u, dim=-1) * self.target_norm[i] for i, (t, u) in enumerate(out.items())}
        return out


class RidgeAligner(nn.Module):
    """The linear aligner (``align.method=ridge``): one closed-form ridge map per target from the concatenated
    brain-side embeddings (``inputs``, in order), each penalty chosen on held-out training concepts
    (``models.ridge``). Perceptogram's and the decoding literature's linear bridge, the field's strong baseline.
    With ``normalize`` each input embedding is L2-normalised first (as when the map is fitted on the experts'
    target embeddings and applied to the experts' un-normalised outputs)."""

    def __init__(self, inputs: list[str], maps: dict[str, RidgeMap], normalize: bool = False, n_features: int = 0):
        super().__init__()
        self.inputs = list(inputs)
        self.maps = nn.ModuleDict(maps)
        self.normalize = bool(normalize)
        # per feature, applied before the maps: x * gain + shift (identity unless ``match_moments`` set them)
        n = n_features or (next(iter(maps.values())).n_in if maps else 0)
        self.register_buffer("gain", torch.ones(n))
        self.register_buffer("shift", torch.zeros(n))

    @staticmethod
    def flatten(x: torch.Tensor, normalize: bool) -> torch.Tensor:
        """(N, len(inputs), D) -> (N, len(inputs) * D), each input L2-normalised when ``normalize``."""
        x = x.float()
        return (F.normalize(x, dim=-1) if normalize else x).reshape(len(x), -1)

    def features(self, x: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """The maps' input: ``flatten``, then moved by ``gain`` and ``shift`` (unless ``raw``)."""
        x = self.flatten(x, self.normalize)
        return x if raw else x * self.gain + self.shift

    @torch.no_grad()
    def match_moments(self, source: torch.Tensor, like: torch.Tensor) -> None:
        """Give the inputs ``source`` (N, len(inputs), D: the experts' outputs) the per-feature mean and sd of
        ``like`` (the embeddings the maps were fitted on), so the maps see inputs of the distribution they know."""
        a, b = self.features(source, raw=True), self.features(like, raw=True)
        gain = b.std(0) / a.std(0).clamp_min(1e-8)
        self.gain.copy_(gain)
        self.shift.copy_(b.mean(0) - a.mean(0) * gain)

    @classmethod
    def fit(
        cls,
        inputs: list[str],
        x: torch.Tensor,
        targets: dict[str, torch.Tensor],
        val_rows,
        cfg: RidgeConfig | None = None,
        normalize: bool = False,
    ) -> RidgeAligner:
        """``x`` (N, len(inputs), D) -> one map per target of ``targets`` {name: (N, D')}."""
        flat = cls.flatten(x, normalize)
        return cls(inputs, {t: fit_ridge(flat, y, val_rows, cfg) for t, y in targets.items()}, normalize)

    @torch.no_grad()
    def predict(
        self, eeg: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        x = self.features(aligner_inputs(eeg, self.inputs, "the EEG model"))
        return {t: m(x) for t, m in self.maps.items()}


def align_loss(
    pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor], cfg: AlignConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Summed over heads: mse * MSE + cosine * (1 - cos) + magnitude * mean(u^2); and each head's part."""
    total = torch.zeros((), device=next(iter(pred.values())).device)
    parts = {}
    for t, u in pred.items():
        y = target[t]
        loss = (
            cfg.mse * F.mse_loss(u, y)
            + cfg.cosine * (1 - F.cosine_similarity(u, y, dim=-1)).mean()
            + cfg.magnitude * u.pow(2).mean()
        )
        parts[t] = float(loss.detach())
        total = total + loss
    return total, parts


def aligner_inputs(eeg: dict[str, torch.Tensor], inputs: list[str], source: str = "the EEG model") -> torch.Tensor:
    """The brain side's embeddings by key ({key: (..., N, D)}: every seed's or one seed's) -> the aligner's input
    (..., N, len(inputs), D)."""
    missing = [k for k in inputs if k not in eeg]
    if missing:
        raise DataFormatError(
            f"{source} has no {missing} embeddings (it has {sorted(eeg)}); the aligner reads {inputs}"
        )
    dims = {k: eeg[k].shape[-1] for k in inputs}
    if len(set(dims.values())) != 1:
        raise DataFormatError(f"the aligner's inputs differ in width: {dims}; they must share one embedding space")
    return torch.stack([eeg[k] for k in inputs], dim=-2)


def save_aligner(path: Path, model: nn.Module, extra: dict[str, Any] | None = None) -> None:
    """An aligner's weights (STH-Align or the diffusion prior) with what rebuilds it in the metadata: its config
    and dimensions (atomic, byte-stable)."""
    from .prior import DiffusionPriorAligner

    if isinstance(model, RidgeAligner):
        meta = {
            "method": "ridge",
            "inputs": model.inputs,
            "normalize": model.normalize,
            "shapes": {t: list(m.weight.shape) for t, m in model.maps.items()},
            "ridge_config": to_dict(next(iter(model.maps.values())).config),
            "alphas": {t: m.alpha for t, m in model.maps.items()},
            "ridge_history": {t: m.history for t, m in model.maps.items()},
        }
    elif isinstance(model, DiffusionPriorAligner):
        meta = {
            "method": "diffusion_prior",
            "prior_config": to_dict(model.config),
            "conditions": model.conditions,
            "embed_dim": model.embed_dim,
            "cond_dim": model.cond_dim,
        }
    else:
        meta = {"method": "sth_align", "align_config": to_dict(model.config), "in_dim": model.in_dim}
        meta["out_dim"] = model.out_dim
    meta.update(extra or {})
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_safetensors(path, tensors, {k: json.dumps(v) for k, v in meta.items()})


def load_aligner(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The aligner saved at ``path`` (eval mode; ``.predict({key: (N, D)})`` -> {target: (N, D')}) and its
    metadata; a file that is no aligner is named."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from .prior import DiffusionPriorAligner, PriorConfig

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: missing; run `eeg2image align` first")
    try:
        with safe_open(str(path), "pt") as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a readable aligner file ({exc}); run `eeg2image align` again") from exc
    if meta.get("method") == "ridge":
        rcfg = from_dict(RidgeConfig, meta["ridge_config"], where="ridge_config")
        maps = {t: RidgeMap(*shape, rcfg) for t, shape in meta["shapes"].items()}
        for t, m in maps.items():
            m.alpha, m.history = meta["alphas"][t], meta["ridge_history"][t]
        model = RidgeAligner(meta["inputs"], maps, meta.get("normalize", False))
    elif meta.get("method") == "diffusion_prior":
        pcfg = from_dict(PriorConfig, meta["prior_config"], where="prior_config")
        model = DiffusionPriorAligner(pcfg, meta["conditions"], meta["embed_dim"], meta["cond_dim"])
    elif "align_config" in meta:
        cfg = from_dict(AlignConfig, meta["align_config"], where="align_config")
        model = STHAlign(cfg, meta["in_dim"], meta["out_dim"])
    else:
        raise DataFormatError(f"{path}: not an aligner weights file (no align_config in its metadata)")
    model.load_state_dict(load_file(str(path)))
    return model.eval(), meta
