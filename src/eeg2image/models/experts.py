"""CognitionCapturerPro's brain side: four modality experts, two fusion encoders, one contrastive loss per key.

Zhang et al., CVPR 2026 (arXiv 2603.12722; XiaoZhangYES/CognitionCapturerPro ``models/brain_backbone.py``,
``models/fusion_backbone.py``):

- four experts, one per modality (image, text, depth, edge), each a ``cogcap`` EEG encoder (see
  ``models.eeg_encoders.CogcapExpert``) mapping the EEG to that modality's CLIP space;
- ``fusion_eeg``: a :class:`ModalityFusion` over the four expert outputs, **detached** (the fusion loss trains
  only the fusion modules);
- ``fusion_mod``: a :class:`ModalityFusion` over the four modality embeddings of the stimulus, with
  ``mask_count`` of them zeroed at every training step; it makes the fusion key's target;
- a :class:`~models.losses.SymmetricInfoNCE` per key (image, text, depth, edge, fusion), EEG un-normalised,
  temperature fixed at softplus(log(1/0.07)) = 2.727 as released (or learnable).

The released "modality heads" (``ProjMod``) return their input: the targets are the modality embeddings
themselves, and so they are here. Because each key's loss reaches only its own expert (fusion: only the fusion
modules), one optimiser on the summed losses takes the same steps as the released per-key optimisers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..io import check_range
from .eeg_encoders import PostNormTransformerLayer, build_eeg_encoder, sinusoidal_positions
from .losses import ScaleMode, SymmetricInfoNCE

__all__ = ["EXPERT_KEYS", "MODALITY_KEYS", "ExpertsConfig", "ModalityExperts", "ModalityFusion"]

#: The modalities an expert is trained against, in the fusion encoders' token order.
MODALITY_KEYS = ("image", "text", "depth", "edge")
#: Every contrastive key: the four experts and the fusion.
EXPERT_KEYS = (*MODALITY_KEYS, "fusion")


class ModalityFusion(nn.Module):
    """``CogcapFusion``: (B, M, in_dim) modality embeddings -> (B, out_dim).

    Per modality Linear + LayerNorm + GELU to ``hidden`` (255), sinusoidal modality positions, a 2-layer
    post-norm transformer (1 head, FF 2 x hidden, dropout 0.1; both layers start from the same weights, as
    ``nn.TransformerEncoder`` clones its layer), mean over modalities, then a residual (Linear, GELU, Dropout),
    LayerNorm, Linear to ``out_dim``, LayerNorm, GELU. ``mask`` (B, M) of 0/1 zeroes modality inputs."""

    def __init__(
        self,
        n_modalities: int = 4,
        in_dim: int = 1024,
        hidden: int = 255,
        out_dim: int = 1024,
        n_heads: int = 1,
        dropout: float = 0.1,
        n_layers: int = 2,
    ):
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.GELU()) for _ in range(n_modalities)
        )
        self.register_buffer("positions", sinusoidal_positions(n_modalities, hidden), persistent=False)
        layer = PostNormTransformerLayer(hidden, n_heads, 2 * hidden, dropout)
        self.layers = nn.ModuleList([layer, *(copy.deepcopy(layer) for _ in range(n_layers - 1))])
        self.residual = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim), nn.GELU())

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = x * mask[:, :, None].to(x.dtype)
        h = torch.stack([p(x[:, i]) for i, p in enumerate(self.proj)], dim=1) + self.positions
        for layer in self.layers:
            h = layer(h)
        h = h.mean(dim=1)
        return self.out(h + self.residual(h))


@dataclass
class ExpertsConfig:
    """The brain side's shape: the expert encoder and its options, the fusion width, the masking, the loss."""

    expert: str = "cogcap"
    expert_options: dict = field(default_factory=dict)
    fusion_hidden: int = 255
    fusion_dropout: float = 0.1
    mask_count: int = 1  # modality embeddings zeroed per training step in fusion_mod
    logit_scale: float = 2.727  # softplus(log(1/0.07)): the released, fixed temperature
    scale_mode: ScaleMode = "fixed"

    def __post_init__(self) -> None:
        check_range("experts.fusion_hidden", self.fusion_hidden, 1)
        check_range("experts.fusion_dropout", self.fusion_dropout, 0, 1, high_open=True)
        check_range("experts.mask_count", self.mask_count, 0, len(MODALITY_KEYS) - 1)
        check_range("experts.logit_scale", self.logit_scale, 0, low_open=True)


class ModalityExperts(nn.Module):
    """Four experts, the two fusion encoders and a loss per key (``EXPERT_KEYS``)."""

    def __init__(self, cfg: ExpertsConfig, n_chans: int, n_times: int, dim: int = 1024, sfreq: float = 250.0):
        super().__init__()
        self.config = cfg
        self.experts = nn.ModuleDict(
            {
                m: build_eeg_encoder(
                    cfg.expert, n_chans=n_chans, n_times=n_times, out_dim=dim, sfreq=sfreq, **cfg.expert_options
                )
                for m in MODALITY_KEYS
            }
        )
        m = len(MODALITY_KEYS)
        self.fusion_eeg = ModalityFusion(m, dim, cfg.fusion_hidden, dim, dropout=cfg.fusion_dropout)
        self.fusion_mod = ModalityFusion(m, dim, cfg.fusion_hidden, dim, dropout=cfg.fusion_dropout)
        self.losses = nn.ModuleDict({k: SymmetricInfoNCE(cfg.logit_scale, cfg.scale_mode) for k in EXPERT_KEYS})

    def embed_eeg(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C, T) EEG -> {key: (B, dim)} for the four modalities and the fusion."""
        out = {m: e(x) for m, e in self.experts.items()}
        out["fusion"] = self.fusion_eeg(torch.stack([out[m].detach() for m in MODALITY_KEYS], dim=1))
        return out

    def embed_targets(
        self, modalities: dict[str, torch.Tensor], mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """{modality: (B, dim)} stimulus embeddings -> the target of every key (the modality embeddings as they
        are, and ``fusion_mod`` of all four; ``mask`` (B, 4) zeroes some of them for the fusion only)."""
        targets = {m: modalities[m] for m in MODALITY_KEYS}
        targets["fusion"] = self.fusion_mod(torch.stack([modalities[m] for m in MODALITY_KEYS], dim=1), mask)
        return targets

    def key_losses(
        self, x: torch.Tensor, modalities: dict[str, torch.Tensor], mask: torch.Tensor | None = None, keys=EXPERT_KEYS
    ) -> dict[str, torch.Tensor]:
        """The InfoNCE loss of each key in ``keys`` (the text key is dropped after the released 30 epochs by
        leaving it out)."""
        eeg, targets = self.embed_eeg(x), self.embed_targets(modalities, mask)
        return {k: self.losses[k](eeg[k], targets[k]) for k in keys}


def modality_mask(batch: int, mask_count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, 4) ones with the same ``mask_count`` randomly chosen modalities zeroed for the whole step."""
    mask = torch.ones(batch, len(MODALITY_KEYS))
    if mask_count:
        drop = torch.randperm(len(MODALITY_KEYS), generator=generator)[:mask_count]
        mask[:, drop] = 0
    return mask
