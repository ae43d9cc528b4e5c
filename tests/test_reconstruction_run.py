"""Reconstruction end to end on a simulated dataset: experts (two encoders' views: the simulator's image features
and MiniLM texts) trained by the one loop and evaluated per key -> one STH-Align per seed, trained on the training
partition only -> images by the offline generator and by a tiny SDXL through the real IP-Adapter path -> metrics.
Plus the refusals and a kill during generation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from badinput import as_sets, run_cli
from test_faults import digest, eeg2image, killed

from eeg2image.datasets import load_pairs
from eeg2image.evaluation.evaluate import evaluate_run
from eeg2image.features.embed import embed_texts
from eeg2image.features.encoders import build_text_encoder
from eeg2image.generation.reconstruct import ReconstructConfig, eeg_queries, reconstruct_run
from eeg2image.generation.sdxl import GenerationConfig, tiny_prompt_embeds, tiny_sdxl_pipeline
from eeg2image.models.align import aligner_inputs, load_aligner
from eeg2image.models.retrieval import embed_eeg, load_stack
from eeg2image.runs import aligner_path, run_config
from eeg2image.training.run import train_run

N_TEST = 40
EXPERTS = {
    "modalities": {"image": ["original"], "text": ["text-template@minilm"]},
    "expert_options": {"d_ff": 32},
    "text_epochs": 10,
}


@pytest.fixture(scope="module")
def aligned(learnable, tmp_path_factory):
    """A trained experts run (seeds 0 and 1) with its aligners in RUN/align, on the shared ``learnable`` dataset
    (its store copied, MiniLM texts added to the copy)."""
    root = tmp_path_factory.mktemp("recon")
    (root / "ds").symlink_to(learnable / "ds")
    (root / "pre").symlink_to(learnable / "pre")
    shutil.copytree(learnable / "store", root / "store")
    embed_texts(root / "ds", root / "store", build_text_encoder("minilm", device="cpu"), progress=False)
    run = run_config(
        None,
        None,
        **{
            "data.preprocessed": str(root / "pre"),
            "data.store": str(root / "store"),
            "data.dataset": str(root / "ds"),
            "data.image_encoder": "sim-features",
            "train.epochs": 8,
            "train.batch_size": 64,
            "train.experts": EXPERTS,
            "seeds": [0, 1],
        },
    )
    train_run(run, root / "run", progress=False, log=lambda *a: None)
    cli(
        [
            "align",
            str(root / "run"),
            "--targets",
            "image",
            "--set",
            "align.epochs=30",
            "--set",
            "align.batch_size=64",
            "--quiet",
        ]
    )
    return root


def cli(args: list[str]) -> None:
    from eeg2image.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert exc.value.code == 0


def test_experts_learn_and_are_evaluated_per_key(aligned):
    m = evaluate_run(aligned / "run", log=lambda *a: None)["final"]["sub-01"]
    assert m["key"] == "image" and set(m["per_key"]) == {"image", "text", "fusion"}
    # chance: 1/40 top-1. Measured: image 0.70+, text 0.25 (MiniLM of concept names: the simulator's EEG is not about
    # words, but its concepts' names are the images' concepts)
    assert m["aggregate"]["top1"]["mean"] >= 8 / N_TEST, m["aggregate"]
    report = (aligned / "run" / "report.md").read_text()
    assert "| sub-01 | text |" in report and "| sub-01 | fusion |" in report


def _test_side(aligned):
    """(the experts' metadata, the averaged test EEG, the experts' embeddings of it, the normalised test targets)."""
    stack, meta = load_stack(aligned / "run/units/sub-01/best.safetensors")
    cfg = run_config(None, aligned / "run/config.yaml")
    q, sub = eeg_queries(cfg, 1)
    test = load_pairs(aligned / "pre/sub-01", aligned / "store", "test", ["original"], "sim-features")
    return meta, q, embed_eeg(stack, q, sub), torch.nn.functional.normalize(test.views["original"], dim=-1)


def test_aligned_predictions_identify_the_test_images(aligned):
    """The chain experts -> aligner carries the image: the prediction of each test EEG is nearest its own test
    image's target embedding far more often than chance (the test targets are read here, by the test only)."""
    meta, _, eeg, gallery = _test_side(aligned)
    for i, seed in enumerate(meta["seeds"]):
        model, ameta = load_aligner(aligner_path(aligned / "run/align", "sub-01", seed))
        assert ameta["encoder"] == "sim-features" and ameta["target_views"] == {"image": "original@sim-features"}
        assert model.config.inputs == ["image", "fusion"]  # the run has no depth or edge expert
        with torch.no_grad():
            pred = model(aligner_inputs({k: v[i] for k, v in eeg.items()}, model.config.inputs))["image"]
        top1 = float(
            (torch.nn.functional.normalize(pred, dim=-1) @ gallery.T).argmax(1).eq(torch.arange(N_TEST)).float().mean()
        )
        assert top1 >= 6 / N_TEST, (seed, top1)


