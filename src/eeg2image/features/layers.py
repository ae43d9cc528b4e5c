"""Intermediate-layer targets of vision encoders: the 2026 retrieval leaders' targets.

Shallow Alignment (arXiv 2601.21948) aligns the EEG to the best intermediate layer of InternViT, SAMGA (arXiv
2604.17782) to a router over InternViT-6B layers 20-36, NVOL (2609.02582) to per-subject CLIP layers, and Meta's
NeuralBench to DINOv2-giant's hidden state at two thirds of its depth, tokens averaged. These specs give any such
target as a view of the store (its table keyed by the weights, the layer and the pooling):

| spec | the model | the layer's output |
|---|---|---|
| ``openclip:ARCH/TAG:layer=K`` | OpenCLIP (ViT or ModifiedResNet tower) | ``visual.forward_intermediates`` |
| ``timm:NAME:layer=K`` | a timm model, weights ``timm/NAME`` in the cache | timm's own ``forward_intermediates`` |
| ``hf:ORG/NAME:layer=K`` | a transformers vision model (DINOv2 first) | ``output_hidden_states`` |

Options, after the model and separated by ``;`` (or ``,``):

- ``layer=K``: the output of the K-th block, counted from 1 (``K = depth`` is the last; ``-1`` also names it);
  ``layer=F`` with a decimal point (``0.667``): block ``int(F * depth)``, NeuralBench's rule (its index
  ``int(0.6667 * (n_hidden_states - 1))`` into transformers' hidden states, whose entry 0 is the embeddings).
  Outputs are the blocks' raw outputs: no final norm, no projection (as the libraries return them).
  For the CNN towers the "blocks" are the stages ``forward_intermediates`` walks (ResNet: stem + 4 stages).
- ``tokens=mean`` (default, NeuralBench: every token, class token included), ``cls`` (the class token) or
  ``patches`` (the patch tokens only, prefix tokens dropped). A CNN's map is averaged over space (``mean`` /
  ``patches``); it has no class token.
- ``size=S`` (``hf:`` only): input pixels, replacing the processor's own resize and crop.
- ``remote_code=1`` (``hf:`` only): the model's own Python code, shipped in its folder (``config.json``'s
  ``auto_map``; InternViT, the target of Shallow Alignment and SAMGA), is run (transformers'
  ``trust_remote_code``). Never implied: read that code first. Without it such a model is refused, named.

The OpenCLIP helpers are here; the timm and transformers encoders are in ``features.vision_models``.
Without ``layer`` the spec means the model's final embedding (``openclip:`` as before; ``timm:`` the pre-logits
features; ``hf:`` the pooler output, or the mean of the last hidden state when the model has no pooler).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..io import ConfigError, check_option

TOKENS = ("mean", "cls", "patches")


@dataclass(frozen=True)
class LayerChoice:
    """``layer=…;tokens=…;size=…`` of a spec, as written (``layer`` resolved against a model's depth by ``index``)."""

    layer: str | None = None
    tokens: str = "mean"
    size: int | None = None
    remote_code: bool = False

    def index(self, depth: int, where: str) -> int | None:
        """The 1-based block whose output is the target (None: the final embedding)."""
        if self.layer is None:
            return None
        text = self.layer.strip()
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{where}: layer must be a block number or a fraction of depth, got {text!r}") from None
        if "." in text:
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{where}: a fractional layer must be in (0, 1], got {text}")
            return max(1, int(value * depth))
        k = int(value)
        k = depth + 1 + k if k < 0 else k
        if not 1 <= k <= depth:
            raise ConfigError(
                f"{where}: layer {text} is outside 1..{depth} (the model's {depth} blocks); "
                "or give a fraction of depth, e.g. layer=0.667"
            )
        return k

    def suffix(self) -> str:
        """The options as they appear in the encoder's name (only those given or not default)."""
        parts = [f"layer={self.layer}"] if self.layer is not None else []
        parts += [f"tokens={self.tokens}"] if self.tokens != "mean" else []
        parts += [f"size={self.size}"] if self.size is not None else []
        parts += ["remote_code=1"] if self.remote_code else []
        return ";".join(parts)


def split_layer_options(arg: str, where: str, allowed: Sequence[str] = ("layer", "tokens")) -> tuple[str, LayerChoice]:
    """``"MODEL:layer=8;tokens=cls"`` -> (``"MODEL"``, its LayerChoice); options other than ``allowed`` are refused."""
    base, _, opts = arg.partition(":")
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in re.split(r"[;,]", opts))):
        key, eq, value = part.partition("=")
        check_option("option", key, allowed, where=where)
        if not eq or not value:
            raise ConfigError(f"{where}: option {key} needs a value ({key}=...)")
        values[key] = value
    tokens = check_option("tokens", values.get("tokens", "mean"), TOKENS, where=where)
    if "tokens" in values and "layer" not in values:
        raise ConfigError(f"{where}: tokens= applies to an intermediate layer; add layer=K")
    size = values.get("size")
    if size is not None and (not size.isdigit() or not 16 <= int(size) <= 2048):
        raise ConfigError(f"{where}: size must be a number of pixels in 16..2048, got {size!r}")
    remote = check_option("remote_code", values.get("remote_code", "0"), ("0", "1"), where=where) == "1"
    return base, LayerChoice(values.get("layer"), tokens, int(size) if size else None, remote)


