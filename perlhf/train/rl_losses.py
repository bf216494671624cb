"""The RL maths of PERL as small pure tensor functions (no models, no state).

Shapes: ``B`` sequences (episodes), ``T`` response positions. Every per-token
tensor is ``(B, T)`` and comes with a ``mask`` of the same shape, 1 on real
response tokens (the sampled tokens, including the end-of-sequence token when
one was sampled) and 0 on padding after the end.

The algorithm is "REINFORCE for language models" (PAPER.md, section RL):

* the reward ``r(x, y)`` arrives at the last token, discount 1;
* the KL to the anchor (the SFT model) is folded into the return as a
  per-token penalty, so the return of token ``t`` is the **reward-to-go**::

      Z_t = (1 - beta) * r  -  beta * sum_{t' >= t} KL_t'

  i.e. the KL summed from ``t`` to the end of the response, not over the whole
  sequence. KL terms before ``t`` do not depend on the action ``a_t``, so
  leaving them out removes variance without changing the expected gradient.
  ``Z_0`` (the return of the first token) is the whole-sequence objective
  ``(1 - beta) * r - beta * KL(y)`` whose batch mean is logged as the objective.
* policy loss ``-sum_t log pi(a_t | s_t) * stopgrad(Z_t - b_t)`` with ``b_t`` a
  learned value ``V(s_t)`` or a per-sequence baseline (RLOO / batch mean);
* value loss ``sum_t (Z_t - V(s_t))^2``.

Normalisation (documented choice): the policy loss sums over the tokens of a
sequence and averages over sequences. Summing over tokens makes
``sum_t log pi(a_t | s_t) = log pi(y | x)``, so the loss is exactly the
REINFORCE estimate of ``-grad J`` for the batch, with no length bias. The
value loss is ``0.5 *`` the mean over valid tokens of the squared error (its
scale only sets the value learning rate; a per-token mean keeps it independent
of the response length).
"""

from __future__ import annotations

from typing import Literal

import torch

KLEstimator = Literal["k1", "k3"]
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k3")


