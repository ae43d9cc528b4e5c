"""The one ranking rule of retrieval, used by validation (checkpoint selection) and evaluation alike.

Queries (EEG embeddings) and gallery items (image targets) are compared by cosine similarity in float64;
a query's rank is the number of gallery items scored above its target **plus the ties** (a tie with a
distractor counts against the model). top-k is ``rank < k``; MRR is ``mean(1 / (rank + 1))``. Every function
takes arrays with any leading axes (e.g. seeds): ``(..., Q, D)`` against ``(..., N, D)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["cosine_similarity", "mean_reciprocal_rank", "ranking_metrics", "target_ranks", "topk_accuracy"]


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
