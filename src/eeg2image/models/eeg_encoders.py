"""EEG encoders, in a registry: ``build_eeg_encoder("ved", n_chans=63, n_times=250, out_dim=1024)``.

Every encoder is an :class:`EEGEncoder` and shares its one signature, after braindecode's
``EEGModuleMixin``: ``Encoder(n_chans, n_times, out_dim, sfreq=250.0, n_subjects=10, *, <its options>)``.
Each encoder names its own options as keyword-only parameters with defaults (none swallows unknown keywords),
:meth:`EEGEncoder.known_options` lists them, :func:`build_eeg_encoder` refuses any other key with a
:class:`~eeg2image.io.ConfigError` naming it, and :meth:`EEGEncoder.get_config` /
:func:`build_eeg_encoder_from_config` write an encoder down as a JSON-able dict and build it again.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..io import ConfigError, DataFormatError, check_option, check_range

__all__ = [
    "EEG_ENCODERS",
    "EEGEncoder",
    "build_eeg_encoder",
    "build_eeg_encoder_from_config",
    "check_eeg_encoder_name",
    "register_eeg_encoder",
]

_SIGNATURE = ("n_chans", "n_times", "out_dim", "sfreq", "n_subjects")
_CONFIG_KEYS = ("name", *_SIGNATURE, "options")


def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists and classes as dotted import paths (as braindecode's configs write them)."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class EEGEncoder(nn.Module):
    """Base class of the EEG encoders: one signature, named options, and a config to rebuild one from.

    Contract (after braindecode's ``EEGModuleMixin``):

    - ``__init__(n_chans, n_times, out_dim, sfreq=250.0, n_subjects=10, *, <options>)``: the five shared
      arguments are stored as attributes of the same names; ``sfreq`` is the sampling rate in Hz (used by
      encoders whose layers are sized in time, ignored by the others) and ``n_subjects`` the number of
      training subjects (used by subject-aware encoders). Each subclass declares its own options as
      keyword-only parameters with defaults, calls ``super().__init__(n_chans, n_times, out_dim, sfreq,
      n_subjects)`` and takes no ``**kwargs``: a misspelt option is an error, never silently dropped.
      This base class creates no parameters and draws no random numbers, so a subclass's initial weights
      depend only on its own layers and the torch seed.
    - ``forward(x, subject=None)``: EEG ``x`` (B, n_chans, n_times) -> embeddings (B, out_dim).
      ``subject`` is None or a (B,) tensor of 1-based subject numbers; subject-aware encoders use it,
      the others ignore it.
    - :meth:`known_options` (classmethod): the options an encoder takes, with their defaults.
    - :meth:`get_config`: ``{"name", "n_chans", "n_times", "out_dim", "sfreq", "n_subjects", "options"}``,
      JSON-able, with the options given at construction (those that differ from their defaults);
      :meth:`from_config` / :func:`build_eeg_encoder_from_config` build the same encoder again (with the same
      torch seed, the same weights).
    """

    registry_name: ClassVar[str | None] = None  # set by @register_eeg_encoder

    def __init__(self, n_chans: int, n_times: int, out_dim: int, sfreq: float = 250.0, n_subjects: int = 10):
        super().__init__()
        self.n_chans = n_chans
        self.n_times = n_times
        self.out_dim = out_dim
        self.sfreq = sfreq
        self.n_subjects = n_subjects
        self._options: dict[str, Any] = {}

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_chans, n_times) EEG, optional (B,) 1-based subject numbers -> (B, out_dim)."""
        raise NotImplementedError

    @classmethod
    def _signature_options(cls) -> dict[str, Any]:
        """The keyword-only parameters of ``cls.__init__`` with their defaults."""
        params = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}

    @classmethod
    def known_options(cls) -> dict[str, Any]:
        """The options this encoder takes (its keyword-only constructor parameters), with their defaults."""
        return cls._signature_options()

    def _record_options(self, **values: Any) -> None:
        """Keep, for :meth:`get_config`, the options whose value differs from the signature's default."""
        defaults = self._signature_options()
        self._options = {
            k: v for k, v in values.items() if v is not defaults[k] and _jsonable(v) != _jsonable(defaults[k])
        }

    def get_config(self) -> dict[str, Any]:
        """A JSON-able dict from which :meth:`from_config` builds this encoder again (without its weights)."""
        name = type(self).registry_name
        if name is None or EEG_ENCODERS.get(name) is not type(self):
            raise TypeError(f"{type(self).__name__} is not a registered EEG encoder; register it to get a config")
        return {
            "name": name,
            **{key: getattr(self, key) for key in _SIGNATURE},
            "options": {k: _jsonable(v) for k, v in self._options.items()},
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, where: str = "config") -> EEGEncoder:
        """The encoder that :meth:`get_config` describes (any encoder from ``EEGEncoder.from_config``; from a
        subclass, only that encoder)."""
        for key in config:
            check_option("EEG encoder config key", key, _CONFIG_KEYS, where=where)
        missing = [k for k in ("name", "n_chans", "n_times", "out_dim") if k not in config]
        if missing:
            raise ConfigError(f"{where}: EEG encoder config lacks {', '.join(missing)}")
        name = config["name"]
        if cls is not EEGEncoder and name != cls.registry_name:
            raise ConfigError(f"{where}: a config of EEG encoder {name!r} given to {cls.__name__}")
        signature = {k: config[k] for k in _SIGNATURE if k in config}
        return build_eeg_encoder(name, **signature, where=f"{where}.options", **dict(config.get("options") or {}))


