"""Reward-model metrics against hand-computed values."""

import math

import pytest

from perlhf.train.metrics import accuracy, majority_baseline, pairwise_accuracy, reward_metrics, roc_auc


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