def test_the_ridge_aligner_and_the_eeg_ridge_maps_identify_the_test_images(aligned, tmp_path, capsys, monkeypatch):
    """``method=ridge``: closed-form maps from the experts' embeddings, penalties chosen on the concepts the experts
    held out; beside them, the unit's ridge maps from the averaged EEG itself (the ``linear`` control). Both identify
    the test images far above chance, and only the training partition is read."""
    import eeg2image.datasets as ds
    from eeg2image.training.align import eeg_features

    seen = []
    real_read = ds.read_our_preprocessed
    monkeypatch.setattr(ds, "read_our_preprocessed", lambda f, p: seen.append(p) or real_read(f, p))
    out = tmp_path / "ridge"
    code, log, err = run_cli(
        capsys, "align", aligned / "run", "--out", out, "--targets", "image", "--set", "method=ridge"
    )
    assert code == 0, err
    assert set(seen) == {"training"} and "chosen on the experts' 30 held-out images" in log
    monkeypatch.undo()
    meta, q, eeg, gallery = _test_side(aligned)

    def top1(pred):
        return float(
            (torch.nn.functional.normalize(pred, dim=-1) @ gallery.T).argmax(1).eq(torch.arange(N_TEST)).float().mean()
        )

    for i, seed in enumerate(meta["seeds"]):
        model, ameta = load_aligner(aligner_path(out, "sub-01", seed))
        assert ameta["method"] == "ridge" and model.inputs == ["image", "fusion"]
        assert top1(model.predict({k: v[i] for k, v in eeg.items()})["image"]) >= 6 / N_TEST
    linear, lmeta = load_aligner(out / "units/sub-01/eeg-ridge.safetensors")
    assert lmeta["eeg_time_stride"] == 2 and list(linear.maps) == ["image"]
    assert top1(linear.predict({"eeg": eeg_features(q, 2)})["image"]) >= 6 / N_TEST
    # the aligners feed reconstruct like any other
    code, _, err = run_cli(capsys, "reconstruct", out, "--out", tmp_path / "recon", "--generator", "nearest", "--quiet")
    assert code == 0, err
    assert len(list((tmp_path / "recon").glob("eeg/sub-01/seed-*/round-0/*.png"))) == 2 * N_TEST


def test_the_ridge_aligner_fitted_on_the_targets_identifies_the_test_images(aligned, tmp_path, capsys):
    """``fit_on=targets``: one map fitted on the training images' own embeddings (none of the experts' memorised
    outputs), each seed's expert outputs given those embeddings' moments; the fusion key (no target) is left out."""
    out = tmp_path / "t"
    args = ["align", aligned / "run", "--out", out, "--targets", "image", "--set", "method=ridge"]
    code, log, err = run_cli(capsys, *args, "--set", "fit_on=targets")
    assert code == 0, err
    assert "['fusion'] has no target embedding, left out" in log
    meta, _, eeg, gallery = _test_side(aligned)
    for i, seed in enumerate(meta["seeds"]):
        model, ameta = load_aligner(aligner_path(out, "sub-01", seed))
        assert model.inputs == ["image"] and model.normalize and ameta["method"] == "ridge"
        pred = model.predict({k: v[i] for k, v in eeg.items()})["image"]
        top1 = float(
            (torch.nn.functional.normalize(pred, dim=-1) @ gallery.T).argmax(1).eq(torch.arange(N_TEST)).float().mean()
        )
        assert top1 >= 6 / N_TEST, (seed, top1)
    code, _, err = run_cli(capsys, *args[:-1], "method=sth_align", "--set", "fit_on=targets")
    assert code == 2 and "fit_on=targets is built for method=ridge" in err


