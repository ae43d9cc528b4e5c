"""CognitionCapturerPro's brain side: four modality experts, two fusion encoders, one contrastive loss per key.

Zhang et al., CVPR 2026 (arXiv 2603.12722; XiaoZhangYES/CognitionCapturerPro ``models/brain_backbone.py``,
``models/fusion_backbone.py``):

- four experts, one per modality (image, text, depth, edge), each a ``cogcap`` EEG encoder (see
  ``models.eeg_encoders.CogcapExpert``) mapping the EEG to that modality's CLIP space;
- ``fusion_eeg``: a :class:`ModalityFusion` over the four expert outputs, **detached** (the fusion loss trains
  only the fusion modules);
- ``fusion_mod``: a :class:`ModalityFusion` over the four modality embeddings of the stimulus, with
  ``mask_count`` of them zeroed at every training step; it makes the fusion key's target;
- a :class:`~models.losses.InfoNCE` per key (image, text, depth, edge, fusion), EEG un-normalised,
  temperature fixed at softplus(log(1/0.07)) = 2.727 as released (or learnable).

The released "modality heads" (``ProjMod``) return their input: the targets are the modality embeddings
themselves, and so they are here. Because each key's loss reaches only its own expert (fusion: only the fusion
modules), one optimiser on the summed losses takes the same steps as the released per-key optimisers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..features.views import CannyEdges, DepthMap
from ..io import ConfigError, check_option, check_range
from .eeg_encoders import PostNormTransformerLayer, build_eeg_encoder, check_eeg_options, sinusoidal_positions
from .losses import InfoNCE, ScaleMode

__all__ = [
    "EXPERT_KEYS",
    "MASK_KEY",
    "MODALITY_KEYS",
    "ExpertsConfig",
    "ModalityExperts",
    "ModalityFusion",
    "modality_mask",
]

#: The modalities an expert is trained against, in the fusion encoders' token order.
MODALITY_KEYS = ("image", "text", "depth", "edge")
#: Every contrastive key: the four experts and the fusion.
EXPERT_KEYS = (*MODALITY_KEYS, "fusion")
#: The entry of a training batch's view dict that carries the step's modality mask (B, M) for ``fusion_mod``.
MASK_KEY = "_modality_mask"
#: The released pairing of modalities and views (the image itself, its caption, its depth map, its edge map), as
#: ``eeg2image embed`` names them (``--views original,depth,edges``; texts: ``--text-encoder``).
DEFAULT_VIEWS = {
    "image": ["original"],
    "text": ["text-template"],
    "depth": [DepthMap().name],
    "edge": [CannyEdges().name],
}


class ModalityFusion(nn.Module):
    """``CogcapFusion``: (B, M, in_dim) modality embeddings -> (B, out_dim).

    Per modality Linear + LayerNorm + GELU to ``hidden`` (255), sinusoidal modality positions, a 2-layer
    post-norm transformer (1 head, FF 2 x hidden, dropout 0.1; both layers start from the same weights, as
    ``nn.TransformerEncoder`` clones its layer), mean over modalities, then a residual (Linear, GELU, Dropout),
    LayerNorm, Linear to ``out_dim``, LayerNorm, GELU. ``mask`` (B, M) of 0/1 zeroes modality inputs. Inputs
    are a list of M (B, in_dim_m) tensors (modalities may differ in width) or one (B, M, in_dim) tensor."""

    def __init__(
        self,
        n_modalities: int = 4,
        in_dim: int | list[int] = 1024,
        hidden: int = 255,
        out_dim: int = 1024,
        n_heads: int = 1,
        dropout: float = 0.1,
        n_layers: int = 2,
    ):
        super().__init__()
        dims = list(in_dim) if isinstance(in_dim, list | tuple) else [in_dim] * n_modalities
        if len(dims) != n_modalities:
            raise ValueError(f"{n_modalities} modalities but {len(dims)} input dimensions")
        self.proj = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.GELU()) for d in dims)
        self.register_buffer("positions", sinusoidal_positions(n_modalities, hidden), persistent=False)
        layer = PostNormTransformerLayer(hidden, n_heads, 2 * hidden, dropout)
        self.layers = nn.ModuleList([layer, *(copy.deepcopy(layer) for _ in range(n_layers - 1))])
        self.residual = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim), nn.GELU())

    def forward(self, x: torch.Tensor | list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        xs = list(x.unbind(1)) if isinstance(x, torch.Tensor) else list(x)
        if mask is not None:
            xs = [v * mask[:, i, None].to(v.dtype) for i, v in enumerate(xs)]
        h = torch.stack([p(xs[i]) for i, p in enumerate(self.proj)], dim=1) + self.positions
        for layer in self.layers:
            h = layer(h)
        h = h.mean(dim=1)
        return self.out(h + self.residual(h))


@dataclass
class ExpertsConfig:
    """The brain side: which modalities (each read from one view, or three for uncertainty-aware blur), the
    expert encoder and its options, the fusion width, the masking, the loss, the text key's schedule."""

    # modality -> its stored view: [view] or [less, medium, more] blurred views (UM, ``training.uncertainty``).
    # ``view@encoder`` reads that encoder's table (e.g. ``text-template@minilm``); a bare view reads
    # ``data.image_encoder``'s
    modalities: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_VIEWS.items()})
    expert: str = "cogcap"
    expert_options: dict[str, Any] = field(default_factory=dict)
    fusion_hidden: int = 255
    fusion_dropout: float = 0.1
    mask_count: int = 1  # modality embeddings zeroed per training step in fusion_mod
    logit_scale: float = 2.727  # softplus(log(1/0.07)): the released, fixed temperature
    scale_mode: ScaleMode = "fixed"
    text_epochs: int = 30  # the text key's loss stops after this many epochs, as released (0: never stops)
    select_key: str = "image"  # the key whose validation ranking selects each seed's epoch
    uncertainty_gamma: float = 0.3
    uncertainty_z: float = 1.96

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ConfigError(f"experts.modalities is empty; expected some of {', '.join(MODALITY_KEYS)}")
        for m, views in self.modalities.items():
            check_option("modality", m, MODALITY_KEYS, where="experts.modalities")
            if len(views) not in (1, 3):
                raise ConfigError(
                    f"experts.modalities.{m}: {views}; expected one view, or three (less, medium, more blur) for UM"
                )
        self.modalities = {m: list(self.modalities[m]) for m in MODALITY_KEYS if m in self.modalities}
        check_eeg_options(self.expert, self.expert_options, where="experts.expert_options")
        check_range("experts.fusion_hidden", self.fusion_hidden, 1)
        check_range("experts.fusion_dropout", self.fusion_dropout, 0, 1, high_open=True)
        check_range("experts.mask_count", self.mask_count, 0, len(self.modalities) - 1)
        check_range("experts.logit_scale", self.logit_scale, 0, low_open=True)
        check_range("experts.text_epochs", self.text_epochs, 0)
        check_option("key", self.select_key, self.keys(), where="experts.select_key")
        check_range("experts.uncertainty_gamma", self.uncertainty_gamma, 0, 1, low_open=True)
        check_range("experts.uncertainty_z", self.uncertainty_z, 0, low_open=True)

    def keys(self) -> list[str]:
        """The contrastive keys: the configured modalities in canonical order, then ``fusion``."""
        return [*self.modalities, "fusion"]

    def view_of(self, modality: str) -> str:
        """The view a modality's target and gallery are read from (the medium one under UM)."""
        views = self.modalities[modality]
        return views[1] if len(views) == 3 else views[0]

    def required_views(self) -> list[str]:
        return list(dict.fromkeys(v for views in self.modalities.values() for v in views))

    def uncertainty_groups(self) -> dict[str, list[str]]:
        """Modality -> its [less, medium, more] views, for the modalities trained with UM."""
        return {m: list(v) for m, v in self.modalities.items() if len(v) == 3}

    def active_keys(self, epoch: int) -> list[str]:
        """The keys whose losses train in (0-based) ``epoch``: the text key only in its first ``text_epochs``."""
        return [k for k in self.keys() if k != "text" or not self.text_epochs or epoch < self.text_epochs]