# -- masked reductions ---------------------------------------------------------------------------
def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` is 1 (over ``dim``, or everything)."""
    masked = values * mask
    return masked.sum() if dim is None else masked.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1; 0 where the mask is empty (never NaN)."""
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Population variance of ``values`` over the masked entries."""
    mean = masked_mean(values, mask)
    return masked_mean((values - mean) ** 2, mask)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit variance over the masked entries (0 elsewhere)."""
    mean = masked_mean(values, mask)
    return (values - mean) * torch.rsqrt(masked_var(values, mask) + eps) * mask


# -- KL to the anchor ------------------------------------------------------------------------------
def per_token_kl(logp: torch.Tensor, logp_anchor: torch.Tensor, estimator: KLEstimator = "k1") -> torch.Tensor:
    """Per-token estimate of ``KL(pi || pi_anchor)`` from the log-probs of the sampled tokens.

    With ``d = logp - logp_anchor`` (tokens sampled from ``pi``):

    * ``k1 = d``: unbiased, can be negative per token;
    * ``k3 = exp(-d) - 1 + d``: unbiased, always >= 0, lower variance near ``pi = pi_anchor``
      (Schulman, "Approximating KL divergence").

    Both are exactly 0 where ``logp == logp_anchor``.
    """
    d = logp - logp_anchor
    if estimator == "k1":
        return d
    if estimator == "k3":
        return torch.expm1(-d) + d
    raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}")


def reverse_cumsum(values: torch.Tensor) -> torch.Tensor:
    """``out[:, t] = sum_{t' >= t} values[:, t']`` along the last dimension."""
    return values.flip(-1).cumsum(-1).flip(-1)


def kl_folded_returns(
    reward: torch.Tensor,
    logp: torch.Tensor,
    logp_anchor: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    estimator: KLEstimator = "k1",
) -> torch.Tensor:
    """Per-token returns ``Z_t = (1 - beta) * r - beta * sum_{t' >= t} KL_t'`` (reward-to-go, discount 1).

    ``reward`` is ``(B,)``; ``logp``/``logp_anchor``/``mask`` are ``(B, T)``. The
    result is ``(B, T)`` and 0 on padding. Inputs are treated as constants: call it
    with detached log-probs (the returns are targets, never differentiated).
    """
    kl = per_token_kl(logp, logp_anchor, estimator) * mask
    kl_to_go = reverse_cumsum(kl)
    return ((1.0 - beta) * reward.unsqueeze(-1) - beta * kl_to_go) * mask


def sequence_kl(logp: torch.Tensor, logp_anchor: torch.Tensor, mask: torch.Tensor,
                estimator: KLEstimator = "k1") -> torch.Tensor:
    """``(B,)`` KL of each whole response: the per-token estimates summed over its tokens."""
    return masked_sum(per_token_kl(logp, logp_anchor, estimator), mask, dim=-1)


# -- losses ----------------------------------------------------------------------------------------
def policy_loss(
    logp: torch.Tensor,
    returns: torch.Tensor,
    baseline: torch.Tensor | None,
    mask: torch.Tensor,
    num_sequences: int | None = None,
) -> torch.Tensor:
    """REINFORCE loss ``-sum_t logp_t * stopgrad(Z_t - b_t)``, summed over tokens, averaged over sequences.

    ``baseline`` is ``(B, T)`` (a learned value per token), ``(B,)`` (one baseline per
    sequence, e.g. RLOO) or ``None`` (no baseline). Returns and baseline are detached
    here, so only ``logp`` carries gradient. ``num_sequences`` divides the sum
    (default ``B``); pass the size of the whole batch when accumulating micro-batches.
    """
    advantages = returns.detach()
    if baseline is not None:
        b = baseline.detach()
        advantages = advantages - (b.unsqueeze(-1) if b.dim() == 1 else b)
    total = -masked_sum(logp * advantages, mask)
    return total / (num_sequences if num_sequences is not None else logp.shape[0])


def value_loss(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               num_tokens: float | torch.Tensor | None = None) -> torch.Tensor:
    """``0.5 * mean_t (V_t - Z_t)^2`` over valid tokens (returns detached).

    ``num_tokens`` divides the masked sum (default: the valid tokens of this batch);
    pass the whole batch's token count when accumulating micro-batches.
    """
    sq = (values - returns.detach()) ** 2
    if num_tokens is None:
        return 0.5 * masked_mean(sq, mask)
    return 0.5 * masked_sum(sq, mask) / num_tokens


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var(Z - V) / Var(Z)`` over valid tokens: 1 is perfect, 0 no better than a constant,
    negative worse than a constant. NaN when the returns have no variance."""
    values = values.detach().float()
    returns = returns.detach().float()
    var_z = masked_var(returns, mask)
    if float(var_z) == 0.0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask) / var_z)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution given by ``logits`` (last dim), per position."""
    logits = logits.float()
    logz = torch.logsumexp(logits, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    return logz - (probs * logits).sum(dim=-1)


# -- per-sequence baselines ------------------------------------------------------------------------
def rloo_baseline(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out baseline: for each sample, the mean of the other samples of its prompt.

    ``rewards`` is ``(B,)`` with the ``group_size`` samples of each prompt contiguous
    (``B = n_prompts * group_size``). Needs ``group_size >= 2``.
    """
    if group_size < 2:
        raise ValueError("the RLOO baseline needs at least 2 samples per prompt (--samples-per-prompt >= 2)")
    if rewards.shape[0] % group_size:
        raise ValueError(f"batch of {rewards.shape[0]} is not a multiple of the group size {group_size}")
    grouped = rewards.view(-1, group_size)
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return others.reshape(-1)


def mean_baseline(rewards: torch.Tensor, mean: float | None = None) -> torch.Tensor:
    """The batch mean as every sample's baseline (``(B,)``); ``mean`` replaces this batch's own
    (data parallelism: the whole batch's, over every process)."""
    if mean is not None:
        return torch.full_like(rewards, float(mean))
    return rewards.mean().expand_as(rewards).clone()
