"""Views, encoders and the embedding store (tiny models, simulated images, scikit-image's photographs)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from hfcache import fake_hf_cache

from eeg2image.features.encoders import IPAdapterImageEncoder, build_image_encoder, build_text_encoder
from eeg2image.features.store import EmbeddingStore
from eeg2image.features.views import (
    BLUR12,
    CannyEdges,
    FoveatedBlur,
    GaussianBlur,
    colourise_depth,
    opencv_sigma,
    parse_views,
)
from eeg2image.features.weights import MissingWeightsError
from eeg2image.io import ConfigError, DataFormatError, MissingDataError


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    from skimage import data

    return [np.ascontiguousarray(f()) for f in (data.astronaut, data.coffee, data.chelsea, data.rocket)]


def _sigma_rule_kernel(k: int) -> np.ndarray:
    sigma = opencv_sigma(k)
    x = np.arange(k) - (k - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


@pytest.mark.parametrize("k", [3, 9, 21, 63])
def test_blur_views_use_opencvs_kernels(photos, k):
    import cv2
    from PIL import Image

    view = GaussianBlur(kernel=k)
    # the 224 px image every view starts from, made here independently of the views (PIL bicubic)
    src = np.asarray(Image.fromarray(photos[0]).resize((224, 224), Image.Resampling.BICUBIC))
    assert photos[0].shape[:2] != (224, 224)
    np.testing.assert_array_equal(GaussianBlur(kernel=1)(photos[0]), src)  # k=1 is the identity on it
    assert not np.array_equal(GaussianBlur(kernel=3)(photos[0]), src)
    kern = cv2.getGaussianKernel(k, 0).ravel()
    if k > 9:  # beyond OpenCV's fixed small-kernel tables, the Gaussian with sigma 0.3*((k-1)/2 - 1) + 0.8
        np.testing.assert_allclose(kern, _sigma_rule_kernel(k), atol=1e-9)
    ours = view(photos[0]).astype(float)
    # separable filtering with OpenCV's kernel, reflect-101 borders, reproduces the view to uint8 rounding
    pad = k // 2
    x = np.pad(src.astype(float), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    x = np.apply_along_axis(lambda v: np.convolve(v, kern, mode="valid"), 0, x)
    x = np.apply_along_axis(lambda v: np.convolve(v, kern, mode="valid"), 1, x)
    assert np.abs(ours - x).max() <= 1.5 and np.abs(ours - x).mean() < 0.5  # OpenCV blurs uint8 in fixed point
    assert tuple(BLUR12) == (1, 3, 9, 15, 21, 27, 33, 39, 45, 51, 57, 63)


def test_foveated_blur_and_edges(photos):
    fov = FoveatedBlur(kernel=51)
    m = fov.mask(224)
    assert m.max() == pytest.approx(0.5, abs=0.01) and m[0, 0] == pytest.approx(0.5 * np.exp(-3), rel=1e-6)
    out, src = fov(photos[1]).astype(float), GaussianBlur(kernel=1)(photos[1]).astype(float)
    blurred = GaussianBlur(kernel=51)(photos[1]).astype(float)
    # the centre is halfway between sharp and blurred; a corner is almost fully blurred
    np.testing.assert_allclose(out[112, 112], 0.5 * src[112, 112] + 0.5 * blurred[112, 112], atol=1.5)
    assert np.abs(out[0, 0] - blurred[0, 0]).max() <= 0.05 * 255
    edges = CannyEdges()(photos[0])
    assert edges.shape == (224, 224, 3) and set(np.unique(edges)) <= {0, 255} and 0.01 < (edges > 0).mean() < 0.3
    depth = colourise_depth(np.linspace(0, 1, 64 * 64).reshape(64, 64), (224, 224))
    assert depth.shape == (224, 224, 3) and depth.dtype == np.uint8


def test_view_specs_parse_and_reject():
    assert [v.name for v in parse_views("blur8")][:3] == ["blur-k01", "blur-k03", "blur-k15"]
    assert [v.name for v in parse_views("fovea:kernel=45,edges")] == ["fovea-k45-g3", "edges-100-200"]
    assert GaussianBlur(kernel=9).recipe() != GaussianBlur(kernel=15).recipe()
    with pytest.raises(ConfigError, match="unknown view 'sharpen'; known: original, blur, .*blur12"):
        parse_views("sharpen")
    with pytest.raises(ConfigError, match="view set 'blur12' takes no options"):
        parse_views("blur12:k=3")
    with pytest.raises(DataFormatError, match="odd"):
        parse_views("blur:k=4")


TINY_VISION = dict(
    hidden_size=32,
    intermediate_size=37,
    num_attention_heads=4,
    num_hidden_layers=2,
    image_size=32,
    patch_size=8,
    projection_dim=16,
)


def test_ip_adapter_embeddings_equal_diffusers_prepare_ip_adapter_image_embeds(tmp_path, photos):
    from diffusers import StableDiffusionXLPipeline
    from diffusers.models.embeddings import ImageProjection
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_VISION)).eval()
    folder = tmp_path / "IP-Adapter" / "models" / "image_encoder"
    model.save_pretrained(folder)
    ours = build_image_encoder(f"ipadapter:{tmp_path / 'IP-Adapter'}", device="cpu")
    assert isinstance(ours, IPAdapterImageEncoder) and ours.dim == 16

    class PipelineParts:  # the attributes diffusers' two methods read, with diffusers' own methods
        encode_image = StableDiffusionXLPipeline.encode_image
        prepare_ip_adapter_image_embeds = StableDiffusionXLPipeline.prepare_ip_adapter_image_embeds

    pipe = PipelineParts()
    pipe.image_encoder = model
    pipe.feature_extractor = CLIPImageProcessor(size=32, crop_size=32)  # what load_ip_adapter registers
    proj = ImageProjection(image_embed_dim=16, cross_attention_dim=8, num_image_text_embeds=4)
    pipe.unet = types.SimpleNamespace(encoder_hid_proj=types.SimpleNamespace(image_projection_layers=[proj]))
    views = [GaussianBlur(kernel=1)(p) for p in photos[:3]]
    got = ours.encode(views)
    for k, v in enumerate(views):
        ref = pipe.prepare_ip_adapter_image_embeds([Image.fromarray(v)], None, "cpu", 1, False)[0]
        assert ref.shape == (1, 1, 16)
        np.testing.assert_allclose(got[k], ref[0, 0].detach().numpy(), rtol=1e-5, atol=1e-6)
    assert np.linalg.norm(got, axis=1).std() > 0  # un-normalised, as diffusers feeds them


def test_missing_weights_name_the_file_and_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match=r"RN50/openai.*timm/resnet50_clip.openai.*hf download"):
        build_image_encoder("openclip:RN50/openai", device="cpu")
    with pytest.raises(MissingWeightsError, match=r"h94/IP-Adapter.*models/image_encoder/config.json"):
        build_image_encoder("ipadapter:h94/IP-Adapter", device="cpu")
    with pytest.raises(ConfigError, match="unknown image encoder 'clip-xl'; known: openclip, "):
        build_image_encoder("clip-xl", device="cpu")


def test_unknown_names_are_config_errors_and_absent_files_missing_data(tmp_path):
    import json

    with pytest.raises(ConfigError, match="unknown text encoder 'bert'; known: openclip, "):
        build_text_encoder("bert:base", device="cpu")
    with pytest.raises(ConfigError, match="unknown OpenCLIP pretrained tag for RN50 'opena'; known: openai, "):
        build_image_encoder("openclip:RN50/opena", device="cpu")
    with pytest.raises(ConfigError, match="unknown OpenCLIP architecture 'RN49'"):
        build_text_encoder("openclip:RN49/openai", device="cpu")
    with pytest.raises(ConfigError, match="must be 'openclip:<arch>/<pretrained>'"):
        build_image_encoder("openclip:RN50", device="cpu")
    with pytest.raises(ConfigError, match="unknown EVNet preset 'fancy'; known: standard, "):
        build_image_encoder("evnet:fancy", device="cpu")
    with pytest.raises(MissingDataError, match="openclip-config: .*nothing.json not found"):
        build_image_encoder(f"openclip-config:{tmp_path / 'nothing.json'}", device="cpu")
    with pytest.raises(MissingWeightsError, match="OpenCLIP weights file .*nothing.safetensors not found"):
        build_image_encoder("openclip:RN50/openai", weights=str(tmp_path / "nothing.safetensors"), device="cpu")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    with pytest.raises(ConfigError, match="evnet-clip: unknown input 'bgr'; known: raw, clip"):
        build_image_encoder(f"evnet-clip:config={cfg};input=bgr", device="cpu")
    with pytest.raises(ConfigError, match="evnet-clip: unknown EVNet preset 'fancy'"):
        build_image_encoder(f"evnet-clip:config={cfg};evnet=fancy", device="cpu")
    with pytest.raises(ConfigError, match="evnet-clip: unknown option 'sed'; known: seed, input, evnet"):
        build_image_encoder(f"evnet-clip:config={cfg};sed=1", device="cpu")


TINY_CLIP = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def test_tiny_openclip_encoder_is_deterministic(tmp_path, photos):
    import json

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    enc = build_image_encoder(f"openclip-config:{cfg}", device="cpu")
    views = [GaussianBlur(kernel=1)(p) for p in photos]
    a, b = enc.encode(views), build_image_encoder(f"openclip-config:{cfg}", device="cpu").encode(views)
    assert a.shape == (4, 24) and np.array_equal(a, b)
    assert not np.allclose(a[0], a[1])


def test_minilm_text_encoder_runs_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = build_text_encoder("minilm", device="cpu")
    e = enc.encode(["This picture is a dog", "This picture is a puppy", "This picture is an airplane"])
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    assert e.shape == (3, 384) and e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_store_caches_invalidates_and_resumes(tmp_path):
    store = EmbeddingStore(tmp_path)
    paths = [f"test_images/{i:05d}_c/c_{i}.jpg" for i in range(10)]
    calls: list[list[int]] = []

    def embed(idx, scale=1.0):
        calls.append(list(idx))
        return np.array([[i * scale, 1.0, -i] for i in idx])

    ident = {"encoder": "e", "view": {"kind": "blur", "kernel": 3}, "images": "h"}
    assert store.compute("test", "blur-k03", "e", ident, paths, embed, batch_size=4) == "computed"
    assert store.compute("test", "blur-k03", "e", ident, paths, embed, batch_size=4) == "cached"
    assert len(calls) == 3
    table = store.load("test", "blur-k03", "e", ident)
    np.testing.assert_array_equal(table.row(7), [6.0, 1.0, -6.0])  # stim id 7 = row 6
    np.testing.assert_array_equal(table.by_path(paths[2]), [2.0, 1.0, -2.0])

    # any change of the recipe invalidates: recomputed, never mixed with the old rows
    changed = {**ident, "view": {"kind": "blur", "kernel": 5}}
    assert store.status("test", "blur-k03", "e", changed) == "stale"
    calls.clear()
    assert store.compute("test", "blur-k03", "e", changed, paths, lambda i: embed(i, 2.0), 4) == "recomputed"
    assert len(calls) == 3 and store.load("test", "blur-k03", "e").row(2)[0] == 2.0

    # an interrupted run resumes without redoing finished batches
    def dies_after_first(idx):
        if idx[0] >= 4:
            raise KeyboardInterrupt
        return embed(idx, 3.0)

    third = {**ident, "view": {"kind": "blur", "kernel": 7}}
    with pytest.raises(KeyboardInterrupt):
        store.compute("test", "blur-k03", "e", third, paths, dies_after_first, 4)
    calls.clear()
    assert store.compute("test", "blur-k03", "e", third, paths, lambda i: embed(i, 3.0), 4) == "resumed"
    assert [c[0] for c in calls] == [4, 8]
    np.testing.assert_array_equal(store.load("test", "blur-k03", "e", third).embeddings[:, 0], np.arange(10) * 3.0)

    # a truncated table is detected and recomputed
    data, _, _ = store.paths("test", "blur-k03", "e")
    data.write_bytes(data.read_bytes()[:40])
    assert store.status("test", "blur-k03", "e", third) == "corrupt"
    with pytest.raises(DataFormatError, match="unreadable embedding file"):
        store.load("test", "blur-k03", "e")


def test_embed_images_and_texts_end_to_end(tiny_dataset, tmp_path):
    import json

    from eeg2image.data.things_eeg2 import ImageSet, load_image
    from eeg2image.features.embed import embed_images, embed_texts

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    enc = build_image_encoder(f"openclip-config:{cfg}", device="cpu")
    views = parse_views("blur:k=15,edges")
    res = embed_images(tiny_dataset, tmp_path / "store", views, enc, batch_size=5, workers=2, progress=False)
    assert {r.status for r in res} == {"computed"} and len(res) == 4
    again = embed_images(tiny_dataset, tmp_path / "store", views, enc, batch_size=5, progress=False)
    assert {r.status for r in again} == {"cached"}
    store = EmbeddingStore(tmp_path / "store")
    table = store.load("test", "blur-k15", enc.name)
    images = ImageSet.discover(tiny_dataset)
    f = images.files("test")[3]  # stim id 4
    expected = enc.encode([views[0](np.asarray(load_image(f)))])[0]
    np.testing.assert_allclose(table.row(4), expected, rtol=1e-5, atol=1e-6)
    assert table.rel_paths[3] == f"test_images/{f.parent.name}/{f.name}"

    text_res = embed_texts(tiny_dataset, tmp_path / "store", build_text_encoder("minilm", device="cpu"), progress=False)
    assert [r.view for r in text_res] == ["text-template", "text-template"]
    texts = store.load("training", "text-template", "minilm")
    per = len(images.files("training")) // len(set(images.concepts("training")))
    np.testing.assert_allclose(texts.embeddings[0], texts.embeddings[per - 1], atol=1e-5)  # same concept, same text


def test_several_encoders_in_one_pass_compute_each_view_once(tiny_dataset, tmp_path, monkeypatch):
    import json

    from eeg2image.features.embed import embed_images
    from eeg2image.features.views import CannyEdges

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    encs = [build_image_encoder(f"openclip-config:{cfg}", device="cpu"), build_image_encoder("evnet", device="cpu")]
    views = parse_views("original,edges")
    calls = []
    real_apply = CannyEdges.apply
    monkeypatch.setattr(CannyEdges, "apply", lambda self, img: calls.append(1) or real_apply(self, img))
    together = embed_images(tiny_dataset, tmp_path / "both", views, encs, batch_size=4, progress=False)
    n_images = sum(r.n_images for r in together if r.view == "edges-100-200" and r.encoder == encs[0].name)
    assert len(calls) == n_images  # the edge map made once per image for both encoders, not twice
    assert {(r.encoder, r.view, r.status) for r in together} == {
        (e.name, v.name, "computed") for e in encs for v in views
    }
    both, alone = EmbeddingStore(tmp_path / "both"), EmbeddingStore(tmp_path / "alone")
    for enc in encs:  # the same tables as one encoder per call
        embed_images(tiny_dataset, tmp_path / "alone", views, enc, batch_size=4, progress=False)
        for p in ("training", "test"):
            for v in views:
                np.testing.assert_array_equal(
                    both.load(p, v.name, enc.name).embeddings, alone.load(p, v.name, enc.name).embeddings
                )


def test_depth_view_with_a_tiny_local_depth_anything(tmp_path, photos, monkeypatch):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    from eeg2image.features.views import DepthMap

    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=28,
        patch_size=14,
        out_features=["stage1", "stage2"],
        reshape_hidden_states=False,
    )
    cfg = DepthAnythingConfig(
        backbone_config=backbone,
        fusion_hidden_size=16,
        head_hidden_size=8,
        neck_hidden_sizes=[8, 16],
        reassemble_hidden_size=32,
        patch_size=14,
    )
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(cfg).eval().save_pretrained(tmp_path / "depth")
    DPTImageProcessor(
        size={"height": 28, "width": 28}, keep_aspect_ratio=False, ensure_multiple_of=14, do_pad=False
    ).save_pretrained(tmp_path / "depth")
    view = DepthMap(model=str(tmp_path / "depth"))
    out = view(photos[0])
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert np.array_equal(out, view(photos[0]))
    from matplotlib import colormaps

    inferno = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).round()
    dist = np.abs(out.reshape(-1, 1, 3).astype(float) - inferno[None]).sum(-1).min(1)
    assert np.median(dist) <= 12  # pixels are inferno colours (bicubic upsampling blends a few)
    from eeg2image.features.weights import file_fingerprint

    # the table key names the weights that drew the maps: other weights under the same name, another key
    recipe = view.recipe()
    assert recipe["weights"] == file_fingerprint(tmp_path / "depth/model.safetensors")
    torch.manual_seed(1)
    DepthAnythingForDepthEstimation(cfg).eval().save_pretrained(tmp_path / "depth")
    assert view.recipe()["weights"] != recipe["weights"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        MissingWeightsError, match=r"depth model 'depth-anything/Depth-Anything-V2-Small-hf'.*hf download"
    ):
        DepthMap()(photos[0])


def test_openclip_weights_are_found_in_the_hugging_face_cache(tmp_path, monkeypatch, photos):
    """The real loading path: arch/tag -> the HF repo open_clip names -> the cached safetensors -> model."""
    import json

    import open_clip
    from huggingface_hub import constants
    from safetensors.torch import save_file

    from eeg2image.features.encoders import tiny_openclip_model

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "TinyCLIP-e2i.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg_dir / "TinyCLIP-e2i.json")
    model = tiny_openclip_model(TINY_CLIP, seed=7)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    cache = tmp_path / "hub"
    fake_hf_cache(cache, "eeg2image-test/tiny-clip", {"open_clip_model.safetensors": lambda p: save_file(state, p)})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    real_cfg = open_clip.get_pretrained_cfg

    def pretrained_cfg(arch, tag):
        return {"hf_hub": "eeg2image-test/tiny-clip/"} if arch == "TinyCLIP-e2i" else real_cfg(arch, tag)

    monkeypatch.setattr(open_clip, "get_pretrained_cfg", pretrained_cfg)
    enc = build_image_encoder("openclip:TinyCLIP-e2i/e2i", device="cpu")
    views = [GaussianBlur(kernel=1)(p) for p in photos[:2]]
    from eeg2image.features.encoders import to_tensor

    with torch.no_grad():
        expected = model.eval().encode_image(to_tensor(views, 32)).numpy()
    np.testing.assert_allclose(enc.encode(views), expected, rtol=1e-5, atol=1e-6)
    text = build_text_encoder("openclip:TinyCLIP-e2i/e2i", device="cpu")
    with torch.no_grad():
        want = model.encode_text(open_clip.get_tokenizer("TinyCLIP-e2i")(["This picture is a cat"])).numpy()
    np.testing.assert_allclose(text.encode(["This picture is a cat"]), want, rtol=1e-5, atol=1e-6)
    assert (
        enc.identity()["checkpoint"]
        == build_image_encoder("openclip:TinyCLIP-e2i/e2i", device="cpu").identity()["checkpoint"]
    )


TINY_VIT = {  # a ViT with OpenAI CLIP's layout, small enough for a fast test
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_RN = {**TINY_VIT, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16, "head_width": 16}}


def test_openai_tags_run_quick_gelu_as_open_clip_builds_them(tmp_path, monkeypatch, photos):
    """OpenAI (and other QuickGELU-trained) tags, loaded from a weights file, run QuickGELU like
    ``open_clip.create_model(arch, pretrained=<file>, force_quick_gelu=True)``; other tags plain GELU."""
    import json

    import open_clip
    from safetensors.torch import save_file

    from eeg2image.features.encoders import tiny_openclip_model

    files = {}
    for arch, cfg in (("TinyViT-e2i", TINY_VIT), ("TinyRN-e2i", TINY_RN)):
        (tmp_path / f"{arch}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(tmp_path / f"{arch}.json")
        state = {k: v.contiguous() for k, v in tiny_openclip_model(cfg, seed=3).state_dict().items()}
        save_file(state, files.setdefault(arch, str(tmp_path / f"{arch}.safetensors")))
    real_cfg = open_clip.get_pretrained_cfg

    def pretrained_cfg(arch, tag):  # a non-openai tag whose pretrained cfg says quick_gelu (MetaCLIP, DFN...)
        return {"hf_hub": "x/y", "quick_gelu": True} if tag == "qg-tag" else real_cfg(arch, tag)

    monkeypatch.setattr(open_clip, "get_pretrained_cfg", pretrained_cfg)

    arch, weights = "TinyViT-e2i", files["TinyViT-e2i"]
    views = [GaussianBlur(kernel=1)(p) for p in photos[:3]]
    texts = ["This picture is a cat", "This picture is an airplane"]
    from eeg2image.features.encoders import to_tensor

    want = {}
    for quick in (True, False):
        ref = open_clip.create_model(arch, pretrained=weights, force_quick_gelu=quick).eval()
        with torch.no_grad():
            tokens = open_clip.get_tokenizer(arch)(texts)
            want[quick] = (ref.encode_image(to_tensor(views, 32)).numpy(), ref.encode_text(tokens).numpy())
    for k in (0, 1):  # the activation matters: the two builds differ well beyond the tolerance below
        assert np.abs(want[True][k] - want[False][k]).max() > 1e-3
    for tag, quick in (("openai", True), ("qg-tag", True), ("e2i", False)):
        enc = build_image_encoder(f"openclip:{arch}/{tag}", weights=weights, device="cpu")
        text = build_text_encoder(f"openclip:{arch}/{tag}", weights=weights, device="cpu")
        np.testing.assert_allclose(enc.encode(views), want[quick][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(text.encode(texts), want[quick][1], rtol=1e-5, atol=1e-6)
        # recorded in the identity, so a store table made with the other activation is recomputed
        assert enc.identity().get("quick_gelu", False) is quick and text.identity().get("quick_gelu", False) is quick
    # evnet-clip goes through the same builder
    evnet_clip = build_image_encoder(f"evnet-clip:{arch}/openai", weights=weights, device="cpu")
    assert evnet_clip.identity()["clip"]["quick_gelu"] is True
    # a ModifiedResNet image tower has no GELU (its RN50 tables stay valid); its text tower has QuickGELU
    rn = build_image_encoder("openclip:TinyRN-e2i/openai", weights=files["TinyRN-e2i"], device="cpu")
    assert "quick_gelu" not in rn.identity()
    assert build_text_encoder("openclip:TinyRN-e2i/openai", weights=files["TinyRN-e2i"], device="cpu").quick_gelu


@pytest.mark.parametrize("workers", [0, 2])
def test_embed_names_a_corrupt_image(dataset_copy, tmp_path, workers):
    from eeg2image.data.things_eeg2 import ImageSet
    from eeg2image.features.embed import embed_images

    victim = ImageSet.discover(dataset_copy).files("test")[2]
    victim.write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DataFormatError, match=rf"{victim.name}: unreadable image"):
        embed_images(
            dataset_copy,
            tmp_path / "s",
            parse_views("original"),
            build_image_encoder("evnet", device="cpu"),
            partitions=("test",),
            workers=workers,
            progress=False,
        )


def test_a_gpu_made_table_never_shares_a_cache_key_with_a_cpu_made_one():
    """The compute device and precision join the cache identity off the CPU only: the identities of CPU-made tables
    (every cache made so far here) are unchanged, a CUDA-made one names its device and precision."""
    import torch

    from eeg2image.features.encoders import compute_identity

    class Enc:
        autocasts = True

        def __init__(self, device):
            self.device = torch.device(device)

    class Plain:
        def __init__(self, device, dtype):
            self.device = torch.device(device)
            self.model = torch.nn.Linear(2, 2).to(dtype)

    assert compute_identity(Enc("cpu")) == {} and compute_identity(object()) == {}
    assert compute_identity(Enc("cuda")) == {"compute": {"device": "cuda", "precision": "bfloat16-autocast"}}
    assert compute_identity(Plain("cuda", torch.float16)) == {"compute": {"device": "cuda", "precision": "float16"}}
    assert compute_identity(Plain("cuda", torch.float32))["compute"]["precision"] == "float32"
