"""The one ranking rule of retrieval, used by validation (checkpoint selection) and evaluation alike.

Queries (EEG embeddings) and gallery items (image targets) are compared by cosine similarity in float64;
a query's rank is the number of gallery items scored above its target **plus the ties** (a tie with a
distractor counts against the model). top-k is ``rank < k``; MRR is ``mean(1 / (rank + 1))``. Every function
takes arrays with any leading axes (e.g. seeds): ``(..., Q, D)`` against ``(..., N, D)``.

Validation ranks as the test does: the test gallery holds one image per concept (200 concepts, 200 images), while
the validation concepts come with all their images (10 each in THINGS-EEG2). Ranked among all of them, a query
competes mostly with its own concept's other images, a harder and different task whose best layer or epoch need not
be the test's. So ``validation_metrics`` ranks in galleries of one image per concept: gallery j holds the j-th
image of every validation concept, each query is ranked in its image's gallery, and the ranks are pooled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "concept_galleries",
    "cosine_similarity",
    "mean_reciprocal_rank",
    "ranking_metrics",
    "target_ranks",
    "topk_accuracy",
    "validation_metrics",
]


def cosine_similarity(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(..., Q, D) x (..., N, D) -> (..., Q, N) cosine similarities in float64 (both sides L2-normalised)."""
    q = np.asarray(queries, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True).clip(1e-12)
    g = g / np.linalg.norm(g, axis=-1, keepdims=True).clip(1e-12)
    return q @ np.swapaxes(g, -1, -2)


def target_ranks(sim: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each query's target among the gallery, ties counted against: (..., Q, N) -> (..., Q)."""
    targets = np.asarray(targets)
    t = np.take_along_axis(sim, np.broadcast_to(targets[:, None], (*sim.shape[:-1], 1)), axis=-1)
    return (sim > t).sum(axis=-1) + (sim == t).sum(axis=-1) - 1


def topk_accuracy(sim: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    ranks = target_ranks(sim, targets)
    return {f"top{k}": float((ranks < k).mean()) for k in ks}


def mean_reciprocal_rank(sim: np.ndarray, targets: np.ndarray) -> float:
    return float((1.0 / (target_ranks(sim, targets) + 1)).mean())


def ranking_metrics(sim: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """top-1, top-5 and MRR over the query axis, one value per leading index: (S, Q, N) -> {name: (S,)}."""
    ranks = target_ranks(sim, targets)
    return {"top1": (ranks < 1).mean(-1), "top5": (ranks < 5).mean(-1), "mrr": (1.0 / (ranks + 1)).mean(-1)}


def concept_galleries(concept: np.ndarray) -> list[np.ndarray]:
    """Image indices of the galleries of one image per concept: gallery j holds the j-th image (in index order) of
    every concept with more than j images; galleries of fewer than 2 images are left out."""
    concept = np.asarray(concept)
    within = np.zeros(len(concept), dtype=np.int64)
    seen: dict = {}
    for i, c in enumerate(concept.tolist()):
        within[i] = seen.get(c, 0)
        seen[c] = within[i] + 1
    groups = [np.flatnonzero(within == j) for j in range(int(within.max(initial=-1)) + 1)]
    return [g for g in groups if len(g) >= 2]


def validation_metrics(sim: np.ndarray, targets: np.ndarray, concept: np.ndarray) -> dict[str, np.ndarray]:
    """``ranking_metrics`` in galleries of one image per concept (``concept_galleries``), as the test gallery is:
    (..., Q, N) similarities, (Q,) target image per query, (N,) concept per image -> {name: (...)}. With one image
    per concept this is ``ranking_metrics`` itself."""
    targets = np.asarray(targets)
    groups = concept_galleries(concept)
    if len(groups) == 1 and len(groups[0]) == sim.shape[-1]:
        return ranking_metrics(sim, targets)
    ranks = []
    for g in groups:
        pos = np.full(sim.shape[-1], -1)
        pos[g] = np.arange(len(g))
        q = np.flatnonzero(pos[targets] >= 0)
        ranks.append(target_ranks(sim[..., q, :][..., g], pos[targets[q]]))
    if not ranks:
        return ranking_metrics(sim, targets)
    r = np.concatenate(ranks, axis=-1)
    return {"top1": (r < 1).mean(-1), "top5": (r < 5).mean(-1), "mrr": (1.0 / (r + 1)).mean(-1)}
