"""Image-side target models: how stimulus embeddings become the target an EEG embedding is aligned with.

Every part is a switch, so an ablation is one flag (``TargetConfig``):

- **blur-level fusion** (Liu et al., AAAI 2026, makeitperfect/VisualEEGDecoding): the L blur-level
  embeddings of an image plus ``n_default_tokens`` learned tokens (zero-initialised) are mixed by a softmax
  over the token axis, separately for every embedding dimension (logits ~ U[0, 1) at init);
- **EVNet fusion** (the reference system, Chikit-WONG/DL_Project): ``softmax(w)[0] * blur + softmax(w)[1] *
  evnet`` with ``w`` initialised to (0.7, 0.3);
- **adapter**: Linear(D, 768) -> ELU -> Dropout(0.85) -> Linear(768, D), applied to the fused vector;
- **uncertainty-aware blur** (Wu et al., CVPR 2025, HaitaoWuTJU/Uncertainty-aware-Blur-Prior): three views
  of one image blurred less / as much / more (UBP: foveated blur k = 45 / 51 / 57). In training, each pair's
  target is taken from one of them according to how well the pair matches (``training.uncertainty``);
  the validation and test galleries use the middle one;
- otherwise a single (plain) embedding passes through;
- **centring** (off by default; no peer does it): subtract from every view the mean embedding of the training
  images before L2 normalisation. Image encoders put most of an embedding's length in a direction shared by
  all images (offline EVNet: mean cosine 0.90 between images); centring keeps what tells images apart. The
  means come from the training images only and are stored in the model (buffer ``centers``), so the
  validation and test galleries are centred with the training means.

Inputs are L2-normalised per view (as the peers cached them); the output is not (the loss normalises).
The same module, in eval mode, turns the test images' views into the retrieval gallery.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..io import check_range


@dataclass
class TargetConfig:
    blur_views: list[str] = field(default_factory=list)  # e.g. blur-k01 ... blur-k63 (fused when >= 2)
    plain_view: str = "original"  # used when there are no blur views
    evnet_view: str | None = None  # e.g. "original" embedded by evnet-clip; fused with the blur aggregate
    n_default_tokens: int = 4
    evnet_init: tuple[float, float] = (0.7, 0.3)
    adapter: bool = True
    adapter_hidden: int = 768
    adapter_dropout: float = 0.85
    # UBP's uncertainty-aware blur: [less, medium, more] blurred views, e.g. fovea-k45-g3, fovea-k51-g3,
    # fovea-k57-g3 (empty: off). ``gamma``: weight of the new diagonal logit in its running average;
    # ``z``: pairs beyond mean +/- z sd of the batch get less / more blur (UBP: 0.3 and 1.96, alpha 0.05).
    center: bool = False
    uncertainty_views: list[str] = field(default_factory=list)
    uncertainty_gamma: float = 0.3
    uncertainty_z: float = 1.96

    def __post_init__(self) -> None:
        if self.uncertainty_views and len(self.uncertainty_views) != 3:
            raise ValueError(
                f"target.uncertainty_views needs 3 views (less, medium, more blur), got {self.uncertainty_views}"
            )
        if self.uncertainty_views and self.blur_views:
            raise ValueError("target.uncertainty_views and target.blur_views exclude each other: choose one")
        check_range("train.target.uncertainty_gamma", self.uncertainty_gamma, 0, 1, low_open=True)
        check_range("train.target.adapter_dropout", self.adapter_dropout, 0, 1, high_open=True)
        check_range("train.target.adapter_hidden", self.adapter_hidden, 1)
        check_range("train.target.n_default_tokens", self.n_default_tokens, 0)
        check_range("train.target.uncertainty_z", self.uncertainty_z, 0, low_open=True)

    def required_views(self) -> list[str]:
        """The embedding views this target reads (``evnet:<view>`` is the EVNet encoder's view)."""
        views = list(self.blur_views) or list(self.uncertainty_views) or [self.plain_view]
        return views + ([f"evnet:{self.evnet_view}"] if self.evnet_view else [])

    @property
    def single_view(self) -> str:
        """The view a target without blur-level fusion starts from (the medium blur under UBP)."""
        return self.uncertainty_views[1] if self.uncertainty_views else self.plain_view


class BlurLevelFusion(nn.Module):
    """Per-dimension softmax mix of L level embeddings and learned default tokens: L x (B, D) -> (B, D).

    The released code concatenates the default tokens to every row and sums ``tokens * weights`` over the token
    axis. The tokens are the same in every row, so here their weighted sum is one (D,) vector, and the levels are
    added to it one multiply-add at a time: the same function, without the (B, L + K, D) temporaries (5.6x
    faster forward and backward on the CPU at B = 1024, L = 8, D = 1024; benchmarks/profile_train.py).
    """

    def __init__(self, n_levels: int, dim: int, n_default_tokens: int = 4):
        super().__init__()
        self.default_tokens = nn.Parameter(torch.zeros(1, n_default_tokens, dim))
        self.logits = nn.Parameter(torch.rand(1, n_levels + n_default_tokens, dim))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=1)

    def forward(self, levels: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if isinstance(levels, torch.Tensor):  # (B, L, D)
            levels = levels.unbind(1)
        w = self.weights()[0]
        n = len(levels)
        out = (self.default_tokens[0] * w[n:]).sum(dim=0)  # (D,): the default tokens' share of every row
        for i, level in enumerate(levels):
            out = torch.addcmul(out, level, w[i])
        return out


class TwoWayFusion(nn.Module):
    """``softmax(w)[0] * a + softmax(w)[1] * b`` with learnable scalar logits ``w``."""

    def __init__(self, init: tuple[float, float] = (0.7, 0.3)):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(init, dtype=torch.float32))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.logits, dim=0)
        return w[0] * a + w[1] * b


