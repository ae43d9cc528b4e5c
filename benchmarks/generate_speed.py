"""Images per second of the generator by batch size: `python -m benchmarks.generate_speed [--real-size]`.

The pipeline is ours (``eeg2image.generation.sdxl``: three IP-Adapters, one generator per image, batches
that stay batches). Without ``--real-size`` it is the tiny SDXL-layout pipeline of the tests (what a CPU can
run); with ``--real-size`` (a GPU) it is a UNet and VAE of SDXL-Turbo's real configuration with random weights
(no download: the speed is the same as with trained weights), 512 px, 5 steps, guidance 0, float16 with the VAE
upcast as in generation. Target (issue 11): 200 stimuli x 4 rounds in under a minute on one H100.
"""

from __future__ import annotations

import argparse
import time

import torch

from eeg2image.generation.sdxl import (
    MODALITIES,
    GenerationConfig,
    IPAdapterSDXLPipeline,
    Reconstructor,
    tiny_ip_adapter_state_dict,
    tiny_prompt_embeds,
    tiny_sdxl_pipeline,
    turbo_scheduler,
)

# stabilityai/sdxl-turbo unet/config.json and vae/config.json (the parts that set the compute)
SDXL_UNET = {
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "use_linear_projection": True,
    "sample_size": 64,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
}
SDXL_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "sample_size": 512,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}


def random_pipeline(unet_cfg: dict, vae_cfg: dict, device: str, dtype: torch.dtype):
    """Our pipeline around a UNet and VAE of the given configs (random weights) and 3 IP-Adapters made in code."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(**vae_cfg)
    pipe = IPAdapterSDXLPipeline(vae, None, None, None, None, unet, turbo_scheduler())
    ip: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
    for k, v in tiny_ip_adapter_state_dict(unet).items():  # shapes from the UNet's config, as the h94 file has
        head, _, rest = k.partition(".")
        ip[head][rest] = v
    unet._load_ip_adapter_weights([ip] * len(MODALITIES))
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    cross, pooled = (
        unet_cfg["cross_attention_dim"],
        unet_cfg["projection_class_embeddings_input_dim"] - 6 * unet_cfg["addition_time_embed_dim"],
    )
    return pipe, torch.zeros(1, 77, cross), torch.zeros(1, pooled)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--real-size", action="store_true", help="SDXL-Turbo's real UNet and VAE (random weights)")
    ap.add_argument("--batches", default="1,4,16", help="batch sizes to time")
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.real_size:
        pipe, pe, pooled = random_pipeline(SDXL_UNET, SDXL_VAE, device, torch.float16)
        size = 512
    else:
        import tempfile
        from pathlib import Path

        pipe = tiny_sdxl_pipeline(0, ip_adapter_folder=Path(tempfile.mkdtemp()))
        pe, pooled = tiny_prompt_embeds()
        size = 64
    print(
        f"{'real-size SDXL-Turbo' if args.real_size else 'tiny SDXL layout'} on {device}, {size} px, {args.steps} steps"
    )
    print(f"{'batch':>6} {'images/s':>10} {'200 x 4 images':>16}")
    for b in (int(x) for x in args.batches.split(",")):
        rec = Reconstructor(pipe, GenerationConfig(steps=args.steps, size=size, batch_size=b), pe, pooled)
        emb = {m: torch.randn(b, 1024) for m in MODALITIES}
        stimuli = [f"s{i}" for i in range(b)]
        rec.generate(emb, stimuli)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        reps = 3
        for _ in range(reps):
            rec.generate(emb, stimuli)
        if device == "cuda":
            torch.cuda.synchronize()
        rate = reps * b / (time.perf_counter() - t)
        print(f"{b:>6} {rate:>10.2f} {800 / rate:>14.1f} s")
    if device == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
