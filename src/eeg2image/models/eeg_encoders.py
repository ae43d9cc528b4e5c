"""EEG encoders, in a registry: ``build_eeg_encoder("ved", n_chans=63, n_times=250, out_dim=1024)``.

Every encoder shares one signature, as braindecode's models do: ``Encoder(n_chans, n_times, out_dim,
n_subjects=..., **options)``, and ``forward(x, subject=None)`` maps EEG (B, n_chans, n_times) to
(B, out_dim). ``subject`` holds 1-based subject numbers (used by subject-aware encoders, ignored by the
others).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..io import DataFormatError

EEG_ENCODERS: dict[str, Callable[..., nn.Module]] = {}


def register_eeg_encoder(name: str):
    def deco(cls):
        EEG_ENCODERS[name] = cls
        cls.registry_name = name
        return cls

    return deco


def build_eeg_encoder(name: str, *, n_chans: int, n_times: int, out_dim: int, **options) -> nn.Module:
    if name not in EEG_ENCODERS:
        raise DataFormatError(f"unknown EEG encoder {name!r}; known: {', '.join(sorted(EEG_ENCODERS))}")
    return EEG_ENCODERS[name](n_chans=n_chans, n_times=n_times, out_dim=out_dim, **options)


class _AbsConv2d(nn.Conv2d):
    """Conv2d whose effective weights are ``|w|``: non-negative spatial filters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.abs(), self.bias, self.stride, self.padding, self.dilation, self.groups)


@register_eeg_encoder("ved")
class MultiLevelBlurEEGEncoder(nn.Module):
    """The multi-level blur work's EEG encoder (Liu et al., AAAI 2026, makeitperfect/VisualEEGDecoding).

    (B, C=63, T=250) -> non-negative spatial conv C->25 (kernel (C, 1), no bias; |w| at every forward)
    -> BatchNorm(25) -> shared temporal MLP T->200 (ELU, dropout 0.25) ->200 (ELU, dropout 0.65)
    -> flatten 25*200 = 5000 -> Linear -> (B, out_dim=1024). No output norm (the loss sees its length).
    The reference took ``abs`` of the stored weights in place; using ``|w|`` in the forward pass is the
    same function with a well-defined gradient.
    """

    def __init__(
        self,
        n_chans: int = 63,
        n_times: int = 250,
        out_dim: int = 1024,
        n_filters: int = 25,
        hidden: int = 200,
        dropout: tuple[float, float] = (0.25, 0.65),
        **_: object,
    ):
        super().__init__()
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
        return self.net(x.unsqueeze(1)).permute(0, 3, 2, 1).flatten(1)  # b e 1 w -> b (w e)


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
class NICEEncoder(nn.Module):
    """NICE (Song et al., ICLR 2024, eeyhsong/NICE-EEG): TSConv (B, 63, 250) -> 1440 -> projection head.
    Conv and Linear weights ~ N(0, 0.02), BatchNorm weights ~ N(1, 0.02), as NICE initialises them."""

    def __init__(self, n_chans: int = 63, n_times: int = 250, out_dim: int = 1024, **_: object):
        super().__init__()
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
class ATMSEncoder(nn.Module):
    """ATM-S (Li et al., NeurIPS 2024, dongyangli-del/EEG_Image_decode): each channel's time series is a
    token (Linear T->T), a learned subject token is prepended, one post-norm transformer layer (4 heads,
    FFN 256, GELU, dropout 0.25) + LayerNorm, then TSConv over the channel tokens and a projection head.

    Fixed against the reference: all ``n_chans`` channel tokens go on to TSConv (the reference sliced
    ``[:, :63]`` and so dropped O2 while keeping the subject token), and subjects 1..n_subjects each get
    their own token (the reference's 10-row table sent subject 10 to the shared token); subject 0 / None /
    unknown numbers use the shared token (leave-one-subject-out).
    """

    def __init__(
        self,
        n_chans: int = 63,
        n_times: int = 250,
        out_dim: int = 1024,
        n_subjects: int = 10,
        n_heads: int = 4,
        d_ff: int = 256,
        dropout: float = 0.25,
        **_: object,
    ):
        super().__init__()
        self.n_subjects = n_subjects
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
        b, n, _ = x.shape
        q, k, v = (f(x).view(b, n, self.n_heads, self.d_head).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = self.attn_drop(torch.softmax(q @ k.transpose(-1, -2) / self.d_head**0.5, dim=-1))
        return self.o((a @ v).transpose(1, 2).reshape(b, n, -1))

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


@register_eeg_encoder("eegproject")
class EEGProjectEncoder(nn.Module):
    """UBP's ``EEGProjectLayer`` (Wu et al., CVPR 2025, HaitaoWuTJU/Uncertainty-aware-Blur-Prior): flatten
    (B, C=17, T=250) -> 4250 -> Linear -> residual (GELU, Linear, Dropout 0.3) -> LayerNorm -> (B, out_dim)."""

    def __init__(self, n_chans: int = 17, n_times: int = 250, out_dim: int = 1024, dropout: float = 0.3, **_: object):
        super().__init__()
        self.proj = ProjectionHead(n_chans * n_times, out_dim, dropout)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(x.flatten(1))


@register_eeg_encoder("linear")
class LinearEncoder(nn.Module):
    """Baseline: flatten (C * T) -> Linear -> out_dim (ridge-like when trained with weight decay)."""

    def __init__(self, n_chans: int = 63, n_times: int = 250, out_dim: int = 1024, **_: object):
        super().__init__()
        self.linear = nn.Linear(n_chans * n_times, out_dim)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x.flatten(1))


class _Braindecode(nn.Module):
    model_name = ""

    def __init__(
        self, n_chans: int = 63, n_times: int = 250, out_dim: int = 1024, sfreq: float = 250.0, **options: object
    ):
        super().__init__()
        import braindecode.models as bm

        cls = getattr(bm, self.model_name)
        options.pop("n_subjects", None)
        self.net = cls(n_chans=n_chans, n_outputs=out_dim, n_times=n_times, sfreq=sfreq, **options)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x)


@register_eeg_encoder("eegnet")
class EEGNetEncoder(_Braindecode):
    """EEGNet (Lawhern et al. 2018, J. Neural Eng.) from braindecode, with an ``out_dim`` output layer."""

    model_name = "EEGNet"


@register_eeg_encoder("shallow")
class ShallowConvNetEncoder(_Braindecode):
    """ShallowConvNet / ShallowFBCSPNet (Schirrmeister et al. 2017, Hum. Brain Mapp.) from braindecode.

    Deliberate difference: braindecode's mean pooling of the squared signal (75 samples, stride 15: 300 ms
    at 250 Hz, made for motor-imagery band power) erases the latency of visual ERPs; unless given, the
    pooling here is 100 ms with a 50 ms stride at the data's ``sfreq`` (on simulated data, 100 Hz: top-1
    5% -> 33% of 40 images with braindecode's default vs this one)."""

    model_name = "ShallowFBCSPNet"

    def __init__(
        self, n_chans: int = 63, n_times: int = 250, out_dim: int = 1024, sfreq: float = 250.0, **options: object
    ):
        options.setdefault("pool_time_length", max(2, round(0.1 * sfreq)))
        options.setdefault("pool_time_stride", max(1, round(0.05 * sfreq)))
        super().__init__(n_chans, n_times, out_dim, sfreq, **options)
