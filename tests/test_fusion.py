"""Target models: each switch changes what it claims to change."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from eeg2image.models.fusion import BlurLevelFusion, TargetConfig, TargetModel, TwoWayFusion

BLUR8 = [f"blur-k{k:02d}" for k in (1, 3, 15, 21, 33, 45, 57, 63)]


def _views(b=5, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = {name: torch.randn(b, d, generator=g) for name in [*BLUR8, "original"]}
    v["evnet:original"] = torch.randn(b, d, generator=g)
    return v


def test_blur_fusion_is_a_per_dimension_convex_mix():
    torch.manual_seed(0)
    f = BlurLevelFusion(n_levels=8, dim=16, n_default_tokens=4)
    w = f.weights()
    assert w.shape == (1, 12, 16) and torch.allclose(w.sum(dim=1), torch.ones(1, 16))
    levels = torch.randn(3, 8, 16)
    expected = (levels * w[:, :8]).sum(1)  # default tokens start at zero
    assert torch.allclose(f(levels), expected, atol=1e-6)


def test_blur_fusion_equals_the_released_concatenation_with_its_gradients():
    # the released form: concatenate the default tokens to every row, weight, sum over the token axis
    torch.manual_seed(1)
    f = BlurLevelFusion(n_levels=5, dim=7, n_default_tokens=3).double()
    with torch.no_grad():
        f.default_tokens.normal_()  # trained tokens are not zero
    levels = torch.randn(4, 5, 7, dtype=torch.float64)
    tokens = torch.cat([levels, f.default_tokens.expand(4, -1, -1)], dim=1)
    released = (tokens * f.weights()).sum(dim=1)
    ours = f(list(levels.unbind(1)))
    assert torch.allclose(ours, released, atol=1e-12) and torch.allclose(f(levels), released, atol=1e-12)
    g = torch.randn(4, 7, dtype=torch.float64)
    grads = [torch.autograd.grad((y * g).sum(), [f.logits, f.default_tokens]) for y in (released, ours)]
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(*grads, strict=True))


def test_evnet_fusion_starts_at_softmax_of_0_7_0_3():
    f = TwoWayFusion((0.7, 0.3))
    a, b = torch.ones(2, 4), torch.zeros(2, 4)
    assert torch.allclose(f(a, b), torch.full((2, 4), 0.598688), atol=1e-5)


def test_switches():
    views = _views()
    plain = TargetModel(TargetConfig(adapter=False), dim=16).eval()
    assert plain.required_views() == ["original"]
    assert torch.allclose(plain(views), F.normalize(views["original"], dim=-1))
    blur = TargetModel(TargetConfig(blur_views=BLUR8, adapter=False), dim=16).eval()
    assert blur.required_views() == BLUR8 and not torch.allclose(blur(views), plain(views))
    full = TargetModel(TargetConfig(blur_views=BLUR8, evnet_view="original"), dim=16).eval()
    assert full.required_views()[-1] == "evnet:original"
    changed = dict(views, **{"evnet:original": torch.randn(5, 16)})
    assert not torch.allclose(full(views), full(changed))  # the EVNet view now matters
    assert torch.allclose(blur(views), blur(changed))  # ... but not for the blur-only target
    n_params = {
        name: sum(p.numel() for p in m.parameters()) for name, m in (("plain", plain), ("blur", blur), ("full", full))
    }
    assert n_params["plain"] == 0 < n_params["blur"] < n_params["full"]
    with pytest.raises(KeyError, match="blur-k63"):
        blur({k: v for k, v in views.items() if k != "blur-k63"})


def test_centering_removes_the_training_mean_and_travels_with_the_weights():
    views = _views(b=40)
    shared = torch.randn(16) * 5  # a large direction common to every image, as image encoders have
    shifted = {k: v + shared for k, v in views.items()}
    plain = TargetModel(TargetConfig(adapter=False), dim=16).eval()
    centred = TargetModel(TargetConfig(adapter=False, center=True), dim=16).eval()
    centred.set_centers(shifted)
    assert torch.allclose(centred.centers[0], shifted["original"].mean(0), atol=1e-5)
    out = centred(shifted)
    assert torch.allclose(out, F.normalize(views["original"] - views["original"].mean(0), dim=-1), atol=1e-5)
    assert not torch.allclose(plain(shifted), out, atol=1e-2)
    # the means are fixed: other images (a test gallery) are centred with the training means
    other = {k: v[:5] for k, v in shifted.items()}
    assert torch.allclose(centred(other), out[:5], atol=1e-6)
    assert "centers" in dict(centred.named_buffers()) and plain.centers.numel() == 0


def test_trainer_centres_with_the_training_images_only():
    import numpy as np

    from eeg2image.datasets import RetrievalSplit
    from eeg2image.training.trainer import TrainConfig, train_seeds

    g = torch.Generator().manual_seed(0)
    split = RetrievalSplit(
        torch.randn(40, 2, 4, 30, generator=g), {"original": torch.randn(40, 8, generator=g) + 3}, np.arange(40)
    )
    train, val = split.subset(np.arange(30)), split.subset(np.arange(30, 40))
    cfg = TrainConfig(eeg_encoder="linear", epochs=1, batch_size=10, target=TargetConfig(adapter=False, center=True))
    res = train_seeds(cfg, [0, 1], train, val, device="cpu")
    centers = res.stack.state_tensors()["target.centers"]
    assert centers.shape == (2, 1, 8)
    assert torch.allclose(centers[1, 0], train.views["original"].mean(0), atol=1e-6)
    assert not torch.allclose(centers[1, 0], split.views["original"].mean(0), atol=1e-3)