def test_alignment_reads_no_test_data(aligned, tmp_path, monkeypatch):
    import eeg2image.datasets as ds
    from eeg2image.features.store import EmbeddingStore

    seen = []
    real_read, real_load = ds.read_our_preprocessed, EmbeddingStore.load
    monkeypatch.setattr(ds, "read_our_preprocessed", lambda f, p: seen.append(p) or real_read(f, p))
    monkeypatch.setattr(EmbeddingStore, "load", lambda self, p, *a, **k: seen.append(p) or real_load(self, p, *a, **k))
    cli(
        [
            "align",
            str(aligned / "run"),
            "--out",
            str(tmp_path / "a"),
            "--targets",
            "image",
            "--set",
            "align.epochs=2",
            "--quiet",
        ]
    )
    assert seen and set(seen) == {"training"}


def test_the_diffusion_prior_flag_aligns_and_reconstructs(aligned, tmp_path, capsys):
    """ATM's prior behind ``method=diffusion_prior``: one prior per target, conditioned on that modality's expert;
    reconstruct samples from it (tiny widths here; the prior's learning is tested in test_align)."""
    sets = ["method=diffusion_prior", "prior.hidden=[64,32]", "prior.time_embed_dim=16", "prior.epochs=3"]
    sets += ["prior.steps=4", "prior.batch_size=64"]
    args = ["align", aligned / "run", "--out", tmp_path / "prior", "--targets", "image", "--quiet"]
    code, _, err = run_cli(capsys, *args, *[x for s in sets for x in ("--set", s)])
    assert code == 0, err
    meta = load_aligner(aligner_path(tmp_path / "prior", "sub-01", 1))[1]
    assert meta["method"] == "diffusion_prior" and meta["conditions"] == {"image": "image"}
    out = tmp_path / "recon"
    code, _, err = run_cli(capsys, "reconstruct", tmp_path / "prior", "--out", out, "--generator", "nearest")
    assert code == 0, err
    assert len(list(out.glob("eeg/sub-01/seed-*/round-0/*.png"))) == 2 * N_TEST
    code, _, err = run_cli(capsys, *args[:3], tmp_path / "p2", "--targets", "image,edge", "--set", sets[0])
    assert code == 2 and "no ['edge'] expert(s)" in err


def test_reconstruct_offline_resumes_and_is_scored(aligned, tmp_path, capsys):
    out = tmp_path / "recon"
    args = ["reconstruct", aligned / "run/align", "--out", out, "--generator", "nearest", "--set", "nearest_size=32"]
    assert run_cli(capsys, *args, "--quiet")[0] == 0
    pngs = sorted(out.glob("eeg/sub-01/seed-*/round-0/*.png"))
    assert len(pngs) == 2 * N_TEST
    first = digest(out, "*.png")
    code, _, _ = run_cli(capsys, *args, "--quiet")
    assert code == 0 and digest(out, "*.png") == first  # a rerun makes nothing new
    code, _, err = run_cli(capsys, *args[:-1], "nearest_size=48", "--quiet")  # other settings, same folder
    assert code == 2 and "holds images made from other inputs (differ in settings_sha256)" in err
    assert digest(out, "*.png") == first
    code, _, err = run_cli(
        capsys, "evaluate-recon", out / "eeg/sub-01", "--dataset", aligned / "ds", "--metrics", "pixcorr,ssim"
    )
    assert code == 0, err
    report = (out / "eeg/sub-01/report.md").read_text()
    assert "nearest training image (retrieval baseline" in report and (out / "eeg/sub-01/grid.png").is_file()

    # killed during generation, then the rerun: the same images, byte for byte
    killed_out = tmp_path / "killed"
    res = eeg2image(*args[:2], "--out", killed_out, *args[4:], "--quiet", fault="generate-batch:7")
    assert killed(res), res.stderr
    assert 0 < len(list(killed_out.glob("eeg/sub-01/seed-*/round-0/*.png"))) < 2 * N_TEST
    res = eeg2image(*args[:2], "--out", killed_out, *args[4:], "--quiet")
    assert res.returncode == 0, res.stderr
    assert digest(killed_out, "*.png") == first


