"""EEG encoder registry: shapes, documented sizes, and the fixes to ATM-S."""

from __future__ import annotations

import pytest
import torch

from eeg2image.io import DataFormatError
from eeg2image.models.eeg_encoders import EEG_ENCODERS, build_eeg_encoder


@pytest.mark.parametrize("name", sorted(EEG_ENCODERS))
def test_every_encoder_maps_eeg_to_the_embedding_size(name):
    torch.manual_seed(0)
    enc = build_eeg_encoder(name, n_chans=63, n_times=250, out_dim=64).eval()
    x = torch.randn(3, 63, 250)
    with torch.no_grad():
        y = enc(x, subject=torch.tensor([1, 2, 10]))
    assert y.shape == (3, 64) and torch.isfinite(y).all()
    assert EEG_ENCODERS[name].__doc__  # every entry says what it is and where it comes from


def test_ved_encoder_layout():
    enc = build_eeg_encoder("ved", n_chans=63, n_times=250, out_dim=1024)
    assert enc.spatial.weight.shape == (25, 1, 63, 1) and enc.head.in_features == 5000
    enc.spatial.weight.data.fill_(-1.0)  # effective filters are |w|: non-negative
    with torch.no_grad():
        h = enc.spatial(torch.ones(1, 1, 63, 250))
    assert (h > 0).all()


def test_nice_tsconv_has_1440_features():
    enc = build_eeg_encoder("nice", n_chans=63, n_times=250, out_dim=768)
    assert enc.tsconv.out_features == 1440


def test_atms_uses_every_channel_and_its_own_token_for_subject_10():
    torch.manual_seed(0)
    enc = build_eeg_encoder("atms", n_chans=63, n_times=250, out_dim=32, n_subjects=10).eval()
    x = torch.randn(2, 63, 250)
    with torch.no_grad():
        base = enc(x, torch.tensor([10, 10]))
        x2 = x.clone()
        x2[:, 62] += 5.0  # the last channel (O2 in the NICE order), which ATM's slicing dropped
        assert not torch.allclose(enc(x2, torch.tensor([10, 10])), base)
        shared = enc(x, None)
        assert not torch.allclose(base, shared)  # subject 10 has its own token, not the shared one
        assert torch.allclose(enc(x, torch.tensor([11, 0])), shared)  # unknown subjects: the shared token


def test_unknown_encoder():
    with pytest.raises(DataFormatError, match="unknown EEG encoder 'transformerxl'"):
        build_eeg_encoder("transformerxl", n_chans=63, n_times=250, out_dim=8)