EEG_ENCODERS: dict[str, type[EEGEncoder]] = {}


def register_eeg_encoder(name: str):
    """Class decorator: ``EEG_ENCODERS[name] = cls`` for an :class:`EEGEncoder` subclass."""

    def deco(cls: type[EEGEncoder]) -> type[EEGEncoder]:
        if not (isinstance(cls, type) and issubclass(cls, EEGEncoder)):
            raise TypeError(f"EEG encoder {name!r} must subclass EEGEncoder, not {cls!r}")
        EEG_ENCODERS[name] = cls
        cls.registry_name = name
        return cls

    return deco


def build_eeg_encoder(
    name: str,
    *,
    n_chans: int,
    n_times: int,
    out_dim: int,
    sfreq: float = 250.0,
    n_subjects: int = 10,
    where: str = "eeg_options",
    **options: Any,
) -> EEGEncoder:
    """The registered encoder ``name`` with the shared signature and its ``options``.

    An unknown ``name`` or option key raises :class:`~eeg2image.io.ConfigError`; an unknown option is named
    ``{where}.{key}`` with the encoder's known options (the trainer passes ``where="train.eeg_options"``).
    Option values are passed as given.
    """
    check_eeg_options(name, options, where)
    return EEG_ENCODERS[name](n_chans, n_times, out_dim, sfreq, n_subjects, **options)


def check_eeg_options(name: str, options: Mapping[str, Any], where: str = "eeg_options") -> None:
    """Refuse an unknown encoder ``name`` or option key (a ``ConfigError`` naming ``{where}.{key}`` and the
    encoder's known options), before anything is built."""
    check_eeg_encoder_name(name)
    known = list(EEG_ENCODERS[name].known_options())
    for key, value in options.items():
        check_option("option", key, known, where=f"{where}.{key} (EEG encoder {name!r})")
        if "drop" in key and isinstance(value, int | float) and not isinstance(value, bool):
            check_range(f"{where}.{key}", value, 0, 1, high_open=True)  # a dropout probability


def check_eeg_encoder_name(name: str, where: str | None = None) -> None:
    """Refuse an unknown encoder name by name (a ``braindecode:<Model>`` is registered here on first use)."""
    if name.startswith(BRAINDECODE_PREFIX):
        braindecode_encoder(name)
    known = [*sorted(n for n in EEG_ENCODERS if not n.startswith(BRAINDECODE_PREFIX)), "braindecode:<Model>"]
    if name not in EEG_ENCODERS:
        check_option("EEG encoder", name, known, where=where)


def build_eeg_encoder_from_config(config: Mapping[str, Any], *, where: str = "config") -> EEGEncoder:
    """The encoder that ``config`` (from :meth:`EEGEncoder.get_config`) describes."""
    return EEGEncoder.from_config(config, where=where)


class _AbsConv2d(nn.Conv2d):
    """Conv2d whose effective weights are ``|w|``: non-negative spatial filters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.abs(), self.bias, self.stride, self.padding, self.dilation, self.groups)


@register_eeg_encoder("ved")
class MultiLevelBlurEEGEncoder(EEGEncoder):
    """The multi-level blur work's EEG encoder (Liu et al., AAAI 2026, makeitperfect/VisualEEGDecoding).

    (B, C=63, T=250) -> non-negative spatial conv C->25 (kernel (C, 1), no bias; |w| at every forward)
    -> BatchNorm(25) -> shared temporal MLP T->200 (ELU, dropout 0.25) ->200 (ELU, dropout 0.65)
    -> flatten 25*200 = 5000 -> Linear -> (B, out_dim=1024). No output norm (the loss sees its length).
    The reference took ``abs`` of the stored weights in place; using ``|w|`` in the forward pass is the
    same function with a well-defined gradient.

    Options: ``n_filters`` (spatial filters), ``hidden`` (temporal MLP width), ``dropout`` (the two MLP
    dropout rates).
    """

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        out_dim: int,
        sfreq: float = 250.0,
        n_subjects: int = 10,
        *,
        n_filters: int = 25,
        hidden: int = 200,
        dropout: tuple[float, float] = (0.25, 0.65),
    ):
        super().__init__(n_chans, n_times, out_dim, sfreq, n_subjects)
        self._record_options(n_filters=n_filters, hidden=hidden, dropout=dropout)
        self.spatial = _AbsConv2d(1, n_filters, (n_chans, 1), bias=False)
        self.bn = nn.BatchNorm2d(n_filters)
        self.temporal = nn.Sequential(
            nn.Linear(n_times, hidden),
            nn.ELU(),
            nn.Dropout(dropout[0]),
            nn.Linear(hidden, hidden),
            nn.ELU(),
            nn.Dropout(dropout[1]),
        )
        self.head = nn.Linear(n_filters * hidden, out_dim)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bn(self.spatial(x.unsqueeze(1))).squeeze(2)  # (B, F, T)
        return self.head(self.temporal(h).flatten(1))


def self_attention(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Multi-head self-attention of (B, N, d) tokens with ``m``'s ``q``, ``k``, ``v``, ``o`` Linear layers,
    ``n_heads``, ``d_head`` and ``attn_drop`` (an ``nn.Dropout`` module on the attention weights, so that
    stacked multi-seed training keys it per seed)."""
    b, n, _ = x.shape
    q, k, v = (f(x).view(b, n, m.n_heads, m.d_head).transpose(1, 2) for f in (m.q, m.k, m.v))
    a = m.attn_drop(torch.softmax(q @ k.transpose(-1, -2) / m.d_head**0.5, dim=-1))
    return m.o((a @ v).transpose(1, 2).reshape(b, n, -1))


