"""Several processes training one model (``torchrun``): who this process is, which rows of a batch it takes,
and how the batch's embeddings are gathered back before the contrastive loss.

Every process draws the whole batch (the same seeded order everywhere) and keeps a contiguous slice of it;
EEG and image embeddings are all-gathered with gradient, so the loss sees the whole batch, and
``DistributedDataParallel`` averages the gradients: the same update as one process (tested), except that batch
norm statistics are computed per process (as DDP does by default).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class DistInfo:
    """This process's rank and the number of processes (1: no distribution)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls, distributed: bool) -> DistInfo:
        if not distributed:
            return cls()
        import torch.distributed as td

        return cls(td.get_rank(), td.get_world_size())

    def batch_slice(self, batch: torch.Tensor) -> tuple[int, list[int]]:
        """(first row of this process's slice, slice size of every process) for one batch of row indices."""
        sizes = [len(c) for c in torch.tensor_split(batch, self.world)]
        return sum(sizes[: self.rank]), sizes

    def device(self, dev: torch.device) -> torch.device:
        """One GPU per process when there are several."""
        if self.world > 1 and dev.type == "cuda":
            return torch.device("cuda", self.rank % torch.cuda.device_count())
        return dev

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()


def init_distributed(device: str) -> bool:
    """Under ``torchrun`` (WORLD_SIZE > 1): join the process group (NCCL on GPUs, gloo on CPU)."""
    import torch.distributed as td

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not td.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        td.init_process_group("nccl" if cuda else "gloo")
    return True


def wrap(module: nn.Module, dev: torch.device, dist: DistInfo) -> tuple[nn.Module, Any]:
    """(the module to call in training, the process group for gathering embeddings): the module itself and
    None on one process; DDP and a group of its own (so that the gathers never interleave with DDP's gradient
    all-reduce) on several."""
    if dist.world <= 1:
        return module, None
    import torch.distributed as td

    group = td.new_group(backend=td.get_backend())
    ddp = nn.parallel.DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)
    return ddp, group


def gather_rows(world: int, sizes: list[int], group: Any = None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """All-gather (S, b_rank, D) along the batch axis with gradient (ranks may hold unequal slices); None on
    one process."""
    if world <= 1:
        return None
    import torch.distributed.nn.functional as dnf

    width = max(sizes)

    def gather(x: torch.Tensor) -> torch.Tensor:
        # batch axis first, so that every piece (and every gradient piece handed back to the collective in
        # the backward pass) is a contiguous block: gloo silently mishandles non-contiguous ones
        rows = x.transpose(0, 1)
        pad = width - rows.shape[0]
        if pad:
            rows = torch.cat([rows, rows.new_zeros(pad, *rows.shape[1:])])
        parts = dnf.all_gather(rows.contiguous(), group=group)
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]).transpose(0, 1)

    return gather
