"""EVNet front end: light adaptation, orientation tuning, determinism, the offline pooled encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eeg2image.features.encoders import build_image_encoder
from eeg2image.features.evnet import EVNET_PRESETS, EVNet, EVNetConfig, kernel_size, sample_gabor_parameters


@pytest.fixture(scope="module")
def net() -> EVNet:
    return EVNet(EVNET_PRESETS["standard-no-noise"]).eval()


def test_kernel_sizes_and_bank_statistics(net):
    assert [kernel_size(r, 0.75) for r in (7.1528, 13.4115, 17.0919, 28.8722)] == [19, 33, 43, 69]
    p = net.v1.params
    assert len(p["sf"]) == 512 and p["sf"].max() <= 8.0 and p["sf"].min() >= 0.5
    assert p["theta"].min() >= -22.5 and p["theta"].max() <= 157.5
    assert list(np.bincount(p["color"])) == [128, 128, 128, 128]  # "standard": each LGN channel feeds 1/4
    again = sample_gabor_parameters(EVNetConfig())
    assert all(np.array_equal(again[k], p[k]) for k in p)  # the same seed gives the same bank
    assert not np.array_equal(sample_gabor_parameters(EVNetConfig(gabor_seed=1))["sf"], p["sf"])


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9])
def test_uniform_field_gives_no_response_after_light_adaptation(net, level):
    x = torch.full((1, 3, 224, 224), level)  # a uniform grey field (a coloured one drives the P cells)
    with torch.no_grad():
        lgn = net.subcortical(x)
        v1 = net(x)
    assert lgn.abs().max() < 1e-5 and v1.abs().max() < 1e-4
    # whereas any structure does evoke responses
    x[..., 100:120, 100:120] = 1.0
    with torch.no_grad():
        assert net(x).abs().max() > 1e-2


def _grating(theta_deg: float, freq: float, size: int = 224) -> torch.Tensor:
    g = torch.arange(size, dtype=torch.float64) - size // 2
    x, y = torch.meshgrid(g, g, indexing="ij")  # x = row, the convention of the Gabor bank
    t = math.radians(theta_deg)
    return torch.cos(2 * math.pi * freq * (x * math.cos(t) + y * math.sin(t))).float()


def test_gabor_cells_peak_at_their_preferred_orientation(net):
    p, cfg = net.v1.params, net.cfg
    angles = np.arange(0, 180, 7.5)
    chosen = [i for i in range(cfg.simple_channels, 512) if p["nx"][i] > 0.35 and 1.0 < p["sf"][i] < 6][:12]
    assert len(chosen) >= 8
    errors = []
    for i in chosen:
        freq = p["sf"][i] / cfg.ppd
        x = torch.zeros(len(angles), cfg.lgn_channels, 224, 224)
        for k, a in enumerate(angles):
            x[k, p["color"][i]] = _grating(a, freq)
        with torch.no_grad():  # this complex cell alone: energy of its quadrature pair
            q0 = torch.nn.functional.conv2d(x, net.v1.q0[i : i + 1], stride=cfg.stride, padding=cfg.ksize // 2)
            q1 = torch.nn.functional.conv2d(x, net.v1.q1[i : i + 1], stride=cfg.stride, padding=cfg.ksize // 2)
            resp = torch.sqrt(q0**2 + q1**2)[:, 0, 20:36, 20:36].mean(dim=(1, 2)).numpy()
        best = angles[int(resp.argmax())]
        err = abs(((best - p["theta"][i]) + 90) % 180 - 90)
        errors.append(err)
        assert resp.max() > 3 * np.median(resp)  # tuned, not flat
    assert max(errors) <= 7.5 + 1e-9  # within one step of the preferred orientation


def test_deterministic_without_noise_and_seeded_with_noise():
    x = torch.rand(2, 3, 224, 224)
    quiet = EVNet(EVNET_PRESETS["standard-no-noise"])
    with torch.no_grad():
        assert torch.equal(quiet(x), quiet(x))
        noisy = EVNet(EVNET_PRESETS["standard"])
        a = noisy(x, generator=torch.Generator().manual_seed(1))
        b = noisy(x, generator=torch.Generator().manual_seed(1))
        c = noisy(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pooled_encoder(tiny_dataset):
    from eeg2image.data.things_eeg2 import ImageSet, load_image
    from eeg2image.features.views import Original

    enc = build_image_encoder("evnet", device="cpu")
    files = ImageSet.discover(tiny_dataset).files("test")[:3]
    imgs = [Original()(np.asarray(load_image(f))) for f in files]
    e = enc.encode(imgs)
    assert e.shape == (3, 1024) and np.isfinite(e).all() and (e >= 0).all()
    assert np.array_equal(e, enc.encode(imgs))
    assert enc.identity()["evnet"]["v1_noise"] is False
    ref = build_image_encoder("evnet:reference", device="cpu")
    assert ref.identity() != enc.identity() and ref.encode(imgs).shape == (3, 1024)


def test_separable_dog_equals_the_dense_reference_filters(net):
    """The fast path (separable Gaussians) computes what the dense 2-D DoG filters of EVNet compute."""
    import torch.nn.functional as F

    sub = net.subcortical
    x = torch.rand(2, 3, 96, 96, dtype=torch.float64)
    mu = x.mean(dim=(1, 2, 3), keepdim=True)
    xa = (x - mu) / (mu + 1e-5)
    dense = []
    for gi in range(2):
        w = sub.dog_filters(gi)
        assert w.sum(dim=(1, 2, 3)).abs().allclose(torch.ones(w.shape[0], dtype=torch.float64))  # |sum| = 1
        p = w.shape[-1] // 2
        dense.append(F.conv2d(F.pad(xa, (p, p, p, p), mode="reflect"), w))
    dense = torch.cat(dense, dim=1)
    cfg = EVNetConfig(contrast_normalization=False)
    fast = EVNet(cfg).subcortical.double()(x) / EVNet(cfg).subcortical.k_exc.double()
    torch.testing.assert_close(fast, dense, rtol=1e-9, atol=1e-9)


def test_evnet_adapter_clip_encoder_is_seeded_and_records_its_recipe(tmp_path, tiny_dataset):
    import json

    from eeg2image.data.things_eeg2 import ImageSet, load_image
    from eeg2image.features.views import Original

    cfg = tmp_path / "tiny.json"
    cfg.write_text(
        json.dumps(
            {
                "embed_dim": 24,
                "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
            }
        )
    )
    files = ImageSet.discover(tiny_dataset).files("test")[:2]
    imgs = [Original()(np.asarray(load_image(f))) for f in files]
    a = build_image_encoder(f"evnet-clip:config={cfg}", device="cpu")
    b = build_image_encoder(f"evnet-clip:config={cfg}", device="cpu")
    c = build_image_encoder(f"evnet-clip:config={cfg};seed=1;input=clip", device="cpu")
    ea = a.encode(imgs)
    assert ea.shape == (2, 24) and np.array_equal(ea, b.encode(imgs))  # seeded adapter: reproducible
    assert not np.allclose(ea, c.encode(imgs))
    assert a.identity()["adapter"]["seed"] == 0 and c.identity()["input"] == "clip"
    assert a.identity()["evnet"]["v1_k_exc"] == 25.0 and a.identity()["evnet"]["m_cells"] is False
    # each variant is its own store table: the name carries the non-default options
    assert c.name == a.name + ";seed=1;input=clip" and ";" not in a.name


@pytest.mark.parametrize("preset", sorted(EVNET_PRESETS))
def test_v1_filters_hold_no_subnormal_numbers(preset):
    """Gabor tails below float32's smallest normal number made the V1 convolutions ~8x slower on CPU (measured:
    1.73 s vs 0.21 s for 32 images); they are stored as zeros, which changes no output."""
    import torch.nn.functional as F

    cfg = EVNET_PRESETS[preset]
    net = EVNet(cfg)
    tiny = torch.finfo(torch.float32).tiny
    x = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    found = False
    for c, rows, cplx in net.v1.groups:
        w = getattr(net.v1, f"w{c}")
        assert not ((w != 0) & (w.abs() < tiny)).any()
        kept = torch.cat([net.v1.q0[rows, c : c + 1], net.v1.q1[cplx, c : c + 1]])  # as built, subnormals kept
        found |= bool(((kept != 0) & (kept.abs() < tiny)).any())
        pad = cfg.ksize // 2
        np.testing.assert_array_equal(
            F.conv2d(x, w, stride=cfg.stride, padding=pad).numpy(),
            F.conv2d(x, kept, stride=cfg.stride, padding=pad).numpy(),
        )
    assert found or preset != "reference"  # the reference preset's bank has them: the case the fix is for
