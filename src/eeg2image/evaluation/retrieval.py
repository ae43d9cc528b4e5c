"""Retrieval metrics: N-way top-k, k-way with fixed distractor sets, MRR, and (apart) the transductive
one-to-one assignment. Ties are counted against the model (a tie with a distractor is a miss).

The standard THINGS-EEG2 test: 200 test images, one EEG query per image (mean of its 80 repetitions),
zero-shot (test concepts never seen in training). Peers differ in how they rank (ATM draws k-way distractors
at random per query and evaluation; NICE ranks against concept centroids); here every protocol choice is an
argument, and k-way distractor sets are drawn once with a seed and saved with the results. The ranking rule
itself (cosine, ties against, top-k, MRR) is ``models.ranking``, which validation uses too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..models.ranking import cosine_similarity, mean_reciprocal_rank, target_ranks, topk_accuracy

__all__ = [
    "aggregate",
    "cosine_similarity",
    "distractor_sets",
    "hungarian_topk",
    "kway_accuracy",
    "mean_reciprocal_rank",
    "retrieval_metrics",
    "target_ranks",
    "topk_accuracy",
]


def distractor_sets(n_items: int, k: int, seed: int) -> np.ndarray:
    """For each item, ``k - 1`` distinct other items drawn once with ``seed``: (n_items, k - 1) indices."""
    if not 2 <= k <= n_items:
        raise ValueError(f"k-way needs 2 <= k <= {n_items}, got {k}")
    rng = np.random.default_rng(seed)
    out = np.empty((n_items, k - 1), dtype=np.int64)
    for i in range(n_items):
        others = np.delete(np.arange(n_items), i)
        out[i] = rng.choice(others, size=k - 1, replace=False)
    return out


def kway_accuracy(sim: np.ndarray, targets: np.ndarray, distractors: np.ndarray) -> float:
    """Top-1 among the target and its fixed distractors (the target is ``targets[i]``; ``distractors[i]``
    are gallery indices)."""
    rows = np.arange(len(sim))
    t = sim[rows, targets][:, None]
    d = sim[rows[:, None], distractors[targets]]
    return float(((d < t).all(axis=1)).mean())


def hungarian_topk(sim: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """TRANSDUCTIVE: uses the fact that queries and gallery items are one-to-one. Round r solves a
    one-to-one assignment (``scipy.optimize.linear_sum_assignment`` on -similarity) with the pairs of
    earlier rounds forbidden; a query is correct at k if it was matched to its own item in any of the first
    k rounds. Report apart from standard retrieval: it is not comparable."""
    from scipy.optimize import linear_sum_assignment

    n = sim.shape[0]
    if sim.shape[0] != sim.shape[1]:
        raise ValueError("the one-to-one assignment needs as many queries as gallery items")
    cost = -sim.astype(np.float64)
    big = np.abs(cost).max() * 10 + 1e6
    hit_round = np.full(n, np.inf)
    for r in range(max(ks)):
        rows, cols = linear_sum_assignment(cost)
        correct = rows[cols == rows]
        hit_round[correct] = np.minimum(hit_round[correct], r)
        cost[rows, cols] = big
    return {f"top{k}": float((hit_round < k).mean()) for k in ks}


def retrieval_metrics(
    sim: np.ndarray, targets: np.ndarray | None = None, *, kway: dict[int, np.ndarray] | None = None
) -> dict[str, float]:
    """All standard metrics for one similarity matrix (queries x gallery), and NeuralBench's, named so."""
    targets = np.arange(sim.shape[0]) if targets is None else np.asarray(targets)
    out = {**topk_accuracy(sim, targets, (1, 5)), "mrr": mean_reciprocal_rank(sim, targets)}
    for k, sets in sorted((kway or {}).items()):
        out[f"{k}way_top1"] = kway_accuracy(sim, targets, sets)
    out.update(neuralbench_metrics(sim, targets))
    return out


#: NeuralBench's in-batch size (its image tasks' batch of 64).
NEURALBENCH_BATCH = 64


def neuralbench_ranks(sim: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """NeuralBench's rank (``neuraltrain/metrics/metrics.py``): the mean of ``#(s > s_true)`` and
    ``#(s >= s_true) - 1``, so a tie counts half (ours counts it whole, against the model). Its similarity is
    ``x . y / |y|``; per query that orders the gallery as our cosine does, so the ranks are the same."""
    t = np.take_along_axis(sim, np.asarray(targets)[:, None], axis=-1)
    return ((sim > t).sum(axis=-1) + (sim >= t).sum(axis=-1) - 1) / 2.0


def neuralbench_metrics(sim: np.ndarray, targets: np.ndarray, batch: int = NEURALBENCH_BATCH) -> dict[str, float]:
    """For comparison across frameworks, named so: ``neuralbench_auc``, NeuralBench's headline "retrieval AUC"
    (``InverseNormalizedRank``: the mean of ``1 - rank / (N - 1)`` over the whole gallery, chance 0.5), and its
    in-batch top-k, ``neuralbench_batch64_top1`` / ``_top5``: each query ranked among the targets of the queries in
    its batch of 64 (consecutive queries in test order; the last batch may be smaller), chance 1/64."""
    targets = np.asarray(targets)
    n_gallery = sim.shape[-1]
    ranks = neuralbench_ranks(sim, targets)
    in_batch = []
    for start in range(0, len(targets), batch):
        idx = np.arange(start, min(len(targets), start + batch))
        in_batch.append(neuralbench_ranks(sim[idx][:, targets[idx]], np.arange(len(idx))))
    batch_ranks = np.concatenate(in_batch)
    return {
        "neuralbench_auc": float((1.0 - ranks / max(n_gallery - 1, 1)).mean()),
        f"neuralbench_batch{batch}_top1": float((batch_ranks < 1).mean()),
        f"neuralbench_batch{batch}_top5": float((batch_ranks < 5).mean()),
    }


def aggregate(per_seed: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, sample standard deviation and count over seeds, per metric."""
    keys = sorted(set().union(*per_seed)) if per_seed else []
    out = {}
    for k in keys:
        v = np.array([m[k] for m in per_seed if k in m], dtype=np.float64)
        out[k] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": int(len(v))}
    return out
