"""SDXL-Turbo conditioned through IP-Adapters on EEG-predicted embeddings, batched correctly.

The generator of CognitionCapturerPro (Zhang et al., CVPR 2026, XiaoZhangYES/CognitionCapturerPro), ATM and
ENIGMA: ``stabilityai/sdxl-turbo`` (EulerAncestral, 512 px, guidance 0) with ``h94/IP-Adapter``'s
``sdxl_models/ip-adapter_sdxl_vit-h.safetensors`` loaded three times (image, depth, edge), fed 1024-d
OpenCLIP ViT-H-14 ``image_embeds`` predicted from EEG, with InstantStyle-style block scales: the image adapter
on the layout and style blocks, depth and edge at half strength on the layout block only.

What we do differently from the released code, on purpose:

- **Batches are right.** diffusers' SDXL pipeline repeats given IP embeds ``batch_size x num_images_per_prompt``
  times (diffusers #9813, open in 0.42.1), and attention folds the surplus into extra tokens without an error,
  so every image of a batch sees every other's embedding. :class:`IPAdapterSDXLPipeline` repeats them by
  ``num_images_per_prompt`` only (we keep it 1; rounds and stimuli go in the batch).
- **One generator per image**, seeded by (seed, stimulus, round): the ancestral sampler draws noise at every
  step, so an image does not depend on its batch, and a batch of B equals B single runs.
- **Embeds as the pipeline expects them**: (B, 1, 1024) per adapter without guidance; with guidance > 1,
  (2B, 1, 1024), negatives (zeros) first. The released zeros+embed stack at guidance 0 is a batch of 2 folded
  into 8 tokens, 4 of them from the zero vector.
- **Empty prompt**, encoded once (a test-concept name would be leakage).
- **No black images**: the VAE keeps ``force_upcast`` (or runs in float32/bfloat16); a NaN or black image is an
  error naming its stimulus.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

from ..io import DataFormatError, Eeg2ImageError, atomic_path, check_option, check_range, fault_point

__all__ = [
    "IP_ADAPTER_REPO",
    "MODALITIES",
    "REFERENCE_SCALES",
    "SDXL_TURBO",
    "GenerationConfig",
    "GenerationError",
    "IPAdapterSDXLImg2ImgPipeline",
    "IPAdapterSDXLPipeline",
    "Reconstructor",
    "image_seed",
    "load_sdxl_pipeline",
    "tiny_sdxl_pipeline",
]

#: The adapters, in the order they are loaded and scaled.
MODALITIES = ("image", "depth", "edge")

#: CognitionCapturerPro's block scales (InstantStyle dicts; blocks not listed are 0).
REFERENCE_SCALES: dict[str, dict[str, Any]] = {
    "image": {"down": {"block_2": [1.0, 1.0]}, "up": {"block_0": [1.0, 1.0, 1.0]}},
    "depth": {"down": {"block_2": [0.0, 0.5]}, "up": {"block_0": [0.0, 0.0, 0.0]}},
    "edge": {"down": {"block_2": [0.0, 0.5]}, "up": {"block_0": [0.0, 0.0, 0.0]}},
}


class GenerationError(Eeg2ImageError):
    """The generator produced something unusable (NaN or black images), or cannot run as configured."""


@dataclass
class GenerationConfig:
    """How images are generated (SDXL-Turbo defaults; the reference used 5 steps at guidance 0, 512 px)."""

    steps: int = 5
    guidance_scale: float = 0.0  # classifier-free guidance only above 1 (diffusers' rule)
    size: int = 512
    rounds: int = 1  # images per stimulus (the j-th image of every stimulus is "round j")
    # the low-level path: how much of the EEG-predicted VAE latent the image keeps (img2img from it; diffusers'
    # strength is 1 - init_strength, so steps x (1 - init_strength) denoising steps run). 0: text-to-image from
    # noise, the latent unused (CognitionCapturerPro's setting); jyang635 used diffusers strength 0.25-0.75
    init_strength: float = 0.0
    batch_size: int = 8  # images per pipeline call
    seed: int = 0
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    scales: dict[str, Any] = field(default_factory=lambda: dict(REFERENCE_SCALES))

    def __post_init__(self) -> None:
        check_range("generate.steps", self.steps, 1)
        check_range("generate.guidance_scale", self.guidance_scale, 0)
        check_range("generate.size", self.size, 8)
        check_range("generate.rounds", self.rounds, 1)
        check_range("generate.init_strength", self.init_strength, 0, 1, high_open=True)
        check_range("generate.batch_size", self.batch_size, 1)
        for m in self.modalities:
            check_option("modality", m, MODALITIES, where="generate.modalities")
        if not self.modalities:
            raise DataFormatError("generate.modalities is empty; expected some of " + ", ".join(MODALITIES))
        for m in self.modalities:
            if m not in self.scales:
                raise DataFormatError(f"generate.scales has no entry for modality {m!r}")

    @property
    def cfg(self) -> bool:
        return self.guidance_scale > 1


def image_seed(seed: int, stimulus: str, round_: int) -> int:
    """The seed of one image: a stable hash of (generation seed, stimulus id, round), independent of batching."""
    return zlib.crc32(f"{seed}/{stimulus}/{round_}".encode()) & 0x7FFFFFFF


class _GivenIPEmbeds:
    """Given IP-Adapter embeds used as they are: one row per image of the batch (and, with guidance, negatives
    first), never repeated by the batch size (diffusers #9813)."""

    def prepare_ip_adapter_image_embeds(
        self, ip_adapter_image, ip_adapter_image_embeds, device, num_images_per_prompt, do_classifier_free_guidance
    ):
        if ip_adapter_image_embeds is None:
            raise GenerationError("the pipeline takes embeddings (ip_adapter_image_embeds), not images")
        return [e.to(device) for e in ip_adapter_image_embeds]


class IPAdapterSDXLPipeline(_GivenIPEmbeds, StableDiffusionXLPipeline):
    """``StableDiffusionXLPipeline`` whose given IP-Adapter embeds are used as they are: one row per image of the
    batch (and, with guidance, negatives first), never repeated by the batch size (diffusers #9813)."""


class IPAdapterSDXLImg2ImgPipeline(_GivenIPEmbeds, StableDiffusionXLImg2ImgPipeline):
    """The img2img pipeline of the same components (the low-level path: ``image`` = the EEG-predicted latents,
    already scaled by the VAE's ``scaling_factor``), with the same handling of the IP-Adapter embeds."""


class Reconstructor:
    """Images from embeddings: ``generate({modality: (N, D)}, stimulus ids) -> {(seed, round, stimulus): image}``.

    Takes a ready pipeline (an :class:`IPAdapterSDXLPipeline` with ``len(config.modalities)`` IP-Adapters loaded)
    and the empty prompt's embeddings (encoded once by :meth:`encode_empty_prompt`, or given)."""

    def __init__(self, pipe, config: GenerationConfig, prompt_embeds=None, pooled_prompt_embeds=None):
        self.pipe, self.config = pipe, config
        n_adapters = len(pipe.unet.encoder_hid_proj.image_projection_layers)
        if n_adapters != len(config.modalities):
            raise GenerationError(
                f"the pipeline has {n_adapters} IP-Adapter(s), the config lists modalities {config.modalities}"
            )
        pipe.set_ip_adapter_scale([config.scales[m] for m in config.modalities])
        if prompt_embeds is None:
            prompt_embeds, pooled_prompt_embeds = self.encode_empty_prompt(pipe)
        self.prompt_embeds, self.pooled = prompt_embeds, pooled_prompt_embeds
        self.embed_dim = pipe.unet.encoder_hid_proj.image_projection_layers[0].image_embeds.in_features

    @staticmethod
    def encode_empty_prompt(pipe) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 77, D), (1, D_pooled) of the empty prompt, encoded once."""
        pe, _, pooled, _ = pipe.encode_prompt("", do_classifier_free_guidance=False)
        return pe, pooled

    def generate(
        self,
        embeds: dict[str, torch.Tensor],
        stimuli: Sequence[str],
        *,
        rounds: Sequence[int] | None = None,
        latents: torch.Tensor | None = None,
    ) -> dict[tuple[int, int, str], np.ndarray]:
        """uint8 (size, size, 3) images for every (round, stimulus), in batches of ``config.batch_size``;
        ``latents`` (N, 4 * h * w): the low-level path's init, used when ``config.init_strength`` > 0."""
        jobs = [
            (r, i) for r in (rounds if rounds is not None else range(self.config.rounds)) for i in range(len(stimuli))
        ]
        out: dict[tuple[int, int, str], np.ndarray] = {}
        for batch in _chunks(jobs, self.config.batch_size):
            idx = [i for _, i in batch]
            keys = [(self.config.seed, r, stimuli[i]) for r, i in batch]
            init = None if latents is None else latents[idx]
            images = self._run({m: e[idx] for m, e in embeds.items()}, keys, init)
            out.update(zip(keys, images, strict=True))
        return out

    def check_embeds(self, embeds: dict[str, torch.Tensor], n: int) -> None:
        for m in self.config.modalities:
            if m not in embeds:
                raise DataFormatError(f"no {m!r} embeddings; expected one (N, {self.embed_dim}) table per modality")
            e = embeds[m]
            if e.ndim != 2 or e.shape != (n, self.embed_dim):
                raise DataFormatError(
                    f"{m!r} embeddings have shape {tuple(e.shape)}; expected ({n}, {self.embed_dim}) (the adapter's "
                    "image_embeds space)"
                )
            if not torch.isfinite(e).all():
                raise DataFormatError(f"{m!r} embeddings hold NaN or Inf")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of the init latents the pipeline's VAE takes at ``config.size``."""
        f = 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)
        return (int(self.pipe.vae.config.latent_channels), self.config.size // f, self.config.size // f)

    def _init_latents(self, latents: torch.Tensor | None, b: int) -> torch.Tensor | None:
        if self.config.init_strength == 0:
            return None  # text-to-image: the latent is not used
        if latents is None:
            raise DataFormatError(
                f"generate.init_strength is {self.config.init_strength}, but no low-level latents were given (align "
                "with --set low_level=vae:<the pipeline's VAE>)"
            )
        c, h, w = self.latent_shape
        if latents.ndim != 2 or latents.shape != (b, c * h * w) or not torch.isfinite(latents).all():
            raise DataFormatError(
                f"init latents have shape {tuple(latents.shape)}; the pipeline's VAE at {self.config.size} px takes "
                f"({b}, {c * h * w}) = {c} x {h} x {w}, finite"
            )
        return latents.reshape(b, c, h, w)

    def _img2img(self):
        if getattr(self, "_i2i", None) is None:
            self._i2i = IPAdapterSDXLImg2ImgPipeline(**self.pipe.components)
            self._i2i.set_progress_bar_config(disable=True)
        return self._i2i

    def _run(
        self, embeds: dict[str, torch.Tensor], keys: list[tuple[int, int, str]], latents: torch.Tensor | None = None
    ) -> list[np.ndarray]:
        b, c = len(keys), self.config
        self.check_embeds(embeds, b)
        init = self._init_latents(latents, b)
        dev, dtype = self.pipe.unet.device, self.pipe.unet.dtype
        ip = []
        for m in c.modalities:
            e = embeds[m].to(dev, dtype)[:, None, :]  # (B, 1, D)
            ip.append(torch.cat([torch.zeros_like(e), e]) if c.cfg else e)  # negatives first
        gens = [torch.Generator(device="cpu").manual_seed(image_seed(seed, stim, r)) for seed, r, stim in keys]
        kw: dict[str, Any] = {
            "prompt_embeds": self.prompt_embeds.to(dev, dtype).expand(b, -1, -1),
            "pooled_prompt_embeds": self.pooled.to(dev, dtype).expand(b, -1),
        }
        if c.cfg:
            kw["negative_prompt_embeds"] = torch.zeros_like(kw["prompt_embeds"])
            kw["negative_pooled_prompt_embeds"] = torch.zeros_like(kw["pooled_prompt_embeds"])
        common = {
            "ip_adapter_image_embeds": ip,
            "num_inference_steps": c.steps,
            "guidance_scale": c.guidance_scale,
            "generator": gens,
            "num_images_per_prompt": 1,
            "output_type": "np",
            **kw,
        }
        if init is None:
            result = self.pipe(height=c.size, width=c.size, **common).images
        else:  # img2img from the EEG-predicted latent (diffusers' strength = 1 - init_strength)
            self._img2img().set_ip_adapter_scale([c.scales[m] for m in c.modalities])
            result = self._img2img()(image=init.to(dev, dtype), strength=1.0 - c.init_strength, **common).images
        images = []
        for k, img in zip(keys, result, strict=True):
            if not np.isfinite(img).all():
                raise GenerationError(f"stimulus {k[2]!r} (seed {k[0]}, round {k[1]}): NaN pixels (an fp16 VAE?)")
            u8 = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
            if u8.max() == 0:
                raise GenerationError(f"stimulus {k[2]!r} (seed {k[0]}, round {k[1]}): a black image (an fp16 VAE?)")
            images.append(u8)
        return images

    def generate_to(
        self,
        out: Path,
        embeds: dict[str, torch.Tensor],
        stimuli: Sequence[str],
        *,
        progress: bool = False,
        latents: torch.Tensor | None = None,
    ) -> list[Path]:
        """Write ``out/seed-S/round-R/<stimulus>.png`` for every image not yet there (a rerun resumes)."""
        from PIL import Image

        def path(r: int, s: str) -> Path:
            return out / f"seed-{self.config.seed}" / f"round-{r}" / f"{s}.png"

        from tqdm.auto import tqdm

        todo = [(r, i) for r in range(self.config.rounds) for i, s in enumerate(stimuli) if not path(r, s).is_file()]
        written = []
        for batch in tqdm(_chunks(todo, self.config.batch_size), desc="generate", disable=not progress, unit="batch"):
            idx = [i for _, i in batch]
            keys = [(self.config.seed, r, stimuli[i]) for r, i in batch]
            init = None if latents is None else latents[idx]
            images = self._run({m: e[idx] for m, e in embeds.items()}, keys, init)
            for (_, r, s), img in zip(keys, images, strict=True):
                with atomic_path(path(r, s)) as tmp:
                    Image.fromarray(img).save(tmp, format="PNG")
                written.append(path(r, s))
            fault_point("generate-batch")
        return written


def _chunks(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)]