class TargetModel(nn.Module):
    """Maps a dict ``{view name: (B, D) embeddings}`` to the (B, D) target embeddings."""

    def __init__(self, cfg: TargetConfig, dim: int):
        super().__init__()
        self.cfg = cfg
        self.blur = (
            BlurLevelFusion(len(cfg.blur_views), dim, cfg.n_default_tokens) if len(cfg.blur_views) >= 2 else None
        )
        self.evnet = TwoWayFusion(cfg.evnet_init) if cfg.evnet_view else None
        self.adapter = (
            nn.Sequential(
                nn.Linear(dim, cfg.adapter_hidden),
                nn.ELU(),
                nn.Dropout(cfg.adapter_dropout),
                nn.Linear(cfg.adapter_hidden, dim),
            )
            if cfg.adapter
            else None
        )
        self.register_buffer("centers", torch.zeros(len(self.required_views()) if cfg.center else 0, dim))
        self._center_row = {v: i for i, v in enumerate(self.required_views())}  # view -> row of ``centers``

    @torch.no_grad()
    def set_centers(self, views: dict[str, torch.Tensor]) -> None:
        """Store the mean embedding of every required view over ``views`` (the training images)."""
        if self.cfg.center:
            self.centers.copy_(
                torch.stack([views[v].double().mean(dim=0).to(self.centers.dtype) for v in self.required_views()])
            )

    def _view(self, views: dict[str, torch.Tensor], name: str) -> torch.Tensor:
        x = views[name]
        if self.cfg.center:
            x = x - self.centers[self._center_row[name]]
        return F.normalize(x, dim=-1)

    def required_views(self) -> list[str]:
        return self.cfg.required_views()

    def forward(self, views: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = [v for v in self.required_views() if v not in views]
        if missing:
            raise KeyError(f"target needs views {missing}; got {sorted(views)}")
        if self.blur is not None:
            x = self.blur([self._view(views, v) for v in self.cfg.blur_views])
        else:
            x = self._view(views, self.cfg.single_view)
        if self.evnet is not None:
            x = self.evnet(x, self._view(views, f"evnet:{self.cfg.evnet_view}"))
        if self.adapter is not None:
            x = self.adapter(x)
        return x
