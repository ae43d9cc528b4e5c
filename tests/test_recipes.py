"""The 2026 recipes as presets (``shallow``, ``samga``, ``neuralbench``): each trains and evaluates on the simulated
data far above chance, with only the data, the sizes and the target views changed from the preset; and the parts
they brought (the layer router, the coarse-to-fine schedule, the one-direction loss, OneCycle, per-seed clipping)
do what their sources' code does."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from eeg2image.evaluation.evaluate import evaluate_run
from eeg2image.features.embed import embed_images
from eeg2image.features.encoders import build_image_encoder
from eeg2image.features.views import parse_views
from eeg2image.models.fusion import LayerRouter, TargetConfig
from eeg2image.models.losses import InfoNCE, mmd2
from eeg2image.models.retrieval import load_weights
from eeg2image.runs import CoarseToFineConfig, TrainConfig, run_config
from eeg2image.training.run import train_run
from eeg2image.training.trainer import clip_each_seed, onecycle_lr

N_TEST = 40  # the ``learnable`` dataset's test images: chance top-1 2.5 %, top-5 12.5 %
SIM = "original@sim-features"
EFFNET = ["original@effnet-lite0:layer=1,size=64", "original@effnet-lite0:layer=3,size=64"]


@pytest.fixture(scope="module")
def layered(learnable, tmp_path_factory):
    """The ``learnable`` data with a store that also holds two EfficientNet-Lite0 stages (the layers a router mixes
    with the simulator's features, which the EEG carries)."""
    root = tmp_path_factory.mktemp("layered")
    shutil.copytree(learnable / "store", root / "store")
    for spec in EFFNET:
        enc = build_image_encoder(spec.split("@", 1)[1])
        embed_images(learnable / "ds", root / "store", parse_views("original"), enc, progress=False)
    return root


def _data(learnable, store) -> dict:
    return {
        "data.preprocessed": str(learnable / "pre"),
        "data.store": str(store),
        "data.dataset": str(learnable / "ds"),
        "data.image_encoder": "sim-features",
        "data.val_fraction": 0.2,
        "seeds": [0],
    }


# the recipes' own settings, but for the data (the simulator's features as the target, as every learning test), the
# sizes and the step counts (a preset's lr is made for 16,540 images: here 240 training images, so fewer steps)
RECIPES = {
    "shallow": {"train.epochs": 30, "train.batch_size": 64, "train.lr": 1e-3, "train.embed_dim": 256},
    "samga": {
        "train.epochs": 30,
        "train.batch_size": 64,
        "train.lr": 1e-3,
        "train.embed_dim": 256,
        "train.coarse_to_fine.coarse_epochs": 10,
        "train.coarse_to_fine.fine_lr": 5e-4,
        "train.target.layer_views": [SIM, *EFFNET],
        "train.target.router_init": [0.0, 0.0, 0.0],
        "train.target.projector_hidden": 128,
        "train.target.projector_dim": 64,
    },
    "neuralbench": {"train.epochs": 30, "train.lr": 3e-3},
}


@pytest.mark.parametrize("preset", sorted(RECIPES))
def test_recipe_presets_learn_far_above_chance(learnable, layered, tmp_path, monkeypatch, preset):
    from eeg2image.training import trainer

    heads = []  # the shared head's weights at the start of every epoch (samga)
    begin = trainer.begin_epoch

    def spy(s, epoch):
        params = s.stack.params()
        if "shared_head.weight" in params:
            heads.append(params["shared_head.weight"].detach().clone())
        return begin(s, epoch)

    monkeypatch.setattr(trainer, "begin_epoch", spy)
    cfg = run_config(preset, None, **_data(learnable, layered / "store"), **RECIPES[preset])
    run = tmp_path / preset
    train_run(cfg, run, progress=False, log=lambda *a: None)
    metrics = evaluate_run(run, log=lambda *a: None)
    a = metrics["validation_selected"]["sub-01"]["aggregate"]
    # measured (seed 0), top-1 / top-5: shallow 0.62 / 0.93, samga 0.48 / 0.78, neuralbench 0.20 / 0.55; 5 of 40 right
    # by chance has p < 0.01
    assert a["top1"]["mean"] >= 5 / N_TEST, (preset, a)
    assert a["top5"]["mean"] >= 0.35, (preset, a)
    history = json.loads((run / "units" / "sub-01" / "history.json").read_text())
    if preset == "samga":
        stages = [h["stage"] for h in history["epochs"]]
        assert stages == ["coarse"] * 10 + ["fine"] * 20
        assert history["epochs"][0]["mmd_weight"] == pytest.approx(0.9)
        assert history["epochs"][9]["mmd_weight"] == pytest.approx(0.5)
        assert history["epochs"][10]["lr"] == pytest.approx(5e-4)  # the fine stage's
        assert not torch.equal(heads[0], heads[10])  # trained in the coarse stage, frozen in the fine one
        assert all(torch.equal(heads[10], h) for h in heads[11:])
        w = load_weights(run / "units" / "sub-01" / "final.safetensors")[0]
        router = torch.softmax(w["target.router.global_logits"][0], dim=0)
        # the EEG carries the simulator's features, not EfficientNet's early stages: the router learns that
        assert router[0] > router[1:].max(), router


def test_layer_router_weights_per_subject_in_training_and_global_at_test():
    torch.manual_seed(0)
    r = LayerRouter([8, 8, 8], hidden=6, out=4, init=[-1.0, 0.0, -1.0], subject_dropout=0.0, n_subjects=3)
    assert len(r.pre) == 1  # one width: SAMGA's shared pre-projector
    with torch.no_grad():
        r.subject_bias.weight[2] = torch.tensor([5.0, 0.0, 0.0])
    levels = [torch.randn(2, 8) for _ in range(3)]
    sub = torch.tensor([1, 2])
    r.train()
    w = r.weights(sub)
    assert torch.allclose(w[0], torch.softmax(torch.tensor([-1.0, 0.0, -1.0]), 0))
    assert w[1, 0] > 0.9  # subject 2's bias
    r.eval()
    assert torch.allclose(r.weights(sub), torch.softmax(torch.tensor([-1.0, 0.0, -1.0]), 0))
    z = torch.stack([p(r.pre[0](x)) for x, p in zip(levels, r.proj, strict=True)], dim=1)
    want = (torch.softmax(torch.tensor([-1.0, 0.0, -1.0]), 0)[None, :, None] * z).sum(1)
    torch.testing.assert_close(r(levels, sub), want)
    mixed = LayerRouter([8, 5], hidden=6, out=4)
    assert len(mixed.pre) == 2  # layers of different widths: one pre-projector each
    r.train()
    r.p = 1.0 - 1e-9  # every subject bias dropped: the global weights
    r.drop.p = r.p
    assert torch.allclose(r.weights(sub)[1], torch.softmax(torch.tensor([-1.0, 0.0, -1.0]), 0))


def test_router_config_is_checked():
    with pytest.raises(ValueError, match="projector_dim"):
        TargetConfig(layer_views=["a", "b"])
    with pytest.raises(ValueError, match="excludes"):
        TargetConfig(layer_views=["a", "b"], blur_views=["x", "y"], projector_dim=8)
    with pytest.raises(ValueError, match="router_init"):
        TargetConfig(layer_views=["a", "b"], projector_dim=8, router_init=[0.0])
    assert TargetConfig(layer_views=["a", "b"], projector_dim=8).required_views() == ["a", "b"]


def test_one_direction_loss_is_neuralbench_clip_loss():
    """``ClipLoss(norm_kind="y", temperature=False, symmetric=False)``: CE over EEG . image / |image|, scale 1."""
    torch.manual_seed(0)
    e, i = torch.randn(6, 5), torch.randn(6, 5)
    got = InfoNCE(1.0, "fixed", normalize_eeg=False, symmetric=False)(e, i)
    scores = torch.einsum("bc,oc,o->bo", e, i, 1 / (1e-15 + i.norm(dim=1)))
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(scores, torch.arange(6)))
    sym = InfoNCE(1.0, "fixed")(e, i)
    assert not torch.isclose(got, sym)


