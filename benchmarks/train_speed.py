"""Seconds per epoch and per seed-epoch of retrieval training at full size: `python -m benchmarks.train_speed`.

A full-size simulated subject: 16,540 training images x 63 channels x 250 samples (repetitions averaged
once, as the reference system trains), 8 blur-level views + 1 EVNet view of 1024-d embeddings, the
reference configuration (multi-level blur EEG encoder, blur + EVNet fusion, adapter, batch 1024, AdamW).
The data are random (speed does not depend on them); the EEG is one tensor on the device. Timed: whole
epochs after one warm-up epoch (which also absorbs ``torch.compile``'s compilation), for each stack size S
in ``--seeds`` (vmap on CUDA, a loop over seeds on the CPU, by default) and each precision in
``--precision``: ``fp32`` (as the reference preset trains) and ``bf16`` (bf16 autocast; on the CPU too,
for measuring, although ``train.amp`` turns it on only on CUDA). ``--compile`` adds rows with every seed's
call under ``torch.compile``. On CUDA the peak GPU memory of each row is printed.

On an H100/H200, the first command to run when a GPU is lent (docs/performance.md):
``python -m benchmarks.train_speed --seeds 1,10 --precision fp32,bf16 --compile --epochs 3``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import eeg2image.training.trainer as trainer
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


def time_epochs(
    split: RetrievalSplit,
    seeds: int,
    epochs: int,
    device: str,
    engine: str,
    amp: bool = False,
    compile: bool = False,
) -> float:
    """Seconds per epoch of ``seeds`` stacked seeds (mean over ``epochs`` epochs after a warm-up epoch)."""
    cfg = run_config("reference", None, **{"train.epochs": epochs + 1, "train.amp": amp}).train
    marks: list[float] = []

    def mark(epoch, rec):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        marks.append(time.perf_counter())

    amp_devices = set(trainer.AMP_DEVICES)
    trainer.AMP_DEVICES.add(torch.device(device).type)  # bf16 autocast where asked, the CPU included
    try:
        train_seeds(cfg, list(range(seeds)), split, device=device, engine=engine, on_epoch_end=mark, compile=compile)
    finally:
        trainer.AMP_DEVICES.clear()
        trainer.AMP_DEVICES.update(amp_devices)
    return (marks[-1] - marks[0]) / epochs  # the first (warm-up) epoch is not counted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16540)
    ap.add_argument("--seeds", default="1,10", help="stack sizes to time, e.g. 1,10")
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--engine", default="auto", choices=["auto", "vmap", "loop"])
    ap.add_argument("--precision", default="fp32", help="fp32, bf16 or both (fp32,bf16)")
    ap.add_argument("--compile", action="store_true", help="also time every row under torch.compile")
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    split = full_size_split(args.images)
    print(
        f"retrieval training speed: {args.images} x 63 x 250 EEG, reference configuration, {name}, "
        f"engine {args.engine}, torch {torch.__version__}"
    )
    print("| seeds stacked | precision | compiled | s / epoch | s / seed-epoch | 10 seeds x 200 epochs | GPU peak |")
    print("|---|---|---|---|---|---|---|")
    for compile in [False, True] if args.compile else [False]:
        for prec in args.precision.split(","):
            if prec not in ("fp32", "bf16"):
                raise SystemExit(f"--precision: fp32 or bf16, got {prec!r}")
            for s in [int(x) for x in args.seeds.split(",")]:
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                t = time_epochs(split, s, args.epochs, device, args.engine, prec == "bf16", compile)
                projected = t / s * 10 * 200
                peak = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else "(CPU)"
                print(
                    f"| {s} | {prec} | {'yes' if compile else 'no'} | {t:.2f} | {t / s:.2f} | "
                    f"{projected / 60:.1f} min | {peak} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
