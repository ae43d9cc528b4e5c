"""UBP's uncertainty-aware blur: the labelling rule, the view it picks, and what the switch changes in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeg2image.config import ConfigError, from_dict
from eeg2image.datasets import RetrievalSplit
from eeg2image.models.fusion import TargetConfig
from eeg2image.models.retrieval import embed_targets
from eeg2image.training.trainer import TrainConfig, train_seeds
from eeg2image.training.uncertainty import LESS, MEDIUM, MORE, UncertainBlurState

UBP_VIEWS = ["fovea-k45-g3", "fovea-k51-g3", "fovea-k57-g3"]


def ubp_rule(avg: np.ndarray, label: np.ndarray, idx: np.ndarray, diag: np.ndarray, gamma=0.3, z=1.96) -> None:
    """UBP's main.py bookkeeping, transcribed in numpy for one seed (in place)."""
    batch_sim = gamma * diag + (1 - gamma) * avg[idx]
    mean, sd = batch_sim.mean(), batch_sim.std(ddof=1)
    lab = np.ones_like(idx)
    lab[diag > mean + z * sd] = 0
    lab[diag < mean - z * sd] = 2
    avg[idx] = batch_sim
    label[idx] = lab


def test_update_follows_ubps_rule_per_seed():
    rng = np.random.default_rng(0)
    n, b, seeds = 50, 20, 3
    state = UncertainBlurState(seeds, n)
    ref_avg, ref_lab = np.ones((seeds, n)), np.ones((seeds, n), dtype=np.int64)
    for step in range(12):
        rows = np.stack([rng.permutation(n)[:b] for _ in range(seeds)])
        diag = rng.normal(size=(seeds, b)) * (1 + step) + step  # widening spread: all three labels occur
        state.update(torch.as_tensor(rows), torch.as_tensor(diag, dtype=torch.float32))
        for s in range(seeds):
            ubp_rule(ref_avg[s], ref_lab[s], rows[s], diag[s].astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(state.avg.numpy(), ref_avg, rtol=1e-12)
    np.testing.assert_array_equal(state.label.numpy(), ref_lab)
    assert {LESS, MEDIUM, MORE} <= set(np.unique(ref_lab))
    # labels take effect at the epoch end, not before
    assert (state.active == MEDIUM).all()
    state.end_epoch()
    assert torch.equal(state.active, state.label)


def test_select_takes_each_pairs_labelled_view():
    state = UncertainBlurState(2, 4)
    state.active = torch.tensor([[LESS, MEDIUM, MORE, LESS], [MORE, MORE, MEDIUM, LESS]])
    banks = [torch.full((2, 3, 5), float(v)) for v in (10, 20, 30)]  # less, medium, more
    rows = torch.tensor([[0, 2, 3], [1, 2, 3]])
    picked = state.select(banks, rows)
    assert picked[:, :, 0].tolist() == [[10.0, 30.0, 10.0], [30.0, 20.0, 10.0]]


def test_config_checks():
    with pytest.raises(ConfigError, match="3 views"):
        from_dict(TargetConfig, {"uncertainty_views": UBP_VIEWS[:2]})
    with pytest.raises(ConfigError, match="exclude each other"):
        from_dict(TargetConfig, {"uncertainty_views": UBP_VIEWS, "blur_views": ["blur-k01", "blur-k03"]})


def ubp_split(n=96, dim=32, seed=0) -> RetrievalSplit:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, dim, generator=g)
    views = {v: base + s * torch.randn(n, dim, generator=g) for v, s in zip(UBP_VIEWS, (0.3, 0.6, 1.0), strict=True)}
    return RetrievalSplit(torch.randn(n, 4, 8, 60, generator=g), views, np.arange(n) // 4)


def test_switch_changes_training_targets_from_the_second_epoch_on():
    """On: epoch 1 trains on the medium view for every pair (as the plain medium-view target does), then pairs
    move to less / more blurred views. Off: nothing moves. Validation uses the medium view either way."""
    split = ubp_split()
    train, val = split.subset(np.arange(72)), split.subset(np.arange(72, 96))
    on = TrainConfig(
        eeg_encoder="linear", epochs=3, batch_size=24, target=TargetConfig(uncertainty_views=UBP_VIEWS, adapter=False)
    )
    off = TrainConfig(
        eeg_encoder="linear", epochs=3, batch_size=24, target=TargetConfig(plain_view=UBP_VIEWS[1], adapter=False)
    )
    r_on, r_off = train_seeds(on, [0, 1], train, val, device="cpu"), train_seeds(off, [0, 1], train, val, device="cpu")
    h_on, h_off = r_on.history, r_off.history
    assert h_on[0]["loss"] == h_off[0]["loss"] and h_on[0]["val_top1"] == h_off[0]["val_top1"]
    assert not np.allclose(h_on[1]["loss"], h_off[1]["loss"])
    moved = [h["blur_less"][0] + h["blur_more"][0] for h in h_on]
    assert all(m > 0 for m in moved) and all(h["blur_medium"][0] + m == 72 for h, m in zip(h_on, moved, strict=True))
    assert "blur_less" not in h_off[0]
    # validation (and so the test gallery) is built from the medium view only: swapping the others changes nothing
    swapped = {**val.views, UBP_VIEWS[0]: torch.randn(24, 32), UBP_VIEWS[2]: torch.randn(24, 32)}
    assert torch.equal(embed_targets(r_on.stack, val.views), embed_targets(r_on.stack, swapped))
    medium_swapped = {**val.views, UBP_VIEWS[1]: torch.randn(24, 32)}
    assert not torch.equal(embed_targets(r_on.stack, val.views), embed_targets(r_on.stack, medium_swapped))


def test_stacked_seeds_and_resume_with_uncertainty(tmp_path):
    cfg = TrainConfig(
        eeg_encoder="linear",
        epochs=4,
        batch_size=32,
        reps_per_sample=2,
        target=TargetConfig(uncertainty_views=UBP_VIEWS, adapter=False),
    )
    torch.set_default_dtype(torch.float64)  # float64: batched and unbatched kernels then agree to rounding
    try:
        split = ubp_split()
        stacked = train_seeds(cfg, [0, 1, 2], split, device="cpu", engine="vmap")
        alone = train_seeds(cfg, [1], split, device="cpu", engine="loop")
    finally:
        torch.set_default_dtype(torch.float32)
    for key in ("loss", "blur_less", "blur_more"):
        np.testing.assert_allclose([h[key][1] for h in stacked.history], [h[key][0] for h in alone.history], rtol=1e-9)

    split = ubp_split()
    full = train_seeds(cfg, [0, 1], split, device="cpu")

    class Killed(Exception):
        pass

    def kill(epoch, _rec):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train_seeds(cfg, [0, 1], split, device="cpu", checkpoint_dir=tmp_path, fingerprint={}, on_epoch_end=kill)
    resumed = train_seeds(cfg, [0, 1], split, device="cpu", checkpoint_dir=tmp_path, fingerprint={})
    assert resumed.resumed_from == 2 and resumed.history == full.history
    for k, v in full.stack.state_tensors().items():
        assert torch.equal(v, resumed.stack.state_tensors()[k]), k
