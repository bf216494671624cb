"""Reward-model metrics against hand-computed values."""

import math

import pytest

from perlhf.data.records import PreferencePair, RatedResponse
from perlhf.train.metrics import (
    accuracy,
    fit_logistic,
    length_baselines,
    majority_baseline,
    margin_over_baseline,
    pairwise_accuracy,
    reward_metrics,
    roc_auc,
)


def test_pairwise_accuracy_counts_ties_half():
    assert pairwise_accuracy([1.0, 2.0, 0.0, 5.0], [0.0, 3.0, 0.0, 1.0]) == pytest.approx(2.5 / 4)
    assert math.isnan(pairwise_accuracy([], []))


def test_accuracy_thresholds_logits_at_zero():
    assert accuracy([0.1, -0.2, 3.0, -4.0], [1, 0, 0, 0]) == pytest.approx(0.75)
    assert accuracy([0.0], [0]) == 1.0  # sigmoid(0) = 0.5 is not > 0.5


def test_roc_auc_hand_computed_with_ties():
    # positives 0.9, 0.4; negatives 0.4, 0.1 -> pairs: (0.9>0.4) 1, (0.9>0.1) 1, (0.4=0.4) .5, (0.4>0.1) 1
    assert roc_auc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)
    assert roc_auc([1.0, 2.0, 3.0], [1, 0, 0]) == 0.0
    assert math.isnan(roc_auc([1.0, 2.0], [1, 1]))


def test_majority_baseline():
    assert majority_baseline([1, 1, 1, 0]) == 0.75
    assert majority_baseline([0, 0, 1]) == pytest.approx(2 / 3)


def test_reward_metrics_layouts():
    m = reward_metrics("pair", [2.0, 0.0, 1.0, 1.0])  # chosen [2, 0], rejected [1, 1]
    assert m["accuracy"] == 0.5 and m["mean_margin"] == 0.0 and m["n"] == 2
    r = reward_metrics("rating", [1.0, -1.0, 2.0], [1, 0, 1])
    assert r["accuracy"] == 1.0 and r["auc"] == 1.0 and r["majority_baseline"] == pytest.approx(2 / 3)


def test_standard_errors_against_hand_values():
    from perlhf.train.metrics import auc_standard_error, proportion_standard_error

    assert proportion_standard_error(0.5, 100) == pytest.approx(0.05)
    assert math.isnan(proportion_standard_error(0.5, 0))
    # Hanley & McNeil: AUC 0.8, 50 positives, 50 negatives -> Q1 = 0.8/1.2, Q2 = 1.28/1.8
    q1, q2 = 0.8 / 1.2, 2 * 0.64 / 1.8
    var = (0.8 * 0.2 + 49 * (q1 - 0.64) + 49 * (q2 - 0.64)) / 2500
    assert auc_standard_error(0.8, 50, 50) == pytest.approx(math.sqrt(var))
    assert auc_standard_error(0.8, 50, 50) == pytest.approx(0.0438, abs=1e-3)
    assert auc_standard_error(0.5, 10, 10) > auc_standard_error(0.5, 100, 100)
    m = reward_metrics("rating", [0.1, 0.9, 0.2, 0.8], [0, 1, 0, 1])
    assert m["auc"] == 1.0 and m["auc_se"] == pytest.approx(0.0)
    p = reward_metrics("pair", [1.0, 2.0, 0.0, 3.0])
    assert p["accuracy"] == 0.5 and p["accuracy_se"] == pytest.approx(math.sqrt(0.25 / 2))


def test_fit_logistic_recovers_known_weights():
    # exact expected labels P(y=1|x) = sigmoid(0.5 + 2x) on a grid, as fractional counts of 20
    xs, ys = [], []
    for i in range(-20, 21):
        x = i / 10
        ones = round(20 / (1 + math.exp(-(0.5 + 2 * x))))
        xs += [[x]] * 20
        ys += [1] * ones + [0] * (20 - ones)
    bias, weight = fit_logistic(xs, ys, l2=0.0)
    assert bias == pytest.approx(0.5, abs=0.08) and weight == pytest.approx(2.0, abs=0.1)
    # without an intercept the bias is exactly zero; separable data stay finite under the L2 penalty
    assert fit_logistic([[-1.0], [1.0]], [0, 1], intercept=False)[0] == 0.0
    assert all(math.isfinite(w) for w in fit_logistic([[-1.0], [1.0]], [0, 1]))
    with pytest.raises(ValueError):
        fit_logistic([], [])


def _pair(chosen: str, rejected: str) -> PreferencePair:
    return PreferencePair(id="p", group="g", prompt=(), chosen=chosen, rejected=rejected)


def test_length_baselines_on_pairs_by_hand():
    # the shorter answer is chosen in 2 of 4 test pairs, 1 is a tie (counted half)
    test = [_pair("a" * 6, "b" * 40), _pair("c" * 12, "d" * 36), _pair("e" * 50, "f" * 6), _pair("gg", "hh")]
    lengths = [(5, 50), (10, 30), (3, 8), (20, 60), (7, 9), (15, 45), (30, 10), (8, 3)]  # 6 of 8 shorter
    train = [_pair("x" * a, "y" * b) for a, b in lengths]
    out = length_baselines("pair", train, test)
    assert out["shorter_wins"] == pytest.approx(2.5 / 4) and out["longer_wins"] == pytest.approx(1.5 / 4)
    assert out["logistic"] == pytest.approx(2.5 / 4)  # learnt "shorter is better" from train
    assert out["best"] == pytest.approx(2.5 / 4) and out["metric"] == "accuracy" and out["n"] == 4
    # listing the answers the other way round leaves the logistic rule's decisions mirrored
    swapped = length_baselines("pair", train, [_pair(r.rejected, r.chosen) for r in test])
    assert swapped["logistic"] == pytest.approx(1 - out["logistic"])


def _rated(response: str, label: int) -> RatedResponse:
    return RatedResponse(id="r", group="g", prompt=(), response=response, label=label)


def test_length_baselines_on_ratings_by_hand():
    # thumbs-up answers are longer: "longer is better" ranks 3 of the 4 (up, down) pairs right
    test = [_rated("a" * 10, 1), _rated("a" * 30, 1), _rated("a" * 20, 0), _rated("a" * 5, 0)]
    train = [_rated("a" * n, int(n > 15)) for n in range(1, 40)]
    out = length_baselines("rating", train, test)
    assert out["longer_wins"] == pytest.approx(0.75) and out["shorter_wins"] == pytest.approx(0.25)
    assert out["logistic"] == pytest.approx(0.75)  # a monotone increasing score ranks as length does
    assert out["best"] == pytest.approx(0.75) and out["metric"] == "auc"
    with pytest.raises(ValueError, match="kind"):
        length_baselines("dialogue", train, test)


def test_margin_over_baseline_in_standard_errors():
    base = {"metric": "auc", "best": 0.6}
    assert margin_over_baseline({"auc": 0.75, "auc_se": 0.05}, base) == pytest.approx(3.0)
    assert margin_over_baseline({"auc": 0.55, "auc_se": 0.025}, base) == pytest.approx(-2.0)
    assert math.isnan(margin_over_baseline({"auc": 0.75}, base))
    assert math.isnan(margin_over_baseline({"auc": 0.75, "auc_se": float("nan")}, base))
