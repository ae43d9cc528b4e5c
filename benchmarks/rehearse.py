"""The rehearsal (issue 20): every network ``make reference`` and ``make reference-recon`` read, built at its real
architecture with random weights, written where the caches hold the real ones; then both commands run on them.

    make rehearse                                                # = python -m benchmarks.rehearse run rehearsal
    python -m benchmarks.rehearse figures rehearsal              # the figures of a finished run, again
    python -m benchmarks.rehearse kit rehearsal/cache            # fabricate every network (real size, ~30 GB)
    python -m benchmarks.rehearse kit rehearsal/cache --only ipadapter,depth --tiny   # tiny configs, same layout

The caches are laid out exactly as the libraries write them, so our loaders find them by the same code path as a
user's downloads:

- Hugging Face (``HF_HUB_CACHE``): ``models--org--name/refs/main`` (the revision), ``snapshots/<rev>/<path>`` as
  relative symlinks to ``blobs/<sha256>`` (``huggingface_hub``'s layout on Linux);
- torch hub (``TORCH_HOME``): ``hub/checkpoints/<the file name of the weights' URL>`` (where torchvision's
  ``load_state_dict_from_url`` and ``torch.hub`` keep them).

Every folder the kit makes carries a marker file (``MARKER``): **nothing computed from these weights is a
result**. ``--tiny`` keeps every layout, file name and config key and shrinks the sizes (the fast test of the
layouts, ``tests/test_rehearsal_kit.py``); networks whose architecture is fixed by name (OpenCLIP's, torchvision's)
have no tiny form and are always real.

Sources of the real config values are cited per network below.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from eeg2image.io import REHEARSAL_LABEL
from eeg2image.io import REHEARSAL_MARKER as MARKER

REVISION = hashlib.sha1(b"eeg2image rehearsal: random weights").hexdigest()
MARKER_TEXT = (
    "rehearsal: random weights. Made by benchmarks/rehearse.py (eeg2image, issue 20) at the real architecture with "
    "random weights; nothing computed from these files is a result.\n"
)


# --------------------------------------------------------------------------------------------------
# The caches' layouts
# --------------------------------------------------------------------------------------------------


class Cache:
    """A Hugging Face hub cache and a torch hub directory under one root (``root/huggingface/hub``,
    ``root/torch/hub/checkpoints``); ``env()`` points the libraries at them, offline."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hf = self.root / "huggingface" / "hub"
        self.torch_home = self.root / "torch"
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).write_text(MARKER_TEXT)

    def env(self) -> dict[str, str]:
        return {
            "HF_HOME": str(self.root / "huggingface"),
            "HF_HUB_CACHE": str(self.hf),
            "TORCH_HOME": str(self.torch_home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }

    def snapshot(self, repo: str) -> Snapshot:
        return Snapshot(self.hf / f"models--{repo.replace('/', '--')}")

    def torch_hub_file(self, url: str) -> Path:
        """Where ``torch.hub.load_state_dict_from_url(url)`` keeps its download."""
        path = self.torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / MARKER).write_text(MARKER_TEXT)
        return path


