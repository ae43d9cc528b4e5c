"""The rehearsal kit's layouts (issue 20): what ``benchmarks/rehearse.py`` fabricates is found and loaded by our real
loading paths, offline, from the Hugging Face and torch hub caches it fills. Tiny configs where the architecture
comes from a config file; real size where it is fixed by name (OpenCLIP RN50, the torchvision metric networks)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from benchmarks.rehearse import MARKER, REVISION, clip_bpe_files, make_kit

KIT = ["ipadapter", "depth", "sdxl-turbo", "openclip-rn50", "alexnet", "effnet-b1", "swav", "inception"]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    return make_kit(tmp_path_factory.mktemp("kit"), KIT, tiny=True, log=lambda *_: None)


@pytest.fixture
def caches(kit, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(kit.hf))
    for k, v in kit.env().items():
        monkeypatch.setenv(k, v)
    return kit


def test_the_hub_layout_is_huggingface_hubs(kit):
    """refs/main names the revision; snapshot files are relative links into blobs/<sha256>; every repo is marked."""
    import hashlib

    from huggingface_hub import scan_cache_dir

    repos = {r.repo_id: r for r in scan_cache_dir(kit.hf).repos}
    assert {"h94/IP-Adapter", "stabilityai/sdxl-turbo", "LiheYoung/depth-anything-base-hf"} <= set(repos)
    for repo in repos.values():
        assert [rev.commit_hash for rev in repo.revisions] == [REVISION]
        assert (repo.repo_path / MARKER).is_file()
    link = kit.hf / "models--stabilityai--sdxl-turbo" / "snapshots" / REVISION / "unet" / "config.json"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    blob = link.resolve()
    assert blob.parent.name == "blobs" and blob.name == hashlib.sha256(blob.read_bytes()).hexdigest()
    assert (kit.root / MARKER).is_file() and (kit.torch_home / "hub" / "checkpoints" / MARKER).is_file()


def test_the_clip_tokenizer_files_tokenize_as_open_clip_does():
    """vocab.json / merges.txt derived from open_clip's BPE table give OpenAI CLIP's ids (49,408 entries)."""
    import tempfile
    from pathlib import Path

    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe_files()
    assert len(vocab) == 49408 and vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "vocab.json").write_text(json.dumps(vocab))
        (Path(d) / "merges.txt").write_text(merges)
        hf = CLIPTokenizer(str(Path(d) / "vocab.json"), str(Path(d) / "merges.txt"))
    text = "a photo of an aardvark, eating 12 bananas!"
    assert hf(text)["input_ids"][1:-1] == SimpleTokenizer().encode(text)


def test_image_encoders_and_the_depth_model_load_through_our_paths(caches):
    from eeg2image.features.encoders import build_image_encoder
    from eeg2image.features.views import DepthMap

    rng = np.random.default_rng(0)
    img = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    ipa = build_image_encoder("ipadapter:h94/IP-Adapter", device="cpu")
    assert ipa.encode(img).shape == (2, 1024)  # the adapter's 1024-d image_embeds
    rn50 = build_image_encoder("openclip:RN50/openai", device="cpu")
    assert rn50.encode(img).shape == (2, 1024)
    depth = DepthMap(model="LiheYoung/depth-anything-base-hf")(img[0])
    assert depth.ndim == 3 and depth.shape[-1] == 3 and depth.dtype == np.uint8 and depth.std() > 0


def test_the_metric_networks_load_from_the_torch_hub_cache(caches):
    """Found by the kit: our SwAV loader refused the released file, which holds the 3,000 prototypes too."""
    from eeg2image.evaluation.reconstruction import FEATURE_METRICS

    x = torch.rand(2, 3, 64, 64)
    for name in ("alexnet2", "inception", "effnet_b1", "swav"):
        feats = FEATURE_METRICS[name].build({})(x)
        assert feats.shape[0] == 2 and torch.isfinite(feats).all(), name


def test_sdxl_turbo_and_its_vae_load_and_generate_through_our_paths(caches):
    from eeg2image.features.vae import load_vae
    from eeg2image.generation.sdxl import GenerationConfig, Reconstructor, load_sdxl_pipeline

    vae = load_vae("stabilityai/sdxl-turbo")
    assert vae.config.scaling_factor == pytest.approx(0.13025) and vae.config.force_upcast
    pipe = load_sdxl_pipeline("stabilityai/sdxl-turbo", "h94/IP-Adapter", dtype="float32", device="cpu")
    assert type(pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    pe, _, pooled, _ = pipe.encode_prompt("", do_classifier_free_guidance=False)  # the real tokenizers and encoders
    assert pe.shape[-1] == pipe.unet.config.cross_attention_dim
    assert (pipe.tokenizer.pad_token, pipe.tokenizer_2.pad_token, pipe.tokenizer_2.pad_token_id) == (
        "<|endoftext|>",
        "!",
        0,
    )
    g = torch.Generator().manual_seed(0)
    embeds = {m: torch.randn(1, 1024, generator=g) for m in ("image", "depth", "edge")}
    rec = Reconstructor(pipe, GenerationConfig(steps=1, size=32), pe, pooled)
    (image,) = rec.generate(embeds, ["00001_x"]).values()
    assert image.shape == (32, 32, 3) and image.std() > 0
    half = load_sdxl_pipeline("stabilityai/sdxl-turbo", "h94/IP-Adapter", dtype="float16", device="cpu")
    assert {half.unet.dtype, half.text_encoder.dtype, half.text_encoder_2.dtype} == {torch.float16}  # the variants


def test_the_rehearsal_runs_both_reference_commands_own_lines_with_only_the_cut_options_added():
    """`make -n` of each command: the same lines as without the cut options, plus the options at their ends."""
    from pathlib import Path

    from benchmarks.rehearse import COMMANDS, CPU_ARGS, make_lines

    repo = Path(__file__).resolve().parents[1]
    for target, dir_var in COMMANDS:
        base = {"THINGS": "/data/things", "SUBJECT": "3", dir_var: "/out"}
        plain, cut = make_lines(target, base, repo), make_lines(target, {**base, **CPU_ARGS}, repo)
        assert len(plain) == len(cut) >= 5 and all("\\" not in line for line in cut)
        for a, b in zip(plain, cut, strict=True):
            assert b.startswith(a) and b[len(a) :].strip() in ("", *CPU_ARGS.values()), (a, b)
        assert any("train" in line and line.endswith(CPU_ARGS["TRAIN_ARGS"]) for line in cut)


def test_each_stage_reports_its_peak_gpu_memory_only_when_it_used_cuda(tmp_path, monkeypatch):
    """The console script writes the process's peak CUDA memory to the file the rehearsal names; a CPU stage writes
    none, and its figure stays empty rather than 0."""
    import sys

    from benchmarks.rehearse import Stage, run_stage
    from eeg2image.allocator import write_peak_cuda_memory

    line = f"{sys.executable} -c 'from eeg2image.cli import main; main([\"presets\"])'"
    st = run_stage(Stage("x", line), dict(os.environ), tmp_path, tmp_path / "log.txt")
    assert st.rc == 0 and st.peak_cuda_gib is None and st.peak_rss_gib > 0

    assert write_peak_cuda_memory(tmp_path / "none.json") is None and not (tmp_path / "none.json").exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d: (3 + d) * 2**30)
    assert write_peak_cuda_memory(tmp_path / "peak.json") == 4.0
    assert json.loads((tmp_path / "peak.json").read_text()) == {"peak_cuda_gib": 4.0}


def test_a_stage_peak_memory_is_its_own_not_the_rehearsals(tmp_path):
    """A child's ru_maxrss starts at the high-water mark of the process it was forked from: a stage forked from
    the process that made the kit reported 10.6 GiB for a 5-second preprocess. Measured from a small interpreter,
    a tiny command reports its own few MiB while this process holds 1 GiB."""
    import sys

    from benchmarks.rehearse import Stage, run_stage

    held = np.ones(2**27)  # 1 GiB, touched
    st = run_stage(Stage("x", "true"), dict(os.environ), tmp_path, tmp_path / "log.txt")
    assert held.sum() == 2**27 and st.rc == 0
    assert st.peak_rss_gib < 0.1, st.peak_rss_gib
    grow = f"{sys.executable} -S -c 'x = bytearray(300 * 2**20); x[::4096] = b\"1\" * len(x[::4096])'"
    st = run_stage(Stage("x", grow), dict(os.environ), tmp_path, tmp_path / "log.txt")
    assert st.rc == 0 and 0.29 < st.peak_rss_gib < 0.5, st.peak_rss_gib  # the stage's own 300 MiB is seen
    st = run_stage(Stage("x", "exit 3"), dict(os.environ), tmp_path, tmp_path / "log.txt")
    assert st.rc == 3
