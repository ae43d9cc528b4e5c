"""EEG encoder registry: shapes, documented sizes, the fixes to ATM-S, and the shared EEGEncoder contract
(one signature, named options refused when unknown, get_config / from_config)."""

from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pytest
import torch

from eeg2image.io import ConfigError
from eeg2image.models.eeg_encoders import (
    EEG_ENCODERS,
    EEGEncoder,
    build_eeg_encoder,
    build_eeg_encoder_from_config,
)


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


def test_tsconv_runs_its_conv_and_pool_as_one_strided_conv_with_the_same_function_and_gradients():
    """TSConv's temporal conv (25) + average pool (51, stride 5) run as one conv (kernel 75, stride 5): equal to the
    layers one by one (float64), outputs and gradients, in training mode (batch norm on batch statistics)."""
    from eeg2image.models.eeg_encoders import TSConv

    torch.manual_seed(0)
    m = TSConv(63, 250, dropout=0.0).double().train()
    x = torch.randn(6, 63, 250, dtype=torch.float64, requires_grad=True)
    params = [x, m.net[0].weight, m.net[0].bias, m.net[4].weight]
    a, b = m(x), m.reference_forward(x)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    grads_a = torch.autograd.grad(a.pow(2).sum(), params)
    grads_b = torch.autograd.grad(b.pow(2).sum(), params)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-11)
    assert a.shape == (6, 1440)


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
    with pytest.raises(ConfigError, match="unknown EEG encoder 'transformerxl'; known: atms, cogcap, eegnet"):
        build_eeg_encoder("transformerxl", n_chans=63, n_times=250, out_dim=8)


# ---------------------------------------------------------------------------------------------------------
# The shared contract
# ---------------------------------------------------------------------------------------------------------

SIGNATURE = ["n_chans", "n_times", "out_dim", "sfreq", "n_subjects"]

# Non-default options for each encoder (the round trip must carry them); small sizes to keep the test quick.
SOME_OPTIONS = {
    "ved": {"n_filters": 10, "hidden": 32, "dropout": (0.1, 0.2)},
    "nice": {},
    "atms": {"n_heads": 5, "d_ff": 64, "dropout": 0.1},
    "eegproject": {"dropout": 0.1},
    "linear": {},
    "eegnet": {"F1": 4, "drop_prob": 0.3, "activation": torch.nn.ReLU},
    "shallow": {"n_filters_time": 20, "pool_time_length": 20},
    "cogcap": {"d_ff": 64, "dropout": 0.2},
    "ridge": {"time_stride": 3},
    "riemann": {"shrinkage": 0.2},
}


def test_some_options_cover_every_encoder():  # the braindecode zoo registers itself by name when used
    assert set(SOME_OPTIONS) == {n for n in EEG_ENCODERS if not n.startswith("braindecode:")}


@pytest.mark.parametrize("name", sorted(EEG_ENCODERS))
def test_every_encoder_is_an_eeg_encoder_with_the_one_signature(name):
    cls = EEG_ENCODERS[name]
    assert issubclass(cls, EEGEncoder) and cls.registry_name == name
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params)  # nothing swallows a typo
    assert [p.name for p in params[:5]] == SIGNATURE
    assert (params[3].default, params[4].default) == (250.0, 10)
    options = params[5:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not p.empty for p in options)
    assert list(cls.known_options()) == [p.name for p in options]


def test_base_class_stores_the_signature_and_creates_nothing():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    enc = EEGEncoder(17, 100, 8, sfreq=100.0, n_subjects=3)
    assert torch.equal(torch.get_rng_state(), state)  # no random numbers drawn
    assert list(enc.parameters()) == [] and list(enc.buffers()) == []
    assert [getattr(enc, k) for k in SIGNATURE] == [17, 100, 8, 100.0, 3]


