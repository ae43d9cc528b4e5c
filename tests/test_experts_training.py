"""CognitionCapturerPro's brain side trained by the one training loop: stacked seeds equal separate runs (with the
per-step modality mask, UM per modality and mixed embedding widths), the text key switched off after its epochs
leaves its expert untouched, and a killed run resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeg2image.datasets import RetrievalSplit, view_table_names
from eeg2image.io import ConfigError
from eeg2image.models.experts import ExpertsConfig
from eeg2image.models.retrieval import embed_eeg
from eeg2image.training.trainer import TrainConfig, train_seeds

UM = ["fovea-k45-g3", "fovea-k51-g3", "fovea-k57-g3"]


def experts_split(n=96, reps=4, chans=8, times=100, seed=0) -> RetrievalSplit:
    """Views of two encoders: 32-d image views (three blur levels for UM, and edges) and 12-d texts."""
    g = torch.Generator().manual_seed(seed)
    eeg = torch.randn(n, reps, chans, times, generator=g)
    views = {v: torch.randn(n, 32, generator=g) for v in [*UM, "edges"]}
    views["text-template@minilm"] = torch.randn(n, 12, generator=g)
    return RetrievalSplit(eeg, views, np.arange(n) // 4)


def experts_config(**over) -> TrainConfig:
    ex = {
        "modalities": {"image": UM, "text": ["text-template@minilm"], "edge": ["edges"]},
        "expert_options": {"d_ff": 32},
        "fusion_hidden": 15,
        "text_epochs": 1,
        **over,
    }
    return TrainConfig(experts=ExpertsConfig(**ex), epochs=2, batch_size=32, lr=1e-3, reps_per_sample=2)


@pytest.mark.parametrize("engine", ["vmap", "loop"])
def test_stacked_experts_equal_separate_runs(engine):
    """Seed 1 beside seeds 0 and 2 = seed 1 alone: every key's loss, the UM labels and every key's embeddings
    (float64, as the single-model test, for the same reason)."""
    torch.set_default_dtype(torch.float64)
    try:
        split, cfg = experts_split(), experts_config()
        stacked = train_seeds(cfg, [0, 1, 2], split, device="cpu", engine=engine)
        alone = train_seeds(cfg, [1], split, device="cpu", engine="loop")
        for key in ("loss", "loss_image", "loss_text", "loss_edge", "loss_fusion", "blur_fovea-k51-g3_less"):
            got = np.array([h[key][1] for h in stacked.history], dtype=float)
            np.testing.assert_allclose(got, [h[key][0] for h in alone.history], rtol=1e-9, err_msg=key)
        assert stacked.history[0]["loss"][0] != stacked.history[0]["loss"][1]  # seeds do differ
        x, sub = split.eeg.mean(1), torch.zeros(len(split), dtype=torch.long)
        e_stacked, e_alone = embed_eeg(stacked.stack, x, sub), embed_eeg(alone.stack, x, sub)
        assert set(e_stacked) == {"image", "text", "edge", "fusion"}
        assert e_stacked["text"].shape == (3, 96, 12) and e_stacked["fusion"].shape == (3, 96, 32)
        for k in e_stacked:
            torch.testing.assert_close(e_stacked[k][1], e_alone[k][0], rtol=1e-5, atol=1e-6)
    finally:
        torch.set_default_dtype(torch.float32)


def test_the_text_expert_stops_after_its_epochs_and_the_others_go_on():
    """After ``text_epochs`` the text key leaves the summed loss and its expert is not stepped at all (no AdamW
    momentum or weight decay either), as when the released code stopped calling the text optimiser."""
    split, cfg = experts_split(), experts_config()
    cfg.epochs = 1
    one = train_seeds(cfg, [0], split, device="cpu")
    cfg.epochs = 2
    two = train_seeds(cfg, [0], split, device="cpu")
    a, b = one.stack.params(), two.stack.params()
    text = [n for n in a if n.startswith("experts.text.")]
    assert text and all(torch.equal(a[n], b[n]) for n in text)
    assert not torch.equal(a["experts.image.proj.linear.weight"], b["experts.image.proj.linear.weight"])
    assert two.history[0]["active_keys"] == ["image", "text", "edge", "fusion"]
    assert two.history[1]["active_keys"] == ["image", "edge", "fusion"]
    h = two.history[1]
    np.testing.assert_allclose(h["loss"], np.add.reduce([h["loss_image"], h["loss_edge"], h["loss_fusion"]]))


def test_a_killed_experts_run_resumes_exactly(tmp_path):
    split = experts_split()
    train, val = split.subset(np.arange(72)), split.subset(np.arange(72, 96))
    cfg = experts_config()
    cfg.epochs = 3
    full = train_seeds(cfg, [0, 1], train, val, device="cpu")

    class Killed(Exception):
        pass

    def kill(epoch, rec):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train_seeds(cfg, [0, 1], train, val, device="cpu", checkpoint_dir=tmp_path, fingerprint={}, on_epoch_end=kill)
    resumed = train_seeds(cfg, [0, 1], train, val, device="cpu", checkpoint_dir=tmp_path, fingerprint={})
    assert resumed.resumed_from == 2 and resumed.history == full.history
    for k, v in full.stack.state_tensors().items():
        assert torch.equal(v, resumed.stack.state_tensors()[k]), k
    assert "val_fusion_top1" in full.history[0] and "val_text_top1" in full.history[0]


def test_experts_settings_are_checked_and_views_may_name_their_encoder():
    with pytest.raises(ConfigError, match="modality"):
        ExpertsConfig(modalities={"sound": ["original"]})
    with pytest.raises(ConfigError, match=r"experts.modalities.image.*one view, or three"):
        ExpertsConfig(modalities={"image": ["a", "b"]})
    with pytest.raises(ConfigError, match="experts.select_key"):
        ExpertsConfig(modalities={"image": ["original"]}, mask_count=0, select_key="text")
    with pytest.raises(ConfigError, match="train.target is set, but train.experts replaces"):
        TrainConfig(experts=ExpertsConfig(), target={"plain_view": "edges"})
    names = view_table_names(["original", "text-template@minilm"], "effnet-lite0", None)
    assert names == {"original": ("original", "effnet-lite0"), "text-template@minilm": ("text-template", "minilm")}
