"""The sampler and the learner agree: same weights, same temperature, same log-probs."""

from __future__ import annotations

import pytest
import torch

from perlhf.models.tiny import make_tiny_causal_lm
from perlhf.train.generation import (
    gumbel_noise,
    left_pad,
    position_ids_from_mask,
    response_mask_from_ids,
    sample,
    sequence_logprobs,
)

VOCAB = 64
EOS = 2


class IdTokenizer:
    """The smallest tokenizer ``sample`` needs: ids decode to space-separated numbers."""

    eos_token_id = EOS
    pad_token_id = 0

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join(str(i) for i in ids)


def test_left_pad_and_positions():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert position_ids_from_mask(mask).tolist() == [[0, 1, 2], [0, 0, 0]]


def test_response_mask_includes_first_eos_only():
    ids = torch.tensor([[5, 2, 2, 0], [2, 0, 0, 0], [5, 6, 7, 8]])
    mask, ended = response_mask_from_ids(ids, [EOS])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert ended.tolist() == [True, True, False]


@pytest.mark.parametrize("seeded", [False, True])
@pytest.mark.parametrize("temperature", [0.7, 1.3])
def test_learner_logprobs_equal_sampler_logprobs(temperature, seeded):
    model = make_tiny_causal_lm(VOCAB, seed=0).eval()
    prompts = [[5, 9, 11, 13, 17], [21, 22], [30, 31, 32, 33]]
    torch.manual_seed(0)
    roll = sample(model, IdTokenizer(), prompts, max_new_tokens=12, temperature=temperature,
                  return_sampler_logprobs=True, seeds=[1, 2, 3] if seeded else None)
    assert roll.input_ids.shape[1] == roll.prompt_len + roll.response_mask.shape[1]
    with torch.no_grad():
        learner = sequence_logprobs(model, roll.input_ids, roll.attention_mask, roll.response_mask, temperature)
    assert roll.sampler_logprobs is not None
    torch.testing.assert_close(learner, roll.sampler_logprobs, atol=1e-4, rtol=1e-4)
    # a different temperature gives different log-probs: the test is not vacuous
    with torch.no_grad():
        other = sequence_logprobs(model, roll.input_ids, roll.attention_mask, roll.response_mask, temperature * 2)
    assert not torch.allclose(other, learner, atol=1e-3)


def test_gumbel_max_draws_from_the_softmax():
    """argmax(logits + Gumbel noise) is a draw from softmax(logits): frequencies over 20,000 draws
    within 4 standard errors of the probabilities."""
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5])
    probs = torch.softmax(logits, -1)
    gens = [torch.Generator().manual_seed(i) for i in range(20_000)]
    picks = (logits + gumbel_noise(gens, logits.numel())).argmax(-1)
    freq = torch.bincount(picks, minlength=logits.numel()).float() / len(gens)
    se = (probs * (1 - probs) / len(gens)).sqrt()
    assert ((freq - probs).abs() < 4 * se).all(), (freq, probs)


def test_seeded_rows_do_not_depend_on_the_rest_of_the_batch():
    """With one seed per row a response is the same alone, in another batch, or in another order:
    what lets 2 RL processes sample what 1 process samples. Different seeds give different samples."""
    model = make_tiny_causal_lm(VOCAB, seed=0).eval()
    a, b, c = [5, 9, 11, 13, 17], [21, 22], [30, 31, 32, 33]

    def responses(prompts, seeds):
        torch.manual_seed(len(prompts))  # the global RNG must not matter
        roll = sample(model, IdTokenizer(), prompts, max_new_tokens=10, temperature=1.0, seeds=seeds)
        return roll.response_texts

    together = responses([a, b, c], [7, 8, 9])
    assert responses([a], [7]) == together[:1]
    assert responses([c, b], [9, 8]) == [together[2], together[1]]
    assert responses([a, b, c], [17, 18, 19]) != together
    with pytest.raises(ValueError, match="one seed per prompt"):
        responses([a, b], [1])


def test_left_padding_does_not_change_logprobs():
    """A prompt's log-probs are the same alone and left-padded inside a batch."""
    model = make_tiny_causal_lm(VOCAB, seed=1).eval()
    torch.manual_seed(3)
    roll = sample(model, IdTokenizer(), [[5, 6], [7, 8, 9, 10, 11, 12]], max_new_tokens=6)
    with torch.no_grad():
        batched = sequence_logprobs(model, roll.input_ids, roll.attention_mask, roll.response_mask, 0.7)
        # first row without its padding
        keep = roll.attention_mask[0].bool()
        alone = sequence_logprobs(model, roll.input_ids[:1, keep], roll.attention_mask[:1, keep],
                                  roll.response_mask[:1], 0.7)
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)


def test_empty_generation_is_allowed():
    """A model that always emits EOS first gives empty texts, a 1-token mask, no crash."""
    model = make_tiny_causal_lm(VOCAB, seed=0)
    with torch.no_grad():
        bias = torch.full((VOCAB,), -1e4)
        bias[EOS] = 1e4
        head = model.get_output_embeddings()
        head.weight.zero_()
        if head.bias is None:
            head.bias = torch.nn.Parameter(bias)
        else:
            head.bias.copy_(bias)
    roll = sample(model, IdTokenizer(), [[5, 6], [7]], max_new_tokens=5)
    assert roll.response_texts == ["", ""]
    assert roll.num_empty == 2
    assert roll.response_mask.sum(-1).tolist() == [1.0, 1.0]
    assert roll.ended.all()
