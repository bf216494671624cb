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
    from tqdm.auto import tqdm

    from perlhf.data.render import encode_prompt, encode_response

    seqs = [list(encode_prompt(tokenizer, list(msgs), max_prompt_tokens)[0])
            + list(encode_response(tokenizer, text, max_response_tokens)) for msgs, text in items]
    device = next(model.parameters()).device
    out = [0.0] * len(seqs)
    model.eval()
    bar = tqdm(total=len(seqs), unit="text", desc="scoring", disable=not progress, dynamic_ncols=True)
    for idx in eval_batches([len(s) for s in seqs], batch_size):
        batch = collate([seqs[i] for i in idx], int(tokenizer.pad_token_id)).to(device)
        for i, s in zip(idx, model(batch.input_ids, batch.attention_mask).float().cpu().tolist(), strict=True):
            out[i] = s
        bar.update(len(idx))
    bar.close()
    return out