# --------------------------------------------------------------------------------------------------
# A tiny SDXL (random weights, made in code) for tests and CPU benchmarks
# --------------------------------------------------------------------------------------------------


def tiny_sdxl_unet(seed: int = 0, cross_dim: int = 64, pooled_dim: int = 32):
    """A UNet with SDXL's block layout (DownBlock2D + 2 CrossAttnDownBlock2D, mirrored, 2 layers per block), so
    the reference's block dicts (``down.block_2``: 2 attentions, ``up.block_0``: 3) resolve; tiny channels."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(16, 32, 32),
        layers_per_block=2,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1, 1),
        projection_class_embeddings_input_dim=pooled_dim + 6 * 8,
        cross_attention_dim=cross_dim,
        norm_num_groups=8,
    )


def tiny_ip_adapter_state_dict(unet, image_embed_dim: int = 1024, seed: int = 0) -> dict[str, torch.Tensor]:
    """IP-Adapter weights for ``unet`` made as diffusers' ``create_ip_adapter_state_dict`` test helper makes them:
    ``image_proj.proj`` from ``image_embed_dim`` (1024, ViT-H) to 4 tokens, ``to_k_ip``/``to_v_ip`` for every
    cross-attention (numbered 1, 3, 5, ... in processor order, as diffusers' loader reads them); flat, as the h94
    file stores it."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor
    from diffusers.models.embeddings import ImageProjection

    torch.manual_seed(seed)
    cfg = unet.config
    out: dict[str, torch.Tensor] = {}
    key_id = 1
    for name in unet.attn_processors:
        if not name.endswith("attn1.processor"):
            if name.startswith("mid_block"):
                hidden = cfg.block_out_channels[-1]
            elif name.startswith("up_blocks"):
                hidden = list(reversed(cfg.block_out_channels))[int(name[len("up_blocks.")])]
            else:
                hidden = cfg.block_out_channels[int(name[len("down_blocks.")])]
            sd = IPAdapterAttnProcessor(hidden_size=hidden, cross_attention_dim=cfg.cross_attention_dim).state_dict()
            out[f"ip_adapter.{key_id}.to_k_ip.weight"] = sd["to_k_ip.0.weight"]
            out[f"ip_adapter.{key_id}.to_v_ip.weight"] = sd["to_v_ip.0.weight"]
            key_id += 2
    proj = ImageProjection(
        cross_attention_dim=cfg.cross_attention_dim, image_embed_dim=image_embed_dim, num_image_text_embeds=4
    ).state_dict()
    out["image_proj.proj.weight"] = proj["image_embeds.weight"]
    out["image_proj.proj.bias"] = proj["image_embeds.bias"]
    out["image_proj.norm.weight"] = proj["norm.weight"]
    out["image_proj.norm.bias"] = proj["norm.bias"]
    return out


def turbo_scheduler():
    """SDXL-Turbo's sampler: Euler ancestral, scaled-linear betas 0.00085..0.012, trailing timesteps."""
    from diffusers import EulerAncestralDiscreteScheduler

    return EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing"
    )