class Snapshot:
    """One repository in the hub cache at ``REVISION``: files go to ``blobs/<sha256>``, linked from the snapshot."""

    def __init__(self, base: Path):
        self.base = base
        self.dir = base / "snapshots" / REVISION
        (base / "refs").mkdir(parents=True, exist_ok=True)
        (base / "refs" / "main").write_text(REVISION)
        (base / "blobs").mkdir(exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        (base / MARKER).write_text(MARKER_TEXT)

    def put(self, rel: str, write: Callable[[Path], None]) -> Path:
        """``write(tmp_path)`` makes the file; it becomes a blob, and ``snapshots/<rev>/<rel>`` links to it."""
        fd, tmp = tempfile.mkstemp(dir=self.base / "blobs", prefix=".incomplete-")
        os.close(fd)
        write(Path(tmp))
        h = hashlib.sha256()
        with open(tmp, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
        blob = self.base / "blobs" / h.hexdigest()
        os.replace(tmp, blob)
        link = self.dir / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
        return link

    def json(self, rel: str, obj: Any) -> Path:
        return self.put(rel, lambda p: p.write_text(json.dumps(obj, indent=2)))

    def text(self, rel: str, text: str) -> Path:
        return self.put(rel, lambda p: p.write_text(text, encoding="utf-8"))

    def tensors(
        self, rel: str, state: dict[str, torch.Tensor], dtype: torch.dtype | None = None, metadata: bool = True
    ) -> Path:
        """A safetensors file (``metadata``: ``{"format": "pt"}``, as torch-saved files carry it)."""
        from safetensors.torch import save_file

        sd = {
            k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
            for k, v in state.items()
        }
        meta = {"format": "pt"} if metadata else None
        return self.put(rel, lambda p: save_file(sd, str(p), metadata=meta))

    def save_pretrained(self, rel: str, model, **kwargs) -> list[Path]:
        """A diffusers / transformers model's own ``save_pretrained`` output, moved into blobs file by file."""
        with tempfile.TemporaryDirectory(dir=self.base) as tmp:
            model.save_pretrained(tmp, **kwargs)
            return [self._adopt(Path(tmp), f, rel) for f in sorted(Path(tmp).rglob("*")) if f.is_file()]

    def _adopt(self, root: Path, f: Path, rel: str) -> Path:
        name = f.relative_to(root).as_posix()
        return self.put(f"{rel}/{name}" if rel else name, lambda p: os.replace(f, p))


# --------------------------------------------------------------------------------------------------
# The networks
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    key: str
    what: str  # what it is, and where our code loads it
    source: str  # where its real config values come from
    make: Callable[[Cache, bool], list[str]]  # (cache, tiny) -> what was written (repo ids / files)


def _openclip(arch: str, tag: str) -> Callable[[Cache, bool], list[str]]:
    """OpenCLIP ``arch/tag`` at its real architecture (open_clip's own model config, shipped in the package), saved
    as ``open_clip_model.safetensors`` in the repository open_clip's pretrained table names (``hf_hub``)."""

    def make(cache: Cache, tiny: bool) -> list[str]:
        import open_clip

        repo = open_clip.get_pretrained_cfg(arch, tag)["hf_hub"].strip("/")
        torch.manual_seed(0)
        model = open_clip.create_model(arch, pretrained=None)
        snap = cache.snapshot(repo)
        snap.tensors("open_clip_model.safetensors", model.state_dict())
        snap.json("open_clip_config.json", {"model_cfg": open_clip.get_model_config(arch)})
        return [f"{repo}/open_clip_model.safetensors"]

    return make


#: The IP-Adapter image encoder (h94/IP-Adapter models/image_encoder/config.json: OpenCLIP ViT-H/14 as
#: transformers' CLIPVisionModelWithProjection); values as that file gives them (its copies at GitHub
#: qhdamm/AAI3201_Final_Project and altayavci/OutfitChanger, blob 9c841dd; weights float32, 632,076,800 of them).
IPADAPTER_ENCODER = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1024,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
TINY_IPADAPTER_ENCODER = {
    **IPADAPTER_ENCODER,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}


def _ipadapter(cache: Cache, tiny: bool) -> list[str]:
    """h94/IP-Adapter: ``models/image_encoder`` (config.json + model.safetensors) and
    ``sdxl_models/ip-adapter_sdxl_vit-h.safetensors`` with h94's key names, shaped for SDXL's UNet (or the tiny
    SDXL's with ``tiny``): ``image_proj.proj`` 1024 -> 4 x cross_attention_dim, ``image_proj.norm``,
    ``ip_adapter.<1,3,5,...>.to_{k,v}_ip`` per cross-attention."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from eeg2image.generation.sdxl import IP_ADAPTER_FILE, IP_ADAPTER_REPO, tiny_ip_adapter_state_dict

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(**(TINY_IPADAPTER_ENCODER if tiny else IPADAPTER_ENCODER))
    snap = cache.snapshot(IP_ADAPTER_REPO)
    snap.save_pretrained("models/image_encoder", CLIPVisionModelWithProjection(cfg), safe_serialization=True)
    with torch.device("meta"):
        unet = _sdxl_unet(tiny)
    state = tiny_ip_adapter_state_dict(unet, image_embed_dim=1024)
    snap.tensors(f"sdxl_models/{IP_ADAPTER_FILE}", state, dtype=torch.float16, metadata=False)  # as h94's: fp16, bare
    return [f"{IP_ADAPTER_REPO}/models/image_encoder", f"{IP_ADAPTER_REPO}/sdxl_models/{IP_ADAPTER_FILE}"]


#: stabilityai/sdxl-turbo unet/config.json (SDXL's UNet: diffusers' UNet2DConditionModel). The sdxl-turbo values
#: here and below are those of the repository's files as its byte-for-byte copy at GitHub JSchalter/models
#: (``sdxl-turbo/``) holds them; the weight files' sizes there (Git LFS pointers) match these configs' parameter
#: counts exactly (unet 10,270,077,736 bytes in float32).
SDXL_UNET = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 64,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
TINY_TEXT = (32, 32)  # the tiny text encoders' widths: cross_attention_dim = their sum, pooled = the second's
TINY_SDXL_UNET = {
    **SDXL_UNET,
    "addition_embed_type_num_heads": 8,
    "addition_time_embed_dim": 8,
    "attention_head_dim": [2, 4, 4],
    "block_out_channels": [16, 32, 32],
    "cross_attention_dim": sum(TINY_TEXT),
    "norm_num_groups": 8,
    "projection_class_embeddings_input_dim": TINY_TEXT[1] + 6 * 8,
    "sample_size": 16,
    "transformer_layers_per_block": [1, 1, 1],
}


def _sdxl_unet(tiny: bool):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**(TINY_SDXL_UNET if tiny else SDXL_UNET))


#: stabilityai/sdxl-turbo vae/config.json (SDXL's VAE, diffusers' AutoencoderKL).
SDXL_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
TINY_SDXL_VAE = {
    **SDXL_VAE,
    "block_out_channels": [8, 16],
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "norm_num_groups": 8,
    "sample_size": 32,
}

#: sdxl-turbo text_encoder/config.json (OpenAI CLIP ViT-L/14's text tower) and text_encoder_2/config.json
#: (OpenCLIP ViT-bigG/14's, with its projection).
SDXL_TEXT_1 = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}
SDXL_TEXT_2 = {
    **SDXL_TEXT_1,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}


def _tiny_text(width: int) -> dict:
    return {
        **SDXL_TEXT_1,
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "projection_dim": width,
    }


#: sdxl-turbo scheduler/scheduler_config.json.
SDXL_TURBO_SCHEDULER = {
    "_class_name": "EulerAncestralDiscreteScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}


def clip_bpe_files() -> tuple[dict[str, int], str]:
    """The CLIP tokenizer's ``vocab.json`` and ``merges.txt`` as Hugging Face stores them, derived from the BPE
    table open_clip ships (``bpe_simple_vocab_16e6.txt.gz``, OpenAI's): the 256 byte symbols, the same with
    ``</w>``, the 48,894 merges, then ``<|startoftext|>`` and ``<|endoftext|>`` (49,408 entries)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in lines]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}, "#version: 0.2\n" + "\n".join(lines) + "\n"


def _token(content: str, normalized: bool = True) -> dict:
    return {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False, "single_word": False}


def _tokenizer(snap: Snapshot, rel: str, pad: str) -> None:
    """sdxl-turbo ``tokenizer/`` (pad ``<|endoftext|>``) and ``tokenizer_2/`` (pad ``!``, id 0): CLIPTokenizer files,
    no ``tokenizer.json`` (as the repository holds them: its copy at GitHub JSchalter/models ``sdxl-turbo/``)."""
    vocab, merges = clip_bpe_files()
    snap.json(f"{rel}/vocab.json", vocab)
    snap.text(f"{rel}/merges.txt", merges)
    added = {str(vocab[t]): {**_token(t), "special": True} for t in ("<|startoftext|>", "<|endoftext|>")}
    if pad == "!":
        added = {"0": {**_token("!", normalized=False), "special": True}, **added}
    snap.json(
        f"{rel}/special_tokens_map.json",
        {
            "bos_token": _token("<|startoftext|>"),
            "eos_token": _token("<|endoftext|>"),
            "pad_token": pad if pad == "!" else _token(pad, normalized=False),
            "unk_token": _token("<|endoftext|>"),
        },
    )
    snap.json(
        f"{rel}/tokenizer_config.json",
        {
            "add_prefix_space": False,
            "added_tokens_decoder": added,
            "bos_token": "<|startoftext|>",
            "clean_up_tokenization_spaces": True,
            "do_lower_case": True,
            "eos_token": "<|endoftext|>",
            "errors": "replace",
            "model_max_length": 77,
            "pad_token": pad,
            "tokenizer_class": "CLIPTokenizer",
            "unk_token": "<|endoftext|>",
        },
    )


def _sdxl_turbo(cache: Cache, tiny: bool) -> list[str]:
    """stabilityai/sdxl-turbo as ``StableDiffusionXLPipeline.from_pretrained`` reads it: ``model_index.json``, unet,
    vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, scheduler; weights as ``*.safetensors`` and the
    ``fp16`` variants (``*.fp16.safetensors``) the repository also holds."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from eeg2image.generation.sdxl import SDXL_TURBO

    snap = cache.snapshot(SDXL_TURBO)
    snap.json(
        "model_index.json",
        {
            "_class_name": "StableDiffusionXLPipeline",
            "_diffusers_version": "0.24.0.dev0",
            "feature_extractor": [None, None],
            "force_zeros_for_empty_prompt": True,
            "image_encoder": [None, None],
            "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
    )
    snap.json("scheduler/scheduler_config.json", SDXL_TURBO_SCHEDULER)
    _tokenizer(snap, "tokenizer", "<|endoftext|>")
    _tokenizer(snap, "tokenizer_2", "!")
    parts = [
        ("text_encoder", lambda: CLIPTextModel(CLIPTextConfig(**(_tiny_text(TINY_TEXT[0]) if tiny else SDXL_TEXT_1)))),
        (
            "text_encoder_2",
            lambda: CLIPTextModelWithProjection(CLIPTextConfig(**(_tiny_text(TINY_TEXT[1]) if tiny else SDXL_TEXT_2))),
        ),
        ("vae", lambda: AutoencoderKL(**(TINY_SDXL_VAE if tiny else SDXL_VAE))),
        ("unet", lambda: _sdxl_unet(tiny)),
    ]
    for i, (name, build) in enumerate(parts):
        torch.manual_seed(i)
        model = build()
        snap.save_pretrained(name, model, safe_serialization=True)
        snap.save_pretrained(name, model.to(torch.float16), safe_serialization=True, variant="fp16")
        del model
    return [SDXL_TURBO]


#: LiheYoung/depth-anything-base-hf config.json (transformers' DepthAnythingConfig; the base size as transformers'
#: convert_depth_anything_to_hf.py sets it: facebook/dinov2-base, out_indices [9, 10, 11, 12], fusion 128, neck
#: [96, 192, 384, 768]; the values as the re-save Xenova/depth-anything-base-hf records them); the backbone's other
#: values are Dinov2Config's defaults.
DEPTH_ANYTHING_BASE = {
    "backbone_config": {
        "model_type": "dinov2",
        "hidden_size": 768,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "mlp_ratio": 4,
        "patch_size": 14,
        "image_size": 518,
        "layerscale_value": 1.0,
        "out_indices": [9, 10, 11, 12],
        "reshape_hidden_states": False,
        "apply_layernorm": True,
    },
    "neck_hidden_sizes": [96, 192, 384, 768],
    "fusion_hidden_size": 128,
    "head_hidden_size": 32,
    "reassemble_factors": [4, 2, 1, 0.5],
    "reassemble_hidden_size": 768,
    "patch_size": 14,
}
TINY_DEPTH_ANYTHING = {
    **DEPTH_ANYTHING_BASE,
    "backbone_config": {
        **DEPTH_ANYTHING_BASE["backbone_config"],
        "hidden_size": 32,
        "num_attention_heads": 2,
        "num_hidden_layers": 4,
        "out_indices": [1, 2, 3, 4],
    },
    "neck_hidden_sizes": [8, 16, 16, 32],
    "fusion_hidden_size": 16,
    "head_hidden_size": 8,
    "reassemble_hidden_size": 32,
}
#: LiheYoung/depth-anything-base-hf preprocessor_config.json (DPTImageProcessor; the conversion script's values, the
#: 437-byte file of the Depth Anything repositories).
DEPTH_ANYTHING_PROCESSOR = {
    "do_normalize": True,
    "do_pad": False,
    "do_rescale": True,
    "do_resize": True,
    "ensure_multiple_of": 14,
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "DPTImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "keep_aspect_ratio": True,
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 518, "width": 518},
    "size_divisor": None,
}


def _depth_anything(cache: Cache, tiny: bool) -> list[str]:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    repo = "LiheYoung/depth-anything-base-hf"
    torch.manual_seed(0)
    cfg = DepthAnythingConfig(**(TINY_DEPTH_ANYTHING if tiny else DEPTH_ANYTHING_BASE))
    snap = cache.snapshot(repo)
    snap.save_pretrained("", DepthAnythingForDepthEstimation(cfg), safe_serialization=True)
    processor = DEPTH_ANYTHING_PROCESSOR
    if tiny:
        processor = {**processor, "size": {"height": 56, "width": 56}}
    snap.json("preprocessor_config.json", processor)
    return [repo]


def _torchvision(arch: str, weights_enum: str, weights_name: str, **kwargs) -> Callable[[Cache, bool], list[str]]:
    """A torchvision classifier at its real architecture, saved where ``torchvision`` caches ``weights_enum``'s
    URL (the file name comes from torchvision's own weights table)."""

    def make(cache: Cache, tiny: bool) -> list[str]:
        import torchvision.models as tvm

        url = getattr(getattr(tvm, weights_enum), weights_name).url
        torch.manual_seed(0)
        model = getattr(tvm, arch)(weights=None, **kwargs)
        path = cache.torch_hub_file(url)
        torch.save(model.state_dict(), path)
        return [str(path.relative_to(cache.root))]

    return make


def _swav(cache: Cache, tiny: bool) -> list[str]:
    """facebookresearch/swav ``swav_800ep_pretrain.pth.tar``: a flat state dict of SwAV's ResNet-50 under
    ``module.`` (DistributedDataParallel; swav ``hubconf.py`` strips it), no ``fc``, with its projection head
    (2048 -> 2048 -> 128, BatchNorm) and 3,000 prototypes (swav issues #6 and #109 list the keys; the shapes from
    ``src/resnet50.py`` and ``scripts/swav_800ep_pretrain.sh``: ``--feat_dim 128 --nmb_prototypes 3000``)."""
    import torchvision.models as tvm

    from eeg2image.evaluation.reconstruction import SWAV_URL

    torch.manual_seed(0)
    state = {k: v for k, v in tvm.resnet50(weights=None).state_dict().items() if not k.startswith("fc.")}
    head = torch.nn.Sequential(
        torch.nn.Linear(2048, 2048), torch.nn.BatchNorm1d(2048), torch.nn.ReLU(), torch.nn.Linear(2048, 128)
    )
    state |= {f"projection_head.{k}": v for k, v in head.state_dict().items()}
    state["prototypes.weight"] = torch.randn(3000, 128)
    path = cache.torch_hub_file(SWAV_URL)
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    return [str(path.relative_to(cache.root))]


NETWORKS: dict[str, Network] = {
    n.key: n
    for n in (
        Network(
            "openclip-rn50",
            "OpenCLIP RN50/openai: `make reference`'s blur-bank targets (`openclip:RN50/openai`)",
            "open_clip's model config RN50.json (in the package)",
            _openclip("RN50", "openai"),
        ),
        Network(
            "openclip-vith14",
            "OpenCLIP ViT-H-14/laion2b_s32b_b79k: the experts' targets and texts, the `clip_vith14` metric",
            "open_clip's ViT-H-14.json",
            _openclip("ViT-H-14", "laion2b_s32b_b79k"),
        ),
        Network(
            "openclip-vitl14",
            "OpenAI ViT-L/14 for open_clip: the `clip_vitl14` metric",
            "open_clip's ViT-L-14.json",
            _openclip("ViT-L-14", "openai"),
        ),
        Network(
            "ipadapter",
            "h94/IP-Adapter: the image encoder (`ipadapter:h94/IP-Adapter`) and the SDXL adapter",
            "h94/IP-Adapter models/image_encoder/config.json; diffusers' IP-Adapter loader",
            _ipadapter,
        ),
        Network(
            "depth",
            "Depth Anything V1 base (`depth:model=LiheYoung/depth-anything-base-hf`)",
            "transformers' DepthAnythingConfig, convert_depth_anything_to_hf.py (base)",
            _depth_anything,
        ),
        Network(
            "sdxl-turbo",
            "stabilityai/sdxl-turbo: the generator and its VAE (the low-level path's latents)",
            "stabilityai/sdxl-turbo's config files",
            _sdxl_turbo,
        ),
        Network(
            "alexnet",
            "AlexNet (`alexnet2`, `alexnet5`)",
            "torchvision AlexNet_Weights.IMAGENET1K_V1",
            _torchvision("alexnet", "AlexNet_Weights", "IMAGENET1K_V1"),
        ),
        Network(
            "inception",
            "Inception-v3 (`inception`)",
            "torchvision Inception_V3_Weights.IMAGENET1K_V1",
            _torchvision("inception_v3", "Inception_V3_Weights", "IMAGENET1K_V1", aux_logits=True, init_weights=True),
        ),
        Network(
            "effnet-b1",
            "EfficientNet-B1 (`effnet_b1`)",
            "torchvision EfficientNet_B1_Weights.DEFAULT",
            _torchvision("efficientnet_b1", "EfficientNet_B1_Weights", "DEFAULT"),
        ),
        Network("swav", "SwAV ResNet-50 (`swav`)", "facebookresearch/swav hubconf.py, src/resnet50.py", _swav),
    )
}


def make_kit(root: str | Path, only: list[str] | None = None, *, tiny: bool = False, log=print) -> Cache:
    """Fabricate ``only`` (default: every network) into the caches under ``root``."""
    cache = Cache(root)
    for key in only or list(NETWORKS):
        if key not in NETWORKS:
            raise SystemExit(f"--only: unknown network {key!r}; known: {', '.join(NETWORKS)}")
        net = NETWORKS[key]
        written = net.make(cache, tiny)
        log(f"{key}: {', '.join(written)} ({'tiny' if tiny else 'real size'}, random weights; from {net.source})")
    return cache


# --------------------------------------------------------------------------------------------------
# The rehearsal run: both reference commands, unchanged, on the kit and a simulated dataset
# --------------------------------------------------------------------------------------------------

#: The ordinary options that cut the reference commands' counts to what a 2-core CPU runs in about 45 minutes
#: (epochs, seeds, diffusion steps, image size); the data is the `tiny` simulated dataset (64 training images, 8
#: test). Nothing else differs from what a user runs.
CPU_ARGS = {
    "TRAIN_ARGS": "--epochs 1 --seeds 0",
    "ALIGN_ARGS": "--set align.epochs=1",
    "RECON_ARGS": "--set generate.size=256 --set generate.steps=1",
}
#: On CUDA: the reference's own counts, but one seed.
CUDA_ARGS = {"TRAIN_ARGS": "--seeds 0", "ALIGN_ARGS": "", "RECON_ARGS": ""}
COMMANDS = (("reference", "REF_DIR"), ("reference-recon", "RECON_DIR"))


@dataclass
class Stage:
    command: str  # the make target it belongs to
    line: str  # the shell line, as make runs it
    seconds: float = 0.0
    peak_rss_gib: float = 0.0
    peak_cuda_gib: float | None = None
    rc: int | None = None

    @property
    def name(self) -> str:
        words = self.line.split()
        return words[1] if len(words) > 1 and words[0].endswith("eeg2image") else words[0]


def make_lines(target: str, variables: dict[str, str], repo: Path) -> list[str]:
    """The shell lines ``make TARGET`` would run (``make -n``, the set-up stamp taken as made), continuations
    joined: the rehearsal runs exactly these."""
    import subprocess

    args = ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", target]
    args += [f"{k}={v}" for k, v in variables.items()]
    out = subprocess.run(args, cwd=repo, capture_output=True, text=True, check=True).stdout
    lines, buf = [], ""
    for raw in out.splitlines():
        buf += raw[:-1] + " " if raw.endswith("\\") else raw
        if not raw.endswith("\\"):
            lines.append(" ".join(buf.split()))
            buf = ""
    return [ln for ln in lines if ln]


#: Run by a fresh, small interpreter (``python -S``): it starts the stage's shell and reports the tree's peak RSS.
#: Measured from here, not from the rehearsal's own process: on Linux a child's ``ru_maxrss`` starts at the high-water
#: mark of the memory it was forked from (``exec`` records the old one), so a stage forked from a process that
#: made the 30 GB kit would report that process's 10 GiB, and a 5-second ``preprocess`` its 0.5 GiB of torch.
_MEASURED_SHELL = """
import json, os, subprocess, sys
proc = subprocess.Popen(["bash", "-c", sys.argv[1]])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[2], "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}, f)
"""


def run_stage(stage: Stage, env: dict[str, str], repo: Path, log_file: Path) -> Stage:
    """Run one line in a shell; its wall seconds, its process tree's peak resident memory (``wait4`` in a small
    interpreter started for it: ``_MEASURED_SHELL``) and, when it used CUDA, its peak GPU memory (written by the
    console script as it exits: ``PEAK_CUDA_ENV``)."""
    import subprocess
    import sys
    import time

    from eeg2image.allocator import PEAK_CUDA_ENV

    peak_file, result = log_file.parent / ".peak-cuda.json", log_file.parent / ".stage.json"
    peak_file.unlink(missing_ok=True)
    result.unlink(missing_ok=True)
    env = {**env, PEAK_CUDA_ENV: str(peak_file)}  # the stage writes its peak GPU memory there as it exits
    t0 = time.perf_counter()
    with open(log_file, "a") as log:
        log.write(f"\n$ {stage.line}\n")
        log.flush()
        cmd = [sys.executable, "-S", "-c", _MEASURED_SHELL, stage.line, str(result)]
        rc = subprocess.run(cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    stage.seconds = time.perf_counter() - t0
    measured = json.loads(result.read_text()) if result.is_file() else {"rc": rc or 1, "maxrss_kib": 0}
    stage.peak_rss_gib = measured["maxrss_kib"] / 2**20  # KiB on Linux
    if peak_file.is_file():  # absent: the stage used no GPU
        stage.peak_cuda_gib = json.loads(peak_file.read_text())["peak_cuda_gib"]
    stage.rc = measured["rc"]
    return stage


def rehearse(workdir: Path, repo: Path, *, log=print) -> list[Stage]:
    """Kit (real size), the tiny simulated dataset, then every line of ``make reference`` and ``make
    reference-recon`` in order, each measured; stops at the first failing line (a bug: its log names it)."""
    import subprocess

    workdir = workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text(MARKER_TEXT)
    cache = make_kit_once(workdir / "cache", log=log)
    env = {**os.environ, **cache.env()}
    data = workdir / "things-eeg2-tiny"
    exe = str(repo / ".venv" / "bin" / "eeg2image")
    if not (data / "simulation.json").is_file():
        subprocess.run([exe, "simulate", str(data), "--preset", "tiny"], check=True, env=env)
    counts = CUDA_ARGS if torch.cuda.is_available() else CPU_ARGS
    stages: list[Stage] = []
    for target, dir_var in COMMANDS:
        variables = {"THINGS": str(data), "SUBJECT": "1", dir_var: str(workdir / target), **counts}
        for line in make_lines(target, variables, repo):
            stage = run_stage(Stage(target, line), env, repo, workdir / "rehearsal.log")
            stages.append(stage)
            (workdir / "stages.json").write_text(json.dumps([asdict(st) for st in stages], indent=1))
            rss = f"peak RSS {stage.peak_rss_gib:6.2f} GiB"
            log(f"{target}: {stage.name:<16} {stage.seconds:8.1f} s  {rss}  rc {stage.rc}")
            if stage.rc != 0:
                log(f"FAILED: {line}\n(see {workdir / 'rehearsal.log'})")
                return stages
    log(write_figures(workdir))
    found = loaded_networks(workdir)
    for key in NETWORKS:
        log(f"loaded through our path: {key:<16} {found.get(key, 'NOT EXERCISED')}")
    missing = [k for k in NETWORKS if k not in found]
    if missing:
        raise SystemExit(f"the rehearsal did not exercise {missing}: a command skipped them")
    return stages


def here_counts(workdir: Path) -> dict[str, int]:
    """What the rehearsal ran: the simulated dataset's counts and the cut options' values."""
    import numpy as np

    device = "cuda" if torch.cuda.is_available() else "cpu"
    pre = workdir / "reference" / "preprocessed" / "sub-01"
    train = np.load(pre / "training_eeg.npy", mmap_mode="r").shape
    test = np.load(pre / "test_eeg.npy", mmap_mode="r").shape
    cut = device == "cpu"
    return {
        "train_images": train[0],
        "test_images": test[0],
        "trials": train[0] * train[1] + test[0] * test[1],
        "seeds": 1,
        "epochs": 1 if cut else 0,  # 0: the preset's own
        "align_epochs": 1 if cut else FULL["align_epochs"],
        "steps": 1 if cut else FULL["steps"],
        "size": 256 if cut else FULL["size"],
    }


def write_figures(workdir: Path) -> str:
    """``figures.md`` (and ``figures.json``) from ``stages.json``: per stage seconds, peak memory, the full-size
    extrapolation, labelled as such."""
    stages = [Stage(**d) for d in json.loads((workdir / "stages.json").read_text())]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    here = here_counts(workdir)
    text = figures_markdown(stages, here, device)
    (workdir / "figures.md").write_text(text)
    rows = [{**asdict(st), "full_size_factor": full_size_factor(st, here)[0]} for st in stages]
    (workdir / "figures.json").write_text(json.dumps({"rehearsal": REHEARSAL_LABEL, "here": here, "stages": rows}))
    return text


def _tables(store: Path, encoder_prefix: str, view: str = "") -> list[dict]:
    out = []
    for f in sorted(store.glob("*/*.json")):
        m = json.loads(f.read_text())
        if str(m.get("encoder", "")).startswith(encoder_prefix) and str(m.get("view", "")).startswith(view):
            out.append(m)
    return out


def loaded_networks(workdir: Path) -> dict[str, str]:
    """Each kit network -> the evidence, read from the rehearsal's outputs, that our commands loaded the kit's own
    file: the weights fingerprint recorded in an embedding table's key (OpenCLIP, the VAE, Depth Anything), in the
    reconstruction's manifest (SDXL-Turbo's parts, the SDXL adapter) or in ``metrics.json`` (the metric networks),
    equal to the kit file's; for the IP-Adapter image encoder, whose key is a hash of its parameters, equal to that
    hash of the kit's folder loaded again. A network missing here was not exercised, and the rehearsal fails."""
    import open_clip
    import torchvision.models as tvm

    from eeg2image.evaluation.reconstruction import SWAV_URL
    from eeg2image.features.encoders import build_image_encoder
    from eeg2image.features.weights import file_fingerprint

    ref, recon = workdir / "reference" / "embeddings", workdir / "reference-recon" / "embeddings"
    images = workdir / "reference-recon" / "images"
    found: dict[str, str] = {}
    cache = Cache(workdir / "cache")

    def kit(repo: str, rel: str) -> str:
        return file_fingerprint(cache.snapshot(repo).dir / rel)

    def clip_repo(spec: str) -> str:
        arch, tag = spec.split("/")
        return open_clip.get_pretrained_cfg(arch, tag)["hf_hub"].strip("/")

    for key, store, spec in (("openclip-rn50", ref, "RN50/openai"),
                             ("openclip-vith14", recon, "ViT-H-14/laion2b_s32b_b79k")):  # fmt: skip
        want = kit(clip_repo(spec), "open_clip_model.safetensors")
        if tabs := [m for m in _tables(store, f"openclip:{spec}") if m["identity"]["encoder"]["checkpoint"] == want]:
            found[key] = f"{len(tabs)} embedding tables keyed by the kit file's fingerprint"
    ipa = cache.snapshot("h94/IP-Adapter").dir
    if tabs := _tables(recon, "ipadapter:h94/IP-Adapter"):
        again = build_image_encoder(f"ipadapter:{ipa}", weights=None, device=torch.device("cpu")).checkpoint_id
        if tabs := [m for m in tabs if m["identity"]["encoder"]["checkpoint"] == again]:
            found["ipadapter"] = f"{len(tabs)} image_embeds tables keyed by the kit image encoder's parameters"
    want = kit("LiheYoung/depth-anything-base-hf", "model.safetensors")
    depth = _tables(recon, "", "depth-depth-anything-base-hf")
    if tabs := [m for m in depth if m["identity"]["view"].get("weights") == want]:
        found["depth"] = f"{len(tabs)} tables of depth maps keyed by the kit file's fingerprint"
    manifest = images / "eeg" / "sub-01" / "manifest.json"
    weights = (json.loads(manifest.read_text()).get("weights") or {}) if manifest.is_file() else {}
    files = weights.get("files", {})
    parts = {rel.split("/")[0] for rel in files}
    same = all(
        fp == (kit("h94/IP-Adapter", rel) if rel.startswith("sdxl_models/") else kit("stabilityai/sdxl-turbo", rel))
        for rel, fp in files.items()
    )
    vae = kit("stabilityai/sdxl-turbo", "vae/diffusion_pytorch_model.safetensors")
    latents = _tables(recon, "vae:stabilityai/sdxl-turbo")
    latents = [m for m in latents if m["identity"]["encoder"]["vae"]["weights"] == vae]
    drawn = sorted((images / "eeg").glob("sub-*/seed-*/round-*/*.png"))  # not evaluation's grids
    if same and {"unet", "vae", "text_encoder", "text_encoder_2", "sdxl_models"} <= parts and latents and drawn:
        found["sdxl-turbo"] = (
            f"{len(drawn)} images of the eeg row drawn by the kit's {len(files) - 1} files (unet, vae, both text "
            f"encoders), {len(latents)} latent tables keyed by the kit VAE's fingerprint"
        )
        if "ipadapter" in found:
            found["ipadapter"] += "; the eeg row drawn through the kit's SDXL adapter file"
    metrics = images / "eeg" / "sub-01" / "metrics.json"
    networks = json.loads(metrics.read_text())["protocol"].get("networks", {}) if metrics.is_file() else {}
    vitl14 = cache.snapshot(clip_repo("ViT-L-14/openai")).dir / "open_clip_model.safetensors"
    for key, name, path in (
        ("alexnet", "alexnet2", cache.torch_hub_file(tvm.AlexNet_Weights.IMAGENET1K_V1.url)),
        ("inception", "inception", cache.torch_hub_file(tvm.Inception_V3_Weights.IMAGENET1K_V1.url)),
        ("effnet-b1", "effnet_b1", cache.torch_hub_file(tvm.EfficientNet_B1_Weights.DEFAULT.url)),
        ("swav", "swav", cache.torch_hub_file(SWAV_URL)),
        ("openclip-vitl14", "clip_vitl14", vitl14),
    ):
        if (networks.get(name) or {}).get("fingerprint") == file_fingerprint(path):
            found[key] = f"metric {name} scored with the kit file (fingerprint in metrics.json)"
    return found


#: Full size: THINGS-EEG2's counts, the reference's seeds and the settings the cut options replaced.
FULL = {"train_images": 16540, "test_images": 200, "train_reps": 4, "test_reps": 80, "seeds": 10, "steps": 5,
        "size": 512, "align_epochs": 100}  # fmt: skip
PRESET_EPOCHS = {"reference": 200, "reference-recon": 80}  # configs/run/reference.yaml, cogcap.yaml


def full_size_factor(stage: Stage, here: dict[str, int]) -> tuple[float, str]:
    """How many times the stage's work grows at full size, and why: a first-order extrapolation from what the
    stage's cost scales with (images x views, epochs x seeds x images, images x steps x pixels x seeds)."""
    f = FULL
    images = (f["train_images"] + f["test_images"]) / (here["train_images"] + here["test_images"])
    seeds = f["seeds"] / here["seeds"]
    kind = stage.name
    if kind == "preprocess":
        trials = f["train_images"] * f["train_reps"] + f["test_images"] * f["test_reps"]
        return trials / here["trials"], "EEG trials"
    if kind == "embed":
        return images, "images (the same views)"
    if kind in ("train", "align", "evaluate"):  # start-up and loading dominate one epoch of 64 images
        return 0.0, "not extrapolated: start-up dominated (training speed: `benchmarks.train_speed`, above)"
    if kind == "reconstruct":
        pixels = (f["size"] / here["size"]) ** 2
        scale = f["test_images"] / here["test_images"] * seeds * f["steps"] / here["steps"] * pixels
        return scale, "test images x seeds x steps x pixels"
    if kind == "evaluate-recon":
        return seeds * f["test_images"] / here["test_images"], "seeds x test images"
    return 1.0, "fixed"


def figures_markdown(stages: list[Stage], here: dict[str, int], device: str) -> str:
    lines = [
        f"**{REHEARSAL_LABEL}**",
        "",
        f"Rehearsal on {device}: the tiny simulated dataset ({here['train_images']} training images, "
        f"{here['test_images']} test), {here['seeds']} seed, cut options {CPU_ARGS if device == 'cpu' else CUDA_ARGS}.",
        "Full size, extrapolated: the stage's seconds times what its work scales with; an upper bound, since each "
        "stage's start-up and model loading are multiplied too.",
        "",
        "| command | stage | seconds | peak RSS GiB | peak CUDA GiB | x at full size | scales with | full size, "
        "extrapolated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for st in stages:
        factor, why = full_size_factor(st, here)
        cuda = "" if st.peak_cuda_gib is None else f"{st.peak_cuda_gib:.2f}"
        full = st.seconds * factor
        when = f"{full / 3600:.1f} h" if full >= 3600 else f"{full / 60:.1f} min" if full >= 60 else f"{full:.0f} s"
        when, times = (f"{when} (extrapolated)", f"{factor:,.0f}") if factor else ("", "")
        cells = [st.command, st.name, f"{st.seconds:.1f}", f"{st.peak_rss_gib:.2f}", cuda, times, why, when]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def make_kit_once(root: Path, log=print) -> Cache:
    """The real-size kit, each network made once (a rerun keeps what is there)."""
    cache = Cache(root)
    for key in NETWORKS:
        done = root / ".done" / key
        if not done.is_file():
            make_kit(root, [key], log=log)
            done.parent.mkdir(exist_ok=True)
            done.write_text("made\n")
    return cache


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    kit = sub.add_parser("kit", help="fabricate the caches")
    kit.add_argument("root", type=Path)
    kit.add_argument("--only", default="", help=f"comma-separated subset of {','.join(NETWORKS)}")
    kit.add_argument("--tiny", action="store_true", help="tiny configs, the same layouts (what the test checks)")
    run = sub.add_parser("run", help="the kit, then both reference commands on it, measured")
    run.add_argument("workdir", type=Path, nargs="?", default=Path("rehearsal"))
    fig = sub.add_parser("figures", help="the figures of a finished (or stopped) rehearsal, again")
    fig.add_argument("workdir", type=Path, nargs="?", default=Path("rehearsal"))
    args = p.parse_args()
    if args.cmd == "figures":
        print(write_figures(args.workdir))
        return
    if args.cmd == "kit":
        cache = make_kit(args.root, [k for k in args.only.split(",") if k] or None, tiny=args.tiny)
        print("\n".join(f"export {k}={v}" for k, v in cache.env().items()))
        return
    stages = rehearse(args.workdir, Path(__file__).resolve().parents[1])
    raise SystemExit(0 if stages and all(s.rc == 0 for s in stages) else 1)


if __name__ == "__main__":
    main()
