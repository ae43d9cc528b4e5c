"""Images per second per (view, encoder) on this machine: `python -m benchmarks.embed_speed`.

Views are timed on decoded images (the work done in the data-loader workers); encoders on batches of
224 px views. Real-size OpenCLIP models are built with random weights (no download): the speed is the
same as with trained weights. On a GPU the encoders run under bf16 autocast, as `eeg2image embed` does; each row
names the precision, which is also part of the cache identity of every table the encoder makes
(``features.encoders.compute_identity``), so a GPU-made table never stands in for a CPU-made one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from eeg2image.features.encoders import OpenClipImageEncoder, build_image_encoder, encoder_precision
from eeg2image.features.views import CannyEdges, FoveatedBlur, GaussianBlur, Original


def _photos(n: int) -> list[np.ndarray]:
    from skimage import data

    base = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return [np.ascontiguousarray(base[i % len(base)]) for i in range(n)]


def _rate(fn, n_items: int, repeat: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return n_items / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument(
        "--encoders", default="effnet-lite0,evnet,evnet:reference,evnet-clip:effnet-lite0,RN50,ViT-L-14,ViT-H-14"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    what = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"device: {device} ({what})")
    photos = _photos(args.batch)
    views = [Original(), GaussianBlur(kernel=33), GaussianBlur(kernel=63), FoveatedBlur(kernel=51), CannyEdges()]
    print("\nview (decode excluded)          images/s (1 process)")
    for v in views:
        print(f"  {v.name:<30} {_rate(lambda v=v: [v(p) for p in photos], len(photos)):10.1f}")
    batch = [Original()(p) for p in photos]
    print(f"\nencoder (batch {args.batch}, 224 px)            images/s   precision")
    for name in args.encoders.split(","):
        if name.startswith(("evnet", "effnet")):
            enc = build_image_encoder(name, device=str(device))
        else:
            import open_clip

            model = open_clip.create_model(name, pretrained=None)
            enc = OpenClipImageEncoder(model, f"openclip:{name} (random weights)", "random", 224, device)
        reps = 1 if device.type == "cpu" and "ViT-H" in name else 3
        rate = _rate(lambda enc=enc: enc.encode(batch), len(batch), repeat=reps)
        prec = encoder_precision(enc) if device.type == "cuda" else "float32"
        print(f"  {enc.name:<40} {rate:10.1f}   {prec}")
        del enc


if __name__ == "__main__":
    main()
