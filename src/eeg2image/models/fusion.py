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
- **subject-aware layer router** (SAMGA, Jiang et al. 2026, LinJiang8/SAMGA ``SubjectAwareLayerMixer``): K layer
  embeddings of one image (``layer_views``, e.g. ``original@effnet-lite0:layer=3``) are projected (a pre-projector
  to ``projector_hidden``, shared when the layers have one width, then one Linear per layer to ``projector_dim``)
  and mixed with one weight per layer, ``softmax((q + r * b_subject) / temperature)``: global logits ``q``
  (``router_init``; SAMGA -|l - 28| / 4 over layers 20..36) and a per-subject bias ``b`` (zero at init), dropped
  for a sample with probability ``router_subject_dropout`` in training (``r`` = 0). Evaluation uses the global
  weights ``softmax(q / temperature)``, as SAMGA's scripts do (``--router_eval_mode global``), so the gallery does
  not depend on the subject;
- **linear projector** (Shallow Alignment, Du et al. 2026, eq. 2): the single (or blur-fused) embedding through
  ``Linear(D, projector_dim)`` (``projector_dim`` > 0);
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
    # SAMGA's subject-aware layer router (see the module's docstring); needs projector_dim
    layer_views: list[str] = field(default_factory=list)
    router_init: list[float] = field(default_factory=list)  # the global logits at init, one per layer (empty: 0)
    router_temperature: float = 1.0
    router_subject_dropout: float = 0.3
    # a linear image projector to projector_dim (0: none); the router's pre-projector width: projector_hidden
    projector_dim: int = 0
    projector_hidden: int = 1024

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
        check_range("train.target.projector_dim", self.projector_dim, 0)
        check_range("train.target.projector_hidden", self.projector_hidden, 1)
        check_range("train.target.router_temperature", self.router_temperature, 0, low_open=True)
        check_range("train.target.router_subject_dropout", self.router_subject_dropout, 0, 1, high_open=True)
        if self.layer_views:
            if len(self.layer_views) < 2 or len(set(self.layer_views)) != len(self.layer_views):
                raise ValueError(f"train.target.layer_views: expected 2 or more distinct views, got {self.layer_views}")
            if self.blur_views or self.uncertainty_views or self.evnet_view or self.center:
                raise ValueError(
                    "train.target.layer_views (the layer router) excludes blur_views, uncertainty_views, evnet_view "
                    "and center: choose one"
                )
            if not self.projector_dim:
                raise ValueError(
                    "train.target.layer_views needs train.target.projector_dim (the shared width), e.g. 512"
                )
        if self.projector_dim and self.evnet_view:
            raise ValueError("train.target.projector_dim and train.target.evnet_view exclude each other: choose one")
        if self.router_init and len(self.router_init) != len(self.layer_views):
            raise ValueError(
                f"train.target.router_init: {len(self.router_init)} logits for {len(self.layer_views)} layer views"
            )

    def required_views(self) -> list[str]:
        """The embedding views this target reads (``evnet:<view>`` is the EVNet encoder's view)."""
        views = list(self.layer_views) or list(self.blur_views) or list(self.uncertainty_views) or [self.plain_view]
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


class LayerRouter(nn.Module):
    """SAMGA's subject-aware layer mixer: K x (B, D_k) layer embeddings -> (B, P), one softmax weight per layer."""

    def __init__(
        self,
        dims: list[int],
        hidden: int,
        out: int,
        init: list[float] | None = None,
        temperature: float = 1.0,
        subject_dropout: float = 0.3,
        n_subjects: int = 10,
    ):
        super().__init__()
        k = len(dims)
        shared = len(set(dims)) == 1  # SAMGA: one pre-projector for the layers (all 3200-d)
        self.pre = nn.ModuleList([nn.Linear(dims[0], hidden)] if shared else [nn.Linear(d, hidden) for d in dims])
        self.proj = nn.ModuleList(nn.Linear(hidden, out) for _ in dims)
        self.global_logits = nn.Parameter(torch.tensor(list(init) if init else [0.0] * k, dtype=torch.float32))
        self.subject_bias = nn.Embedding(n_subjects + 1, k)  # row 0: the shared / unknown subject (LOSO)
        nn.init.zeros_(self.subject_bias.weight)
        self.drop = nn.Dropout(subject_dropout)  # keyed under training (models.dropout); rescaling undone below
        self.temperature, self.p = temperature, subject_dropout

    def weights(self, subject: torch.Tensor | None = None) -> torch.Tensor:
        """(K,) global weights, or (B, K) per sample in training with ``subject`` given."""
        logits = self.global_logits
        if self.training and subject is not None:
            keep = self.drop(torch.ones(subject.shape[0], 1, device=logits.device)) * (1 - self.p)
            logits = logits + keep * self.subject_bias(subject)
        return torch.softmax(logits / self.temperature, dim=-1)

    def forward(self, levels: list[torch.Tensor], subject: torch.Tensor | None = None) -> torch.Tensor:
        pre = list(self.pre) if len(self.pre) > 1 else [self.pre[0]] * len(levels)
        z = torch.stack([proj(p(x)) for x, p, proj in zip(levels, pre, self.proj, strict=True)], dim=-2)  # (B, K, P)
        return (self.weights(subject).unsqueeze(-1) * z).sum(dim=-2)


class TargetModel(nn.Module):
    """Maps a dict ``{view name: (B, D) embeddings}`` to the (B, P) target embeddings (P = ``projector_dim`` when
    set, else D); ``view_dims`` gives the router's layer views their own widths."""

    def __init__(self, cfg: TargetConfig, dim: int, view_dims: dict[str, int] | None = None, n_subjects: int = 10):
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.projector_dim or dim
        view_dims = view_dims or {}
        self.router = (
            LayerRouter(
                [view_dims.get(v, dim) for v in cfg.layer_views],
                cfg.projector_hidden,
                cfg.projector_dim,
                cfg.router_init,
                cfg.router_temperature,
                cfg.router_subject_dropout,
                n_subjects,
            )
            if cfg.layer_views
            else None
        )
        self.projector = nn.Linear(dim, cfg.projector_dim) if cfg.projector_dim and not cfg.layer_views else None
        self.blur = (
            BlurLevelFusion(len(cfg.blur_views), dim, cfg.n_default_tokens) if len(cfg.blur_views) >= 2 else None
        )
        self.evnet = TwoWayFusion(cfg.evnet_init) if cfg.evnet_view else None
        self.adapter = (
            nn.Sequential(
                nn.Linear(self.out_dim, cfg.adapter_hidden),
                nn.ELU(),
                nn.Dropout(cfg.adapter_dropout),
                nn.Linear(cfg.adapter_hidden, self.out_dim),
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

    def forward(self, views: dict[str, torch.Tensor], subject: torch.Tensor | None = None) -> torch.Tensor:
        missing = [v for v in self.required_views() if v not in views]
        if missing:
            raise KeyError(f"target needs views {missing}; got {sorted(views)}")
        if self.router is not None:
            x = self.router([self._view(views, v) for v in self.cfg.layer_views], subject)
        elif self.blur is not None:
            x = self.blur([self._view(views, v) for v in self.cfg.blur_views])
        else:
            x = self._view(views, self.cfg.single_view)
        if self.projector is not None:
            x = self.projector(x)
        if self.evnet is not None:
            x = self.evnet(x, self._view(views, f"evnet:{self.cfg.evnet_view}"))
        if self.adapter is not None:
            x = self.adapter(x)
        return x
