"""RL maths against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from perlhf.train.rl_losses import (
    entropy_from_logits,
    explained_variance,
    kl_folded_returns,
    masked_mean,
    masked_var,
    masked_whiten,
    mean_baseline,
    per_token_kl,
    policy_loss,
    reverse_cumsum,
    rloo_baseline,
    sequence_kl,
    value_loss,
)


def test_masked_mean_and_var():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0]])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    assert masked_mean(x, m).item() == pytest.approx(15 / 5)
    assert masked_mean(x, m, dim=-1).tolist() == pytest.approx([1.5, 4.0])
    assert masked_var(x, m).item() == pytest.approx(sum((v - 3) ** 2 for v in [1, 2, 3, 4, 5]) / 5)
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0  # empty mask: 0, not NaN
    w = masked_whiten(x, m)
    assert masked_mean(w, m).item() == pytest.approx(0.0, abs=1e-6)
    assert w[0, 2].item() == 0.0


def test_kl_estimators_hand_values():
    logp = torch.tensor([[-1.0, -2.0]])
    anchor = torch.tensor([[-1.5, -2.0]])
    k1 = per_token_kl(logp, anchor, "k1")
    k3 = per_token_kl(logp, anchor, "k3")
    assert k1.flatten().tolist() == pytest.approx([0.5, 0.0])
    assert k3.flatten().tolist() == pytest.approx([math.exp(-0.5) - 1 + 0.5, 0.0])
    # k3 is never negative, k1 can be
    k1n = per_token_kl(anchor, logp, "k1")
    assert k1n[0, 0].item() == pytest.approx(-0.5)
    assert per_token_kl(anchor, logp, "k3")[0, 0].item() == pytest.approx(math.exp(0.5) - 1 - 0.5)
    with pytest.raises(ValueError, match="k2"):
        per_token_kl(logp, anchor, "k2")  # type: ignore[arg-type]


def test_equal_logprobs_give_exactly_zero_kl():
    logp = torch.randn(3, 5)
    for est in ("k1", "k3"):
        assert torch.equal(per_token_kl(logp, logp.clone(), est), torch.zeros(3, 5))


def test_reverse_cumsum():
    assert reverse_cumsum(torch.tensor([[1.0, 2.0, 3.0]])).tolist() == [[6.0, 5.0, 3.0]]


def test_kl_folded_returns_reward_to_go():
    # two tokens + one padding position; k1 KL = [0.5, 0.25, (pad) 9]
    reward = torch.tensor([2.0])
    logp = torch.tensor([[-1.0, -1.0, 0.0]])
    anchor = torch.tensor([[-1.5, -1.25, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    beta = 0.1
    z = kl_folded_returns(reward, logp, anchor, mask, beta, "k1")
    # Z_0 = 0.9*2 - 0.1*(0.5+0.25); Z_1 = 0.9*2 - 0.1*0.25; padding 0
    assert z.flatten().tolist() == pytest.approx([1.8 - 0.075, 1.8 - 0.025, 0.0])
    assert sequence_kl(logp, anchor, mask).tolist() == pytest.approx([0.75])


def test_kl_folded_returns_beta_zero_is_reward_everywhere():
    z = kl_folded_returns(torch.tensor([1.0, -1.0]), torch.randn(2, 3), torch.randn(2, 3),
                          torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), 0.0)
    assert z.tolist() == [[1.0, 1.0, 1.0], [-1.0, 0.0, 0.0]]


def test_policy_loss_value_and_gradient():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]], requires_grad=True)
    returns = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    values = torch.tensor([[0.5, 0.25], [0.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss = policy_loss(logp, returns, values, mask)
    # advantages: [[0.5, 0.75], [-0.5, masked]]
    expected = -((-1.0 * 0.5) + (-2.0 * 0.75) + (-0.5 * -0.5)) / 2
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert logp.grad.flatten().tolist() == pytest.approx([-0.25, -0.375, 0.25, 0.0])
    assert values.grad is None  # stopgrad on the baseline


def test_policy_loss_sequence_baseline_and_num_sequences():
    logp = torch.tensor([[-1.0, -1.0], [-2.0, 0.0]])
    returns = torch.tensor([[3.0, 3.0], [1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    b = torch.tensor([1.0, 2.0])
    loss = policy_loss(logp, returns, b, mask, num_sequences=4)
    assert loss.item() == pytest.approx(-((-1 * 2) + (-1 * 2) + (-2 * -1)) / 4)
    no_b = policy_loss(logp, returns, None, mask)
    assert no_b.item() == pytest.approx(-((-3) + (-3) + (-2)) / 2)


def test_value_loss_and_explained_variance():
    v = torch.tensor([[1.0, 2.0], [0.0, 9.0]], requires_grad=True)
    z = torch.tensor([[2.0, 2.0], [1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss = value_loss(v, z, mask)
    assert loss.item() == pytest.approx(0.5 * (1 + 0 + 1) / 3)
    loss.backward()
    assert v.grad.flatten().tolist() == pytest.approx([-1 / 3, 0.0, -1 / 3, 0.0])
    assert value_loss(v, z, mask, num_tokens=6).item() == pytest.approx(0.5 * 2 / 6)
    assert explained_variance(z, z, mask) == pytest.approx(1.0)
    const = torch.full_like(z, masked_mean(z, mask).item())
    assert explained_variance(const, z, mask) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(explained_variance(z, torch.ones_like(z), mask))


def test_entropy_from_logits():
    uniform = torch.zeros(2, 3, 4)
    assert entropy_from_logits(uniform).allclose(torch.full((2, 3), math.log(4)))
    peaked = torch.tensor([0.0, -1e4])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)
    p = torch.tensor([0.5, 0.25, 0.25])
    assert entropy_from_logits(p.log()).item() == pytest.approx(-(p * p.log()).sum().item())


def test_rloo_and_mean_baselines():
    r = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    assert rloo_baseline(r, 3).tolist() == pytest.approx([2.5, 2.0, 1.5, 25.0, 20.0, 15.0])
    assert mean_baseline(r).tolist() == pytest.approx([11.0] * 6)
    assert mean_baseline(r, 4.0).tolist() == [4.0] * 6  # the whole batch's mean, given (data parallelism)
    with pytest.raises(ValueError, match="samples-per-prompt"):
        rloo_baseline(r, 1)
    with pytest.raises(ValueError, match="multiple"):
        rloo_baseline(r, 4)
