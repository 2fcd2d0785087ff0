"""Figures ``visearch train`` reports: retrieval precision@k, category accuracy, tag mAP and F1 (numpy only)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def precision_at_k(
    queries: np.ndarray, query_labels: np.ndarray, index: np.ndarray, index_labels: np.ndarray, k: int = 10
) -> tuple[float, dict[int, float]]:
    """Mean precision@k of exact cosine nearest-neighbour search; relevant = same label.

    The same ranking a flat (exact) Milvus COSINE index returns, computed by brute force.

    Args:
        queries: float [Q, D]; query_labels: int [Q]. index: float [M, D] (M >= k); index_labels: int [M].
            Rows need not be unit norm (they are normalised here).

    Returns:
        (mean precision@k over the queries in [0, 1], per query label -> its mean precision@k).

    Raises:
        ValueError: fewer than ``k`` index rows, or mismatched dimensions.
    """
    if len(index) < k or queries.shape[1] != index.shape[1]:
        raise ValueError(f"need >= {k} index rows of the queries' dimension, got {index.shape} vs {queries.shape}")
    scores = _unit(queries) @ _unit(index).T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    hits = (np.asarray(index_labels)[top] == np.asarray(query_labels)[:, None]).mean(axis=1)
    per_label = {int(c): float(hits[query_labels == c].mean()) for c in np.unique(query_labels)}
    return float(hits.mean()), per_label


def chance_precision(index_labels: np.ndarray) -> float:
    """Expected precision@k of a random ranking, sum over labels of p_c^2 (p_c: share of the index)."""
    _, counts = np.unique(index_labels, return_counts=True)
    return float(((counts / counts.sum()) ** 2).sum())


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1] of class probabilities (or logits) [N, C] against int labels [N]."""
    return float((np.asarray(probs).argmax(axis=1) == np.asarray(labels)).mean())


def tag_scores(tag_probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Multi-label quality of tag probabilities [N, T] in [0, 1] against 0/1 ``targets`` [N, T].

    Returns ``mAP`` (macro mean over tags of scikit-learn's average precision, tags with at least one
    positive), and ``micro_f1`` / ``macro_f1`` of ``tag_probs >= threshold``; all in [0, 1].
    """
    targets = np.asarray(targets) > 0.5
    present = targets.any(axis=0)
    predicted = np.asarray(tag_probs) >= threshold
    return {
        "mAP": float(average_precision_score(targets[:, present], tag_probs[:, present], average="macro")),
        "micro_f1": float(f1_score(targets, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(targets[:, present], predicted[:, present], average="macro", zero_division=0)),
    }
