"""CognitionCapturerPro's brain side: shapes, the fusion encoder, and each key's gradient reaching only its own
expert (fusion: only the fusion modules), which makes one optimiser equal the released per-key optimisers."""

from __future__ import annotations

import pytest
import torch

from eeg2image.io import ConfigError
from eeg2image.models.experts import (
    EXPERT_KEYS,
    MODALITY_KEYS,
    ExpertsConfig,
    ModalityExperts,
    ModalityFusion,
    modality_mask,
)

SMALL = {"expert_options": {"d_ff": 32}, "fusion_hidden": 15}


def batch(b=6, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 8, 100, generator=g)
    mods = {m: torch.randn(b, dim, generator=g) for m in MODALITY_KEYS}
    return x, mods


def test_shapes_and_keys():
    torch.manual_seed(0)
    model = ModalityExperts(ExpertsConfig(**SMALL), n_chans=8, n_times=100, dim=16).eval()
    x, mods = batch()
    eeg = model.embed_eeg(x)
    assert set(eeg) == set(EXPERT_KEYS) and all(v.shape == (6, 16) for v in eeg.values())
    targets = model.embed_targets(mods)
    # the released heads are identity: the targets are the (L2-normalised) modality embeddings themselves
    assert all(torch.equal(targets[m], torch.nn.functional.normalize(mods[m], dim=-1)) for m in MODALITY_KEYS)
    assert targets["fusion"].shape == (6, 16)
    assert float(model.losses["image"].logit_scale) == pytest.approx(2.727)


def test_each_keys_gradient_reaches_only_its_own_modules():
    torch.manual_seed(0)
    model = ModalityExperts(ExpertsConfig(**SMALL), n_chans=8, n_times=100, dim=16).train()
    x, mods = batch()
    groups = {m: model.experts[m] for m in MODALITY_KEYS}
    groups["fusion"] = torch.nn.ModuleList([model.fusion_eeg, model.fusion_mod])
    for key in EXPERT_KEYS:
        model.zero_grad(set_to_none=True)
        model.key_losses(x, mods, keys=(key,))[key].backward()
        for name, group in groups.items():
            touched = any(p.grad is not None and p.grad.abs().sum() > 0 for p in group.parameters())
            assert touched == (name == key), (key, name)


def test_the_fusion_encoder_masks_and_starts_its_layers_alike():
    torch.manual_seed(0)
    f = ModalityFusion(4, 16, 15, 16).eval()
    assert all(torch.equal(a, b) for a, b in zip(f.layers[0].parameters(), f.layers[1].parameters(), strict=True))
    x = torch.randn(3, 4, 16)
    mask = torch.tensor([[1, 0, 1, 1]] * 3, dtype=torch.float32)
    x2 = x.clone()
    x2[:, 1] = 99.0  # whatever a masked modality holds does not matter
    torch.testing.assert_close(f(x, mask), f(x2, mask))
    assert not torch.allclose(f(x), f(x2))
    m = modality_mask(5, 1, torch.Generator().manual_seed(1))
    assert m.shape == (5, 4) and (m.sum(dim=1) == 3).all() and (m == m[0]).all()  # one modality, the whole step


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match=r"experts.mask_count: 4 is out of range; expected >= 0 and <= 3"):
        ExpertsConfig(mask_count=4)