class ModalityExperts(nn.Module):
    """One expert per configured modality, the two fusion encoders and a loss per key (``cfg.keys()``).

    Called like a ``RetrievalModel`` (``models.retrieval.SeedStack`` stacks either): ``forward(a, b, subject,
    mode)`` with ``b`` the stimulus views by stored view name (``cfg.view_of`` picks each modality's; entry
    ``MASK_KEY`` (B, M) masks ``fusion_mod`` in training). Outputs are dicts by key; ``loss`` is (K,) in key
    order; ``diag`` is (G, B), the true pairs' logits of each UM modality."""

    def __init__(
        self, cfg: ExpertsConfig, n_chans: int, n_times: int, dim: int | dict[str, int] = 1024, sfreq: float = 250.0
    ):
        super().__init__()
        self.config = cfg
        mods = list(cfg.modalities)
        dims = dict(dim) if isinstance(dim, dict) else dict.fromkeys(mods, dim)
        missing = [m for m in mods if m not in dims]
        if missing:
            raise ConfigError(f"no embedding dimension for modalities {missing}")
        self.dims = {m: int(dims[m]) for m in mods}
        self.experts = nn.ModuleDict(
            {
                m: build_eeg_encoder(
                    cfg.expert,
                    n_chans=n_chans,
                    n_times=n_times,
                    out_dim=self.dims[m],
                    sfreq=sfreq,
                    where="experts.expert_options",
                    **cfg.expert_options,
                )
                for m in mods
            }
        )
        fused = self.dims["image"] if "image" in self.dims else self.dims[mods[0]]
        in_dims = [self.dims[m] for m in mods]
        self.fusion_eeg = ModalityFusion(len(mods), in_dims, cfg.fusion_hidden, fused, dropout=cfg.fusion_dropout)
        self.fusion_mod = ModalityFusion(len(mods), in_dims, cfg.fusion_hidden, fused, dropout=cfg.fusion_dropout)
        self.losses = nn.ModuleDict({k: InfoNCE(cfg.logit_scale, cfg.scale_mode) for k in cfg.keys()})

    def embed_eeg(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C, T) EEG -> {key: (B, dim)} for every modality and the fusion."""
        out = {m: e(x) for m, e in self.experts.items()}
        out["fusion"] = self.fusion_eeg([out[m].detach() for m in self.experts])
        return out

    def embed_targets(
        self, modalities: dict[str, torch.Tensor], mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """{modality: (B, dim)} stimulus embeddings -> the target of every key: the L2-normalised modality
        embeddings as they are (the released heads are identity) and ``fusion_mod`` of them all (``mask`` (B, M)
        zeroes some of them for the fusion only)."""
        targets = {m: F.normalize(modalities[m], dim=-1) for m in self.experts}
        targets["fusion"] = self.fusion_mod([targets[m] for m in self.experts], mask)
        return targets

    def key_losses(
        self, x: torch.Tensor, modalities: dict[str, torch.Tensor], mask: torch.Tensor | None = None, keys=None
    ) -> dict[str, torch.Tensor]:
        """The InfoNCE loss of each key in ``keys`` (default: all)."""
        eeg, targets = self.embed_eeg(x), self.embed_targets(modalities, mask)
        return {k: self.losses[k](eeg[k], targets[k]) for k in (keys or self.config.keys())}

    def modalities_of(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: views[self.config.view_of(m)] for m in self.experts}

    def forward(self, a: Any, b: Any = None, subject: torch.Tensor | None = None, mode: str = "both") -> Any:
        if mode == "both":
            return self.embed_eeg(a), self.embed_targets(self.modalities_of(b), b.get(MASK_KEY))
        if mode == "eeg":
            return self.embed_eeg(a)
        if mode == "target":
            return self.embed_targets(self.modalities_of(b), b.get(MASK_KEY))
        if mode == "loss":
            return torch.stack([self.losses[k](a[k], b[k]) for k in self.config.keys()])
        if mode == "diag":
            groups = self.config.uncertainty_groups()
            return torch.stack([self.losses[m].diagonal_logits(a[m], b[m]) for m in groups])
        check_option("mode", mode, ("both", "eeg", "target", "loss", "diag"))
        raise AssertionError(mode)


def modality_mask(
    batch: int, mask_count: int, generator: torch.Generator | None = None, n_modalities: int = len(MODALITY_KEYS)
) -> torch.Tensor:
    """(batch, M) ones with the same ``mask_count`` randomly chosen modalities zeroed for the whole step."""
    mask = torch.ones(batch, n_modalities)
    if mask_count:
        drop = torch.randperm(n_modalities, generator=generator)[:mask_count]
        mask[:, drop] = 0
    return mask