def test_reconstruct_with_a_tiny_sdxl_through_the_real_adapter_path(aligned, tmp_path):
    dim = load_aligner(aligner_path(aligned / "run/align", "sub-01", 0))[0].out_dim
    cfg = ReconstructConfig(generate=GenerationConfig(steps=2, size=32, batch_size=16, modalities=["image"]))
    folders = reconstruct_run(
        aligned / "run/align",
        tmp_path / "sdxl",
        cfg,
        pipeline_factory=lambda n: tiny_sdxl_pipeline(
            ip_adapter_folder=tmp_path / "ip", n_adapters=n, image_embed_dim=dim
        ),
        prompt_embeds=tiny_prompt_embeds(),
        progress=False,
        log=lambda *a: None,
    )
    pngs = sorted(folders[0].glob("seed-*/round-0/*.png"))
    assert len(pngs) == 2 * N_TEST
    from PIL import Image

    a = np.asarray(Image.open(folders[0] / "seed-0/round-0" / pngs[0].name))
    b = np.asarray(Image.open(folders[0] / "seed-1/round-0" / pngs[0].name))
    assert a.shape == (32, 32, 3) and not np.array_equal(a, b)  # each seed its own embeddings and image seeds
    assert "SDXL-Turbo + 1 IP-Adapter(s) (image)" in (folders[0] / "manifest.json").read_text()


def test_refusals_name_what_is_wrong(aligned, tmp_path, capsys):
    # an aligner made from other experts weights (the run retrained since): refused by name
    shutil.copytree(aligned / "run", tmp_path / "run")
    best = tmp_path / "run/units/sub-01/best.safetensors"
    best.write_bytes((tmp_path / "run/units/sub-01/final.safetensors").read_bytes())
    (tmp_path / "run/align/config.yaml").write_text(
        (tmp_path / "run/align/config.yaml").read_text().replace(str(aligned / "run"), str(tmp_path / "run"))
    )
    code, _, err = run_cli(
        capsys, "reconstruct", tmp_path / "run/align", "--out", tmp_path / "o", "--generator", "nearest"
    )
    assert code == 2 and "trained on other experts weights" in err and "Traceback" not in err
    # a damaged aligner file
    aligner_path(tmp_path / "run/align", "sub-01", 0).write_bytes(b"not safetensors")
    code, _, err = run_cli(
        capsys, "reconstruct", tmp_path / "run/align", "--out", tmp_path / "o", "--generator", "nearest"
    )
    assert code == 2 and "seed-0.safetensors: not a readable aligner file" in err
    # a run without experts
    import yaml

    (tmp_path / "plain").mkdir()
    saved = yaml.safe_load((aligned / "run/config.yaml").read_text())
    saved["train"]["experts"] = None
    (tmp_path / "plain/config.yaml").write_text(yaml.safe_dump(saved))
    code, _, err = run_cli(capsys, "align", tmp_path / "plain")
    assert code == 2 and "a run without experts" in err
    # targets whose embeddings were never made: the embed command is named
    code, _, err = run_cli(capsys, "align", aligned / "run", "--out", tmp_path / "a2", "--targets", "image,edge")
    assert code == 2 and "edges-100-200__sim-features.json: no embeddings for view 'edges-100-200'" in err


