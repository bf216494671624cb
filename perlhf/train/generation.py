"""Sampling responses and computing their log-probs — the sampler and the learner agree.

The sampler (:func:`sample`) runs ``model.generate`` batched, with left padding
and the KV cache, drawing from ``softmax(logits / temperature)`` and nothing
else: ``top_k=0``, ``top_p=1`` and every other logits processor off (the model's
own ``generation_config`` defaults, such as a repetition penalty, are ignored).
So the distribution the learner differentiates (:func:`sequence_logprobs`,
which applies the same temperature) is exactly the one the tokens were drawn
from; a test checks both give the same log-probs for the same weights.

Conventions:

* prompts are left-padded; positions come from the attention mask
  (``position_ids = cumsum(mask) - 1``), in the sampler and the learner alike;
* a response is the sampled tokens up to and including the first
  end-of-sequence token. Sampling the end token is an action like any other,
  so it is in ``response_mask`` and gets a log-prob; tokens after it are
  padding (mask 0). A response that hits ``max_new_tokens`` has no end token;
* an "empty" generation (end token first, or only whitespace) is allowed: its
  text is ``""``, it is scored and counted, never an error;
* with ``seeds`` (one per row) every row draws its noise from its own generator
  (Gumbel-max: the argmax of ``logits / T`` plus Gumbel noise is a draw from
  ``softmax(logits / T)``), so a response depends on its seed and not on the
  other rows of the batch: the RL loop seeds each episode from the step and its
  global index, and 2 processes sample what 1 process samples.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from perlhf.train.rl_losses import entropy_from_logits


@dataclass
class Rollout:
    """A batch of sampled responses, ready for scoring and learning.

    ``input_ids``/``attention_mask`` are ``(B, P + N)``: ``P`` left-padded prompt
    positions then ``N`` response positions; ``response_mask`` is ``(B, N)``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    prompt_len: int
    response_texts: list[str]
    ended: torch.Tensor
    sampler_logprobs: torch.Tensor | None = None

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_len:]

    @property
    def response_lengths(self) -> torch.Tensor:
        return self.response_mask.sum(dim=-1)

    @property
    def num_empty(self) -> int:
        return sum(1 for t in self.response_texts if not t.strip())

    def select(self, idx: slice | list[int]) -> Rollout:
        """A sub-batch (micro-batch) of this rollout."""
        texts = self.response_texts[idx] if isinstance(idx, slice) else [self.response_texts[i] for i in idx]
        return Rollout(
            input_ids=self.input_ids[idx],
            attention_mask=self.attention_mask[idx],
            response_mask=self.response_mask[idx],
            prompt_len=self.prompt_len,
            response_texts=texts,
            ended=self.ended[idx],
            sampler_logprobs=None if self.sampler_logprobs is None else self.sampler_logprobs[idx],
        )


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int,
             device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token id lists into ``(input_ids, attention_mask)``."""
    if not sequences:
        raise ValueError("no sequences to pad")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        if len(s):
            ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counting only real tokens (left padding gets position 0, as in ``generate``)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _hf_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


@contextlib.contextmanager
def _plain_generation_defaults(model: torch.nn.Module) -> Iterator[None]:
    """Hide the model's own generation defaults (repetition penalty, top-k, ...) during a call."""
    from transformers import GenerationConfig

    hf = _hf_model(model)
    saved = getattr(hf, "generation_config", None)
    hf.generation_config = GenerationConfig()
    try:
        yield
    finally:
        hf.generation_config = saved