def test_mmd_is_the_unbiased_estimate():
    torch.manual_seed(0)
    x, y = torch.randn(7, 3), torch.randn(5, 3) + 0.5
    sigmas = (0.5, 1.0)

    def k(a, b):
        return sum(math.exp(-float((a - b).square().sum()) / (2 * s * s)) for s in sigmas) / len(sigmas)

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / 35
    assert float(mmd2(x, y, sigmas)) == pytest.approx(xx + yy - 2 * xy, rel=1e-5)
    loss = InfoNCE(1.0, "fixed", mmd_sigmas=sigmas)
    loss.mmd_weight.fill_(0.25)
    plain = InfoNCE(1.0, "fixed")(x[:5], y)
    assert float(loss(x[:5], y)) == pytest.approx(0.25 * float(mmd2(x[:5], y, sigmas)) + 0.75 * float(plain))


def test_onecycle_learning_rates_equal_pytorchs():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=37, cycle_momentum=False)
    want = []
    for _ in range(37):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose([onecycle_lr(1e-3, s, 37) for s in range(37)], want, rtol=1e-9)


def test_each_seed_is_clipped_as_clip_grad_norm_clips_it_alone():
    torch.manual_seed(0)
    grads = {"a": torch.randn(3, 4, 2) * 5, "b": torch.randn(3, 7) * torch.tensor([[0.01], [3.0], [10.0]])}
    params = {k: torch.nn.Parameter(torch.zeros_like(v)) for k, v in grads.items()}
    for k, p in params.items():
        p.grad = grads[k].clone()
    clip_each_seed(params, 1.0)
    for s in range(3):
        alone = {k: torch.nn.Parameter(torch.zeros_like(v[s])) for k, v in grads.items()}
        for k, p in alone.items():
            p.grad = grads[k][s].clone()
        torch.nn.utils.clip_grad_norm_(list(alone.values()), 1.0)
        for k in grads:
            torch.testing.assert_close(params[k].grad[s], alone[k].grad)


