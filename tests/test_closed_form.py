"""The classical baselines: the tangent-space features equal pyRiemann's, and the closed-form fit is the ridge of
``models.ridge`` with its penalty chosen on validation retrieval."""

from __future__ import annotations

import numpy as np
import torch

from eeg2image.models.eeg_encoders import build_eeg_encoder


def test_tangent_space_features_equal_pyriemann():
    from pyriemann.estimation import Covariances, Shrinkage
    from pyriemann.tangentspace import TangentSpace

    from eeg2image.training.closed_form import _riemannian_isqrt

    rng = np.random.default_rng(0)
    mix = rng.normal(size=(8, 8))
    x = np.einsum("ij,njt->nit", mix, rng.normal(size=(30, 8, 50)))  # correlated channels
    enc = build_eeg_encoder("riemann", n_chans=8, n_times=50, out_dim=4, shrinkage=0.2)
    xt = torch.from_numpy(x).float()
    enc.ref_isqrt.copy_(_riemannian_isqrt(enc, xt))
    covs = Shrinkage(shrinkage=0.2).fit_transform(
        Covariances("cov").fit_transform(x.astype(np.float32).astype(np.float64))
    )
    want = TangentSpace(metric="riemann").fit(covs).transform(covs)
    got = enc.features(xt).double().numpy()
    assert got.shape == (30, 36)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _split(z: np.ndarray, mix: np.ndarray, seed: int, coding: str):
    """EEG of images whose embedding ``z`` (N, D) sets either the sources' power (``power``: the covariance
    carries it) or their evoked waveform (``waveform``: the time course carries it), 2 repetitions each."""
    from eeg2image.datasets import RetrievalSplit

    rng = np.random.default_rng(seed)
    n, d = z.shape
    t = np.linspace(0, 1, 100)
    if coding == "power":
        src = np.exp(0.5 * z)[:, None, :, None] * rng.normal(size=(n, 2, d, 100))
    else:
        wave = np.sin(2 * np.pi * 5 * t)
        src = z[:, None, :, None] * wave + 0.5 * rng.normal(size=(n, 2, d, 100))
    eeg = np.einsum("ij,nrjt->nrit", mix, src) + 0.05 * rng.normal(size=(n, 2, len(mix), 100))
    return RetrievalSplit(torch.from_numpy(eeg).float(), {"original": torch.from_numpy(z).float()}, np.arange(n))


def _top1(res, split) -> float:
    from eeg2image.models.ranking import cosine_similarity, topk_accuracy
    from eeg2image.models.retrieval import embed_eeg, embed_targets

    q, sub, img = split.queries()
    eeg = embed_eeg(res.stack, q, sub)[0].numpy()
    return topk_accuracy(cosine_similarity(eeg, embed_targets(res.stack, split.views)[0].numpy()), img, (1,))["top1"]


def test_each_baseline_recovers_what_its_features_carry_and_every_seed_holds_the_same_map():
    """Ridge reads the waveform, the tangent space the covariance: each identifies unseen images far above chance
    (1/40) on data coded its way, and the penalty is chosen on the validation images (recorded in the history)."""
    from eeg2image.models.fusion import TargetConfig
    from eeg2image.training.trainer import TrainConfig, train_seeds

    rng = np.random.default_rng(1)
    mix = rng.normal(size=(10, 6))
    z = rng.normal(size=(240, 6))
    for encoder, coding, options in (("ridge", "waveform", {}), ("riemann", "power", {"shrinkage": 0.01})):
        train, val, test = (_split(z[a:b], mix, a, coding) for a, b in ((0, 160), (160, 200), (200, 240)))
        cfg = TrainConfig(eeg_encoder=encoder, eeg_options=options, target=TargetConfig(adapter=False))
        res = train_seeds(cfg, [0, 1], train, val, device="cpu")
        top1 = _top1(res, test)
        assert top1 >= 0.5, (encoder, top1)  # chance 0.025
        (rec,) = res.history
        assert rec["closed_form"].startswith(encoder) and len(rec["alphas"]) == 13 and rec["val_top1"][0] >= 0.3
        w = res.stack.state_tensors()["eeg.weight"]
        assert torch.equal(w[0], w[1]) and w.abs().sum() > 0
        other = "power" if coding == "waveform" else "waveform"  # and not from what its features lose
        res_other = train_seeds(cfg, [0], _split(z[:160], mix, 0, other), _split(z[160:200], mix, 160, other))
        assert _top1(res_other, _split(z[200:], mix, 200, other)) < top1