def response_mask_from_ids(response_ids: torch.Tensor, eos_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, ended)``: 1 up to and including the first end token of each row; whether one was sampled."""
    is_eos = torch.zeros_like(response_ids, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= response_ids == e
    # number of end tokens strictly before each position
    before = is_eos.long().cumsum(-1) - is_eos.long()
    mask = (before == 0).to(torch.float32)
    return mask, is_eos.any(dim=-1)


def gumbel_noise(generators: Sequence[torch.Generator], vocab: int) -> torch.Tensor:
    """``(len(generators), vocab)`` standard Gumbel noise, row ``i`` from ``generators[i]`` (float32, on the
    generators' device: no host-to-device copy per token when they live on the GPU)."""
    u = torch.stack([torch.rand(vocab, generator=g, device=g.device) for g in generators])
    return -torch.log(-torch.log(u.clamp_(min=torch.finfo(torch.float32).tiny)))


class _SeededSampler(LogitsProcessor):
    """A logits processor that turns greedy decoding into sampling at ``temperature`` with per-row
    noise: ``argmax(scores / T + Gumbel)``. Keeps the tempered scores (the sampler's distribution)."""

    def __init__(self, seeds: Sequence[int], temperature: float, keep_scores: bool,
                 device: torch.device | str = "cpu"):
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.tempered: list[torch.Tensor] | None = [] if keep_scores else None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        tempered = scores.float() / self.temperature
        if self.tempered is not None:
            self.tempered.append(tempered)
        return tempered + gumbel_noise(self.generators, scores.shape[-1]).to(scores.device)  # a no-op copy


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 0.7,
    eos_token_ids: Sequence[int] | None = None,
    return_sampler_logprobs: bool = False,
    seeds: Sequence[int] | None = None,
) -> Rollout:
    """Sample one response per prompt (repeat a prompt in ``prompt_ids`` for several samples).

    Without ``seeds`` uses the global torch RNG: seed it (``torch.manual_seed``) for reproducible
    samples. With ``seeds`` (one per prompt) each row's noise comes from its own seed, whatever
    else is in the batch; the generators live on the model's device, so a seed's draws on a GPU
    differ from its draws on the CPU (the same distribution, other samples).
    With ``return_sampler_logprobs`` the log-probs the sampler drew each token with
    are kept (from ``generate(output_scores=True)``), for checking the learner.
    """
    from transformers import GenerationConfig

    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (sampling); got {temperature}")
    eos = list(eos_token_ids) if eos_token_ids else [tokenizer.eos_token_id]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    device = next(model.parameters()).device
    input_ids, attention_mask = left_pad(prompt_ids, pad_id, device)
    prompt_len = input_ids.shape[1]
    seeded = None
    if seeds is not None:
        if len(seeds) != len(prompt_ids):
            raise ValueError(f"{len(seeds)} seeds for {len(prompt_ids)} prompts: give one seed per prompt")
        seeded = _SeededSampler(seeds, float(temperature), return_sampler_logprobs, device=device)
        how = dict(do_sample=False)  # greedy over the processor's noisy scores: a draw per row
        extra = {"logits_processor": LogitsProcessorList([seeded])}
    else:
        how = dict(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0)
        extra = {}
    gen_cfg = GenerationConfig(
        **how,
        max_new_tokens=int(max_new_tokens),
        eos_token_id=eos,
        pad_token_id=pad_id,
        use_cache=True,
        return_dict_in_generate=True,
        output_scores=return_sampler_logprobs and seeded is None,
    )
    was_training = model.training
    model.eval()
    try:
        with _plain_generation_defaults(model):
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=gen_cfg,
                                 **extra)
    finally:
        model.train(was_training)
    sequences = out.sequences
    response_ids = sequences[:, prompt_len:]
    response_mask, ended = response_mask_from_ids(response_ids, eos)
    full_mask = torch.cat([attention_mask, response_mask.to(attention_mask.dtype)], dim=1)
    texts = []
    for row, m in zip(response_ids.tolist(), response_mask.tolist(), strict=True):
        toks = [t for t, keep in zip(row, m, strict=True) if keep and t not in eos]
        texts.append(tokenizer.decode(toks, skip_special_tokens=True))
    sampler_lp = None
    if return_sampler_logprobs and response_ids.shape[1] > 0:
        # (B, N, V), already divided by the temperature
        scores = torch.stack(seeded.tempered if seeded is not None else out.scores, dim=1).float()
        sampler_lp = torch.log_softmax(scores, dim=-1).gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
        sampler_lp = sampler_lp * response_mask
    return Rollout(
        input_ids=sequences,
        attention_mask=full_mask,
        response_mask=response_mask,
        prompt_len=prompt_len,
        response_texts=texts,
        ended=ended,
        sampler_logprobs=sampler_lp,
    )


def response_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    num_response: int) -> torch.Tensor:
    """Logits ``(B, N, V)`` predicting the last ``num_response`` tokens of ``input_ids``.

    Only the LM-head rows that are needed are computed (``logits_to_keep``).
    """
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        logits_to_keep=num_response + 1,
        use_cache=False,
    )
    logits = out.logits
    return logits[:, -(num_response + 1):-1, :]


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    temperature: float,
    *,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probs ``(B, N)`` of the last ``N = response_mask.shape[1]`` tokens under ``softmax(logits / T)``.

    Differentiable (call under ``torch.no_grad`` for the anchor). Padding positions
    are 0. With ``return_entropy`` also returns the per-token entropy ``(B, N)`` of
    the same tempered distribution (detached).
    """
    n = response_mask.shape[1]
    logits = response_logits(model, input_ids, attention_mask, n).float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = input_ids[:, -n:]
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * response_mask
    if not return_entropy:
        return logp
    with torch.no_grad():
        entropy = entropy_from_logits(logits.detach()) * response_mask
    return logp, entropy
