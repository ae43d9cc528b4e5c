"""The braindecode zoo by name: every braindecode model that takes THINGS-EEG2's shape (63 channels, 250 samples at
250 Hz) builds as ``braindecode:<Name>`` and trains one step; the others are listed with the reason they cannot,
and the list is kept true (each listed model is checked to fail, except the one that would download)."""

from __future__ import annotations

import pytest
import torch

from eeg2image.data.things_eeg2 import resolve_channels
from eeg2image.models.eeg_encoders import (
    braindecode_encoder,
    braindecode_models,
    build_eeg_encoder,
    build_eeg_encoder_from_config,
)
from eeg2image.models.losses import InfoNCE

SHAPE = {"n_chans": 63, "n_times": 250, "sfreq": 250.0}

#: The braindecode models that cannot take (63, 250) at 250 Hz with their defaults here, and why (braindecode 1.8.1).
CANNOT = {
    "AttnSleep": "a sleep stager: its d_model (80) must equal the time steps its extractor leaves (10 for 250 samples)",
    "CBraMod": "patches of 200 samples: 250 is not a multiple (give patch_size / n_times that fit)",
    "Labram": "patches of 200 samples: 250 is not a multiple (give patch_size that fits)",
    "LUNA": "patches of 40 samples over (channels x patches): 250 samples do not divide into its patches",
    "EEGDINO": "its channel embedding holds 19 channels (the released weights'); 63 exceed it",
    "REVE": "downloads its electrode position bank when built (never here; not attempted)",
    "DANCE": "its output keeps a sequence axis, (batch, 256, n_outputs): not one embedding per trial",
    "SignalJEPA": "a self-supervised feature extractor: per-channel features (batch, channels, 64), no output layer",
    "InterpolatedSignalJEPA": "SignalJEPA's features interpolated to its montage: no output layer to give out_dim",
    "ZUNA": "patches of 32 samples: 250 is not a multiple",
    "InterpolatedLaBraM": "LaBraM's patches of 200 samples: 250 is not a multiple",
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
#: THINGS-EEG2's 63 channels: a montage-aware model (its constructor takes chs_info) gets their 10-05 positions.
CHANNELS = list(resolve_channels("all63"))


def build(name: str, **kw):
    """``braindecode:<name>`` on THINGS-EEG2's shape, given the channels' names when it takes a montage."""
    full = f"braindecode:{name}"
    montage = {"ch_names": CHANNELS} if "ch_names" in braindecode_encoder(full).known_options() else {}
    return build_eeg_encoder(full, out_dim=8, **SHAPE, **montage, **kw)


def test_the_list_names_every_braindecode_model_once():
    models = set(braindecode_models())
    assert set(CANNOT) <= models, set(CANNOT) - models  # no stale name
    assert len(CAN) >= 41 and {"EEGConformer", "ATCNet", "Deep4Net", "EEGNeX", "CTNet", "BDTCN", "BIOT"} <= set(CAN)
    # the montage-aware ones, given the 63 channels' positions, among them the foundation models' montage adapters
    assert {"EEGSym", "DGCNN", "InterpolatedBENDR", "InterpolatedBIOT", "InterpolatedEEGPT"} <= set(CAN)


@pytest.mark.parametrize("name", CAN)
def test_every_braindecode_model_of_this_shape_builds_by_name_and_trains_one_step(name):
    torch.manual_seed(0)
    enc = build(name)
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
        enc = build(name)
        out = enc(torch.randn(2, 63, 250))
        assert out.shape == (2, 8)  # built but not an embedding per trial: it cannot serve either


def test_braindecode_options_are_its_own_and_a_misspelt_one_is_named():
    from eeg2image.io import ConfigError

    enc = build_eeg_encoder("braindecode:EEGConformer", out_dim=8, drop_prob=0.3, **SHAPE)
    assert enc.get_config()["options"] == {"drop_prob": 0.3}
    with pytest.raises(ConfigError, match=r"braindecode:EEGConformer.*unknown option 'dropprob'.*drop_prob"):
        build_eeg_encoder("braindecode:EEGConformer", out_dim=8, dropprob=0.3, **SHAPE)
    with pytest.raises(ConfigError, match="unknown braindecode model 'EEGConformr'"):
        build_eeg_encoder("braindecode:EEGConformr", out_dim=8, **SHAPE)


def test_pretrained_weights_from_the_cache_fine_tuned_or_frozen_and_probed(tmp_path, hub):
    """``pretrained``: a braindecode model saved as braindecode saves it (``save_pretrained``: config.json +
    model.safetensors) and found in the Hugging Face cache. Every tensor but the output layer (rebuilt for out_dim)
    comes from the file; ``freeze`` trains that layer alone; another montage is refused by name; absent weights are
    named with their download command."""
    from braindecode.models import ShallowFBCSPNet
    from hfcache import fake_hf_cache

    from eeg2image.features.weights import MissingWeightsError
    from eeg2image.io import DataFormatError

    torch.manual_seed(3)
    shape = {"n_chans": 8, "n_times": 120, "sfreq": 100.0}
    pre = ShallowFBCSPNet(**shape, n_outputs=4, final_conv_length="auto")
    folder = tmp_path / "saved"
    pre.save_pretrained(folder)
    fake_hf_cache(hub, "lab/shallow-pretrained", {f.name: f.read_bytes() for f in folder.iterdir()})
    want = pre.state_dict()

    name = "braindecode:ShallowFBCSPNet"
    tuned = build_eeg_encoder(name, **shape, out_dim=16, pretrained="lab/shallow-pretrained")
    got = tuned.net.state_dict()
    same = [k for k in want if k in got and torch.equal(got[k], want[k])]
    fresh = sorted({k.split(".")[0] for k in got if k not in same})
    assert fresh == ["final_layer"] and len(same) == len(want) - 2, fresh  # the conv classifier's weight and bias
    assert all(p.requires_grad for p in tuned.parameters())
    assert tuned.get_config()["options"]["pretrained"] == "lab/shallow-pretrained"

    probe = build_eeg_encoder(name, **shape, out_dim=16, pretrained=str(folder), freeze=True)
    trainable = {n for n, p in probe.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("net.final_layer.") for n in trainable), trainable
    probe.train()
    opt = torch.optim.AdamW([p for p in probe.parameters() if p.requires_grad], lr=1e-2)
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    x, y = torch.randn(6, 8, 120), torch.randn(6, 16)
    InfoNCE()(probe(x), y).backward()
    opt.step()
    after = probe.state_dict()
    changed = {
        k.split(".")[1] for k in after if after[k].dtype.is_floating_point and not torch.equal(after[k], before[k])
    }
    assert changed <= {"final_layer", "bnorm"}, changed  # the head; BatchNorm's running statistics follow the data
    assert "final_layer" in changed

    with pytest.raises(DataFormatError, match=r"not the weights of ShallowFBCSPNet on 9 channels"):
        build_eeg_encoder(name, n_chans=9, n_times=120, sfreq=100.0, out_dim=16, pretrained=str(folder))
    with pytest.raises(MissingWeightsError, match=r"lab/absent.*hf download"):
        build_eeg_encoder(name, **shape, out_dim=16, pretrained="lab/absent")
    from eeg2image.io import ConfigError

    with pytest.raises(ConfigError, match="freeze needs pretrained"):
        build_eeg_encoder(name, **shape, out_dim=16, freeze=True)


def test_a_montage_aware_model_gets_the_datas_channels_through_the_trainer(learnable, tmp_path):
    """``braindecode:EEGSym`` asks for channel positions: a run on the 17-channel data records the data's channel
    names with the weights, and evaluation rebuilds the model from the file alone."""
    from test_retrieval_runs import config_for, quiet

    from eeg2image.data.preprocess import read_our_preprocessed
    from eeg2image.evaluation.evaluate import evaluate_run
    from eeg2image.models.retrieval import load_weights
    from eeg2image.training.run import train_run

    cfg = config_for(learnable, **{"train.eeg_encoder": "braindecode:EEGSym", "train.epochs": 1})
    train_run(cfg, tmp_path / "run", progress=False, log=quiet)
    meta = load_weights(tmp_path / "run" / "units" / "sub-01" / "final.safetensors")[1]
    names = read_our_preprocessed(learnable / "pre" / "sub-01", "training").ch_names
    assert meta["model_config"]["eeg_options"]["ch_names"] == list(names)
    m = evaluate_run(tmp_path / "run", log=quiet)
    assert 0 <= m["final"]["sub-01"]["aggregate"]["top1"]["mean"] <= 1
