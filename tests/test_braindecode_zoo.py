"""The braindecode zoo by name: every braindecode model that takes THINGS-EEG2's shape (63 channels, 250 samples at
250 Hz) builds as ``braindecode:<Name>`` and trains one step; the others are listed with the reason they cannot,
and the list is kept true (each listed model is checked to fail, except the one that would download)."""

from __future__ import annotations

import pytest
import torch

from eeg2image.models.eeg_encoders import braindecode_models, build_eeg_encoder, build_eeg_encoder_from_config
from eeg2image.models.losses import InfoNCE

SHAPE = {"n_chans": 63, "n_times": 250, "sfreq": 250.0}

#: The braindecode models that cannot take (63, 250) at 250 Hz with their defaults here, and why (braindecode 1.8.1).
CANNOT = {
    "AttnSleep": "a sleep stager: its d_model (80) must equal the time steps its extractor leaves (10 for 250 samples)",
    "CBraMod": "patches of 200 samples: 250 is not a multiple (give patch_size / n_times that fit)",
    "Labram": "patches of 200 samples: 250 is not a multiple (give patch_size that fits)",
    "LUNA": "patches of 40 samples over (channels x patches): 250 samples do not divide into its patches",
    "EEGDINO": "its channel embedding holds 19 channels (the released weights'); 63 exceed it",
    "DANCE": "needs chs_info (channel positions), which the shared signature does not pass yet",
    "EEGSym": "needs chs_info (channel positions), which the shared signature does not pass yet",
    "DGCNN": "needs chs_info (channel positions), which the shared signature does not pass yet",
    "SignalJEPA": "needs chs_info (channel positions), which the shared signature does not pass yet",
    "SignalJEPA_Contextual": "needs chs_info (channel positions), which the shared signature does not pass yet",
    "ZUNA": "needs chs_info (channel positions), which the shared signature does not pass yet",
    "InterpolatedBENDR": "needs chs_info (it interpolates to its pretraining montage)",
    "InterpolatedBIOT": "needs chs_info (it interpolates to its pretraining montage)",
    "InterpolatedEEGPT": "needs chs_info (it interpolates to its pretraining montage)",
    "InterpolatedLaBraM": "needs chs_info (it interpolates to its pretraining montage)",
    "InterpolatedSignalJEPA": "needs chs_info (it interpolates to its pretraining montage)",
    "REVE": "downloads its electrode position bank when built (never here; not attempted)",
    "EMG2QwertyNet": "an EMG model: 32 channels (2 bands x 16 electrodes)",
    "SensingDynamics": "an EMG model: 16 channels",
    "VEMG2Pose": "an EMG model: a left context of 1790 samples",
    "NeuroPose": "an EMG model: its pooling leaves nothing of 250 samples",
    "MetaNeuromotorHand": "an EMG model: its frequency bands hold no FFT bin at 250 samples",
    "SleepStagerBlanco2020": "a sleep stager: its grouped convolutions need channels divisible by its groups",
    "SleepStagerChambon2018": "a sleep stager: its pooling is sized for 30-s windows",
    "USleep": "a sleep stager: time_conv_size must be odd for its decoder at this rate",
}
NOT_ATTEMPTED = {"REVE"}
CAN = [n for n in braindecode_models() if n not in CANNOT]


def test_the_list_names_every_braindecode_model_once():
    models = set(braindecode_models())
    assert set(CANNOT) <= models, set(CANNOT) - models  # no stale name
    assert len(CAN) >= 35 and {"EEGConformer", "ATCNet", "Deep4Net", "EEGNeX", "CTNet", "BDTCN", "BIOT"} <= set(CAN)


@pytest.mark.parametrize("name", CAN)
def test_every_braindecode_model_of_this_shape_builds_by_name_and_trains_one_step(name):
    torch.manual_seed(0)
    enc = build_eeg_encoder(f"braindecode:{name}", out_dim=8, **SHAPE)
    x, target = torch.randn(4, 63, 250), torch.randn(4, 8)
    before = [p.detach().clone() for p in enc.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-3)
    out = enc(x)
    assert out.shape == (4, 8) and torch.isfinite(out).all()
    loss = InfoNCE()(out, target)
    loss.backward()
    opt.step()
    after = [p.detach() for p in enc.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)), "no parameter moved"
    again = build_eeg_encoder_from_config(enc.get_config())  # rebuilt from its config: the same model
    assert type(again) is type(enc) and again.get_config() == enc.get_config()


@pytest.mark.parametrize("name", sorted(set(CANNOT) - NOT_ATTEMPTED))
def test_each_listed_model_indeed_cannot_take_this_shape(name):
    with pytest.raises(Exception):  # noqa: B017 - any of braindecode's own errors: the point is that it fails
        enc = build_eeg_encoder(f"braindecode:{name}", out_dim=8, **SHAPE)
        enc(torch.randn(2, 63, 250))


def test_braindecode_options_are_its_own_and_a_misspelt_one_is_named():
    from eeg2image.io import ConfigError

    enc = build_eeg_encoder("braindecode:EEGConformer", out_dim=8, drop_prob=0.3, **SHAPE)
    assert enc.get_config()["options"] == {"drop_prob": 0.3}
    with pytest.raises(ConfigError, match=r"braindecode:EEGConformer.*unknown option 'dropprob'.*drop_prob"):
        build_eeg_encoder("braindecode:EEGConformer", out_dim=8, dropprob=0.3, **SHAPE)
    with pytest.raises(ConfigError, match="unknown braindecode model 'EEGConformr'"):
        build_eeg_encoder("braindecode:EEGConformr", out_dim=8, **SHAPE)
