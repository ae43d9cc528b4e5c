"""``eeg2image train-vae``: the offline stand-in for SDXL-Turbo's VAE, trained on the training images only.

A small diffusers ``AutoencoderKL`` (the class of SDXL's VAE: ``DownEncoderBlock2D`` / ``UpDecoderBlock2D`` stacks,
a mid-block with attention, a diagonal Gaussian posterior) trained as Stable Diffusion's first stage is, less the
perceptual and adversarial terms: L1 reconstruction of a posterior sample plus ``kl`` x KL to N(0, I). Random
horizontal flips; AdamW with OneCycle; seeded. Saved as a diffusers folder (``config.json`` and
``diffusion_pytorch_model.safetensors``) that ``features.vae.load_vae`` reads by the path SDXL-Turbo's ``vae/``
takes, with ``manifest.json`` and ``history.json`` beside it. The test images are never read.

A killed run resumes from ``checkpoint/state.safetensors`` (weights, optimiser, schedule, random generator, written
every ``checkpoint_every`` steps) to the same weights as an uninterrupted run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import to_dict
from ..data.things_eeg2 import ImageSet, load_image
from ..features.vae import VAE_FILES
from ..io import DataFormatError, check_range, folder_lock, json_sha256
from .steps import run_steps

__all__ = ["VAEConfig", "train_vae"]


@dataclass
class VAEConfig:
    """The VAE's architecture (diffusers ``AutoencoderKL`` arguments) and its training."""

    image_size: int = 64  # px the images are resized to (latents: image_size / 2^(len(block_out_channels) - 1))
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    kl: float = 1e-5  # weight of the KL term (Stable Diffusion's first stage: ~1e-6)
    hflip: bool = True
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        check_range("vae.image_size", self.image_size, 8)
        check_range("vae.steps", self.steps, 1)
        check_range("vae.batch_size", self.batch_size, 1)
        check_range("vae.lr", self.lr, 0, low_open=True)
        check_range("vae.kl", self.kl, 0)
        check_range("vae.checkpoint_every", self.checkpoint_every, 1)
        if not self.block_out_channels or any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"vae.block_out_channels {self.block_out_channels} must be non-empty multiples of "
                f"vae.norm_num_groups ({self.norm_num_groups})"
            )
        f = 2 ** (len(self.block_out_channels) - 1)
        if self.image_size % f:
            raise ValueError(f"vae.image_size {self.image_size} is not a multiple of the downsampling factor {f}")


def build_vae(cfg: VAEConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=cfg.image_size,
    )


def _images(root: Path, size: int) -> torch.Tensor:
    files = ImageSet.discover(root).files("training")
    arr = np.stack([np.asarray(load_image(f, size=size)) for f in files])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def train_vae(root: str | Path, out: str | Path, cfg: VAEConfig | None = None, *, progress=True, log=print) -> Path:
    """Train the VAE on the training images of ``root`` into ``out`` (a diffusers folder); returns ``out``. A
    finished folder of the same configuration and images is kept; one of another is refused."""
    from ..io import read_json, write_json, write_manifest

    cfg = cfg or VAEConfig()
    root, out = Path(root), Path(out)
    images = ImageSet.discover(root)
    key = json_sha256({"config": to_dict(cfg), "images": images.relative_paths("training")})
    man = out / "manifest.json"
    with folder_lock(out, "train-vae"):
        if man.is_file():
            if read_json(man).get("key") == key and all((out / f).is_file() for f in VAE_FILES):
                log(f"{out}: the VAE of this configuration and image set is there, kept")
                return out
            raise DataFormatError(
                f"{out} holds a VAE of another configuration or image set; train into a new folder — nothing was "
                "overwritten"
            )
        x = _images(root, cfg.image_size)
        torch.manual_seed(cfg.seed)
        vae = build_vae(cfg)
        opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
        log(f"train the VAE on {len(x)} training images at {cfg.image_size} px, {cfg.steps} steps -> {out}")

        def step_loss(gen: torch.Generator) -> torch.Tensor:
            idx = torch.randint(0, len(x), (cfg.batch_size,), generator=gen)
            batch = x[idx]
            if cfg.hflip:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            post = vae.encode(batch).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
            rec = vae.decode(z).sample
            return (rec - batch).abs().mean() + cfg.kl * post.kl().mean()

        history = run_steps(
            out,
            vae,
            opt,
            sched,
            torch.Generator().manual_seed(cfg.seed),
            key=key,
            steps=cfg.steps,
            checkpoint_every=cfg.checkpoint_every,
            step_loss=step_loss,
            name="vae",
            what="VAE",
            progress=progress,
            log=log,
        )
        _save_pretrained(vae.eval(), out)
        write_json(out / "history.json", history)
        write_manifest(
            out,
            stage="train-vae",
            config=to_dict(cfg),
            inputs={"dataset": str(root.absolute()), "training_images": len(x)},
            outputs={"vae": list(VAE_FILES)},
            extra={"key": key},
        )
    return out


def _save_pretrained(vae, out: Path) -> None:
    """The diffusers folder, each file renamed into place (the weights first: a config without them is no VAE)."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(dir=out, prefix=".save-") as tmp:
        vae.save_pretrained(tmp, safe_serialization=True)
        for name in (VAE_FILES[1], VAE_FILES[0]):
            os.replace(Path(tmp) / name, out / name)