def test_folders_work_from_any_directory_and_a_moved_input_is_named(aligned, tmp_path, capsys, monkeypatch):
    """An align folder made with a relative run path is used from another directory (the paths are recorded
    absolute); one whose recorded run is gone says so, with the recorded path; an unavailable metric is said on the
    console, not only in the files."""
    monkeypatch.chdir(aligned)
    code, _, err = run_cli(
        capsys, "align", "run", "--out", tmp_path / "a", "--targets", "image", "--set", "method=ridge", "--quiet"
    )
    assert code == 0, err
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, err = run_cli(capsys, "reconstruct", tmp_path / "a", "--out", "o", "--generator", "nearest", "--quiet")
    assert code == 0, err
    code, out, err = run_cli(
        capsys, "evaluate-recon", "o", "--dataset", aligned / "ds", "--metrics", "pixcorr,clip_vith14"
    )
    assert code == 0, err
    assert "clip_vith14: unavailable, not scored" in out and "not scored (no weights here): clip_vith14" in err

    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "a", moved)
    cfg = (moved / "config.yaml").read_text()
    (moved / "config.yaml").write_text(cfg.replace(str(aligned / "run"), str(tmp_path / "gone")))
    code, _, err = run_cli(capsys, "reconstruct", moved, "--out", "o2", "--generator", "nearest")
    assert code == 2 and f"run was recorded as {tmp_path / 'gone'}, which is not there (moved or deleted?)" in err
    assert not (tmp_path / "elsewhere/o2").exists()


# --------------------------------------------------------------------------------------------------
# Both paths and the controls: rows eeg, low-level, shuffled, nearest, linear, ceiling with the offline decoder
# --------------------------------------------------------------------------------------------------

ALL_ROWS = "eeg,low-level,shuffled,nearest,linear,ceiling"


@pytest.fixture(scope="module")
def rows(aligned, learnable_generator, tmp_path_factory):
    """The experts run aligned with the low-level path (ridge from the EEG to the tiny VAE's latents), every row
    reconstructed by the offline decoder, and scored."""
    gen_root, _ = learnable_generator
    vae = gen_root / "vae"
    cli(["embed", aligned / "ds", aligned / "store", "--encoder", f"vae:{vae}", "--views", "original"])
    out = tmp_path_factory.mktemp("rows")
    sets = ["method=ridge", "fit_on=targets", f"low_level=vae:{vae}"]
    cli(["align", aligned / "run", "--out", out / "align", "--targets", "image", "--quiet", *as_sets(sets)])
    recon = ["reconstruct", out / "align", "--out", out / "recon", "--generator", "decoder"]
    recon += ["--decoder", gen_root / "dec", "--rows", ALL_ROWS, "--quiet"]
    cli(recon)
    cli(["evaluate-recon", out / "recon", "--dataset", aligned / "ds", "--metrics", "pixcorr"])
    return out, recon


def _row(out, row: str) -> dict:
    import json

    return json.loads((out / "recon" / row / "sub-01/metrics.json").read_text())


def test_every_row_is_made_and_scored_with_its_protocol(rows):
    out, _ = rows
    for row in ALL_ROWS.split(","):
        m = _row(out, row)
        assert m["protocol"]["row"] == row and m["protocol"]["seeds"] == [0, 1], row
        assert len(list((out / "recon" / row / "sub-01").glob("seed-*/round-0/*.png"))) == 2 * N_TEST
    assert "offline conditional decoder" in _row(out, "eeg")["protocol"]["generator"]
    assert "nearest training image" in _row(out, "nearest")["protocol"]["generator"]
    assert "VAE's decoder" in _row(out, "low-level")["protocol"]["generator"]
    assert (out / "recon/grid-sub-01.png").is_file()
    import json

    from eeg2image.features.weights import file_fingerprint

    def weights(row: str) -> dict | None:  # each row's manifest names the weights files that drew it
        return json.loads((out / "recon" / row / "sub-01/manifest.json").read_text())["weights"]

    dec = weights("eeg")
    assert dec["files"]["decoder.safetensors"] == file_fingerprint(Path(dec["decoder"])) and weights("ceiling") == dec
    low = weights("low-level")
    assert low["files"]["diffusion_pytorch_model.safetensors"] == file_fingerprint(
        Path(low["vae"]) / "diffusion_pytorch_model.safetensors"
    )
    assert weights("nearest") is None
    from eeg2image.evaluation.table import write_table

    md = write_table(out / "recon")[1].read_text()
    for row in ALL_ROWS.split(","):
        assert f"| {row} | 2 |" in md


