"""The optimizer every stage uses: AdamW with a linear warm-up, then a constant rate."""

from __future__ import annotations

from typing import Any

import torch


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The learning-rate multiplier at optimizer step ``step`` (0-based): ``(step + 1) / warmup_steps``
    during the warm-up, 1 after it (and always 1 without warm-up)."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def adamw_with_warmup(params: Any, *, lr: float, weight_decay: float, warmup_steps: int):
    """``(AdamW, LambdaLR)``: ``params`` is a list of tensors or of param-group dicts (each group may set
    its own ``lr``; the warm-up scales every group's rate). Call ``scheduler.step()`` after each
    ``optimizer.step()``; both go into a checkpoint (:func:`perlhf.runs.save_optimizer`)."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    # a plain function: LambdaLR's state then holds only the step count (it would save an object's fields)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_factor(step, warmup_steps))
