"""The low-level path's VAE: the offline AutoencoderKL trained on the training images (``eeg2image train-vae``)
learns a round trip, saves as a diffusers folder that the real loader (SDXL-Turbo's ``vae/`` path) reads, and
resumes exactly after a kill; ``embed --encoder vae:FOLDER`` writes its latents with their shape and identity;
folders that are no VAE are refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from badinput import run_cli
from test_faults import digest, eeg2image, killed

from eeg2image.data.things_eeg2 import ImageSet, load_image
from eeg2image.features.store import EmbeddingStore
from eeg2image.features.vae import decode_latents, load_vae, resolve_vae_folder
from eeg2image.io import DataFormatError
from eeg2image.training.vae import VAEConfig, build_vae

SETS = ["image_size=16", "block_out_channels=[8,16]", "steps=120", "batch_size=16", "checkpoint_every=40", "lr=5e-3"]


def _sets(*extra: str) -> list[str]:
    return [x for s in (*SETS, *extra) for x in ("--set", s)]


@pytest.fixture(scope="module")
def vae_folder(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "vae"
    res = eeg2image("train-vae", tiny_dataset, out, "--quiet", *_sets())
    assert res.returncode == 0, res.stderr
    return out


def _images(root, partition, size=16):
    files = ImageSet.discover(root).files(partition)
    arr = np.stack([np.asarray(load_image(f, size=size)) for f in files])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1


def _pixcorr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())


def test_the_trained_vae_round_trips_unseen_images_far_better_than_untrained(vae_folder, tiny_dataset):
    vae = load_vae(vae_folder)  # the real loader, as for SDXL-Turbo's vae/
    assert type(vae).__name__ == "AutoencoderKL" and vae.config.latent_channels == 4
    torch.manual_seed(0)
    untrained = build_vae(VAEConfig(image_size=16, block_out_channels=[8, 16])).eval()
    x = _images(tiny_dataset, "test")  # never seen in training

    def round_trip(m):
        with torch.no_grad():
            return m.decode(m.encode(x).latent_dist.mean).sample

    trained, before = _pixcorr(round_trip(vae), x), _pixcorr(round_trip(untrained), x)
    # measured here: ~0.55 after 120 steps, an untrained one ~0.0
    assert trained >= 0.4 and trained >= before + 0.3, (trained, before)
    man = json.loads((vae_folder / "manifest.json").read_text())
    assert man["stage"] == "train-vae" and man["inputs"]["training_images"] == len(
        ImageSet.discover(tiny_dataset).files("training")
    )


def test_embed_writes_latents_that_decode_back(vae_folder, tiny_dataset, tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = run_cli(
        capsys, "embed", tiny_dataset, store, "--encoder", f"vae:{vae_folder}", "--views", "original"
    )
    assert code == 0, err
    table = EmbeddingStore(store).load("training", "original", f"vae:{vae_folder}")
    ident = table.manifest["identity"]["encoder"]
    assert ident["latent_shape"] == [4, 8, 8] and ident["image_size"] == 16 and "config_sha256" in ident["vae"]
    assert table.embeddings.shape == (len(ImageSet.discover(tiny_dataset).files("training")), 4 * 8 * 8)
    imgs = decode_latents(load_vae(vae_folder), torch.from_numpy(table.embeddings[:3]), (4, 8, 8))
    assert imgs.shape == (3, 16, 16, 3) and imgs.dtype == np.uint8
    # a pipeline folder (SDXL-Turbo's layout) is read through its vae/
    pipe = tmp_path / "pipe"
    (pipe / "vae").mkdir(parents=True)
    for f in ("config.json", "diffusion_pytorch_model.safetensors"):
        (pipe / "vae" / f).write_bytes((vae_folder / f).read_bytes())
    assert resolve_vae_folder(pipe) == pipe / "vae"


def test_a_killed_vae_training_resumes_to_the_same_weights(vae_folder, tiny_dataset, tmp_path):
    out = tmp_path / "vae"
    res = eeg2image("train-vae", tiny_dataset, out, "--quiet", *_sets(), fault="vae-step:77")
    assert killed(res), res.stderr
    assert not (out / "config.json").exists() and (out / "checkpoint/state.safetensors").is_file()
    res = eeg2image("train-vae", tiny_dataset, out, "--quiet", *_sets())
    assert res.returncode == 0, res.stderr
    assert digest(out, "diffusion_pytorch_model.safetensors") == digest(
        vae_folder, "diffusion_pytorch_model.safetensors"
    )
    # the same folder with another configuration: refused, nothing overwritten
    before = digest(out)
    code = eeg2image("train-vae", tiny_dataset, out, "--quiet", *_sets("steps=61"))
    assert code.returncode == 2 and "holds a VAE of another configuration" in code.stderr
    assert digest(out) == before


def test_folders_that_are_no_vae_are_refused_by_name(vae_folder, tmp_path):
    wrong = tmp_path / "unet"
    wrong.mkdir()
    cfg = json.loads((vae_folder / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**cfg, "_class_name": "UNet2DConditionModel"}))
    (wrong / "diffusion_pytorch_model.safetensors").write_bytes(
        (vae_folder / "diffusion_pytorch_model.safetensors").read_bytes()
    )
    with pytest.raises(DataFormatError, match="_class_name is 'UNet2DConditionModel'; expected 'AutoencoderKL'"):
        load_vae(wrong)
    shape = tmp_path / "shape"
    shape.mkdir()
    (shape / "config.json").write_text(json.dumps({**cfg, "block_out_channels": [16, 32]}))
    (shape / "diffusion_pytorch_model.safetensors").write_bytes(
        (vae_folder / "diffusion_pytorch_model.safetensors").read_bytes()
    )
    with pytest.raises(DataFormatError, match="the VAE's weights do not load into its config.json"):
        load_vae(shape)
    from eeg2image.features.weights import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="not a VAE folder"):
        resolve_vae_folder(tmp_path)


def test_latents_killed_while_written_resume_to_the_same_table(vae_folder, tiny_dataset, tmp_path):
    """``embed --encoder vae:`` killed between batches of latents, then rerun: the same table, byte for byte."""
    args = ["embed", tiny_dataset, tmp_path / "whole", "--encoder", f"vae:{vae_folder}", "--views", "original"]
    res = eeg2image(*args, "--batch-size", "8", "--quiet")
    assert res.returncode == 0, res.stderr
    killed_args = [*args[:2], tmp_path / "killed", *args[3:], "--batch-size", "8", "--quiet"]
    res = eeg2image(*killed_args, fault="embed-batch:3")
    assert killed(res), res.stderr
    assert not list((tmp_path / "killed").rglob("original__*.safetensors"))  # nothing that looks complete
    res = eeg2image(*killed_args)
    assert res.returncode == 0, res.stderr
    assert digest(tmp_path / "killed", "*.safetensors") == digest(tmp_path / "whole", "*.safetensors")


def test_latents_are_encoded_a_few_images_at_a_time_with_the_same_result(vae_folder, monkeypatch):
    """Bounded memory (the rehearsal: SDXL's VAE on 16 images of 512 px took 16.6 GiB): the encoder calls the VAE
    on at most ``micro_batch`` images, and the latents equal one call's."""
    from eeg2image.features.vae import VAELatentEncoder, build_vae_encoder

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(5)]
    enc = build_vae_encoder(str(vae_folder), weights=None, device=torch.device("cpu"))
    whole = enc.encode(images)
    assert (
        enc.micro_batch >= 5
        and build_vae_encoder(f"{vae_folder};size=512", weights=None, device="cpu").micro_batch == 4
    )
    calls = []
    real = enc.vae.encode
    monkeypatch.setattr(enc.vae, "encode", lambda x: calls.append(len(x)) or real(x))
    monkeypatch.setattr(VAELatentEncoder, "micro_batch", 2)
    np.testing.assert_allclose(enc.encode(images), whole, rtol=1e-5, atol=1e-5)
    assert calls == [2, 2, 1]
