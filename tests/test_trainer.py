"""The training loop: seeded, stacked seeds equal separate runs, exact resume, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeg2image.datasets import RetrievalSplit, concept_disjoint_split, load_split
from eeg2image.features.embed import embed_images
from eeg2image.features.encoders import build_image_encoder
from eeg2image.features.views import parse_views
from eeg2image.io import DataFormatError
from eeg2image.models.dropout import KeyedDropout, keyed_dropout
from eeg2image.models.fusion import TargetConfig
from eeg2image.models.retrieval import embed_eeg
from eeg2image.training.trainer import TrainConfig, TrainingError, average_reps, train_seeds


@pytest.fixture(scope="module")
def tiny_store(tiny_dataset, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    embed_images(
        tiny_dataset,
        store,
        parse_views("original"),
        build_image_encoder("evnet", device="cpu"),
        partitions=("training",),
        progress=False,
    )
    return store


def random_split(n=96, reps=4, chans=8, times=100, dim=32, seed=0) -> RetrievalSplit:
    g = torch.Generator().manual_seed(seed)
    eeg = torch.randn(n, reps, chans, times, generator=g)
    return RetrievalSplit(eeg, {"original": torch.randn(n, dim, generator=g)}, np.arange(n) // 4)


def test_training_code_cannot_read_the_test_partition(tiny_nice, tiny_store):
    with pytest.raises(DataFormatError, match="reads only the training partition"):
        load_split(tiny_nice, tiny_store, "test", ["original"], "evnet")


def test_loop_fits_the_training_pairs_and_is_seeded(tiny_nice, tiny_store):
    train = load_split(tiny_nice, tiny_store, "training", ["original"], "evnet")
    assert train.eeg.shape[:2] == (64, 4) and train.views["original"].shape == (64, 1024)
    cfg = TrainConfig(eeg_encoder="linear", epochs=40, batch_size=32, lr=1e-3, target=TargetConfig(adapter=False))
    hist = [h["loss"][0] for h in train_seeds(cfg, [0], train, device="cpu").history]
    assert hist[-1] < 0.5 * hist[0]
    again = [h["loss"][0] for h in train_seeds(cfg, [0], train, device="cpu").history]
    assert again == hist  # seeded: the same run twice


@pytest.mark.parametrize("encoder", ["linear", "ved", "nice", "atms", "eegproject", "eegnet", "shallow", "cogcap"])
def test_stacked_seeds_equal_separate_runs(encoder):
    """Seed 1 trained beside seeds 0 and 2 under vmap = seed 1 trained alone (loop engine): same losses and the
    same embeddings. In float64, because in float32 the batched and unbatched kernels round differently and
    AdamW magnifies that noise for parameters with no true gradient (a conv bias before batch norm moves by
    ~lr per step either way), which then shows through the batch-norm running means."""
    torch.set_default_dtype(torch.float64)
    try:
        _stacked_vs_alone(encoder)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("encoder", ["ved", "atms"])
def test_stacked_seeds_equal_separate_runs_in_the_loop_engine(encoder):
    """The CPU default: seeds stacked in one SeedStack but run one after another (loop engine) = each seed alone;
    catches a loop that hands one seed's dropout keys, generator or batch order to another."""
    torch.set_default_dtype(torch.float64)
    try:
        _stacked_vs_alone(encoder, engine="loop")
    finally:
        torch.set_default_dtype(torch.float32)


def _stacked_vs_alone(encoder, engine="vmap"):
    split = random_split()
    cfg = TrainConfig(eeg_encoder=encoder, epochs=2, batch_size=32, lr=1e-3, reps_per_sample=2)
    stacked = train_seeds(cfg, [0, 1, 2], split, device="cpu", engine=engine)
    alone = train_seeds(cfg, [1], split, device="cpu", engine="loop")
    loss_stacked = np.array([h["loss"][1] for h in stacked.history])
    loss_alone = np.array([h["loss"][0] for h in alone.history])
    np.testing.assert_allclose(loss_stacked, loss_alone, rtol=1e-9)
    assert not np.allclose(loss_stacked, [h["loss"][0] for h in stacked.history])  # seeds do differ
    x, sub = split.eeg.mean(1), torch.zeros(len(split), dtype=torch.long)
    e_stacked, e_alone = embed_eeg(stacked.stack, x, sub)[1], embed_eeg(alone.stack, x, sub)[0]
    torch.testing.assert_close(e_stacked, e_alone, rtol=1e-5, atol=1e-6)