def test_coarse_to_fine_schedule_and_its_checks():
    c = CoarseToFineConfig(coarse_epochs=20)
    assert c.mmd_weight(0) == pytest.approx(0.9) and c.mmd_weight(19) == pytest.approx(0.5)
    assert c.mmd_weight(20) == 0.0 and c.is_fine(20) and not c.is_fine(19)
    from eeg2image.io import ConfigError

    with pytest.raises(ConfigError, match="no fine stage"):
        TrainConfig(epochs=20, coarse_to_fine=CoarseToFineConfig(coarse_epochs=20))


def test_the_recipes_parts_stack_the_same_under_vmap_as_in_a_loop():
    """The vmap engine (CUDA's) and the loop engine (CPU's) train the same with every new part on: the layer router
    with its keyed subject dropout, the EEG projector, the shared head, MMD, per-seed clipping, coarse-to-fine."""
    from eeg2image.datasets import RetrievalSplit
    from eeg2image.training.trainer import train_seeds

    g = torch.Generator().manual_seed(0)
    n = 96
    views = {"a": torch.randn(n, 16, generator=g), "b": torch.randn(n, 12, generator=g)}
    split = RetrievalSplit(torch.randn(n, 2, 8, 50, generator=g), views, np.arange(n) // 4, subject=np.ones(n, int))
    train, val = split.subset(np.arange(72)), split.subset(np.arange(72, 96))
    cfg = TrainConfig(
        eeg_encoder="linear",
        epochs=4,
        batch_size=24,
        embed_dim=20,
        shared_head=True,
        grad_clip=1.0,
        coarse_to_fine=CoarseToFineConfig(coarse_epochs=2),
        target=TargetConfig(layer_views=["a", "b"], projector_dim=8, adapter=False),
    )
    losses = {}
    for engine in ("vmap", "loop"):
        res = train_seeds(cfg, [0, 1], train, val, device="cpu", engine=engine)
        losses[engine] = np.array([h["loss"] for h in res.history])
    np.testing.assert_allclose(losses["vmap"], losses["loop"], rtol=1e-5, atol=1e-6)
