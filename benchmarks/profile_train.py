"""Where a training step's time goes: `python -m benchmarks.profile_train`.

Full-size random subject and the reference configuration (as `benchmarks.train_speed`); a few warm-up steps,
then ``--steps`` steps under the torch profiler. Prints the share of the step by kind of work (the matrix
products and convolutions that are the model's arithmetic, the keyed-dropout masks, the optimiser, the
rest) and the operators with the most self time. ``--preset`` profiles another run preset's training.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import torch
from torch.profiler import ProfilerActivity, profile, record_function

import eeg2image.models.dropout as dropout
from eeg2image.datasets import RetrievalSplit
from eeg2image.runs import run_config
from eeg2image.training.trainer import DistInfo, TrainState, train_step

from .train_speed import full_size_split

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::convolution", "aten::mkldnn_convolution", "aten::matmul")
MATMUL += ("aten::_convolution", "aten::convolution_backward", "aten::linear", "aten::baddbmm")
MASK = "keyed dropout, forward (masks and scaling)"


@contextmanager
def labelled_masks():
    """Label every keyed-dropout forward in the profile (its ops, the masks among them, are counted under one
    name; their backward is one multiplication, counted with the rest)."""
    original = dropout.KeyedDropout.forward

    def forward(self, x):
        with record_function(MASK):
            return original(self, x)

    dropout.KeyedDropout.forward = forward
    try:
        yield
    finally:
        dropout.KeyedDropout.forward = original


def profile_steps(split: RetrievalSplit, preset: str, steps: int, warmup: int = 2, overrides: dict | None = None):
    cfg = run_config(preset, None, **(overrides or {})).train
    state = TrainState.build(cfg, [0], split, None, DistInfo.current(False), "cpu", "auto")
    order = torch.randperm(len(split.image), generator=torch.Generator().manual_seed(0))
    batch = lambda b: [order[(b % state.steps_per_epoch) * cfg.batch_size :][: cfg.batch_size]]  # noqa: E731
    for b in range(warmup):
        train_step(state, 0, b, b, batch(b))
    with labelled_masks(), profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for b in range(warmup, warmup + steps):
            train_step(state, 0, b, b, batch(b))
        wall = (time.perf_counter() - t) / steps
    return prof, wall


def summarise(prof, wall: float, steps: int, top: int) -> None:
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    by_kind = {"matrix products and convolutions": 0.0, MASK: 0.0, "optimiser (fused AdamW)": 0.0, "the rest": 0.0}
    mask_total = sum(e.cpu_time_total for e in events if e.key == MASK)
    by_kind[MASK] = mask_total
    for e in events:
        if e.key == MASK:
            continue
        if e.key in MATMUL:
            by_kind["matrix products and convolutions"] += e.self_cpu_time_total
        elif "adamw" in e.key.lower():
            by_kind["optimiser (fused AdamW)"] += e.self_cpu_time_total
        else:
            by_kind["the rest"] += e.self_cpu_time_total
    # the mask's own ops were counted in "the rest" by self time: move them
    by_kind["the rest"] -= mask_total
    print(f"\n{wall * 1e3:.0f} ms per step (wall, {steps} profiled steps)\n")
    print("| kind of work | ms / step | share |")
    print("|---|---|---|")
    for k, v in by_kind.items():
        print(f"| {k} | {v / 1e3 / steps:.0f} | {100 * v / total:.0f}% |")
    print(f"\nTop {top} operators by self time (ms per step):\n")
    print("| operator | calls / step | ms / step | share |")
    print("|---|---|---|---|")
    rows = sorted((e for e in events if e.key != MASK), key=lambda e: -e.self_cpu_time_total)[:top]
    for e in rows:
        print(
            f"| `{e.key}` | {e.count / steps:.0f} | {e.self_cpu_time_total / 1e3 / steps:.1f} | "
            f"{100 * e.self_cpu_time_total / total:.1f}% |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=16540)
    ap.add_argument("--preset", default="reference")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    print(
        f"training step profile: preset {args.preset}, {args.images} x 63 x 250 EEG, "
        f"CPU, {torch.get_num_threads()} threads, float32"
    )
    prof, wall = profile_steps(full_size_split(args.images), args.preset, args.steps)
    summarise(prof, wall, args.steps, args.top)


if __name__ == "__main__":
    main()
