"""Seconds per epoch and per seed-epoch of retrieval training at full size: `python -m benchmarks.train_speed`.

A full-size simulated subject: 16,540 training images x 63 channels x 250 samples (repetitions averaged
once, as the reference system trains), 8 blur-level views + 1 EVNet view of 1024-d embeddings, the
reference configuration (multi-level blur EEG encoder, blur + EVNet fusion, adapter, batch 1024, AdamW).
The data are random (speed does not depend on them). Timed: whole epochs after one warm-up epoch, for
S seeds trained together (stacked; vmap on CUDA, a loop over seeds on CPU by default) and, for comparison,
S = 1. In float32 as the reference preset trains; ``--amp`` times bf16 autocast on CUDA.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from eeg2image.datasets import RetrievalSplit
from eeg2image.runs import run_config
from eeg2image.training.trainer import train_seeds


def full_size_split(n: int, dim: int = 1024) -> RetrievalSplit:
    g = torch.Generator().manual_seed(0)
    target = run_config("reference").train.target
    views = {v: torch.randn(n, dim, generator=g) for v in target.blur_views}
    views["evnet:original"] = torch.randn(n, dim, generator=g)
    eeg = torch.randn(n, 1, 63, 250, generator=g)
    return RetrievalSplit(eeg, views, np.arange(n) // 10)


def time_epochs(split: RetrievalSplit, seeds: int, epochs: int, device: str, engine: str, amp: bool = False) -> float:
    cfg = run_config("reference", None, **{"train.epochs": epochs + 1, "train.amp": amp}).train
    marks: list[float] = []

    def mark(epoch, rec):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        marks.append(time.perf_counter())

    train_seeds(cfg, list(range(seeds)), split, device=device, engine=engine, on_epoch_end=mark)
    return (marks[-1] - marks[0]) / epochs  # the first (warm-up) epoch is not counted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=16540)
    ap.add_argument("--seeds", default="1,10", help="stack sizes to time, e.g. 1,10")
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--engine", default="auto", choices=["auto", "vmap", "loop"])
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only; the preset trains in float32)")
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    split = full_size_split(args.images)
    prec = "bf16 autocast" if args.amp and device.startswith("cuda") else "float32"
    print(
        f"retrieval training speed: {args.images} x 63 x 250 EEG, reference configuration, {name}, "
        f"engine {args.engine}, {prec}"
    )
    print("| seeds stacked | s / epoch | s / seed-epoch | 10 seeds x 200 epochs (projected) |")
    print("|---|---|---|---|")
    for s in [int(x) for x in args.seeds.split(",")]:
        t = time_epochs(split, s, args.epochs, device, args.engine, args.amp)
        projected = t / s * 10 * 200
        print(f"| {s} | {t:.2f} | {t / s:.2f} | {projected / 60:.1f} min |", flush=True)


if __name__ == "__main__":
    main()