def test_the_eeg_row_carries_the_picture_and_the_shuffled_control_sits_at_chance(rows):
    """From the same decoder: the EEG's images correlate with their stimuli far above the shuffled control's (which
    is at chance), below the ceiling's; the aligned embeddings identify the test image far above chance, the
    shuffled ones at chance (1/40)."""
    out, _ = rows
    pix = {r: _row(out, r)["over_seeds"]["pixcorr"]["mean"] for r in ALL_ROWS.split(",")}
    top1 = {r: _row(out, r)["over_seeds"]["image_embedding_top1"]["mean"] for r in ("eeg", "shuffled", "linear")}
    # measured here: eeg ~0.45, shuffled ~0.0, ceiling ~0.75, nearest ~0.1; top-1 eeg ~0.5, shuffled ~0.03
    assert pix["eeg"] >= pix["shuffled"] + 0.2 and abs(pix["shuffled"]) <= 0.1, pix
    assert pix["ceiling"] >= pix["eeg"] and pix["eeg"] > pix["nearest"], pix
    assert top1["eeg"] >= 6 / N_TEST and top1["shuffled"] <= 3 / N_TEST, top1
    assert _row(out, "ceiling")["over_seeds"]["image_embedding_top1"]["mean"] == 1.0


def test_a_killed_reconstruction_resumes_to_the_same_images(rows, tmp_path):
    out, recon = rows
    cmd = [*recon[:3], tmp_path / "recon", *recon[4:]]
    res = eeg2image(*cmd, fault="generate-batch:9")
    assert killed(res), res.stderr
    res = eeg2image(*cmd)
    assert res.returncode == 0, res.stderr
    made = {k: v for k, v in digest(out / "recon", "*.png").items() if "/seed-" in k}  # not evaluation's grids
    assert digest(tmp_path / "recon", "*.png") == made


def test_latents_of_another_vae_or_size_and_aligners_of_another_method_are_refused(
    rows, aligned, learnable_generator, tmp_path, capsys
):
    """One named line, exit 2, nothing written."""
    out, recon = rows
    gen_root, _ = learnable_generator
    vae = f"vae:{gen_root / 'vae'};size=32"  # the same VAE at another size: other latents
    cli(["embed", aligned / "ds", aligned / "store", "--encoder", vae, "--views", "original"])
    sets = ["method=ridge", "fit_on=targets", f"low_level={vae}"]
    cli(["align", aligned / "run", "--out", tmp_path / "a32", "--targets", "image", "--quiet", *as_sets(sets)])
    code, _, err = run_cli(capsys, recon[0], tmp_path / "a32", "--out", tmp_path / "o", *recon[4:])
    assert code == 2 and "another VAE or size" in err and "train the decoder on these latents" in err
    assert not (tmp_path / "o").exists()
    # an align folder whose aligner files are of another method than its config says
    shutil.copytree(out / "align", tmp_path / "mixed")
    shutil.copy(aligner_path(aligned / "run/align", "sub-01", 1), aligner_path(tmp_path / "mixed", "sub-01", 1))
    code, _, err = run_cli(capsys, recon[0], tmp_path / "mixed", "--out", tmp_path / "o", *recon[4:])
    assert code == 2 and "an aligner of method 'sth_align', but" in err and "says 'ridge'" in err
    assert not (tmp_path / "o").exists()
    # the low-level row without an EEG -> latent map
    code, _, err = run_cli(
        capsys, "reconstruct", aligned / "run/align", "--out", tmp_path / "o", "--rows", "low-level", "--quiet"
    )
    assert code == 2 and "row low-level needs an EEG -> latent map" in err
    assert not (tmp_path / "o").exists()
