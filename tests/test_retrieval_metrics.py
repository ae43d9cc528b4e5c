"""Retrieval metrics: exact on constructed cases, chance on random ones, ties against the model."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2image.evaluation.retrieval import (
    aggregate,
    cosine_similarity,
    distractor_sets,
    hungarian_topk,
    kway_accuracy,
    mean_reciprocal_rank,
    retrieval_metrics,
    target_ranks,
    topk_accuracy,
)


def test_perfect_and_reversed_rankings():
    n = 20
    sim = -np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(float)  # the target is closest
    m = retrieval_metrics(sim)
    assert m["top1"] == 1.0 and m["top5"] == 1.0 and m["mrr"] == 1.0
    worst = -sim + np.eye(n) * -100
    assert topk_accuracy(worst, np.arange(n))["top5"] == 0.0


def test_ties_count_against_the_model():
    sim = np.ones((4, 4))
    assert list(target_ranks(sim, np.arange(4))) == [3, 3, 3, 3]
    assert topk_accuracy(sim, np.arange(4), (1,))["top1"] == 0.0


def test_random_similarities_give_chance():
    rng = np.random.default_rng(0)
    n = 200
    tops, kway2 = [], []
    sets = distractor_sets(n, 2, seed=1)
    for _ in range(20):
        sim = rng.normal(size=(n, n))
        tops.append(topk_accuracy(sim, np.arange(n))["top5"])
        kway2.append(kway_accuracy(sim, np.arange(n), sets))
    assert abs(np.mean(tops) - 5 / n) < 0.01
    assert abs(np.mean(kway2) - 0.5) < 0.03
    assert abs(mean_reciprocal_rank(rng.normal(size=(n, n)), np.arange(n)) - np.mean(1 / np.arange(1, n + 1))) < 0.02


def test_distractor_sets_are_fixed_distinct_and_exclude_the_target():
    a, b = distractor_sets(50, 10, seed=3), distractor_sets(50, 10, seed=3)
    assert np.array_equal(a, b) and a.shape == (50, 9)
    assert all(i not in a[i] and len(set(a[i])) == 9 for i in range(50))
    assert not np.array_equal(a, distractor_sets(50, 10, seed=4))
    with pytest.raises(ValueError):
        distractor_sets(5, 6, seed=0)


def test_kway_uses_only_the_given_distractors():
    sim = np.array([[0.9, 0.95, 0.1], [0.2, 0.8, 0.1], [0.3, 0.2, 0.7]])
    targets = np.arange(3)
    assert kway_accuracy(sim, targets, np.array([[2], [0], [1]])) == 1.0  # query 0 never meets item 1
    assert kway_accuracy(sim, targets, np.array([[1], [0], [1]])) == pytest.approx(2 / 3)


def test_hungarian_is_transductive_and_can_beat_argmax():
    # query 1 prefers item 0 (which query 0 prefers more): argmax gets 1/2, the assignment 2/2
    sim = np.array([[0.9, 0.1], [0.8, 0.7]])
    assert topk_accuracy(sim, np.arange(2), (1,))["top1"] == 0.5
    assert hungarian_topk(sim, (1, 2)) == {"top1": 1.0, "top2": 1.0}
    rng = np.random.default_rng(0)
    h = hungarian_topk(rng.normal(size=(30, 30)), (1, 5))
    assert 0 <= h["top1"] <= h["top5"] <= 1


def test_cosine_and_aggregate():
    q = np.array([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(cosine_similarity(q, q * 3), np.eye(2))
    agg = aggregate([{"top1": 0.8}, {"top1": 0.9}, {"top1": 1.0}])
    assert (
        agg["top1"]["mean"] == pytest.approx(0.9) and agg["top1"]["sd"] == pytest.approx(0.1) and agg["top1"]["n"] == 3
    )


def test_neuralbench_metrics_follow_its_definitions():
    """NeuralBench's rank counts a tie half; its retrieval AUC is mean(1 - rank / (N - 1)); its in-batch top-k ranks
    each query among its batch's targets. Checked against the definitions written out, query by query."""
    from eeg2image.evaluation.retrieval import neuralbench_metrics, neuralbench_ranks

    sim = np.ones((4, 4))  # all tied: rank (0 + 4 - 1) / 2 = 1.5 each
    assert list(neuralbench_ranks(sim, np.arange(4))) == [1.5] * 4
    rng = np.random.default_rng(3)
    n = 150
    sim = np.round(rng.normal(size=(n, n)), 1)  # rounded: many ties
    targets = rng.permutation(n)

    def rank(row, t):  # the definition, one query at a time
        s_true = row[t]
        return (np.sum(row > s_true) + np.sum(row >= s_true) - 1) / 2

    ranks = np.array([rank(sim[i], targets[i]) for i in range(n)])
    m = neuralbench_metrics(sim, targets)
    assert m["neuralbench_auc"] == pytest.approx(np.mean(1 - ranks / (n - 1)))
    in_batch = []
    for start in (0, 64, 128):  # batches of 64 in query order; the last holds 22
        idx = np.arange(start, min(n, start + 64))
        sub = sim[np.ix_(idx, targets[idx])]
        in_batch += [rank(sub[j], j) for j in range(len(idx))]
    assert m["neuralbench_batch64_top1"] == pytest.approx(np.mean(np.array(in_batch) < 1))
    assert m["neuralbench_batch64_top5"] == pytest.approx(np.mean(np.array(in_batch) < 5))
    assert set(m) <= set(retrieval_metrics(sim, targets))  # reported beside ours
    aucs = [neuralbench_metrics(rng.normal(size=(n, n)), np.arange(n))["neuralbench_auc"] for _ in range(10)]
    assert abs(np.mean(aucs) - 0.5) < 0.02  # chance
    perfect = neuralbench_metrics(np.eye(n), np.arange(n))
    assert perfect == {"neuralbench_auc": 1.0, "neuralbench_batch64_top1": 1.0, "neuralbench_batch64_top5": 1.0}


def test_validation_ranks_in_galleries_of_one_image_per_concept_as_the_test_does():
    from eeg2image.models.ranking import concept_galleries, ranking_metrics, validation_metrics

    concept = np.array([0, 0, 1, 1, 2, 2])
    assert [g.tolist() for g in concept_galleries(concept)] == [[0, 2, 4], [1, 3, 5]]
    assert [g.tolist() for g in concept_galleries(np.array([0, 0, 0, 1]))] == [[0, 3]]  # a 1-image gallery is left out
    # each query scores its own concept's other image above its own: among all images it is second, in its
    # one-per-concept gallery it is first
    sim = np.full((6, 6), 0.0)
    for q in range(6):
        sim[q, q] = 0.8
        sim[q, q ^ 1] = 0.9  # the same concept's other image
    img = np.arange(6)
    assert ranking_metrics(sim, img)["top1"] == 0.0
    assert validation_metrics(sim, img, concept)["top1"] == 1.0
    # one image per concept (the test's gallery): the same numbers as ranking_metrics, with leading axes
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(3, 7, 7))
    for k, v in validation_metrics(sims, np.arange(7), np.arange(7)).items():
        np.testing.assert_array_equal(v, ranking_metrics(sims, np.arange(7))[k])
