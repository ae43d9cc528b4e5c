"""timm and transformers vision models as image encoders: the final embedding, or a block's output pooled over
tokens (``timm:NAME[:layer=K;tokens=…]``, ``hf:ORG/NAME[:layer=K;tokens=…;size=S]``; the options: ``features.layers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io import ConfigError, DataFormatError, check_option, read_json
from .encoders import ImageEncoder, to_tensor
from .layers import LayerChoice, LayerEncoderMixin, pool_tokens, split_layer_options

# --------------------------------------------------------------------------------------------------
# timm
# --------------------------------------------------------------------------------------------------


class TimmLayerEncoder(LayerEncoderMixin, ImageEncoder):
    """``timm:NAME[:layer=K;tokens=…]``: a timm model (Wightman, pytorch-image-models) with its weights from
    ``timm/NAME`` in the Hugging Face cache (or ``--weights FILE``); the layer's output from timm's own
    ``forward_intermediates``, the final embedding from ``forward_head(pre_logits=True)``. Input: the model's own
    mean / std at its input size (resized, no crop, as every encoder here)."""

    batch_size = 32

    def __init__(self, model, name: str, checkpoint_id: str, choice: LayerChoice, device: torch.device):
        import inspect

        from timm.data import resolve_data_config

        self.model = model.eval().to(device)
        self.name, self.checkpoint_id, self.choice, self.device = name, checkpoint_id, choice, device
        cfg = resolve_data_config({}, model=model)
        self.image_size = int(cfg["input_size"][-1])
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        self.depth = len(model.feature_info)
        self.k = choice.index(self.depth, name)
        self.transformer = "return_prefix_tokens" in inspect.signature(model.forward_intermediates).parameters
        with torch.no_grad():
            probe = self.encode_pixels(torch.zeros(1, 3, self.image_size, self.image_size, device=device))
        self.dim = int(probe.shape[1])

    def identity(self) -> dict:
        return {
            "encoder": self.name,
            "checkpoint": self.checkpoint_id,
            "image_size": self.image_size,
            "mean": self.mean,
            "std": self.std,
            **self.layer_identity(),
        }

    def layer_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        if self.transformer:
            out = self.model.forward_intermediates(
                x, indices=[self.k - 1], return_prefix_tokens=True, output_fmt="NLC", intermediates_only=True
            )
            spatial, prefix = out[0]
            return torch.cat([prefix, spatial], dim=1), prefix.shape[1]
        return self.model.forward_intermediates(x, indices=[self.k - 1], intermediates_only=True)[0], 0

    @torch.no_grad()
    def encode_pixels(self, x: torch.Tensor) -> torch.Tensor:
        if self.k is None:
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True).float()
        tokens, n_prefix = self.layer_tokens(x)
        return pool_tokens(tokens, n_prefix, self.choice.tokens, self.name).float()

    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = to_tensor(images, self.image_size, self.mean, self.std).to(self.device)
        return self.encode_pixels(x).cpu().numpy()


def build_timm_encoder(arg: str, *, weights: str | None, device: torch.device) -> TimmLayerEncoder:
    import timm
    from safetensors.torch import load_file

    from .weights import MissingWeightsError, file_fingerprint, resolve_hf_folder

    name, choice = split_layer_options(arg, "timm")
    if not name:
        raise ConfigError("timm: name the model, e.g. timm:vit_small_patch14_dinov2.lvd142m:layer=8")
    arch = name.split(".")[0]
    check_option("timm model", arch, timm.list_models(), where="timm")
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"timm: weights file {path} not found")
    else:
        path = resolve_hf_folder(f"timm/{name}", ("model.safetensors",), f"timm model {name}") / "model.safetensors"
    model = timm.create_model(name, pretrained=False)
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise DataFormatError(f"{path}: not the weights of timm's {name} ({str(exc).splitlines()[0]})") from exc
    model.reset_classifier(0)
    suffix = choice.suffix()
    return TimmLayerEncoder(
        model, f"timm:{name}" + (f":{suffix}" if suffix else ""), file_fingerprint(path), choice, device
    )


# --------------------------------------------------------------------------------------------------
# transformers
# --------------------------------------------------------------------------------------------------


class HFLayerEncoder(LayerEncoderMixin, ImageEncoder):
    """``hf:ORG/NAME[:layer=K;tokens=…;size=S]``: a transformers vision model (``AutoModel``, DINOv2 first: Oquab et
    al. 2024) and its image processor, from a local folder or the Hugging Face cache, offline. The layer's output is
    ``hidden_states[K]`` (``output_hidden_states``; entry 0 is the embeddings, so K counts blocks from 1, as
    NeuralBench indexes them); the final embedding is the pooler output (the mean of the last hidden state without
    one). ``size=S`` resizes to S x S with the processor's mean / std instead of its own resize and crop (NeuralBench
    feeds DINOv2 518-px images)."""

    batch_size = 8

    def __init__(self, model, processor, name: str, checkpoint_id: str, choice: LayerChoice, device: torch.device):
        self.model = model.eval().to(device)
        self.processor = processor
        self.name, self.checkpoint_id, self.choice, self.device = name, checkpoint_id, choice, device
        cfg = model.config
        self.depth = int(getattr(cfg, "num_hidden_layers", 0) or len(getattr(cfg, "depths", ())))
        if not self.depth:
            raise ConfigError(f"{name}: the model's config names no depth (num_hidden_layers)")
        self.k = choice.index(self.depth, name)
        self.dim = int(self.encode([np.zeros((32, 32, 3), np.uint8)]).shape[1])

    def identity(self) -> dict:
        return {
            "encoder": self.name,
            "checkpoint": self.checkpoint_id,
            "processor": self.processor.to_dict(),
            "size": self.choice.size,
            **self.layer_identity(),
        }

    def pixels(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        from PIL import Image

        if self.choice.size is not None:
            mean, std = self.processor.image_mean, self.processor.image_std
            return to_tensor(images, self.choice.size, mean, std)
        return self.processor([Image.fromarray(np.asarray(im)) for im in images], return_tensors="pt").pixel_values

    def n_prefix(self, n_tokens: int, pixels: torch.Tensor) -> int:
        patch = getattr(self.model.config, "patch_size", None)
        if patch is None:
            return 0
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
        return n_tokens - (pixels.shape[-2] // ph) * (pixels.shape[-1] // pw)

    @torch.no_grad()
    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = self.pixels(images).to(self.device)
        out = self.model(pixel_values=x, output_hidden_states=self.k is not None)
        if self.k is None:
            pooled = getattr(out, "pooler_output", None)
            pooled = pooled if pooled is not None else out.last_hidden_state.mean(dim=1)
            return pooled.flatten(1).float().cpu().numpy()
        tokens = out.hidden_states[self.k]
        return self.pooled(tokens, self.n_prefix(tokens.shape[1], x) if tokens.ndim == 3 else 0)


def build_hf_encoder(arg: str, *, weights: str | None, device: torch.device) -> HFLayerEncoder:
    from transformers import AutoImageProcessor, AutoModel

    from .weights import file_fingerprint, resolve_hf_folder

    source, choice = split_layer_options(arg, "hf", ("layer", "tokens", "size", "remote_code"))
    if not (weights or source):
        raise ConfigError("hf: name the model, e.g. hf:facebook/dinov2-giant:layer=0.667")
    folder = resolve_hf_folder(weights or source, ("config.json", "preprocessor_config.json"), "vision model")
    auto_map = (read_json(folder / "config.json") or {}).get("auto_map")
    if auto_map and not choice.remote_code:
        raise ConfigError(
            f"hf:{source}: its model class is Python code shipped with the weights ({folder / 'config.json'} "
            f"auto_map: {', '.join(sorted(set(auto_map.values())))}); read that code, then add ;remote_code=1 to "
            "the spec to run it"
        )
    trust = {"trust_remote_code": True} if choice.remote_code else {}
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, **trust)
    processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True, **trust)
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    checkpoint = "|".join(file_fingerprint(f) for f in files)
    suffix = choice.suffix()
    name = f"hf:{source}" + (f":{suffix}" if suffix else "")
    return HFLayerEncoder(model, processor, name, checkpoint, choice, device)
