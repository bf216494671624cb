"""Reward-model metrics: pairwise accuracy, thresholded accuracy, ROC AUC, majority baseline.

Plain Python/torch on lists of floats; no scikit-learn needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def pairwise_accuracy(r_chosen: Sequence[float], r_rejected: Sequence[float]) -> float:
    """Share of pairs whose chosen response scores higher; a tie counts one half."""
    if len(r_chosen) != len(r_rejected):
        raise ValueError("chosen and rejected score lists differ in length")
    if not r_chosen:
        return float("nan")
    won = sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(r_chosen, r_rejected, strict=True))
    return won / len(r_chosen)


def accuracy(scores: Sequence[float], labels: Sequence[int], threshold: float = 0.0) -> float:
    """Share of examples whose thresholded score (``score > threshold`` means 1) equals the label.

    The default threshold 0 on the logit is ``sigmoid(score) > 0.5``."""
    if len(scores) != len(labels):
        raise ValueError("scores and labels differ in length")
    if not scores:
        return float("nan")
    return sum(int(s > threshold) == int(y) for s, y in zip(scores, labels, strict=True)) / len(scores)


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve: the probability that a random positive outranks a random
    negative (ties count one half), via the rank-sum (Mann-Whitney U) with average ranks.
    NaN when only one class is present."""
    if len(scores) != len(labels):
        raise ValueError("scores and labels differ in length")
    n_pos = sum(1 for y in labels if y)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1  # ranks are 1-based
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    rank_sum_pos = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def majority_baseline(labels: Sequence[int]) -> float:
    """Accuracy of always predicting the most frequent label."""
    if not labels:
        return float("nan")
    pos = sum(1 for y in labels if y) / len(labels)
    return max(pos, 1 - pos)


def proportion_standard_error(p: float, n: int) -> float:
    """Binomial standard error of an accuracy ``p`` measured on ``n`` examples."""
    if n <= 0 or not 0.0 <= p <= 1.0:
        return float("nan")
    return math.sqrt(p * (1.0 - p) / n)


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of a ROC AUC from ``n_pos`` positives and ``n_neg`` negatives."""
    if n_pos <= 0 or n_neg <= 0 or not 0.0 <= auc <= 1.0:
        return float("nan")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def reward_metrics(kind: str, scores: Sequence[float], labels: Sequence[int] | None = None) -> dict[str, float]:
    """Metrics for one evaluation split.

    ``pair``: ``scores`` is chosen scores then rejected scores -> ``accuracy`` (pairwise),
    ``accuracy_se`` (binomial), ``mean_margin``. ``rating``: ``accuracy``, ``auc``, ``auc_se``
    (Hanley-McNeil), ``majority_baseline``, ``positive_rate``.
    """
    if kind == "pair":
        n = len(scores) // 2
        chosen, rejected = list(scores[:n]), list(scores[n:])
        margin = sum(c - r for c, r in zip(chosen, rejected, strict=True)) / n if n else float("nan")
        acc = pairwise_accuracy(chosen, rejected)
        return {"accuracy": acc, "accuracy_se": proportion_standard_error(acc, n), "mean_margin": margin, "n": n}
    if kind == "rating":
        assert labels is not None
        auc = roc_auc(scores, labels)
        n_pos = sum(1 for y in labels if y)
        return {
            "accuracy": accuracy(scores, labels),
            "auc": auc,
            "auc_se": auc_standard_error(auc, n_pos, len(labels) - n_pos),
            "majority_baseline": majority_baseline(labels),
            "positive_rate": sum(labels) / len(labels) if labels else float("nan"),
            "n": len(labels),
        }
    raise ValueError(f"no reward metrics for data kind {kind!r}")


def selection_metric(kind: str) -> str:
    """The validation metric used to keep the best checkpoint: pairwise accuracy for pairs,
    AUC for ratings (on skewed labels accuracy barely moves off the majority baseline)."""
    return "accuracy" if kind == "pair" else "auc"
