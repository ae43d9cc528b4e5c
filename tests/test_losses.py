"""Symmetric InfoNCE: values on constructed cases and what each option changes."""

from __future__ import annotations

import math

import pytest
import torch

from eeg2image.models.losses import InfoNCE


def test_aligned_pairs_give_low_loss_random_pairs_give_log_batch():
    torch.manual_seed(0)
    img = torch.randn(64, 32)
    loss = InfoNCE(scale=50.0, normalize_eeg=True)
    assert loss(img.clone(), img) < 0.05
    rand = torch.stack([InfoNCE(scale=1.0)(torch.randn(64, 32) * 0.01, img) for _ in range(5)]).mean()
    assert abs(rand.item() - math.log(64)) < 0.02


def test_scale_modes_start_at_the_given_scale_and_only_learnable_ones_have_gradients():
    for mode in ("fixed", "exp", "softplus", "linear"):
        lossf = InfoNCE(scale=2.727, scale_mode=mode)
        assert lossf.logit_scale.item() == pytest.approx(2.727, rel=1e-5)
        assert (len(list(lossf.parameters())) == 0) == (mode == "fixed")
    lossf = InfoNCE(scale=1.0, scale_mode="exp")
    lossf(torch.randn(8, 4, requires_grad=True), torch.randn(8, 4)).backward()
    assert lossf.p.grad is not None and lossf.p.grad.abs() > 0


def test_eeg_normalisation_option_changes_the_logits():
    e, i = torch.randn(4, 8) * 10, torch.randn(4, 8)
    raw = InfoNCE(normalize_eeg=False).logits(e, i)
    unit = InfoNCE(normalize_eeg=True).logits(e, i)
    assert raw.abs().max() > 3 * unit.abs().max() and unit.abs().max() <= 1.0 + 1e-6
    with pytest.raises(ValueError):
        InfoNCE()(torch.randn(1, 8), torch.randn(1, 8))
