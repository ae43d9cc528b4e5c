"""The closed-form ridge map (``models.ridge``): it recovers a linear map far above chance, chooses its penalty on
the held-out rows only, survives a save/load, and learns nothing from shuffled rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeg2image.io import DataFormatError
from eeg2image.models.align import RidgeAligner, load_aligner, save_aligner
from eeg2image.models.ridge import RidgeConfig, fit_ridge


def _data(n=300, p=400, d=20, noise=3.0, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(p, d)) / np.sqrt(p)
    x = rng.normal(size=(n + 50, p)) * rng.uniform(0.5, 5.0, size=p)  # features of very different scales
    y = (x / x.std(0)) @ w + noise * rng.normal(size=(n + 50, d)) / np.sqrt(d) + 7.0
    return x[:n], y[:n], x[n:], y[n:]


def _identification(pred: np.ndarray, y: np.ndarray, mean: np.ndarray) -> float:
    a, b = pred - mean, y - mean
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return float(((a @ b.T).argmax(1) == np.arange(len(a))).mean())


def test_ridge_identifies_unseen_rows_and_shuffled_rows_do_not():
    x, y, xt, yt = _data()
    val = np.arange(60)
    model = fit_ridge(x, y, val)
    pred = model(torch.from_numpy(xt)).numpy()
    assert _identification(pred, yt, y.mean(0)) >= 0.5  # chance 1/50
    assert model.history and model.alpha in RidgeConfig().alphas
    perm = np.random.default_rng(1).permutation(len(x))
    shuffled = fit_ridge(x, y[perm], val)
    assert _identification(shuffled(torch.from_numpy(xt)).numpy(), yt, y.mean(0)) <= 0.12


def test_the_penalty_is_chosen_on_the_held_out_rows_only():
    x, y, _, _ = _data()
    val = np.arange(60)
    a = fit_ridge(x, y, val)
    y2 = y.copy()
    y2[val] = np.random.default_rng(3).normal(size=y2[val].shape) * 100  # validation rows made noise: a larger penalty
    b = fit_ridge(x, y2, val)
    assert b.alpha > a.alpha
    # the training rows outside validation decide the weights of each penalty; the validation rows only pick one
    assert [h["alpha"] for h in a.history] == RidgeConfig().alphas


def test_a_ridge_aligner_survives_its_weights_file(tmp_path):
    x, y, xt, _ = _data(n=120, p=50, d=5)
    model = RidgeAligner.fit(["image"], torch.from_numpy(x)[:, None], {"image": torch.from_numpy(y)}, np.arange(20))
    save_aligner(tmp_path / "r.safetensors", model, {"what": "test"})
    back, meta = load_aligner(tmp_path / "r.safetensors")
    assert (
        meta["what"] == "test" and meta["method"] == "ridge" and back.maps["image"].alpha == model.maps["image"].alpha
    )
    q = {"image": torch.from_numpy(xt)}
    assert torch.equal(back.predict(q)["image"], model.predict(q)["image"])
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(DataFormatError, match="not a readable aligner file"):
        load_aligner(tmp_path / "bad.safetensors")
    with pytest.raises(DataFormatError, match="takes 50 features per row"):
        back.maps["image"](torch.zeros(2, 49))
