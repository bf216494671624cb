"""Reward-model losses as small pure tensor functions.

Both take raw scores (logits, any real number) and are computed in a
numerically stable form: ``logsigmoid`` for Bradley-Terry, BCE-with-logits
for thumbs-up/down ratings, so large margins never produce ``log(0)``.
The RL losses live in their own module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected)`` over the pairs (PERL eq. for pairwise RMs)."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"chosen scores {tuple(r_chosen.shape)} and rejected {tuple(r_rejected.shape)} differ")
    return -F.logsigmoid(r_chosen.float() - r_rejected.float()).mean()


def pointwise_bce_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of ``sigmoid(score)`` against labels in {0, 1}:
    ``-[p log s + (1 - p) log(1 - s)]``, computed from the logits."""
    if scores.shape != labels.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ")
    return F.binary_cross_entropy_with_logits(scores.float(), labels.float())


def reward_loss(kind: str, scores: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """The loss that follows the data kind.

    ``pair``: ``scores`` holds the chosen scores then the rejected scores (one
    forward over the concatenated batch), so the first half is chosen.
    ``rating``: ``scores`` and ``labels`` align one to one.
    """
    if kind == "pair":
        n = scores.shape[0] // 2
        return bradley_terry_loss(scores[:n], scores[n:])
    if kind == "rating":
        if labels is None:
            raise ValueError("rating loss needs labels")
        return pointwise_bce_loss(scores, labels)
    raise ValueError(f"no reward loss for data kind {kind!r} (expected 'pair' or 'rating')")
