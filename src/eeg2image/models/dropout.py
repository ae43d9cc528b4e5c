"""Keyed (counter-based) dropout: masks that depend only on (seed, step, layer, sample row, element).

Why: when the seeds of one configuration train together (stacked model copies under ``torch.func.vmap``)
or a batch is split over processes (DDP), ordinary dropout draws its masks from one global random stream,
so seed 3's masks would depend on how many other seeds share the process and how the batch is split.
Here a mask element is ``hash(key, layer call number, global row, element) >= p``: the same numbers
whether a seed trains alone, stacked with nine others, or on two processes. Outside a ``keyed_dropout``
context the module is ordinary ``nn.Dropout``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

MASK32 = 0xFFFFFFFF


def mix32(x):
    """A 32-bit integer hash (Wellons' lowbias32) on Python ints or int64 tensors holding 32-bit values."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def step_key(seed: int, step: int) -> int:
    """The dropout key of one optimisation step of one seed."""
    return mix32(mix32(seed & MASK32) ^ (step & MASK32))


class _Keys:
    def __init__(self, key: torch.Tensor | None, row_offset: int):
        self.key, self.row_offset, self.calls = key, row_offset, 0


_CONTEXT: contextvars.ContextVar[_Keys | None] = contextvars.ContextVar("eeg2image_keyed_dropout", default=None)


@contextmanager
def keyed_dropout(key: torch.Tensor | None, row_offset: int = 0) -> Iterator[None]:
    """Within this block, ``KeyedDropout`` layers draw their masks from ``key`` (an int64 scalar tensor,
    batched under vmap); ``row_offset`` is the global index of the first row of the local batch (DDP)."""
    token = _CONTEXT.set(_Keys(key, row_offset))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class KeyedDropout(nn.Dropout):
    """``nn.Dropout`` whose mask comes from the active ``keyed_dropout`` key (ordinary dropout otherwise).
    The first tensor axis is the sample axis; the mask of a row does not depend on the batch it is in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        ctx = _CONTEXT.get()
        if ctx is None or ctx.key is None:
            return F.dropout(x, self.p, True, self.inplace)
        ctx.calls += 1
        layer_key = mix32(ctx.key ^ ((ctx.calls * 0x9E3779B9) & MASK32))
        per_row = x[0].numel() if x.dim() > 0 else 1
        idx = torch.arange(x.numel(), device=x.device, dtype=torch.int64).view(x.shape) + ctx.row_offset * per_row
        keep = mix32((idx & MASK32) ^ layer_key) >= int(self.p * 2**32)
        return x * keep.to(x.dtype) / (1.0 - self.p)


def use_keyed_dropout(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Dropout`` inside ``module`` by ``KeyedDropout`` with the same ``p`` (in place)."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, KeyedDropout(child.p))
        else:
            use_keyed_dropout(child)
    return module
