"""SDXL + IP-Adapters on a tiny pipeline (SDXL's block layout, random weights, adapters made in code and loaded by
diffusers' real loader): embeds reach the UNet as they should, batches equal single runs (diffusers #9813), the
reference's block scales reach exactly their layers, and outputs resume and refuse bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeg2image.generation.sdxl import (
    MODALITIES,
    REFERENCE_SCALES,
    GenerationConfig,
    GenerationError,
    IPAdapterSDXLPipeline,
    Reconstructor,
    tiny_prompt_embeds,
    tiny_sdxl_pipeline,
)
from eeg2image.io import DataFormatError

STIMULI = ["00001_aircraft", "00002_banana", "00003_cat", "00004_drum"]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return tiny_sdxl_pipeline(0, ip_adapter_folder=tmp_path_factory.mktemp("h94"))


def embeds(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, 1024, generator=g) for m in MODALITIES}


def reconstructor(pipe, **cfg):
    pe, pooled = tiny_prompt_embeds()
    return Reconstructor(pipe, GenerationConfig(**{"steps": 2, "size": 32, **cfg}), pe, pooled)


def test_the_adapters_load_through_the_real_path_with_1024_d_projections(pipe):
    layers = pipe.unet.encoder_hid_proj.image_projection_layers
    assert len(layers) == 3 and all(p.image_embeds.in_features == 1024 for p in layers)


@pytest.mark.parametrize(("guidance", "rows"), [(0.0, 3), (1.0, 3), (2.0, 6)])
def test_embeds_reach_the_unet_with_the_right_shape(pipe, guidance, rows):
    seen = []

    def hook(_module, args, kwargs):
        seen.append([tuple(e.shape) for e in kwargs["added_cond_kwargs"]["image_embeds"]])
        seen.append(kwargs["added_cond_kwargs"]["image_embeds"][0])

    h = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        reconstructor(pipe, guidance_scale=guidance, batch_size=3).generate(embeds(3), STIMULI[:3])
    finally:
        h.remove()
    assert seen[0] == [(rows, 1, 1024)] * 3  # per adapter: one row per image (x2 with guidance), never B^2
    first = seen[1]
    if rows == 6:  # with guidance the negatives (zeros) come first
        assert torch.all(first[:3] == 0) and not torch.all(first[3:] == 0)


def test_a_batch_equals_single_runs(pipe):
    e = embeds(4)
    batched = reconstructor(pipe, batch_size=4).generate(e, STIMULI)
    single = reconstructor(pipe, batch_size=1).generate(e, STIMULI)
    for k in batched:
        assert np.abs(batched[k].astype(int) - single[k].astype(int)).max() <= 1, k
    assert not np.array_equal(batched[(0, 0, STIMULI[0])], batched[(0, 0, STIMULI[1])])


def test_the_stock_pipeline_mixes_a_batch_and_the_test_above_would_see_it(pipe, monkeypatch):
    """diffusers #9813: the stock method repeats given embeds by the batch size; attention then folds the surplus
    into extra tokens, so each image sees every embedding of the batch. Shown here to make sure the batch test
    can fail."""
    from diffusers import StableDiffusionXLPipeline

    e = embeds(4)
    single = reconstructor(pipe, batch_size=1).generate(e, STIMULI)
    monkeypatch.setattr(
        IPAdapterSDXLPipeline,
        "prepare_ip_adapter_image_embeds",
        StableDiffusionXLPipeline.prepare_ip_adapter_image_embeds,
    )
    mixed = reconstructor(pipe, batch_size=4).generate(e, STIMULI)
    diffs = [np.abs(mixed[k].astype(int) - single[k].astype(int)).max() for k in single]
    assert max(diffs) > 1


def test_zero_scales_equal_no_adapter(tmp_path):
    with_ip = tiny_sdxl_pipeline(3, ip_adapter_folder=tmp_path / "h94")
    without = tiny_sdxl_pipeline(3)
    zero = {m: 0.0 for m in MODALITIES}
    out_ip = reconstructor(with_ip, scales=zero, batch_size=2).generate(embeds(2), STIMULI[:2])
    pe, pooled = tiny_prompt_embeds()
    from eeg2image.generation.sdxl import image_seed

    gens = [torch.Generator().manual_seed(image_seed(0, s, 0)) for s in STIMULI[:2]]
    plain = without(
        prompt_embeds=pe.expand(2, -1, -1),
        pooled_prompt_embeds=pooled.expand(2, -1),
        num_inference_steps=2,
        guidance_scale=0.0,
        height=32,
        width=32,
        generator=gens,
        output_type="np",
    ).images
    for i, s in enumerate(STIMULI[:2]):
        want = (np.clip(plain[i], 0, 1) * 255).round().astype(np.uint8)
        assert np.abs(out_ip[(0, 0, s)].astype(int) - want.astype(int)).max() <= 1


def test_the_reference_block_dicts_reach_exactly_their_layers(pipe):
    reconstructor(pipe, scales=dict(REFERENCE_SCALES))
    got = {
        name.split(".transformer_blocks")[0]: [float(x) for x in proc.scale]
        for name, proc in pipe.unet.attn_processors.items()
        if hasattr(proc, "scale") and isinstance(proc.scale, list)
    }
    want = {name: [0.0, 0.0, 0.0] for name in got}
    want["down_blocks.2.attentions.0"] = [1.0, 0.0, 0.0]  # image: layout and style; depth, edge: layout at 0.5
    want["down_blocks.2.attentions.1"] = [1.0, 0.5, 0.5]
    for k in range(3):
        want[f"up_blocks.0.attentions.{k}"] = [1.0, 0.0, 0.0]
    assert got == want
    assert "down_blocks.1.attentions.0" in got and "mid_block.attentions.0" in got  # the others exist, at 0


def test_outputs_are_written_once_and_a_rerun_resumes(pipe, tmp_path):
    rec = reconstructor(pipe, batch_size=3, rounds=2)
    e = embeds(4)
    written = rec.generate_to(tmp_path, e, STIMULI)
    assert len(written) == 8 and (tmp_path / f"seed-0/round-1/{STIMULI[3]}.png").is_file()
    victim = tmp_path / f"seed-0/round-0/{STIMULI[2]}.png"
    before = victim.read_bytes()
    victim.unlink()
    again = rec.generate_to(tmp_path, e, STIMULI)
    assert again == [victim] and victim.read_bytes() == before  # only the missing image, and the same one


def test_bad_embeddings_and_black_images_are_named(pipe, tmp_path):
    rec = reconstructor(pipe, batch_size=2)
    bad = embeds(2)
    bad["depth"] = torch.randn(2, 768)
    with pytest.raises(DataFormatError, match=r"'depth' embeddings have shape \(2, 768\); expected \(2, 1024\)"):
        rec.generate(bad, STIMULI[:2])
    bad = embeds(2)
    bad["edge"][1, 3] = float("nan")
    with pytest.raises(DataFormatError, match="'edge' embeddings hold NaN"):
        rec.generate(bad, STIMULI[:2])
    with pytest.raises(GenerationError, match=r"has 3 IP-Adapter\(s\), the config lists modalities \['image'\]"):
        reconstructor(pipe, modalities=["image"])
    black = tiny_sdxl_pipeline(0, ip_adapter_folder=tmp_path / "h94")
    with torch.no_grad():
        black.vae.decoder.conv_out.weight.zero_()
        black.vae.decoder.conv_out.bias.fill_(-5.0)  # decodes to -1 everywhere: black
    with pytest.raises(GenerationError, match=f"stimulus '{STIMULI[0]}' .*a black image"):
        reconstructor(black).generate(embeds(1), STIMULI[:1])


def test_the_real_loader_reads_saved_folders_offline_and_names_what_is_missing(tmp_path, monkeypatch):
    from eeg2image.features.weights import MissingWeightsError
    from eeg2image.generation.sdxl import load_sdxl_pipeline

    made = tiny_sdxl_pipeline(5, ip_adapter_folder=tmp_path / "h94")
    made.save_pretrained(tmp_path / "sdxl")  # the adapters are not part of the saved pipeline
    loaded = load_sdxl_pipeline(tmp_path / "sdxl", tmp_path / "h94", dtype="float32", device="cpu")
    e = embeds(2)
    a = reconstructor(made, batch_size=2).generate(e, STIMULI[:2])
    b = reconstructor(loaded, batch_size=2).generate(e, STIMULI[:2])
    assert all(np.array_equal(a[k], b[k]) for k in a)

    from eeg2image.features.weights import file_fingerprint
    from eeg2image.generation.sdxl import sdxl_weights

    # what the manifest records: the files this loader reads, by fingerprint (every weighted part, and the adapter)
    rec = sdxl_weights(tmp_path / "sdxl", tmp_path / "h94", dtype="float32")
    saved = {f.parent.name for f in (tmp_path / "sdxl").glob("*/*.safetensors")}  # the tiny one has no text encoders
    assert {"unet", "vae"} <= saved
    assert rec["variant"] is None and {k.split("/")[0] for k in rec["files"]} == saved | {"sdxl_models"}
    unet = tmp_path / "sdxl/unet/diffusion_pytorch_model.safetensors"
    assert rec["files"]["unet/diffusion_pytorch_model.safetensors"] == file_fingerprint(unet)

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(
        MissingWeightsError, match=r"SDXL pipeline 'stabilityai/sdxl-turbo' is not on this machine.*hf download"
    ):
        load_sdxl_pipeline(dtype="float32", device="cpu")


def test_the_offline_gallery_returns_the_nearest_training_image(tiny_dataset, tiny_oracle_store, tmp_path):
    from eeg2image.data.things_eeg2 import load_image
    from eeg2image.features.store import EmbeddingStore
    from eeg2image.generation.gallery import NearestTrainingImage

    gallery = NearestTrainingImage(tiny_dataset, tiny_oracle_store, "original", "sim-features", size=32)
    table = EmbeddingStore(tiny_oracle_store).load("training", "original", "sim-features")
    rows = torch.from_numpy(np.asarray(table.embeddings[[5, 17]]))
    assert gallery.nearest(rows).tolist() == [5, 17]
    paths = gallery.generate_to(tmp_path, {"image": rows + 0.01 * torch.randn_like(rows)}, ["a", "b"])
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["seed-0/round-0/a.png", "seed-0/round-0/b.png"]
    want = np.asarray(load_image(gallery.files[17], size=32))
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(paths[1])), want)
    with pytest.raises(DataFormatError, match=r"predicted embeddings have shape \(2, 5\); the gallery .* is 97-d"):
        gallery.nearest(torch.zeros(2, 5))


def test_init_strength_zero_is_text_to_image_and_above_zero_starts_from_the_latent(tmp_path):
    """The low-level path in SDXL: ``init_strength`` 0 gives today's text-to-image images, byte for byte, whatever
    latents are passed; above 0 the images start from the given latents (img2img), and depend on them; latents of
    another shape are refused by name."""
    pipe = tiny_sdxl_pipeline(ip_adapter_folder=tmp_path, n_adapters=1)
    e = {"image": torch.randn(3, 1024, generator=torch.Generator().manual_seed(0))}
    lat = torch.randn(3, 4 * 16 * 16, generator=torch.Generator().manual_seed(1))
    plain = reconstructor(pipe, modalities=["image"], size=32, batch_size=3).generate(e, STIMULI[:3])
    zero = reconstructor(pipe, modalities=["image"], size=32, batch_size=3, init_strength=0.0)
    assert all(np.array_equal(plain[k], v) for k, v in zero.generate(e, STIMULI[:3], latents=lat).items())
    half = reconstructor(pipe, modalities=["image"], size=32, batch_size=3, init_strength=0.5)
    a = half.generate(e, STIMULI[:3], latents=lat)
    b = half.generate(e, STIMULI[:3], latents=-lat)
    assert all(not np.array_equal(plain[k], a[k]) and not np.array_equal(a[k], b[k]) for k in a)
    one = reconstructor(pipe, modalities=["image"], size=32, batch_size=1, init_strength=0.5)
    assert all(np.array_equal(a[k], v) for k, v in one.generate(e, STIMULI[:3], latents=lat).items())
    with pytest.raises(DataFormatError, match=r"init latents have shape \(3, 100\); .* takes \(3, 1024\)"):
        half.generate(e, STIMULI[:3], latents=torch.zeros(3, 100))
    with pytest.raises(DataFormatError, match="no low-level latents were given"):
        half.generate(e, STIMULI[:3])
