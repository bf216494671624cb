"""Rendering records for a tokenizer: chat template, left truncation, end-of-turn tokens, BOS once."""

from __future__ import annotations

import pytest

from perlhf.data import load_task
from perlhf.data.records import PreferencePair, RatedResponse
from perlhf.data.render import (
    encode_pair,
    encode_prompt,
    encode_rating,
    encode_response,
    end_of_turn_ids,
    format_conversation,
    format_prompt,
    tokenize_text,
)
from perlhf.errors import UserError

WORDS = ("hello world how are you fine thanks bye a b c d e f g h one two three four five six "
         "user: assistant: system: User: Assistant: System: be brief").split()


def _tiny_tokenizer(chat_template: str | None = None):
    """A word-level tokenizer that adds BOS by itself, optionally with a strict chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "<s>", "</s>", *dict.fromkeys(WORDS)])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tk.decoder = decoders.WordPiece(prefix="##")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="[UNK]")
    if chat_template:
        tok.chat_template = chat_template
    return tok


STRICT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if loop.index0 > 0 and messages[loop.index0 - 1]['role'] == m['role'] %}"
    "{{ raise_exception('Conversation roles must alternate') }}{% endif %}"
    "{{ m['role'] + ': ' + m['content'] + ' </s> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)


def _msgs(*pairs):
    return tuple({"role": r, "content": c} for r, c in pairs)


# ----------------------------------------------------------------------------- tiny tokenizers


def test_fallback_format_without_chat_template():
    tok = _tiny_tokenizer()
    msgs = _msgs(("system", "be brief"), ("user", "hello"), ("assistant", "fine"), ("user", "bye"))
    assert format_prompt(tok, msgs) == "System: be brief\nUser: hello\nAssistant: fine\nUser: bye\nAssistant:"
    assert format_prompt(tok, ()) == "Assistant:"
    assert end_of_turn_ids(tok) == [tok.eos_token_id]
    assert tok.decode(encode_response(tok, "thanks", 10)) == "thanks </s>"
    assert format_conversation(tok, msgs[1:3]) == "User: hello\nAssistant: fine</s>\n"


def test_bos_is_added_once():
    tok = _tiny_tokenizer()
    ids, truncated = encode_prompt(tok, _msgs(("user", "hello")), 50)
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1 and not truncated
    # a template that writes BOS itself: still one BOS
    tok2 = _tiny_tokenizer(STRICT_TEMPLATE)
    ids2, _ = encode_prompt(tok2, _msgs(("user", "hello")), 50)
    assert ids2[0] == tok2.bos_token_id and ids2.count(tok2.bos_token_id) == 1
    assert tok2.decode(ids2) == "<s> user: hello </s> assistant:"


def test_strict_template_gets_consecutive_roles_merged():
    tok = _tiny_tokenizer(STRICT_TEMPLATE)
    text = format_prompt(tok, _msgs(("user", "hello"), ("assistant", "a"), ("assistant", "b"), ("user", "bye")))
    assert text == "<s>user: hello </s> assistant: a\n\nb </s> user: bye </s> assistant: "


def test_left_truncation_drops_oldest_turns_and_keeps_system():
    tok = _tiny_tokenizer()
    msgs = _msgs(("system", "be brief"), ("user", "one"), ("assistant", "two"), ("user", "three"),
                 ("assistant", "four"), ("user", "five six"))
    full, truncated = encode_prompt(tok, msgs, 1000)
    assert not truncated
    ids, truncated = encode_prompt(tok, msgs, len(full) - 1)
    assert truncated and len(ids) <= len(full) - 1
    text = tok.decode(ids)
    assert text.startswith("<s> System: be brief") and "one" not in text and text.endswith("five six Assistant:")
    # the most turns that fit: one more would not
    assert "two" in text


def test_latest_turn_alone_too_long_is_cut_from_the_left():
    tok = _tiny_tokenizer()
    long = " ".join(["a", "b", "c", "d", "e", "f", "g", "h"] * 5) + " bye"
    ids, truncated = encode_prompt(tok, _msgs(("system", "be brief"), ("user", "hello"), ("user", long)), 12)
    assert truncated and len(ids) <= 12
    text = tok.decode(ids)
    assert text.startswith("<s> System: be brief") and text.endswith("bye Assistant:") and "hello" not in text


def test_too_small_budget_is_a_user_error():
    tok = _tiny_tokenizer()
    with pytest.raises(UserError, match="too small"):
        encode_prompt(tok, _msgs(("system", "be brief"), ("user", "hello")), 3)
    with pytest.raises(UserError, match="at least 1"):
        encode_prompt(tok, _msgs(("user", "hello")), 0)


# ----------------------------------------------------------------------------- SmolLM2 (the default model)


def test_smol_format_and_end_of_turn(smol_tokenizer):
    tok = smol_tokenizer
    text = format_prompt(tok, _msgs(("user", "hi")))
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert format_prompt(tok, ()) == "<|im_start|>assistant\n"
    eot = end_of_turn_ids(tok)
    assert tok.convert_ids_to_tokens(eot) == ["<|im_end|>"]
    ids = encode_response(tok, "Sure, one latte.", 100)
    assert ids[-1] == eot[-1] and tok.decode(ids) == "Sure, one latte.<|im_end|>"
    assert encode_response(tok, "Sure, one latte.", 3) == ids[:3]  # right-truncated, no end-of-turn
    ids, _ = encode_prompt(tok, _msgs(("user", "hi")), 100)
    assert ids == tokenize_text(tok, text)
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 3  # system, user, assistant headers


def test_smol_prompt_plus_response_equals_the_whole_conversation(smol_tokenizer):
    tok = smol_tokenizer
    msgs = _msgs(("user", "a latte please"))
    rec = RatedResponse(id="x", group="g", prompt=msgs, response="API_CALL get_menu_items {\"query\":\"latte\"}",
                        label=1)
    enc = encode_rating(tok, rec, 512, 64)
    whole = format_conversation(tok, (*msgs, {"role": "assistant", "content": rec.response}))
    assert tok.decode(enc.input_ids) + "\n" == whole
    pair = PreferencePair(id="p", group="g", prompt=msgs, chosen="Sure.", rejected="No.")
    chosen, rejected = encode_pair(tok, pair, 512, 64)
    assert chosen.prompt_ids == rejected.prompt_ids and chosen.response_ids != rejected.response_ids


def test_smol_left_truncation_of_86_turn_ticketing_contexts(smol_tokenizer, shared_data_dir):
    tok = smol_tokenizer
    task = load_task("taskmaster-ticketing", shared_data_dir)
    longest = max(task.all(), key=lambda r: len(r.prompt))
    assert len(longest.prompt) == 86
    full, truncated = encode_prompt(tok, longest.prompt, 100_000)
    assert not truncated and len(full) > 2000
    for budget in (1024, 256):
        ids, truncated = encode_prompt(tok, longest.prompt, budget)
        assert truncated and len(ids) <= budget
        text = tok.decode(ids)
        assert text.endswith(longest.prompt[-1]["content"] + "<|im_end|>\n<|im_start|>assistant\n")
        assert text.startswith("<|im_start|>system\n")  # the template's system header survives
        # a suffix of the conversation was kept, and it is the longest suffix that fits
        kept = [k for k in range(len(longest.prompt))
                if tokenize_text(tok, format_prompt(tok, longest.prompt[k:])) == ids]
        assert len(kept) == 1
        k = kept[0]
        assert len(tokenize_text(tok, format_prompt(tok, longest.prompt[k - 1:]))) > budget


def test_smol_latest_turn_cut(smol_tokenizer):
    tok = smol_tokenizer
    long = "BEGIN " + "word " * 400 + "the end"
    ids, truncated = encode_prompt(tok, _msgs(("system", "Be brief."), ("user", "earlier"), ("user", long)), 64)
    assert truncated and len(ids) <= 64 and len(ids) >= 60
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "earlier" not in text and "BEGIN" not in text
    assert text.endswith("the end<|im_end|>\n<|im_start|>assistant\n")
