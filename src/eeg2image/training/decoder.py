"""``eeg2image train-decoder``: the offline generator (``models.decoder``), trained on the training images only.

Per training image: its target embeddings (``encoder``'s table of each target's view, as the aligner's targets)
and, when ``latents`` names a VAE, its latent (``embed --encoder vae:FOLDER``'s table) are the inputs; the image at
``decoder.image_size`` px is the output. Inputs are degraded as the EEG will degrade them (``models.decoder``);
random horizontal flips of image and latent together; AdamW with OneCycle; seeded. A killed run resumes exactly
(``training.steps``). The test partition is never read.

Written: ``OUT/decoder.safetensors`` (weights, normalisation statistics, what rebuilds it and what it was trained
on: encoder, target views, the latents' table and identity), ``OUT/config.yaml``, ``OUT/history.json``,
``OUT/manifest.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import save_config, to_dict
from ..data.things_eeg2 import ImageSet, load_image
from ..features.store import EmbeddingStore
from ..features.vae import latent_table
from ..io import DataFormatError, check_option, folder_lock, json_sha256, read_json, write_json, write_manifest
from ..models.align import TARGET_VIEWS
from ..models.decoder import DECODER_FILE, ConditionalDecoder, DecoderConfig, save_decoder
from .steps import run_steps

__all__ = ["DecoderStageConfig", "train_decoder"]


@dataclass
class DecoderStageConfig:
    """What the decoder is conditioned on (the aligner's targets, the low-level latents) and how it trains."""

    encoder: str = "effnet-lite0"  # encoder of the target embeddings in the store (the aligner's --encoder)
    targets: list[str] = field(default_factory=lambda: ["image"])
    target_views: dict[str, str] = field(default_factory=lambda: dict(TARGET_VIEWS))
    latents: str = ""  # the latents' encoder in the store (vae:<folder>[;size=S]); "" for none
    latent_view: str = "original"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        self.target_views = {**TARGET_VIEWS, **self.target_views}
        if not self.targets:
            raise DataFormatError("targets is empty; expected some of " + ", ".join(TARGET_VIEWS))
        for t in self.targets:
            check_option("decoder target", t, TARGET_VIEWS, where="targets")
        if self.latents and not self.latents.startswith("vae:"):
            raise DataFormatError(f"latents {self.latents!r}: expected a VAE's latent table, vae:<folder>[;size=S]")


def _table(store: EmbeddingStore, view: str, encoder: str, rel: list[str]):
    table = store.load("training", view, encoder)
    if table.rel_paths != rel:
        raise DataFormatError(
            f"{store.paths('training', view, encoder)[1]}: lists other images than the dataset's training images; "
            "re-embed"
        )
    return table


def train_decoder(
    root: str | Path,
    store: str | Path,
    out: str | Path,
    cfg: DecoderStageConfig | None = None,
    *,
    progress: bool = True,
    log=print,
) -> Path:
    """Train the decoder into ``out``; a finished folder of the same configuration and inputs is kept, one of
    another refused (nothing overwritten)."""
    cfg = cfg or DecoderStageConfig()
    dcfg = cfg.decoder
    root, out, st = Path(root), Path(out), EmbeddingStore(store)
    images = ImageSet.discover(root)
    rel = images.relative_paths("training")
    views = {t: cfg.target_views[t] for t in cfg.targets}
    tables = {t: _table(st, v, cfg.encoder, rel) for t, v in views.items()}
    latent_shape, latents, latent_info = None, None, None
    if cfg.latents:
        lt, latent_info = latent_table(store, "training", cfg.latent_view, cfg.latents)
        _table(st, cfg.latent_view, cfg.latents, rel)  # the same images, in order
        latent_shape = latent_info["latent_shape"]
        latents = torch.from_numpy(np.asarray(lt.embeddings, dtype=np.float32))
    embeds = {t: torch.from_numpy(np.asarray(tb.embeddings, dtype=np.float32)) for t, tb in tables.items()}
    inputs = {
        "images": json_sha256(rel),
        "targets": {t: f"{v}@{cfg.encoder}" for t, v in views.items()},
        "target_tables": {t: tb.manifest.get("key") for t, tb in tables.items()},
        "latents": f"{cfg.latent_view}@{cfg.latents}" if cfg.latents else None,
        "latent_table": latent_info["key"] if latent_info else None,
    }
    key = json_sha256({"config": to_dict(cfg), "inputs": inputs})
    man = out / "manifest.json"
    with folder_lock(out, "train-decoder"):
        if man.is_file():
            if read_json(man).get("key") == key and (out / DECODER_FILE).is_file():
                log(f"{out}: the decoder of this configuration and these inputs is there, kept")
                return out
            raise DataFormatError(
                f"{out} holds a decoder of another configuration or other inputs; train into a new folder — nothing "
                "was overwritten"
            )
        files = images.files("training")
        x = torch.from_numpy(np.stack([np.asarray(load_image(f, size=dcfg.image_size)) for f in files]))
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        torch.manual_seed(dcfg.seed)
        model = ConditionalDecoder(dcfg, {t: e.shape[1] for t, e in embeds.items()}, latent_shape)
        model.set_statistics(embeds, latents)
        cond = model.standardise(embeds)
        z = model.standardise_latent(latents) if latents is not None else None
        opt = torch.optim.AdamW(model.parameters(), lr=dcfg.lr, weight_decay=dcfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=dcfg.lr, total_steps=dcfg.steps, pct_start=0.1)
        log(
            f"train the decoder on {len(x)} training images at {dcfg.image_size} px, conditioned on "
            f"{inputs['targets']}"
            + (f" and the latents {inputs['latents']} {latent_shape}" if cfg.latents else "")
            + f", {dcfg.steps} steps -> {out}"
        )

        def step_loss(gen: torch.Generator) -> torch.Tensor:
            idx = torch.randint(0, len(x), (dcfg.batch_size,), generator=gen)
            img, c = x[idx], cond[idx]
            c = c + dcfg.cond_noise * torch.randn(c.shape, generator=gen)
            lat = None
            if z is not None:
                lat = z[idx]
                s = dcfg.latent_strength * torch.rand(len(idx), 1, 1, 1, generator=gen)
                lat = (1 - s) * lat + s * torch.randn(lat.shape, generator=gen)  # standardised: mean 0, sd 1
            if dcfg.hflip:
                flip = (torch.rand(len(idx), generator=gen) < 0.5)[:, None, None, None]
                img = torch.where(flip, img.flip(-1), img)
                if lat is not None:
                    lat = torch.where(flip, lat.flip(-1), lat)
            return model.nll(img, c, lat)

        history = run_steps(
            out,
            model,
            opt,
            sched,
            torch.Generator().manual_seed(dcfg.seed),
            key=key,
            steps=dcfg.steps,
            checkpoint_every=dcfg.checkpoint_every,
            step_loss=step_loss,
            name="decoder",
            what="decoder",
            progress=progress,
            log=log,
        )
        extra = {
            "encoder": cfg.encoder,
            "target_views": inputs["targets"],
            "latents": inputs["latents"],
            "latent_table": inputs["latent_table"],
            "vae_identity": latent_info["encoder"] if latent_info else None,
            "training_images": len(x),
        }
        save_decoder(out / DECODER_FILE, model.eval(), extra)
        save_config(cfg, out / "config.yaml")
        write_json(out / "history.json", history)
        write_manifest(
            out,
            stage="train-decoder",
            config=to_dict(cfg),
            inputs={"dataset": str(root.absolute()), "store": str(Path(store).absolute()), **inputs},
            outputs={"decoder": DECODER_FILE},
            extra={"key": key},
        )
    return out
