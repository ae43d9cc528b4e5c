"""STH-Align: learns a mapping far above an untrained model, selects its epoch on held-out training concepts,
keeps the targets' scale, refuses bad shapes, and round-trips through its weights file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeg2image.io import DataFormatError
from eeg2image.models.align import AlignConfig, STHAlign
from eeg2image.training.align import load_aligner, mean_cosine, save_aligner, train_aligner


def synthetic(n=240, dim=24, seed=0):
    """EEG embeddings of 4 experts and targets that are a fixed nonlinear function of them (norm ~ 7)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, dim, generator=g)
    w = {t: torch.randn(4 * dim, dim, generator=g) / (4 * dim) ** 0.5 for t in ("image", "edge", "depth")}
    y = {t: 1.5 * torch.tanh(x.flatten(1) @ m) + 0.05 * torch.randn(n, dim, generator=g) for t, m in w.items()}
    concept = np.arange(n) // 4
    return x, y, concept


def small(**kw):
    return AlignConfig(**{"hidden": 64, "blocks": 2, "epochs": 60, "batch_size": 32, "lr": 1e-3, **kw})


def test_the_aligner_learns_and_selects_on_held_out_training_concepts():
    x, y, concept = synthetic()
    res = train_aligner(small(), x, y, concept, seed=0)
    assert res.val_images == 6 and res.best_epoch is not None  # 10% of 60 concepts held out
    val = [h["val_cosine"] for h in res.history]
    best = res.history[res.best_epoch - 1]["val_cosine"]
    assert np.mean(list(best.values())) == max(np.mean(list(v.values())) for v in val)  # the selected epoch
    torch.manual_seed(0)
    untrained = mean_cosine(STHAlign(small(), 24, 24), x, y)
    trained = mean_cosine(res.model, x, y)
    assert min(trained.values()) > 0.8 and max(untrained.values()) < 0.3, (trained, untrained)


def test_outputs_keep_the_targets_scale_or_are_rescaled_to_it():
    x, y, concept = synthetic()
    raw = train_aligner(small(), x, y, concept, seed=0).model
    scaled = train_aligner(small(output_scale="target_norm"), x, y, concept, seed=0).model
    want = y["image"].norm(dim=-1).mean()
    with torch.no_grad():
        assert raw(x)["image"].norm(dim=-1).mean() == pytest.approx(float(want), rel=0.25)  # MSE keeps the scale
        norms = scaled(x)["image"].norm(dim=-1)
    assert torch.allclose(norms, norms[0]) and float(norms[0]) == pytest.approx(float(want), rel=0.05)


def test_seeded_and_round_trips_through_its_weights_file(tmp_path):
    x, y, concept = synthetic(n=80)
    a = train_aligner(small(epochs=5), x, y, concept, seed=3)
    b = train_aligner(small(epochs=5), x, y, concept, seed=3)
    assert a.history == b.history
    save_aligner(tmp_path / "aligner.safetensors", a.model, {"run": "x"})
    loaded, meta = load_aligner(tmp_path / "aligner.safetensors")
    assert meta["run"] == "x" and loaded.config == a.model.config
    with torch.no_grad():
        assert all(torch.equal(u, loaded(x)[t]) for t, u in a.model(x).items())


def test_bad_shapes_are_named():
    x, y, concept = synthetic(n=40)
    with pytest.raises(DataFormatError, match=r"aligner inputs have shape \(40, 3, 24\); expected \(N, 4, D\)"):
        train_aligner(small(), x[:, :3], y, concept)
    with pytest.raises(DataFormatError, match=r"'edge' targets have shape \(39, 24\); expected \(40, D\)"):
        train_aligner(small(), x, {**y, "edge": y["edge"][:-1]}, concept)
    with pytest.raises(DataFormatError, match=r"no 'depth' targets"):
        train_aligner(small(), x, {k: v for k, v in y.items() if k != "depth"}, concept)


def test_the_diffusion_prior_learns_the_map_samples_reproducibly_and_round_trips(tmp_path):
    """ATM's prior (tiny widths) on synthetic pairs: samples for held-out conditions land nearer their own targets
    than others far more often than chance; the same generator seed gives the same samples; the file rebuilds it."""
    from eeg2image.models.align import load_aligner, save_aligner
    from eeg2image.models.prior import PriorConfig
    from eeg2image.training.align import train_prior

    g = torch.Generator().manual_seed(0)
    n, d = 240, 16
    lat = torch.randn(n, 8, generator=g)
    cond = lat @ torch.randn(8, d, generator=g)
    target = lat @ torch.randn(8, d, generator=g)
    concept = np.arange(n) // 4
    cfg = PriorConfig(hidden=[64, 32, 16], time_embed_dim=32, epochs=80, batch_size=60, warmup_steps=20, steps=20)
    res = train_prior(cfg, {"image": cond[:200]}, {"image": target[:200]}, {"image": "image"}, concept[:200], seed=0)
    assert res.best_epoch > 1 and res.history[-1]["loss"] < res.history[0]["loss"]
    pred = res.model.predict({"image": cond[200:]}, torch.Generator().manual_seed(1))["image"]
    sims = torch.nn.functional.normalize(pred, dim=-1) @ torch.nn.functional.normalize(target[200:], dim=-1).T
    assert float(sims.argmax(1).eq(torch.arange(40)).float().mean()) >= 0.2  # chance 1/40; measured 0.35
    again = res.model.predict({"image": cond[200:]}, torch.Generator().manual_seed(1))["image"]
    assert torch.equal(pred, again)
    save_aligner(tmp_path / "prior.safetensors", res.model, {"seed": 0})
    loaded, meta = load_aligner(tmp_path / "prior.safetensors")
    assert meta["method"] == "diffusion_prior" and meta["conditions"] == {"image": "image"}
    torch.testing.assert_close(loaded.predict({"image": cond[200:]}, torch.Generator().manual_seed(1))["image"], pred)


def test_an_align_stage_config_fills_target_views_it_is_not_given():
    """``--set target_views.depth=...`` (as `make reference-recon` passes it) keeps the other targets' views."""
    from eeg2image.config import parse_sets, stage_config
    from eeg2image.runs import AlignStageConfig

    over = {"run": "RUN", **parse_sets(["target_views.depth=depth-depth-anything-base-hf"])}
    cfg = stage_config(AlignStageConfig, "align", None, None, over)
    assert cfg.target_views == {"image": "original", "edge": "edges-100-200", "depth": "depth-depth-anything-base-hf"}
