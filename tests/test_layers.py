"""Intermediate-layer targets equal the libraries' own intermediate outputs, on tiny random-weight models:
open_clip's ``forward_intermediates`` (ViT and ModifiedResNet), timm's, transformers' ``hidden_states``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hfcache import fake_hf_cache

from eeg2image.features.encoders import CLIP_MEAN, CLIP_STD, build_image_encoder, to_tensor
from eeg2image.io import ConfigError

TINY_VIT = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_RESNET = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for _ in range(3)]


def _cfg(tmp_path, cfg: dict):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    return path


def _pool(tokens: torch.Tensor, how: str) -> np.ndarray:  # the definitions, written out again
    if how == "mean":
        return tokens.mean(1).numpy()
    if how == "cls":
        return tokens[:, 0].numpy()
    return tokens[:, 1:].mean(1).numpy()


@pytest.mark.parametrize("layer,k", [("1", 1), ("2", 2), ("3", 3), ("-1", 3), ("0.667", 2), ("0.5", 1)])
@pytest.mark.parametrize("tokens", ["mean", "cls", "patches"])
def test_openclip_vit_layers_equal_forward_intermediates(tmp_path, photos, layer, k, tokens):
    cfg = _cfg(tmp_path, TINY_VIT)
    enc = build_image_encoder(f"openclip-config:{cfg}:layer={layer};tokens={tokens}", device="cpu")
    x = to_tensor(photos, 32, CLIP_MEAN, CLIP_STD)
    with torch.no_grad():  # the library's own call, all blocks, the class token apart
        out = enc.model.visual.forward_intermediates(x, indices=None, output_fmt="NLC", output_extra_tokens=True)
    want = torch.cat([out["image_intermediates_prefix"][k - 1], out["image_intermediates"][k - 1]], dim=1)
    got = enc.encode(photos)
    np.testing.assert_allclose(got, _pool(want, tokens), rtol=1e-5, atol=1e-6)
    assert got.shape == (3, 32) and enc.dim == 32
    ident = enc.identity()
    assert ident["layer"] == k and ident["depth"] == 3 and ident["tokens"] == tokens
    assert enc.name.startswith("openclip-config:tiny.json:layer=")


def test_openclip_layers_differ_from_each_other_and_from_the_final_embedding(tmp_path, photos):
    cfg = _cfg(tmp_path, TINY_VIT)
    final = build_image_encoder(f"openclip-config:{cfg}", device="cpu")
    a = build_image_encoder(f"openclip-config:{cfg}:layer=1", device="cpu").encode(photos)
    b = build_image_encoder(f"openclip-config:{cfg}:layer=2", device="cpu").encode(photos)
    assert final.encode(photos).shape == (3, 24) and not np.allclose(a, b)
    assert final.identity() != build_image_encoder(f"openclip-config:{cfg}:layer=3", device="cpu").identity()


@pytest.mark.parametrize("k", [1, 3, 5])
def test_openclip_modified_resnet_stages_equal_forward_intermediates(tmp_path, photos, k):
    cfg = _cfg(tmp_path, TINY_RESNET)
    enc = build_image_encoder(f"openclip-config:{cfg}:layer={k}", device="cpu")
    x = to_tensor(photos, 64, CLIP_MEAN, CLIP_STD)
    with torch.no_grad():
        want = enc.model.visual.forward_intermediates(x, indices=[k - 1], intermediates_only=True)
    fmap = want["image_intermediates"][0]
    np.testing.assert_allclose(enc.encode(photos), fmap.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    assert enc.depth == 5
    with pytest.raises(ConfigError, match="tokens=cls needs a transformer layer"):
        build_image_encoder(f"openclip-config:{cfg}:layer={k};tokens=cls", device="cpu")


def test_layer_options_are_checked_by_name(tmp_path):
    cfg = _cfg(tmp_path, TINY_VIT)
    with pytest.raises(ConfigError, match=r"layer 4 is outside 1..3 \(the model's 3 blocks\)"):
        build_image_encoder(f"openclip-config:{cfg}:layer=4", device="cpu")
    with pytest.raises(ConfigError, match=r"a fractional layer must be in \(0, 1\]"):
        build_image_encoder(f"openclip-config:{cfg}:layer=1.5", device="cpu")
    with pytest.raises(ConfigError, match="unknown option 'depth'"):
        build_image_encoder(f"openclip-config:{cfg}:depth=2", device="cpu")
    with pytest.raises(ConfigError, match="unknown tokens 'max'"):
        build_image_encoder(f"openclip-config:{cfg}:layer=1;tokens=max", device="cpu")
    with pytest.raises(ConfigError, match="tokens= applies to an intermediate layer"):
        build_image_encoder(f"openclip-config:{cfg}:tokens=cls", device="cpu")


@pytest.mark.parametrize("name,layer", [("vit_tiny_patch16_224.augreg_in21k_ft_in1k", 7), ("resnet10t.c3_in1k", 3)])
def test_timm_layers_equal_timms_own_forward_intermediates(hub, photos, name, layer):
    """A real timm architecture with random weights, found in the Hugging Face cache as timm/NAME: the layer equals
    timm's own ``forward_intermediates``, the final embedding its pre-logits features."""
    import timm
    from safetensors.torch import save_file

    from eeg2image.features.weights import MissingWeightsError

    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False).eval()
    path = hub / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    fake_hf_cache(hub, f"timm/{name}", {"model.safetensors": path.read_bytes()})
    enc = build_image_encoder(f"timm:{name}:layer={layer}", device="cpu")
    final = build_image_encoder(f"timm:{name}", device="cpu")
    size = enc.image_size
    x = to_tensor(photos, size, enc.mean, enc.std)
    with torch.no_grad():
        if "vit" in name:
            spatial, prefix = ref.forward_intermediates(
                x, indices=[layer - 1], return_prefix_tokens=True, output_fmt="NLC", intermediates_only=True
            )[0]
            want = torch.cat([prefix, spatial], dim=1).mean(1)
        else:
            want = ref.forward_intermediates(x, indices=[layer - 1], intermediates_only=True)[0].mean(dim=(2, 3))
        pre_logits = ref.forward_head(ref.forward_features(x), pre_logits=True)
    np.testing.assert_allclose(enc.encode(photos), want.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(final.encode(photos), pre_logits.numpy(), rtol=1e-4, atol=1e-5)
    assert enc.identity()["layer"] == layer and enc.dim == want.shape[1]
    with pytest.raises(MissingWeightsError, match=r"timm model vit_small_patch16_224.*hf download"):
        build_image_encoder("timm:vit_small_patch16_224:layer=2", device="cpu")


def test_hf_dinov2_layers_equal_hidden_states(tmp_path, hub, photos):
    """A tiny DINOv2 (transformers) saved with its image processor: ``hidden_states[K]`` pooled as asked, found
    as a local folder and as a cache id; ``size=S`` replaces the processor's resize and crop."""
    from PIL import Image
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, image_size=28, patch_size=14
    )
    model = Dinov2Model(cfg).eval()
    proc = BitImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    folder = tmp_path / "dino"
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    pixels = proc([Image.fromarray(p) for p in photos], return_tensors="pt").pixel_values
    with torch.no_grad():
        hs = model(pixel_values=pixels, output_hidden_states=True).hidden_states
        pooler = model(pixel_values=pixels).pooler_output
    for layer, k in (("1", 1), ("0.667", 2), ("3", 3)):
        for tokens in ("mean", "cls", "patches"):
            enc = build_image_encoder(f"hf:{folder}:layer={layer};tokens={tokens}", device="cpu")
            np.testing.assert_allclose(enc.encode(photos), _pool(hs[k], tokens), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(build_image_encoder(f"hf:{folder}", device="cpu").encode(photos), pooler.numpy())
    fake_hf_cache(hub, "facebook/dinov2-tiny-test", {f.name: f.read_bytes() for f in folder.iterdir()})
    cached = build_image_encoder("hf:facebook/dinov2-tiny-test:layer=2", device="cpu")
    np.testing.assert_allclose(cached.encode(photos), _pool(hs[2], "mean"), rtol=1e-5, atol=1e-6)
    sized = build_image_encoder(f"hf:{folder}:layer=2;size=42", device="cpu")
    x = to_tensor(photos, 42, proc.image_mean, proc.image_std)
    with torch.no_grad():
        want = model(pixel_values=x, output_hidden_states=True).hidden_states[2].mean(1)
    np.testing.assert_allclose(sized.encode(photos), want.numpy(), rtol=1e-5, atol=1e-6)
    assert sized.identity()["size"] == 42 and cached.identity()["checkpoint"] == sized.identity()["checkpoint"]


REMOTE_MODELING = """
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling


class TinyRemoteConfig(PretrainedConfig):
    model_type = "tiny_remote_vit"

    def __init__(self, hidden_size=16, num_hidden_layers=3, patch_size=14, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_hidden_layers, self.patch_size = hidden_size, num_hidden_layers, patch_size


class TinyRemoteModel(PreTrainedModel):
    config_class = TinyRemoteConfig

    def __init__(self, config):
        super().__init__(config)
        h = config.hidden_size
        self.patch = nn.Conv2d(3, h, config.patch_size, config.patch_size)
        self.cls = nn.Parameter(torch.randn(1, 1, h))
        self.blocks = nn.ModuleList(nn.Linear(h, h) for _ in range(config.num_hidden_layers))
        self.post_init()

    def _init_weights(self, module):
        pass

    def forward(self, pixel_values, output_hidden_states=False, **kwargs):
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
        states = [x]
        for block in self.blocks:
            x = x + torch.tanh(block(x))
            states.append(x)
        return BaseModelOutputWithPooling(
            last_hidden_state=x, pooler_output=x[:, 0], hidden_states=tuple(states) if output_hidden_states else None
        )
"""


def test_hf_model_with_its_own_code_needs_remote_code_named(tmp_path, photos, monkeypatch):
    """A model whose class ships as Python in its folder (``auto_map``, as InternViT's): refused in one line naming
    ``remote_code=1`` until the spec says so; then its hidden states, from the saved weights."""
    import importlib.util
    import sys

    from PIL import Image
    from transformers import BitImageProcessor

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    code = tmp_path / "code" / "modeling_tiny_remote.py"
    code.parent.mkdir()
    code.write_text(REMOTE_MODELING)
    spec = importlib.util.spec_from_file_location("modeling_tiny_remote", code)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "modeling_tiny_remote", mod)
    spec.loader.exec_module(mod)
    torch.manual_seed(1)
    cfg = mod.TinyRemoteConfig(num_hidden_layers=4)
    cfg.auto_map = {
        "AutoConfig": "modeling_tiny_remote.TinyRemoteConfig",
        "AutoModel": "modeling_tiny_remote.TinyRemoteModel",
    }
    model = mod.TinyRemoteModel(cfg).eval()
    folder = tmp_path / "remote"
    model.save_pretrained(folder)
    (folder / "modeling_tiny_remote.py").write_text(REMOTE_MODELING)
    proc = BitImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    proc.save_pretrained(folder)
    with pytest.raises(ConfigError, match=r"auto_map.*TinyRemoteModel.*remote_code=1"):
        build_image_encoder(f"hf:{folder}:layer=3", device="cpu")
    enc = build_image_encoder(f"hf:{folder}:layer=3;tokens=cls;remote_code=1", device="cpu")
    assert type(enc.model).__name__ == "TinyRemoteModel" and enc.name.endswith("remote_code=1")
    assert enc.depth == 4 and enc.k == 3
    pixels = proc([Image.fromarray(p) for p in photos], return_tensors="pt").pixel_values
    with torch.no_grad():
        hs = model(pixel_values=pixels, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(enc.encode(photos), _pool(hs[3], "cls"), rtol=1e-5, atol=1e-6)
