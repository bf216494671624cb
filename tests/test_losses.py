"""Reward-model losses against hand-computed values."""

import math

import pytest
import torch

from perlhf.train.losses import bradley_terry_loss, pointwise_bce_loss, reward_loss


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_bradley_terry_hand_computed():
    rc = torch.tensor([2.0, 0.0, -1.0])
    rr = torch.tensor([1.0, 0.0, 1.0])
    # margins 1, 0, -2 -> -log sigmoid(margin)
    expected = (-math.log(_sig(1.0)) - math.log(0.5) - math.log(_sig(-2.0))) / 3
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(expected, rel=1e-6)
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(math.log(2))


def test_bradley_terry_is_stable_for_large_margins():
    loss = bradley_terry_loss(torch.tensor([-500.0, 500.0]), torch.tensor([500.0, -500.0]))
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(1000.0 / 2, rel=1e-6)  # (1000 + 0) / 2


def test_bradley_terry_gradient_pushes_chosen_up():
    rc = torch.tensor([0.0], requires_grad=True)
    rr = torch.tensor([0.0], requires_grad=True)
    bradley_terry_loss(rc, rr).backward()
    assert rc.grad.item() == pytest.approx(-0.5) and rr.grad.item() == pytest.approx(0.5)


def test_pointwise_bce_hand_computed():
    s = torch.tensor([0.0, 2.0, -1.0])
    y = torch.tensor([1, 0, 0])
    expected = (-math.log(0.5) - math.log(1 - _sig(2.0)) - math.log(1 - _sig(-1.0))) / 3
    assert pointwise_bce_loss(s, y).item() == pytest.approx(expected, rel=1e-6)


def test_pointwise_bce_is_stable_for_large_scores():
    loss = pointwise_bce_loss(torch.tensor([100.0, -100.0]), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx(100.0, rel=1e-5)


def test_reward_loss_follows_kind_and_layout():
    scores = torch.tensor([3.0, 1.0, 1.0, 2.0])  # chosen [3, 1], rejected [1, 2]
    assert reward_loss("pair", scores).item() == pytest.approx(
        bradley_terry_loss(torch.tensor([3.0, 1.0]), torch.tensor([1.0, 2.0])).item())
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert reward_loss("rating", scores, labels).item() == pytest.approx(pointwise_bce_loss(scores, labels).item())
    with pytest.raises(ValueError):
        reward_loss("dialogue", scores)
    with pytest.raises(ValueError):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))