def test_compiled_seed_calls_train_as_eager_ones():
    """``train_seeds(compile=True)`` (torch.compile of every seed's call, keyed dropout inside the graph) gives the
    eager run's losses and weights, to float rounding."""
    split = random_split(n=64)
    cfg = TrainConfig(eeg_encoder="linear", epochs=2, batch_size=32, lr=1e-3)  # the target's adapter has dropout
    eager = train_seeds(cfg, [0, 1], split, device="cpu", engine="loop")
    compiled = train_seeds(cfg, [0, 1], split, device="cpu", engine="loop", compile=True)
    assert compiled.stack._compiled  # the compiled calls were used
    np.testing.assert_allclose([h["loss"] for h in compiled.history], [h["loss"] for h in eager.history], rtol=1e-5)
    for k, v in eager.stack.state_tensors().items():
        torch.testing.assert_close(compiled.stack.state_tensors()[k], v, rtol=1e-4, atol=1e-6)


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tmp_path):
    split = random_split()
    train, val = split.subset(np.arange(72)), split.subset(np.arange(72, 96))
    cfg = TrainConfig(eeg_encoder="ved", epochs=4, batch_size=32, lr=1e-3, reps_per_sample=2)
    full = train_seeds(cfg, [0, 1], train, val, device="cpu")

    class Killed(Exception):
        pass

    def kill_after_two(epoch, rec):
        if epoch == 2:
            raise Killed

    fp = {"config": "a"}
    with pytest.raises(Killed):
        train_seeds(
            cfg, [0, 1], train, val, device="cpu", checkpoint_dir=tmp_path, fingerprint=fp, on_epoch_end=kill_after_two
        )
    resumed = train_seeds(cfg, [0, 1], train, val, device="cpu", checkpoint_dir=tmp_path, fingerprint=fp)
    assert resumed.resumed_from == 2
    assert resumed.history == full.history
    for k, v in full.stack.state_tensors().items():
        assert torch.equal(v, resumed.stack.state_tensors()[k]), k
    for k, v in full.best.items():
        assert torch.equal(v, resumed.best[k]), k
    assert resumed.best_epoch == full.best_epoch

    before = (tmp_path / "state.safetensors").read_bytes()
    other = TrainConfig(eeg_encoder="ved", epochs=4, batch_size=32, lr=5e-4, reps_per_sample=2)
    with pytest.raises(TrainingError, match="another configuration.*nothing was overwritten"):
        train_seeds(other, [0, 1], train, val, device="cpu", checkpoint_dir=tmp_path, fingerprint={"config": "b"})
    assert (tmp_path / "state.safetensors").read_bytes() == before


def test_bad_batches_are_refused():
    split = random_split()
    cfg = TrainConfig(eeg_encoder="linear", epochs=1, batch_size=32)
    nan = random_split()
    nan.eeg[3, 1, 2, 5] = float("nan")
    with pytest.raises(TrainingError, match="NaN"):
        train_seeds(cfg, [0], nan, device="cpu")
    with pytest.raises(TrainingError, match="at least 2"):
        train_seeds(cfg, [0], split.subset(np.arange(0)), device="cpu")
    with pytest.raises(TrainingError, match="distinct"):
        train_seeds(cfg, [0, 0], split, device="cpu")
    diverging = TrainConfig(eeg_encoder="linear", epochs=3, batch_size=32, lr=1e6, logit_scale=1e4)
    with pytest.raises(TrainingError, match=r"seed\(s\) \[0\].*NaN"):
        train_seeds(diverging, [0], split, device="cpu")


def test_keyed_dropout_masks_depend_on_key_and_row_only():
    drop = KeyedDropout(0.5).train()
    x = torch.ones(6, 50)
    with keyed_dropout(torch.tensor(7)):
        a = drop(x)
    with keyed_dropout(torch.tensor(7), row_offset=2):
        b = drop(x[:3])  # rows 2..4 of the same global batch
    with keyed_dropout(torch.tensor(8)):
        c = drop(x)
    assert torch.equal(a[2:5], b) and not torch.equal(a, c)
    assert 0.35 < (a == 0).float().mean() < 0.65 and set(a.unique().tolist()) == {0.0, 2.0}


