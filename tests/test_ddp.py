"""Two processes under gloo (as torchrun would start them) train like one process with the whole batch."""

from __future__ import annotations

import numpy as np
import torch
import torch.multiprocessing as mp

from eeg2image.datasets import RetrievalSplit
from eeg2image.models.fusion import TargetConfig
from eeg2image.training.trainer import TrainConfig, train_seeds

CFG = TrainConfig(
    eeg_encoder="linear",
    epochs=3,
    batch_size=30,
    lr=1e-3,
    reps_per_sample=2,
    drop_last=False,
    target=TargetConfig(adapter=True, adapter_dropout=0.5),
)


def split() -> RetrievalSplit:
    g = torch.Generator().manual_seed(0)
    n = 75  # batches of 30, 30, 15: slices of 15/15 and 8/7 rows per process
    return RetrievalSplit(
        torch.randn(n, 4, 6, 40, generator=g), {"original": torch.randn(n, 16, generator=g)}, np.arange(n) // 3
    )


def _worker(rank: int, init: str, out: str) -> None:
    import torch.distributed as td

    td.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        res = train_seeds(CFG, [0, 1], split(), device="cpu", distributed=True)
        if rank == 0:
            torch.save({k: v.detach().clone() for k, v in res.stack.state_tensors().items()}, out)
    finally:
        td.destroy_process_group()


def test_two_gloo_processes_match_one(tmp_path):
    out = tmp_path / "ddp.pt"
    mp.start_processes(
        _worker, args=(f"file://{tmp_path / 'init'}", str(out)), nprocs=2, join=True, start_method="spawn"
    )
    ddp = torch.load(out)
    one = train_seeds(CFG, [0, 1], split(), device="cpu").stack.state_tensors()
    for k, v in one.items():
        torch.testing.assert_close(ddp[k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert not torch.equal(one["target.adapter.0.weight"][0], one["target.adapter.0.weight"][1])