class TSConv(nn.Module):
    """NICE's temporal-spatial convolution (Song et al., ICLR 2024): (B, C, T) -> (B, 40 * T')."""

    def __init__(self, n_chans: int, n_times: int, width: int = 40, dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, (1, 25)),
            nn.AvgPool2d((1, 51), (1, 5)),
            nn.BatchNorm2d(width),
            nn.ELU(),
            nn.Conv2d(width, width, (n_chans, 1)),
            nn.BatchNorm2d(width),
            nn.ELU(),
            nn.Dropout(dropout),
            nn.Conv2d(width, width, (1, 1)),
        )
        self.out_features = width * ((n_times - 24 - 51) // 5 + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the temporal conv (kernel 25) and the average pool (51, stride 5) are both linear in time, so they are
        # one strided conv whose kernel (75) is the conv's kernel smeared by the box: the same function (to
        # float rounding; tested against the two layers) at a third of the cost, in one kernel call
        conv, pool = self.net[0], self.net[1]
        k, stride = pool.kernel_size[1], pool.stride[1]
        w = conv.weight.reshape(conv.out_channels, 1, conv.kernel_size[1])
        box = torch.full((1, 1, k), 1.0 / k, dtype=w.dtype, device=w.device)
        fused = F.conv1d(F.pad(w, (k - 1, k - 1)), box).unsqueeze(2)  # (width, 1, 1, 25 + k - 1)
        h = F.conv2d(x.unsqueeze(1), fused, conv.bias, stride=(1, stride))
        return self.net[2:](h).permute(0, 3, 2, 1).flatten(1)  # b e 1 w -> b (w e)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layers one by one, as NICE runs them (what ``forward`` computes)."""
        return self.net(x.unsqueeze(1)).permute(0, 3, 2, 1).flatten(1)


class ProjectionHead(nn.Module):
    """Linear -> residual (GELU, Linear, Dropout) -> LayerNorm (NICE / ATM)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.5):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.residual = nn.Sequential(nn.GELU(), nn.Linear(out_dim, out_dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        return self.norm(h + self.residual(h))


@register_eeg_encoder("nice")
class NICEEncoder(EEGEncoder):
    """NICE (Song et al., ICLR 2024, eeyhsong/NICE-EEG): TSConv (B, 63, 250) -> 1440 -> projection head.
    Conv and Linear weights ~ N(0, 0.02), BatchNorm weights ~ N(1, 0.02), as NICE initialises them.
    No options."""

    def __init__(self, n_chans: int, n_times: int, out_dim: int, sfreq: float = 250.0, n_subjects: int = 10):
        super().__init__(n_chans, n_times, out_dim, sfreq, n_subjects)
        self.tsconv = TSConv(n_chans, n_times)
        self.proj = ProjectionHead(self.tsconv.out_features, out_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self.tsconv(x))


@register_eeg_encoder("atms")
class ATMSEncoder(EEGEncoder):
    """ATM-S (Li et al., NeurIPS 2024, dongyangli-del/EEG_Image_decode): each channel's time series is a
    token (Linear T->T), a learned subject token is prepended, one post-norm transformer layer (4 heads,
    FFN 256, GELU, dropout 0.25) + LayerNorm, then TSConv over the channel tokens and a projection head.

    Fixed against the reference: all ``n_chans`` channel tokens go on to TSConv (the reference sliced
    ``[:, :63]`` and so dropped O2 while keeping the subject token), and subjects 1..n_subjects (the shared
    signature's ``n_subjects``) each get their own token (the reference's 10-row table sent subject 10 to the
    shared token); subject 0 / None / unknown numbers use the shared token (leave-one-subject-out).

    Options: ``n_heads``, ``d_ff`` (feed-forward width), ``dropout``.
    """

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        out_dim: int,
        sfreq: float = 250.0,
        n_subjects: int = 10,
        *,
        n_heads: int = 4,
        d_ff: int = 256,
        dropout: float = 0.25,
    ):
        super().__init__(n_chans, n_times, out_dim, sfreq, n_subjects)
        self._record_options(n_heads=n_heads, d_ff=d_ff, dropout=dropout)
        self.embed = nn.Linear(n_times, n_times)
        self.subject_tokens = nn.Embedding(n_subjects + 1, n_times)  # row 0: shared / unknown subject
        self.dropout = nn.Dropout(dropout)
        d_head = n_times // n_heads  # ATM projects to n_heads * (T // n_heads) dims when T is not divisible
        # Attention written out (not nn.MultiheadAttention) so that its dropout is an nn.Dropout module, which
        # stacked multi-seed training replaces by per-seed keyed dropout.
        self.q = nn.Linear(n_times, n_heads * d_head)
        self.k = nn.Linear(n_times, n_heads * d_head)
        self.v = nn.Linear(n_times, n_heads * d_head)
        self.o = nn.Linear(n_heads * d_head, n_times)
        self.attn_drop = nn.Dropout(dropout)
        self.n_heads, self.d_head = n_heads, d_head
        self.norm1, self.norm2, self.norm_out = nn.LayerNorm(n_times), nn.LayerNorm(n_times), nn.LayerNorm(n_times)
        self.ff = nn.Sequential(
            nn.Linear(n_times, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, n_times), nn.Dropout(dropout)
        )
        self.tsconv = TSConv(n_chans, n_times)
        self.proj = ProjectionHead(self.tsconv.out_features, out_dim)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        return self_attention(self, x)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        b = x.shape[0]
        if subject is None:
            idx = torch.zeros(b, dtype=torch.long, device=x.device)
        else:
            idx = subject.long().to(x.device)
            idx = torch.where((idx >= 1) & (idx <= self.n_subjects), idx, torch.zeros_like(idx))
        tokens = torch.cat([self.subject_tokens(idx).unsqueeze(1), self.embed(x)], dim=1)  # (B, 1 + C, T)
        h = self.dropout(tokens)
        h = self.norm1(h + self.dropout(self._attention(h)))
        h = self.norm_out(self.norm2(h + self.ff(h)))
        return self.proj(self.tsconv(h[:, 1:]))  # every channel token, the subject token dropped


def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    """(n, d) sine/cosine positions (Vaswani et al. 2017); an odd ``d`` gets one sine more than cosines."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe


class PostNormTransformerLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` (post-norm, ReLU) written out so that every dropout, the attention
    weights' included, is an ``nn.Dropout`` module (stacked multi-seed training keys them per seed). Its
    initial weights follow PyTorch's: q, k, v as one Xavier-uniform (3d, d) matrix, zero in/out biases."""

    def __init__(self, d: int, n_heads: int = 1, d_ff: int = 2048, dropout: float = 0.1):
        super().__init__()
        if d % n_heads:
            raise ConfigError(f"the transformer's width {d} is not divisible by its {n_heads} heads")
        self.n_heads, self.d_head = n_heads, d // n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        qkv = torch.empty(3 * d, d)
        nn.init.xavier_uniform_(qkv)
        for lin, w in zip((self.q, self.k, self.v), qkv.split(d), strict=True):
            lin.weight.data.copy_(w)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.o.bias)
        self.attn_drop, self.drop1, self.drop2, self.drop_ff = (nn.Dropout(dropout) for _ in range(4))
        self.ff1, self.ff2 = nn.Linear(d, d_ff), nn.Linear(d_ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, d) -> (B, N, d)."""
        x = self.norm1(x + self.drop1(self_attention(self, x)))
        return self.norm2(x + self.drop2(self.ff2(self.drop_ff(torch.relu(self.ff1(x))))))


@register_eeg_encoder("cogcap")
class CogcapExpert(EEGEncoder):
    """One modality expert of CognitionCapturerPro (Zhang et al., CVPR 2026, XiaoZhangYES/CognitionCapturerPro
    ``Cogcap``, revised from ATM): one post-norm transformer layer over time tokens (width = channels, 1 head,
    FF 2048, dropout 0.1, sinusoidal positions), ``Linear(T, T)`` over time (the released subject-wise table
    uses its row 0 only), then NICE's TSConv and projection head (1440 -> ``out_dim``), both with ``dropout``
    (0.3 as released). Options: ``n_heads``, ``d_ff``, ``attn_dropout``, ``dropout``."""

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        out_dim: int,
        sfreq: float = 250.0,
        n_subjects: int = 10,
        *,
        n_heads: int = 1,
        d_ff: int = 2048,
        attn_dropout: float = 0.1,
        dropout: float = 0.3,
    ):
        super().__init__(n_chans, n_times, out_dim, sfreq, n_subjects)
        self._record_options(n_heads=n_heads, d_ff=d_ff, attn_dropout=attn_dropout, dropout=dropout)
        self.register_buffer("positions", sinusoidal_positions(n_times, n_chans), persistent=False)
        self.attention = PostNormTransformerLayer(n_chans, n_heads, d_ff, attn_dropout)
        self.time_linear = nn.Linear(n_times, n_times)
        self.tsconv = TSConv(n_chans, n_times, dropout=dropout)
        self.proj = ProjectionHead(self.tsconv.out_features, out_dim, dropout=dropout)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        h = self.attention(x.transpose(1, 2) + self.positions)  # (B, T, C): one token per time point
        return self.proj(self.tsconv(self.time_linear(h.transpose(1, 2))))


@register_eeg_encoder("eegproject")
class EEGProjectEncoder(EEGEncoder):
    """UBP's ``EEGProjectLayer`` (Wu et al., CVPR 2025, HaitaoWuTJU/Uncertainty-aware-Blur-Prior): flatten
    (B, C=17, T=250) -> 4250 -> Linear -> residual (GELU, Linear, Dropout 0.3) -> LayerNorm -> (B, out_dim).
    Options: ``dropout``."""

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        out_dim: int,
        sfreq: float = 250.0,
        n_subjects: int = 10,
        *,
        dropout: float = 0.3,
    ):
        super().__init__(n_chans, n_times, out_dim, sfreq, n_subjects)
        self._record_options(dropout=dropout)
        self.proj = ProjectionHead(n_chans * n_times, out_dim, dropout)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(x.flatten(1))


@register_eeg_encoder("linear")
class LinearEncoder(EEGEncoder):
    """Baseline: flatten (C * T) -> Linear -> out_dim (ridge-like when trained with weight decay). No options."""

    def __init__(self, n_chans: int, n_times: int, out_dim: int, sfreq: float = 250.0, n_subjects: int = 10):
        super().__init__(n_chans, n_times, out_dim, sfreq, n_subjects)
        self.linear = nn.Linear(n_chans * n_times, out_dim)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x.flatten(1))


class ClosedFormEncoder(EEGEncoder):
    """Base of the classical baselines, fitted in closed form (``training.closed_form``), never by gradient steps:
    ``forward(x) = ((features(x) - x_mean) / x_scale) @ weight + y_mean``, every part a buffer (saved in the weights
    file like any encoder's, so ``evaluate`` scores them as it scores the others)."""

    closed_form: ClassVar[bool] = True

    def _ridge_buffers(self, n_features: int) -> None:
        self.register_buffer("x_mean", torch.zeros(n_features))
        self.register_buffer("x_scale", torch.ones(n_features))
        self.register_buffer("weight", torch.zeros(n_features, self.out_dim))
        self.register_buffer("y_mean", torch.zeros(self.out_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) EEG -> (B, P) the features the ridge map reads."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return ((self.features(x) - self.x_mean) / self.x_scale) @ self.weight + self.y_mean


@register_eeg_encoder("ridge")
class RidgeEEGEncoder(ClosedFormEncoder):
    """Ridge regression from the EEG to the target embedding: every ``time_stride``-th sample of every channel,
    flattened and standardised, one closed-form map (``models.ridge``), the penalty chosen on the validation
    concepts' retrieval (the rule that selects every model here). The field's linear baseline (Perceptogram,
    desa-lab; the brain-decoding literature's ``RidgeCV``). Options: ``time_stride`` (2: 63 x 125 features)."""

    def __init__(
        self, n_chans: int, n_times: int, out_dim: int, sfreq: float = 250.0, n_subjects: int = 10, *, time_stride=2
    ):
        super().__init__(n_chans, n_times, out_dim, sfreq, n_subjects)
        check_range("time_stride", time_stride, 1)
        self._record_options(time_stride=time_stride)
        self.time_stride = int(time_stride)
        self._ridge_buffers(n_chans * math.ceil(n_times / self.time_stride))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :: self.time_stride].flatten(1)


@register_eeg_encoder("riemann")
class TangentSpaceRidgeEncoder(ClosedFormEncoder):
    """Riemannian tangent space + ridge (Barachant et al. 2012, IEEE TBME; 2013, Neurocomputing; pyRiemann's
    ``Covariances`` -> ``Shrinkage`` -> ``TangentSpace``; NeuralBench's classical baseline): each trial's spatial
    covariance (``np.cov``, shrunk towards ``trace / C`` by ``shrinkage`` as scikit-learn's ``shrunk_covariance``),
    whitened by the training trials' Riemannian mean, its matrix logarithm's upper triangle (off-diagonal x sqrt 2),
    then the ridge map. The reference mean is fitted with pyRiemann; the forward pass is written in torch and equals
    pyRiemann's ``transform`` (tested). Options: ``shrinkage`` (0.1)."""

    def __init__(
        self, n_chans: int, n_times: int, out_dim: int, sfreq: float = 250.0, n_subjects: int = 10, *, shrinkage=0.1
    ):
        super().__init__(n_chans, n_times, out_dim, sfreq, n_subjects)
        check_range("shrinkage", shrinkage, 0, 1)
        self._record_options(shrinkage=shrinkage)
        self.shrinkage = float(shrinkage)
        self.register_buffer("ref_isqrt", torch.eye(n_chans, dtype=torch.float64))  # C_ref^(-1/2)
        rows, cols = torch.triu_indices(n_chans, n_chans)
        self.register_buffer("tri_rows", rows, persistent=False)
        self.register_buffer("tri_cols", cols, persistent=False)
        coeffs = torch.where(rows == cols, 1.0, math.sqrt(2.0)).to(torch.float64)
        self.register_buffer("tri_coeffs", coeffs, persistent=False)
        self._ridge_buffers(len(rows))

    def covariances(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, C) shrunk covariances in float64."""
        x = x.double()
        x = x - x.mean(dim=-1, keepdim=True)
        cov = x @ x.transpose(-1, -2) / (x.shape[-1] - 1)
        mu = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1) / cov.shape[-1]
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        return (1 - self.shrinkage) * cov + self.shrinkage * mu[..., None, None] * eye

    def features(self, x: torch.Tensor) -> torch.Tensor:
        r = self.ref_isqrt.double()
        w, v = torch.linalg.eigh(r @ self.covariances(x) @ r)
        logm = (v * torch.log(w.clamp_min(1e-300))[..., None, :]) @ v.transpose(-1, -2)
        return (logm[..., self.tri_rows, self.tri_cols] * self.tri_coeffs).to(x.dtype)


class _BraindecodeDefault:
    """Marks an option left to the braindecode model's own default."""

    def __repr__(self) -> str:
        return "<braindecode default>"


BRAINDECODE_DEFAULT: Any = _BraindecodeDefault()


class _BraindecodeEncoder(EEGEncoder):
    """A braindecode model (``braindecode.models.<model_name>``) with ``n_outputs=out_dim``.

    Its options are the braindecode class's own constructor parameters, less those filled from the shared
    signature or never used here (:attr:`filled`); each is declared keyword-only with the default
    :data:`BRAINDECODE_DEFAULT` (the braindecode model's default applies), and only the options given go on to
    braindecode. :meth:`known_options` reads the defaults off the braindecode signature. A class-valued option
    (``activation`` ...) may be given as its dotted import path, as braindecode's configs write it.
    """

    model_name: ClassVar[str] = ""
    # Filled here (n_chans, n_outputs, n_times, sfreq) or unused: the channel info / window alternatives, and
    # braindecode's old aliases (n_classes, in_chans, input_window_samples) which its models no longer name.
    filled: ClassVar[tuple[str, ...]] = (
        "n_chans",
        "n_outputs",
        "n_times",
        "sfreq",
        "chs_info",
        "input_window_seconds",
        "n_classes",
        "in_chans",
        "input_window_samples",
    )

    @classmethod
    def braindecode_class(cls) -> type[nn.Module]:
        import braindecode.models as bm

        return getattr(bm, cls.model_name)

    @classmethod
    def braindecode_options(cls) -> dict[str, Any]:
        """The braindecode class's named constructor parameters less :attr:`filled`, with their defaults."""
        params = inspect.signature(cls.braindecode_class().__init__).parameters.values()
        return {
            p.name: p.default
            for p in params
            if p.name != "self"
            and p.name not in cls.filled
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }

    @classmethod
    def known_options(cls) -> dict[str, Any]:
        """:meth:`braindecode_options`, where this wrapper's own default (not :data:`BRAINDECODE_DEFAULT`) wins."""
        own = cls._signature_options()
        return {
            **{
                k: own[k] if own.get(k, BRAINDECODE_DEFAULT) is not BRAINDECODE_DEFAULT else v
                for k, v in cls.braindecode_options().items()
            },
            **{k: own[k] for k in PRETRAINED_OPTIONS if k in own},
        }

    @classmethod
    def _options_of(cls, values: dict[str, Any]) -> dict[str, Any]:
        """This wrapper's options out of its ``__init__``'s ``locals()``."""
        return {k: values[k] for k in cls._signature_options()}

    def _build(self, given: dict[str, Any], resolved: dict[str, Any] | None = None) -> None:
        """Build ``self.net`` from the ``given`` options (those not :data:`BRAINDECODE_DEFAULT`) updated with
        ``resolved`` (defaults computed here)."""
        from braindecode.models.util import resolve_type_kwargs

        given = {k: v for k, v in given.items() if v is not BRAINDECODE_DEFAULT}
        self._record_options(**given)
        cls = self.braindecode_class()
        kwargs = resolve_type_kwargs(cls, {**given, **(resolved or {})})
        self.net = cls(n_chans=self.n_chans, n_outputs=self.out_dim, n_times=self.n_times, sfreq=self.sfreq, **kwargs)

    def _load_pretrained(self, source: str, freeze: bool) -> None:
        """Start ``self.net`` from pretrained weights: ``source``'s ``model.safetensors`` (a local folder or a Hugging
        Face repo in the cache, as braindecode's ``save_pretrained`` / ``push_to_hub`` write them; never downloaded).
        Every tensor of the net is loaded but those of one module, the output layer (rebuilt for ``out_dim``); any
        other mismatch (channels, times, options) is refused by name. ``freeze``: only that output layer trains (a
        linear probe of the frozen network; its BatchNorm statistics still follow the data in training mode)."""
        from safetensors.torch import load_file

        from ..features.weights import file_fingerprint, resolve_hf_folder

        what = f"braindecode {self.model_name} weights"
        path = resolve_hf_folder(source, ("model.safetensors",), what) / "model.safetensors"
        saved = load_file(str(path))
        own = self.net.state_dict()
        loaded = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
        fresh = sorted(k for k in own if k not in loaded)
        left = sorted(k for k in saved if k not in loaded)
        modules = {k.split(".")[0] for k in fresh + left}
        if not loaded or len(modules) > 1:
            shown = ", ".join(f"{k} {tuple(saved[k].shape)}" for k in left[:3]) or "none"
            raise DataFormatError(
                f"{path}: not the weights of {self.model_name} on {self.n_chans} channels x {self.n_times} samples "
                f"with these options ({len(loaded)} of {len(own)} tensors fit; beyond the output layer, the file's "
                f"{shown} differ): pretrain on this montage and window, or choose them to match"
            )
        if freeze and not fresh:
            raise ConfigError(f"{source}: every tensor came from the file, so freeze would leave nothing to train")
        self.net.load_state_dict(loaded, strict=False)
        if freeze:
            for name, param in self.net.named_parameters():
                param.requires_grad_(name in fresh)
        self.pretrained = {"source": source, "weights": file_fingerprint(path), "fresh": sorted(modules)}

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        out = self.net(x)
        return out[0] if isinstance(out, tuple | list) else out  # a few models return (output, extras)


_D = BRAINDECODE_DEFAULT
#: The generic wrapper's own options: pretrained weights (a folder or a cached HF repo) and whether to freeze them;
#: the channels' names of a montage-aware model (filled from the data by the trainer).
PRETRAINED_OPTIONS = ("pretrained", "freeze", "ch_names")


def channel_positions(ch_names: list[str], sfreq: float) -> list[dict]:
    """braindecode's ``chs_info`` for ``ch_names``: MNE's channel records with the positions of the standard 10-05
    montage (THINGS-EEG2's 63 channels are 10-10 names); an unknown name is refused by name."""
    import mne

    info = mne.create_info(ch_names, sfreq, "eeg")
    try:
        info.set_montage("standard_1005", on_missing="raise")
    except ValueError as exc:
        raise ConfigError(
            f"ch_names: {str(exc).splitlines()[0]} (positions come from the standard 10-05 montage)"
        ) from None
    return [dict(ch) for ch in info["chs"]]


#: ``braindecode:<Name>``: any braindecode model by its class name, through the same wrapper.
BRAINDECODE_PREFIX = "braindecode:"


def braindecode_models() -> list[str]:
    """The class names of every braindecode model (``EEGModuleMixin`` subclasses in ``braindecode.models``)."""
    import braindecode.models as bm
    from braindecode.models.base import EEGModuleMixin

    return sorted(
        n
        for n in bm.__all__
        if isinstance(getattr(bm, n, None), type)
        and issubclass(getattr(bm, n), EEGModuleMixin)
        and getattr(bm, n) is not EEGModuleMixin
    )


def braindecode_encoder(name: str) -> type[EEGEncoder]:
    """The registered encoder ``braindecode:<Model>`` (made and registered on first use): the braindecode class
    ``<Model>`` with ``n_outputs=out_dim``; its options are that class's own constructor parameters (less the
    shared signature's), declared keyword-only so that a misspelt one is refused by name."""
    if name in EEG_ENCODERS:
        return EEG_ENCODERS[name]
    model = name.removeprefix(BRAINDECODE_PREFIX)
    check_option("braindecode model", model, braindecode_models(), where=name)
    base = type(f"Braindecode{model}Encoder", (_BraindecodeEncoder,), {"model_name": model})
    options = {k: v for k, v in base.braindecode_options().items() if k not in _SIGNATURE}  # BrainModule's n_subjects
    takes_montage = "chs_info" in inspect.signature(base.braindecode_class().__init__).parameters

    def __init__(
        self,
        n_chans,
        n_times,
        out_dim,
        sfreq=250.0,
        n_subjects=10,
        pretrained=None,
        freeze=False,
        ch_names=None,
        **given,
    ):
        for key in given:
            check_option("option", key, [*options, *PRETRAINED_OPTIONS], where=f"{name} options")
        if freeze and not pretrained:
            raise ConfigError(f"{name} options: freeze needs pretrained (a folder or a Hugging Face repo id)")
        EEGEncoder.__init__(self, n_chans, n_times, out_dim, sfreq, n_subjects)
        montage = {}
        if ch_names is not None:
            if len(ch_names) != n_chans:
                raise ConfigError(f"{name} options: ch_names names {len(ch_names)} channels, the EEG has {n_chans}")
            montage = {"chs_info": channel_positions(list(ch_names), sfreq)}
        try:  # the montage goes only to a model that asks for it (BENDR, say, takes chs_info of its own montage only)
            self._build({k: given.get(k, _D) for k in options})
        except (ValueError, TypeError) as exc:
            if not montage or "chs_info" not in str(exc):
                raise
            self._build({k: given.get(k, _D) for k in options}, montage)
        if ch_names is not None:
            self._options["ch_names"] = list(ch_names)
        if pretrained:
            self._load_pretrained(str(pretrained), bool(freeze))
            self._options.update(pretrained=str(pretrained), **({"freeze": True} if freeze else {}))

    shared = [
        inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, **({"default": d} if d is not None else {}))
        for k, d in (("n_chans", None), ("n_times", None), ("out_dim", None), ("sfreq", 250.0), ("n_subjects", 10))
    ]
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *shared]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=_D) for k in options]
        + [
            inspect.Parameter("pretrained", inspect.Parameter.KEYWORD_ONLY, default=None),
            inspect.Parameter("freeze", inspect.Parameter.KEYWORD_ONLY, default=False),
        ]
        # a model whose constructor takes chs_info is given the data's channels by the trainer (used if it asks)
        + ([inspect.Parameter("ch_names", inspect.Parameter.KEYWORD_ONLY, default=None)] if takes_montage else [])
    )
    doc = (
        f"braindecode's ``{model}`` (``braindecode.models.{model}``; its docstring cites its paper) with an "
        f"``out_dim`` output layer. Options: its own constructor parameters ({', '.join(options) or 'none'}); "
        "``pretrained``: start from weights in a folder or the Hugging Face cache (its foundation models' published "
        "checkpoints, never downloaded), fine-tuned, or with ``freeze: true`` frozen and probed by a new output layer."
    )
    cls = type(f"Braindecode{model}Encoder", (base,), {"__init__": __init__, "__doc__": doc})
    return register_eeg_encoder(name)(cls)


@register_eeg_encoder("eegnet")
class EEGNetEncoder(_BraindecodeEncoder):
    """EEGNet (Lawhern et al. 2018, J. Neural Eng.) from braindecode, with an ``out_dim`` output layer.
    Options: braindecode ``EEGNet``'s (``F1``, ``D``, ``kernel_length``, ``drop_prob`` ...)."""

    model_name = "EEGNet"

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        out_dim: int,
        sfreq: float = 250.0,
        n_subjects: int = 10,
        *,
        final_conv_length: Any = _D,
        pool_mode: Any = _D,
        F1: Any = _D,
        D: Any = _D,
        F2: Any = _D,
        kernel_length: Any = _D,
        depthwise_kernel_length: Any = _D,
        pool1_kernel_size: Any = _D,
        pool2_kernel_size: Any = _D,
        conv_spatial_max_norm: Any = _D,
        activation: Any = _D,
        batch_norm_momentum: Any = _D,
        batch_norm_affine: Any = _D,
        batch_norm_eps: Any = _D,
        drop_prob: Any = _D,
        final_layer_with_constraint: Any = _D,
        norm_rate: Any = _D,
    ):
        super().__init__(n_chans, n_times, out_dim, sfreq, n_subjects)
        self._build(self._options_of(locals()))


@register_eeg_encoder("shallow")
class ShallowConvNetEncoder(_BraindecodeEncoder):
    """ShallowConvNet / ShallowFBCSPNet (Schirrmeister et al. 2017, Hum. Brain Mapp.) from braindecode.

    Deliberate difference: braindecode's mean pooling of the squared signal (75 samples, stride 15: 300 ms
    at 250 Hz, made for motor-imagery band power) erases the latency of visual ERPs; unless given (None),
    the pooling here is 100 ms with a 50 ms stride at the data's ``sfreq`` (``pool_time_length =
    max(2, round(0.1 * sfreq))``, ``pool_time_stride = max(1, round(0.05 * sfreq))``; on simulated data,
    100 Hz: top-1 5% -> 33% of 40 images with braindecode's default vs this one).
    Options: braindecode ``ShallowFBCSPNet``'s (``n_filters_time``, ``filter_time_length`` ...)."""

    model_name = "ShallowFBCSPNet"

    def __init__(
        self,
        n_chans: int,
        n_times: int,
        out_dim: int,
        sfreq: float = 250.0,
        n_subjects: int = 10,
        *,
        n_filters_time: Any = _D,
        filter_time_length: Any = _D,
        n_filters_spat: Any = _D,
        pool_time_length: int | None = None,
        pool_time_stride: int | None = None,
        final_conv_length: Any = _D,
        conv_nonlin: Any = _D,
        pool_mode: Any = _D,
        activation_pool_nonlin: Any = _D,
        split_first_layer: Any = _D,
        batch_norm: Any = _D,
        batch_norm_alpha: Any = _D,
        drop_prob: Any = _D,
    ):
        super().__init__(n_chans, n_times, out_dim, sfreq, n_subjects)
        given = self._options_of(locals())
        resolved = {
            "pool_time_length": max(2, round(0.1 * sfreq)) if pool_time_length is None else pool_time_length,
            "pool_time_stride": max(1, round(0.05 * sfreq)) if pool_time_stride is None else pool_time_stride,
        }
        self._build(given, resolved)
