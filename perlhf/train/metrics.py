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


# --------------------------------------------------------------------------- length-only baselines
def _length_features(chars: float) -> list[float]:
    """A response length in characters as features: its logarithm and its size in hundreds."""
    return [math.log1p(chars), chars / 100.0]


def fit_logistic(features: Sequence[Sequence[float]], labels: Sequence[int], *, intercept: bool = True,
                 l2: float = 1e-3, steps: int = 200) -> list[float]:
    """Weights of an L2-regularised logistic regression (``[bias] + one per feature``; bias 0 without
    ``intercept``), fitted by L-BFGS in float64 on features standardised with the training mean and
    deviation and returned in the original units. Deterministic."""
    import torch

    x = torch.tensor([list(f) for f in features], dtype=torch.float64)
    y = torch.tensor([float(v) for v in labels], dtype=torch.float64)
    if x.ndim != 2 or len(x) != len(y) or not len(y):
        raise ValueError("features and labels must be non-empty and of equal length")
    mean = x.mean(0) if intercept else torch.zeros(x.shape[1], dtype=torch.float64)
    std = x.std(0, unbiased=False).clamp_min(1e-12) if len(x) > 1 else torch.ones(x.shape[1], dtype=torch.float64)
    z = (x - mean) / std
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=intercept)
    params = [w, b] if intercept else [w]
    opt = torch.optim.LBFGS(params, max_iter=steps, tolerance_grad=1e-10, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    weights = (w / std).detach()
    bias = (b - (mean / std * w).sum()).detach() if intercept else torch.zeros((), dtype=torch.float64)
    return [float(bias), *map(float, weights)]


def _logit(weights: Sequence[float], features: Sequence[float]) -> float:
    return weights[0] + sum(w * f for w, f in zip(weights[1:], features, strict=True))


def length_baselines(kind: str, train: Sequence, test: Sequence) -> dict[str, float]:
    """What response length alone achieves on ``test`` (records with ``chosen``/``rejected`` or
    ``response``/``label``): the two length rules and a length-only logistic model fitted on ``train``.

    ``pair``: accuracy (ties half) of "the shorter answer wins", of "the longer answer wins", and of a
    logistic model on the difference of the two answers' length features (no intercept, so it does
    not depend on which answer is listed first). ``rating``: the AUC of "longer is better" and
    "shorter is better" and the test AUC of a logistic model on length features. Lengths are in
    characters of the whole response, before any token budget. ``best`` is the highest of the three
    on test (the rules' better direction chosen on test: an upper bound on a length-only rule)."""
    if kind == "pair":
        def diff(r) -> list[float]:
            return [a - b for a, b in zip(_length_features(len(r.chosen)), _length_features(len(r.rejected)),
                                          strict=True)]
        # each training pair both ways round: chosen first (label 1) and rejected first (label 0)
        feats = [d for r in train for d in (diff(r), [-v for v in diff(r)])]
        w = fit_logistic(feats, [1, 0] * len(train), intercept=False)
        shorter = pairwise_accuracy([-len(r.chosen) for r in test], [-len(r.rejected) for r in test])
        logit = [_logit(w, diff(r)) for r in test]
        out = {"shorter_wins": shorter, "longer_wins": 1.0 - shorter,
               "logistic": pairwise_accuracy(logit, [0.0] * len(logit)), "metric": "accuracy", "n": len(test)}
    elif kind == "rating":
        labels = [int(r.label) for r in test]
        w = fit_logistic([_length_features(len(r.response)) for r in train], [int(r.label) for r in train])
        longer = roc_auc([float(len(r.response)) for r in test], labels)
        out = {"longer_wins": longer, "shorter_wins": 1.0 - longer,
               "logistic": roc_auc([_logit(w, _length_features(len(r.response))) for r in test], labels),
               "metric": "auc", "n": len(test)}
    else:
        raise ValueError(f"no length baselines for data kind {kind!r}")
    out["best"] = max(out["shorter_wins"], out["longer_wins"], out["logistic"])
    return out


def margin_over_baseline(metrics: dict[str, float], baselines: dict[str, float]) -> float:
    """How many of the reward model's standard errors its test metric lies above the best length-only
    baseline (``(metric - best) / metric_se``); NaN without a standard error."""
    key = baselines["metric"]
    se = metrics.get(f"{key}_se", float("nan"))
    return (metrics[key] - baselines["best"]) / se if se and se == se else float("nan")