def test_concept_disjoint_split_and_rep_subaveraging():
    concept = np.repeat(np.arange(20), 5)
    tr, va = concept_disjoint_split(concept, 0.2, seed=1)
    assert len(va) == 20 and not set(concept[tr]) & set(concept[va])
    x = torch.arange(2 * 4 * 1 * 1, dtype=torch.float32).view(2, 4, 1, 1)
    assert torch.equal(average_reps(x, 0, None), x.mean(1))
    sub = average_reps(x, 2, torch.Generator().manual_seed(0))
    assert sub.shape == (2, 1, 1) and not torch.equal(sub, x.mean(1))


def test_drop_last_and_schedule_switches():
    split = random_split(n=75)
    steps = {}
    for drop in (True, False):
        cfg = TrainConfig(eeg_encoder="linear", epochs=1, batch_size=30, drop_last=drop)
        steps[drop] = train_seeds(cfg, [0], split, device="cpu").history[0]["steps"]
    assert steps == {True: 2, False: 3}  # 30 + 30 (+ 15)
    small = TrainConfig(eeg_encoder="linear", epochs=1, batch_size=100, drop_last=True)
    assert train_seeds(small, [0], split, device="cpu").history[0]["steps"] == 1  # never zero steps
    cos = TrainConfig(eeg_encoder="linear", epochs=4, batch_size=30, schedule="cosine", lr=1e-3)
    lrs = [h["lr"] for h in train_seeds(cos, [0], split, device="cpu").history]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.2e-3 < 0.8e-3 < lrs[0]


def test_validation_ranks_exactly_as_evaluation_reports():
    """The validation numbers a checkpoint is selected on are the ones evaluation's metric code gives for the same
    weights and images, ties included: pairs of validation images share one embedding, so their targets tie
    exactly and, counted against the model, neither can be top-1. With one validation image per concept (the test
    gallery's kind) the gallery is every validation image; with several, each query is ranked among one image per
    concept, and evaluation's code on those galleries gives the same numbers."""
    from eeg2image.evaluation.retrieval import cosine_similarity, retrieval_metrics
    from eeg2image.models.retrieval import embed_targets

    split = random_split()
    views = split.views["original"].clone()
    views[73::2] = views[72::2]  # validation images 72/73, 74/75, ...: identical embeddings
    concept = split.concept.copy()
    concept[72:] = np.arange(100, 124)  # one image per validation concept, as the test's gallery
    split = RetrievalSplit(split.eeg, {"original": views}, concept)
    train, val = split.subset(np.arange(72)), split.subset(np.arange(72, 96))
    res = train_seeds(TrainConfig(eeg_encoder="linear", epochs=2, batch_size=32), [0, 1], train, val, device="cpu")
    q, sub, img = val.queries()
    e, g = embed_eeg(res.stack, q, sub).numpy(), embed_targets(res.stack, val.views).numpy()
    last = res.history[-1]
    for i in range(2):
        m = retrieval_metrics(cosine_similarity(e[i], g[i]), img)
        assert (m["top1"], m["top5"], m["mrr"]) == (last["val_top1"][i], last["val_top5"][i], last["val_mrr"][i])
        assert m["top1"] == 0.0  # every target ties with its twin
    # four images per validation concept (the demo's and THINGS-EEG2's kind): galleries of one image per concept
    plain = random_split(seed=1)
    train, val = plain.subset(np.arange(72)), plain.subset(np.arange(72, 96))  # 6 concepts x 4 images
    res = train_seeds(TrainConfig(eeg_encoder="linear", epochs=2, batch_size=32), [0], train, val, device="cpu")
    q, sub, img = val.queries()
    sim = cosine_similarity(embed_eeg(res.stack, q, sub).numpy()[0], embed_targets(res.stack, val.views).numpy()[0])
    ranks = []
    for j in range(4):  # gallery j: the j-th image of each of the 6 concepts
        gal = np.arange(j, 24, 4)
        ranks += [int((sim[k, gal] >= sim[k, k]).sum()) - 1 for k in gal]
    top1 = float(np.mean(np.array(ranks) < 1))
    assert res.history[-1]["val_top1"][0] == top1
