"""Our training loop against the multi-level blur work's own, on the same random data, in one run:
`python -m benchmarks.peer_speed --ved PATH`.

PATH is a checkout of makeitperfect/VisualEEGDecoding (the AAAI 2026 multi-level blur code; tested at 4544817).
Nothing of it is copied here: this benchmark writes random data in that code's own on-disk layout
(``Preprocessed_data/sub-01/{train,test}.pt``, ``Image_feature/MultiBlur_RN50_{train,test}.pt``, 12 blur levels
of 1024-d features) into a temporary folder, imports its ``main_eeg`` module from PATH and calls its
``train()`` unchanged (``Brain_Visual_Encoder_EEG``, batch 1024, AdamW 1e-3, float32, 63 channels x 250
samples). Its training pass is timed from the first to the last batch of its data loader (its per-epoch
validation and test ranking, and its checkpoint copies, are not counted: in its favour).

Ours: `benchmarks.train_speed` on a full-size random subject in the reference configuration (same encoder,
8 blur levels + EVNet, adapter, batch 1024, AdamW, float32), whole epochs (nothing else runs in them; the
reference configuration has no validation split). Both use this process's threads (``torch.get_num_threads``).
The first epoch of each is a warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from eeg2image.allocator import keep_freed_memory

from .train_speed import full_size_split, time_epochs

BLUR_LEVELS = [1, 3, 9, 15, 21, 27, 33, 39, 45, 51, 57, 63]


def write_peer_layout(root: Path, n_train: int, n_test: int = 200, dim: int = 1024) -> None:
    """Random data in the peer code's layout: EEG ``(images, reps, 63, 250)`` float32 with image keys
    ``(images, reps)``, and per blur level a dict ``{image key: (dim,) tensor}``."""
    g = torch.Generator().manual_seed(1)
    for part, n in (("train", n_train), ("test", n_test)):
        keys = np.array([[f"{part}_images/{i:05d}/{i:05d}.jpg"] for i in range(n)])  # one repetition
        eeg = torch.randn(n, 1, 63, 250, generator=g).numpy()
        sub = root / "Preprocessed_data" / "sub-01"
        sub.mkdir(parents=True, exist_ok=True)
        torch.save({"eeg": eeg, "img": keys}, sub / f"{part}.pt")
        feats = {
            str(level): {k: v for k, v in zip(keys[:, 0], torch.randn(n, dim, generator=g), strict=True)}
            for level in BLUR_LEVELS
        }
        (root / "Image_feature").mkdir(exist_ok=True)
        torch.save(feats, root / "Image_feature" / f"MultiBlur_RN50_{part}.pt")


class _TimedPasses:
    """Stands in for the ``tqdm`` module inside the peer code: records when each training pass starts and ends."""

    def __init__(self) -> None:
        self.passes: list[tuple[float, float, int]] = []

    def tqdm(self, iterable, *args, **kwargs):
        t0, n = time.perf_counter(), 0
        for item in iterable:
            yield item
            n += 1
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.passes.append((t0, time.perf_counter(), n))


def import_peer(ved: Path):
    if not (ved / "main_eeg.py").is_file():
        raise SystemExit(f"--ved {ved}: no main_eeg.py there; give a checkout of makeitperfect/VisualEEGDecoding")
    sys.path.insert(0, str(ved))
    try:
        return importlib.import_module("main_eeg")
    except ImportError as e:
        raise SystemExit(f"importing {ved / 'main_eeg.py'} failed ({e}); install what it imports") from e


def time_peer(main_eeg, data: Path, epochs: int, work: Path) -> dict[str, float]:
    """The peer's ``train()`` for ``epochs`` + 1 epochs on the data in ``data``: seconds per training pass and per
    whole epoch (its pass, then its validation and test ranking), the first epoch not counted; its steps per epoch."""
    timer = _TimedPasses()
    main_eeg.tqdm = SimpleNamespace(tqdm=timer.tqdm)
    main_eeg.args = SimpleNamespace(lr=1e-3)  # its train() reads the learning rate from the module's argparse result
    params = {
        "net_name": "Brain_Visual_Encoder_EEG",
        "epoch": epochs + 1,
        "train_batch_size": 1024,
        "test_batch_size": 200,
        "lr": 1e-3,
        "mixup": False,
        "blur_level": [f"l_{k}" for k in BLUR_LEVELS],
        "use_filter": False,
        "low_freq": 0.1,
        "high_freq": 50.0,
        "save_feature": False,
        "select_chs": _CHANNELS,
        "select_period": [0, 250],
        "save_path": str(work),
        "data_path": str(data),
        "cross_subject": False,
        "seed": 21,
        "sub": 1,
    }
    work.mkdir()
    main_eeg.params = params  # ... and its evaluation reads ``params`` from the module's ``__main__`` block
    logger = logging.getLogger("peer_speed.ved")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    try:
        main_eeg.train(params, logger)
    except UnboundLocalError:
        # after its last epoch it saves ``select_model``, which is set only when validation top-1 rises above 0:
        # never on random data. The timed passes are all done by then.
        if len(timer.passes) != epochs + 1:
            raise
    starts = [start for start, _, _ in timer.passes]
    return {
        "pass": float(np.mean([end - start for start, end, _ in timer.passes[1:]])),
        "epoch": float(np.mean(np.diff(starts[1:]))) if epochs >= 2 else float("nan"),
        "steps": timer.passes[0][2],
    }


_CHANNELS = (
    "Fp1 Fp2 AF7 AF3 AFz AF4 AF8 F7 F5 F3 F1 F2 F4 F6 F8 FT9 FT7 FC5 FC3 FC1 FCz FC2 FC4 FC6 FT8 FT10 T7 C5 C3 "
    "C1 Cz C2 C4 C6 T8 TP9 TP7 CP5 CP3 CP1 CPz CP2 CP4 CP6 TP8 TP10 P7 P5 P3 P1 Pz P2 P4 P6 P8 PO7 PO3 POz "
    "PO4 PO8 O1 Oz O2"
).split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ved", type=Path, required=True, help="a checkout of makeitperfect/VisualEEGDecoding")
    ap.add_argument("--images", type=int, default=16540)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs of each (after one warm-up epoch)")
    ap.add_argument("--seeds", default="1,10", help="our stack sizes to time, e.g. 1,10")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", action="store_true", help="also time ours under bf16 autocast")
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    where = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"training speed, ours against VisualEEGDecoding's main_eeg.train(), {args.images} random images, {where}")
    main_eeg = import_peer(args.ved.resolve())
    peer = {}
    with tempfile.TemporaryDirectory(prefix="peer_speed_") as tmp:
        write_peer_layout(Path(tmp) / "data", args.images)
        peer["glibc defaults"] = time_peer(main_eeg, Path(tmp) / "data", args.epochs, Path(tmp) / "run1")
        keep_freed_memory()  # what our trainer sets; from here on for both
        peer["freed memory kept"] = time_peer(main_eeg, Path(tmp) / "data", args.epochs, Path(tmp) / "run2")
    base = peer["glibc defaults"]["pass"]
    print(
        "\n| loop | allocator | precision | seeds | steps / epoch | s / seed-epoch (training pass) "
        "| s / whole epoch | ours / peer |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for how, p in peer.items():
        print(
            f"| VisualEEGDecoding main_eeg.py | {how} | float32 | 1 | {p['steps']} | {p['pass']:.2f} "
            f"| {p['epoch']:.2f} | |",
            flush=True,
        )
    split = full_size_split(args.images)
    steps = args.images // 1024
    for amp in [False, True] if args.amp else [False]:
        for s in [int(x) for x in args.seeds.split(",")]:
            t = time_epochs(split, s, args.epochs, device, "auto", amp=amp) / s
            prec = "bf16 autocast" if amp else "float32"
            print(
                f"| eeg2image | freed memory kept | {prec} | {s} | {steps} | {t:.2f} | {t:.2f} | {t / base:.2f} |",
                flush=True,
            )
    print(
        f"\nours / peer: our seconds per seed-epoch over the peer's training pass under glibc's defaults "
        f"({base:.2f} s), as each program runs on its own. The peer trains on 95% of the images (it holds out 5% "
        "for validation), so its epoch has fewer steps."
    )


if __name__ == "__main__":
    main()
