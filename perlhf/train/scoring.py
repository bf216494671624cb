"""Scoring texts with a reward model: (prompt messages, response) items in, one score each out,
batched by length. Used by RL (the reward), ``perlhf rm score`` and ``perlhf eval`` (the judges)."""

from __future__ import annotations

from typing import Any

import torch

from perlhf.models.heads import RewardModel
from perlhf.train.batching import collate, eval_batches


@torch.inference_mode()
def score_texts(model: RewardModel, tokenizer: Any, items: list[tuple[Any, str]], max_prompt_tokens: int,
                max_response_tokens: int, batch_size: int = 16, progress: bool = False) -> list[float]:
    """Scores of (prompt messages, response) items, in input order (batched by length); ``progress``
    shows a bar of scored texts with an ETA on stderr."""
    return _score(model, tokenizer, items, max_prompt_tokens, max_response_tokens, batch_size, progress)[0]


@torch.inference_mode()
def score_texts_by_member(ensemble: Any, tokenizer: Any, items: list[tuple[Any, str]], max_prompt_tokens: int,
                          max_response_tokens: int, batch_size: int = 16, progress: bool = False) -> list[list[float]]:
    """Every member's scores of the items (``K`` lists in input order) with an
    :class:`~perlhf.models.ensemble.EnsembleRewardModel`."""
    return _score(ensemble.member_scores, tokenizer, items, max_prompt_tokens, max_response_tokens, batch_size,
                  progress, model=ensemble)


def _score(fn: Any, tokenizer: Any, items: list[tuple[Any, str]], max_prompt_tokens: int, max_response_tokens: int,
           batch_size: int, progress: bool, model: Any = None) -> list[list[float]]:
    """``fn(input_ids, attention_mask)`` -> scores ``(B,)`` or ``(K, B)``, over the items: ``K`` rows."""
    from tqdm.auto import tqdm

    from perlhf.data.render import encode_prompt, encode_response

    model = model if model is not None else fn
    seqs = [list(encode_prompt(tokenizer, list(msgs), max_prompt_tokens)[0])
            + list(encode_response(tokenizer, text, max_response_tokens)) for msgs, text in items]
    device = next(model.parameters()).device
    rows: list[list[float]] = []
    model.eval()
    bar = tqdm(total=len(seqs), unit="text", desc="scoring", disable=not progress, dynamic_ncols=True)
    for idx in eval_batches([len(s) for s in seqs], batch_size):
        batch = collate([seqs[i] for i in idx], int(tokenizer.pad_token_id)).to(device)
        scores = fn(batch.input_ids, batch.attention_mask).float().cpu()
        scores = scores.unsqueeze(0) if scores.dim() == 1 else scores
        while len(rows) < scores.shape[0]:
            rows.append([0.0] * len(seqs))
        for k, row in enumerate(scores.tolist()):
            for i, value in zip(idx, row, strict=True):
                rows[k][i] = value
        bar.update(len(idx))
    bar.close()
    return rows or [[]]