def pool_tokens(tokens: torch.Tensor, n_prefix: int, how: str, where: str) -> torch.Tensor:
    """(B, L, D) tokens (the first ``n_prefix`` are class / register tokens) or a (B, C, H, W) map -> (B, D)."""
    if tokens.ndim == 4:
        if how == "cls":
            raise ConfigError(f"{where}: tokens=cls needs a transformer layer; this layer is a CNN's map (tokens=mean)")
        return tokens.mean(dim=(2, 3))
    if how == "mean":
        return tokens.mean(dim=1)
    if how == "cls":
        if n_prefix < 1:
            raise ConfigError(f"{where}: tokens=cls, but this model has no class token (tokens=mean or patches)")
        return tokens[:, 0]
    return tokens[:, n_prefix:].mean(dim=1)


class LayerEncoderMixin:
    """What the three kinds share: the layer's tokens (``layer_tokens``) pooled to (B, D) float32 numpy."""

    choice: LayerChoice
    k: int | None
    depth: int
    name: str

    def layer_identity(self) -> dict:
        return {"layer": self.k, "depth": self.depth, "layer_as_given": self.choice.layer, "tokens": self.choice.tokens}

    def pooled(self, tokens: torch.Tensor, n_prefix: int) -> np.ndarray:
        return pool_tokens(tokens, n_prefix, self.choice.tokens, self.name).float().cpu().numpy()


# --------------------------------------------------------------------------------------------------
# OpenCLIP
# --------------------------------------------------------------------------------------------------


def openclip_depth(visual) -> tuple[int, bool]:
    """(number of blocks ``forward_intermediates`` walks, whether the tower is a transformer)."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        return len(visual.transformer.resblocks), True
    if isinstance(visual, ModifiedResNet):
        return 5, False  # stem, layer1..layer4 (open_clip's ModifiedResNet.forward_intermediates)
    raise ConfigError(
        f"openclip: intermediate layers of a {type(visual).__name__} tower are not supported "
        "(ViT and ModifiedResNet are)"
    )


def openclip_layer_tokens(visual, x: torch.Tensor, k: int, transformer: bool) -> tuple[torch.Tensor, int]:
    """Block ``k``'s output (1-based): (B, 1 + N, D) tokens with the class token first, or a (B, C, H, W) map."""
    if transformer:
        out = visual.forward_intermediates(
            x, indices=[k - 1], stop_early=True, intermediates_only=True, output_fmt="NLC", output_extra_tokens=True
        )
        prefix = out["image_intermediates_prefix"][0]
        return torch.cat([prefix, out["image_intermediates"][0]], dim=1), prefix.shape[1]
    out = visual.forward_intermediates(x, indices=[k - 1], stop_early=True, intermediates_only=True)
    return out["image_intermediates"][0], 0