@pytest.mark.parametrize(
    ("name", "key"), [("ved", "n_filter"), ("atms", "subjects"), ("eegnet", "F3"), ("shallow", "pool_length")]
)
def test_an_unknown_option_is_refused_with_its_place_and_the_known_options(name, key):
    known = ", ".join(EEG_ENCODERS[name].known_options())
    with pytest.raises(ConfigError) as err:
        build_eeg_encoder(name, n_chans=63, n_times=250, out_dim=8, where="train.eeg_options", **{key: 1})
    message = str(err.value)
    assert message.startswith(f"train.eeg_options.{key} (EEG encoder '{name}'): unknown option '{key}'")
    assert message.endswith(f"known: {known}")
    with pytest.raises(TypeError):  # built directly, the class itself refuses it too
        EEG_ENCODERS[name](63, 250, 8, **{key: 1})


def test_an_option_of_an_encoder_without_options_is_refused():
    with pytest.raises(ConfigError, match=re.escape("eeg_options.dropout (EEG encoder 'nice'): unknown option")):
        build_eeg_encoder("nice", n_chans=63, n_times=250, out_dim=8, dropout=0.1)


def test_braindecode_wrappers_take_the_braindecode_constructor_options():
    import braindecode.models as bm

    for name, model in [("eegnet", bm.EEGNet), ("shallow", bm.ShallowFBCSPNet)]:
        cls = EEG_ENCODERS[name]
        assert cls.braindecode_class() is model
        bd = inspect.signature(model.__init__).parameters
        filled = {"self", "n_chans", "n_outputs", "n_times", "sfreq", "chs_info", "input_window_seconds"}
        expected = [k for k, p in bd.items() if k not in filled and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        assert list(cls.known_options()) == expected  # an option braindecode adds must be declared here too
        defaults = cls.known_options()
        for k in expected:
            if not (name == "shallow" and k in ("pool_time_length", "pool_time_stride")):
                assert defaults[k] == bd[k].default
    assert EEG_ENCODERS["shallow"].known_options()["pool_time_length"] is None  # 100 ms at sfreq, below


def test_options_given_are_applied_and_appear_in_the_config():
    enc = build_eeg_encoder("ved", n_chans=63, n_times=250, out_dim=16, n_filters=10)
    assert enc.spatial.weight.shape == (10, 1, 63, 1) and enc.head.in_features == 10 * 200
    assert enc.get_config() == {
        "name": "ved",
        "n_chans": 63,
        "n_times": 250,
        "out_dim": 16,
        "sfreq": 250.0,
        "n_subjects": 10,
        "options": {"n_filters": 10},
    }
    assert build_eeg_encoder("ved", n_chans=63, n_times=250, out_dim=16).get_config()["options"] == {}

    atms = build_eeg_encoder("atms", n_chans=17, n_times=100, out_dim=8, n_subjects=4, n_heads=5)
    assert atms.subject_tokens.num_embeddings == 5 and atms.d_head == 20
    assert atms.get_config()["n_subjects"] == 4 and atms.get_config()["options"] == {"n_heads": 5}

    eegnet = build_eeg_encoder("eegnet", n_chans=17, n_times=100, out_dim=8, F1=4)
    assert eegnet.net.F1 == 4 and eegnet.get_config()["options"] == {"F1": 4}


def test_shallow_pooling_is_100_ms_at_sfreq_unless_given():
    enc = build_eeg_encoder("shallow", n_chans=17, n_times=100, out_dim=8, sfreq=100.0)
    assert (enc.net.pool_time_length, enc.net.pool_time_stride) == (10, 5)
    assert enc.get_config()["options"] == {}  # the defaults follow sfreq when rebuilt
    enc = build_eeg_encoder("shallow", n_chans=17, n_times=250, out_dim=8)  # sfreq 250 by default
    assert (enc.net.pool_time_length, enc.net.pool_time_stride) == (25, 12)
    enc = build_eeg_encoder("shallow", n_chans=17, n_times=100, out_dim=8, sfreq=100.0, pool_time_length=20)
    assert (enc.net.pool_time_length, enc.net.pool_time_stride) == (20, 5)
    assert enc.get_config()["options"] == {"pool_time_length": 20}


@pytest.mark.parametrize("name", sorted(EEG_ENCODERS))
def test_get_config_round_trips(name):
    torch.manual_seed(0)
    enc = build_eeg_encoder(name, n_chans=17, n_times=100, out_dim=8, sfreq=100.0, n_subjects=4, **SOME_OPTIONS[name])
    config = enc.get_config()
    assert config["name"] == name and set(config["options"]) == set(SOME_OPTIONS[name])
    config = json.loads(json.dumps(config))  # JSON-able
    torch.manual_seed(0)
    again = build_eeg_encoder_from_config(config)
    assert type(again) is type(enc) and again.get_config() == config
    assert EEGEncoder.from_config(config).get_config() == config
    a, b = enc.state_dict(), again.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # same seed, same weights
    with torch.no_grad():
        x = torch.randn(2, 17, 100)
        assert torch.equal(enc.eval()(x, torch.tensor([1, 4])), again.eval()(x, torch.tensor([1, 4])))


def test_from_config_refuses_what_it_does_not_know():
    config = build_eeg_encoder("ved", n_chans=17, n_times=100, out_dim=8).get_config()
    with pytest.raises(ConfigError, match="unknown EEG encoder config key 'n_chan'"):
        build_eeg_encoder_from_config({**config, "n_chan": 3})
    with pytest.raises(ConfigError, match=re.escape("config.options.hiden (EEG encoder 'ved'): unknown option")):
        build_eeg_encoder_from_config({**config, "options": {"hiden": 3}})
    with pytest.raises(ConfigError, match="unknown EEG encoder 'vde'"):
        build_eeg_encoder_from_config({**config, "name": "vde"})
    with pytest.raises(ConfigError, match="config of EEG encoder 'ved' given to NICEEncoder"):
        EEG_ENCODERS["nice"].from_config(config)
    assert isinstance(EEG_ENCODERS["ved"].from_config(config), EEG_ENCODERS["ved"])


def test_the_written_out_transformer_layer_equals_pytorchs():
    """``PostNormTransformerLayer`` (dropouts as modules, for keyed multi-seed dropout) computes what
    ``nn.TransformerEncoderLayer`` computes (post-norm, ReLU), given the same weights, and inits like it."""
    from eeg2image.models.eeg_encoders import PostNormTransformerLayer, sinusoidal_positions

    torch.manual_seed(0)
    ours = PostNormTransformerLayer(63, 1, 128, 0.1).eval()
    ref = torch.nn.TransformerEncoderLayer(63, 1, 128, 0.1, batch_first=True).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.k.weight, ours.v.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.k.bias, ours.v.bias]))
        ref.self_attn.out_proj.weight.copy_(ours.o.weight)
        ref.self_attn.out_proj.bias.copy_(ours.o.bias)
        for a, b in (
            (ref.linear1, ours.ff1),
            (ref.linear2, ours.ff2),
            (ref.norm1, ours.norm1),
            (ref.norm2, ours.norm2),
        ):
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
        x = torch.randn(3, 20, 63)
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    assert float(ours.q.bias.abs().sum() + ours.o.bias.abs().sum()) == 0.0
    bound = (6 / (4 * 63)) ** 0.5  # Xavier on the (3d, d) in-projection, as PyTorch
    assert float(ours.q.weight.abs().max()) <= bound and float(ours.q.weight.abs().max()) > 0.8 * bound
    pe = sinusoidal_positions(5, 63)
    assert (
        pe.shape == (5, 63)
        and float(pe[0, 1]) == 1.0
        and float(pe[3, 62]) == pytest.approx(np.sin(3 * np.exp(-62 * np.log(1e4) / 63)))
    )