def tiny_sdxl_pipeline(
    seed: int = 0, *, ip_adapter_folder: Path | None = None, n_adapters: int = 3, image_embed_dim: int = 1024
):
    """An :class:`IPAdapterSDXLPipeline` of tiny random components (no tokenizers or text encoders: prompts come
    as embeddings). With ``ip_adapter_folder``, ``n_adapters`` copies of a tiny IP-Adapter taking
    ``image_embed_dim``-d embeddings are written there as ``sdxl_models/ip-adapter_sdxl_vit-h.safetensors`` (the
    h94 layout) and loaded by the real path."""
    from diffusers import AutoencoderKL

    unet = tiny_sdxl_unet(seed)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    scheduler = turbo_scheduler()
    pipe = IPAdapterSDXLPipeline(
        vae=vae,
        text_encoder=None,
        text_encoder_2=None,
        tokenizer=None,
        tokenizer_2=None,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    pipe.set_progress_bar_config(disable=True)
    if ip_adapter_folder is not None:
        from ..io import save_safetensors

        save_safetensors(
            ip_adapter_folder / "sdxl_models" / IP_ADAPTER_FILE, tiny_ip_adapter_state_dict(unet, image_embed_dim)
        )
        load_ip_adapters(pipe, ip_adapter_folder, n_adapters)
    return pipe


IP_ADAPTER_FILE = "ip-adapter_sdxl_vit-h.safetensors"


def load_ip_adapters(pipe, folder: Path, n: int = 3) -> None:
    """``n`` copies of ``folder/sdxl_models/ip-adapter_sdxl_vit-h.safetensors`` (an h94/IP-Adapter snapshot), with
    no image encoder: embeddings go in directly (``sdxl_models/image_encoder`` is bigG anyway)."""
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()  # "image_encoder is not loaded": on purpose
    try:
        pipe.load_ip_adapter(
            str(folder), subfolder="sdxl_models", weight_name=[IP_ADAPTER_FILE] * n, image_encoder_folder=None
        )
    finally:
        logging.set_verbosity(level)


SDXL_TURBO = "stabilityai/sdxl-turbo"
IP_ADAPTER_REPO = "h94/IP-Adapter"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _sdxl_folders(sdxl: str | Path, ip_adapter: str | Path, dtype: str) -> tuple[Path, Path, str | None]:
    """(SDXL folder, IP-Adapter folder, the weights variant loaded: fp16 in float16 when the folder has it)."""
    from ..features.weights import resolve_hf_folder

    folder = resolve_hf_folder(str(sdxl), ("model_index.json", "unet/config.json", "vae/config.json"), "SDXL pipeline")
    ip = resolve_hf_folder(str(ip_adapter), (f"sdxl_models/{IP_ADAPTER_FILE}",), "IP-Adapter")
    ip = ip.parent if ip.name == "sdxl_models" else ip
    variant = "fp16" if dtype == "float16" and any((folder / "unet").glob("*.fp16.safetensors")) else None
    return folder, ip, variant


SDXL_WEIGHTED = ("unet", "vae", "text_encoder", "text_encoder_2")


def sdxl_weights(sdxl: str | Path = SDXL_TURBO, ip_adapter: str | Path = IP_ADAPTER_REPO, *, dtype: str) -> dict:
    """The weights files ``load_sdxl_pipeline`` loads with these arguments, each with its ``file_fingerprint``:
    what a reconstruction's manifest records of the generator that drew it."""
    from ..features.weights import file_fingerprint

    folder, ip, variant = _sdxl_folders(sdxl, ip_adapter, dtype)
    files = {}
    for part in SDXL_WEIGHTED:
        for f in sorted((folder / part).glob("*.safetensors")):
            if (".fp16." in f.name) == (variant == "fp16"):
                files[f"{part}/{f.name}"] = file_fingerprint(f)
    files[f"sdxl_models/{IP_ADAPTER_FILE}"] = file_fingerprint(ip / "sdxl_models" / IP_ADAPTER_FILE)
    return {"sdxl": str(folder), "ip_adapter": str(ip), "variant": variant, "files": files}


def load_sdxl_pipeline(
    sdxl: str | Path = SDXL_TURBO,
    ip_adapter: str | Path = IP_ADAPTER_REPO,
    *,
    n_adapters: int = 3,
    dtype: str = "float16",
    device: str | torch.device | None = None,
):
    """SDXL-Turbo with ``n_adapters`` copies of the ViT-H SDXL IP-Adapter, from local folders or the Hugging Face
    cache (offline; ``MissingWeightsError`` names what is missing and how to fetch it). In float16 the VAE must
    keep ``force_upcast`` (decoding in float32): an fp16 decode overflows to NaN, i.e. black images."""
    check_option("dtype", dtype, DTYPES, where="generate.dtype")
    folder, ip, variant = _sdxl_folders(sdxl, ip_adapter, dtype)
    pipe = IPAdapterSDXLPipeline.from_pretrained(
        str(folder), dtype=DTYPES[dtype], variant=variant, local_files_only=True, use_safetensors=True
    )
    if dtype == "float16" and not pipe.vae.config.get("force_upcast", False):
        raise GenerationError(
            f"{folder / 'vae/config.json'}: force_upcast is off, so the VAE would decode in float16 and overflow to "
            "NaN (black images); keep it on, use the fp16-fix VAE, or generate in bfloat16/float32"
        )
    load_ip_adapters(pipe, ip, n_adapters)
    pipe.set_progress_bar_config(disable=True)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return pipe.to(device)


def tiny_prompt_embeds(cross_dim: int = 64, pooled_dim: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The tiny pipeline's 'empty prompt' (zeros, as SDXL's ``force_zeros_for_empty_prompt`` negative)."""
    return torch.zeros(1, 77, cross_dim), torch.zeros(1, pooled_dim)
