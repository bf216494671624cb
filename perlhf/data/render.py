"""Turning records into exactly the text and token ids a model sees.

* :func:`format_prompt` renders chat messages with the tokenizer's chat template
  and ``add_generation_prompt=True``. A tokenizer without a chat template gets a
  plain fallback: one ``System: ...`` / ``User: ...`` / ``Assistant: ...`` line per
  message, then ``Assistant:``; responses then start with a space and end with the
  EOS token. An empty conversation (6 Taskmaster Coffee records) renders as the
  generation prompt alone (``<|im_start|>assistant\\n`` for SmolLM2).
  Templates that reject consecutive messages of one role (strict
  user/assistant alternation) get those messages joined by a blank line.
* :func:`encode_prompt` tokenizes that text within a token budget, truncating
  from the LEFT: it drops the oldest messages first (the system message, if
  any, is always kept), and only when even the latest message alone is too long
  does it cut tokens from the left of that message's text.
* :func:`encode_response` tokenizes a response followed by the end-of-turn
  token(s) of the chat template (``<|im_end|>`` for SmolLM2), truncated on the
  right (so a truncated response has no end-of-turn token: it did not end).

Special tokens: formatted text is tokenized with ``add_special_tokens=False``
(the template already wrote its special tokens as text), then a BOS token is
prepended only if the tokenizer normally adds one and the text does not
already start with it, so BOS never appears twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from perlhf.data.records import Message, PreferencePair, RatedResponse
from perlhf.errors import UserError

FALLBACK_ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}
_SENTINEL = "\u2063PERLHF-SENTINEL\u2063"
_cache: dict[tuple[int, str], Any] = {}


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _memo(tokenizer: Any, key: str, compute):
    k = (id(tokenizer), key)
    entry = _cache.get(k)
    if entry is None or entry[0] is not tokenizer:
        entry = _cache[k] = (tokenizer, compute())
    return entry[1]


def merge_consecutive(messages: Sequence[Message]) -> list[Message]:
    """Join consecutive messages of the same role with a blank line."""
    out: list[Message] = []
    for m in messages:
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def _apply_template(tokenizer: Any, messages: Sequence[Message], add_generation_prompt: bool) -> str:
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    try:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as first:  # jinja2 TemplateError or the template's own raise_exception
        merged = merge_consecutive(msgs)
        if len(merged) != len(msgs):
            try:
                return tokenizer.apply_chat_template(merged, tokenize=False,
                                                     add_generation_prompt=add_generation_prompt)
            except Exception:
                pass
        raise UserError(f"the tokenizer's chat template rejected a conversation of roles "
                        f"{[m['role'] for m in msgs][:12]}: {first}") from None


def _generation_prompt(tokenizer: Any) -> str:
    """The text the template appends for ``add_generation_prompt=True`` (e.g. ``<|im_start|>assistant\\n``)."""
    def compute() -> str:
        probe = [{"role": "user", "content": _SENTINEL}]
        with_gen = _apply_template(tokenizer, probe, True)
        without = _apply_template(tokenizer, probe, False)
        return with_gen[len(without):] if with_gen.startswith(without) else ""

    return _memo(tokenizer, "generation_prompt", compute)


def format_prompt(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The prompt text for ``messages``, ending where the assistant's reply starts."""
    if has_chat_template(tokenizer):
        if not messages:
            return _generation_prompt(tokenizer)
        return _apply_template(tokenizer, messages, True)
    lines = [f"{FALLBACK_ROLE_NAMES.get(m['role'], m['role'].capitalize())}: {m['content']}\n" for m in messages]
    return "".join(lines) + "Assistant:"


def format_conversation(tokenizer: Any, messages: Sequence[Message]) -> str:
    """A whole conversation (e.g. a dialogue for SFT) as the model sees it, no generation prompt."""
    if has_chat_template(tokenizer):
        return _apply_template(tokenizer, messages, False) if messages else ""
    eos = getattr(tokenizer, "eos_token", None) or ""
    parts = []
    for m in messages:
        name = FALLBACK_ROLE_NAMES.get(m["role"], m["role"].capitalize())
        parts.append(f"{name}: {m['content']}" + (eos if m["role"] == "assistant" else "") + "\n")
    return "".join(parts)


def auto_bos_id(tokenizer: Any) -> int | None:
    """The BOS id if the tokenizer adds one by itself (``add_special_tokens=True``), else None."""
    def compute() -> int | None:
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is None:
            return None
        with_sp = tokenizer("a", add_special_tokens=True)["input_ids"]
        without = tokenizer("a", add_special_tokens=False)["input_ids"]
        return bos if len(with_sp) > len(without) and with_sp[0] == bos else None

    return _memo(tokenizer, "bos", compute)


def tokenize_text(tokenizer: Any, text: str, *, add_bos: bool = True) -> list[int]:
    """Token ids of already-formatted text; BOS prepended once if the tokenizer uses one."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if add_bos:
        bos = auto_bos_id(tokenizer)
        if bos is not None and (not ids or ids[0] != bos):
            ids.insert(0, bos)
    return ids


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The token(s) that close an assistant turn: what the chat template writes after the
    assistant's text, up to and including the EOS token (``<|im_end|>`` for SmolLM2); EOS
    alone without a template."""
    def compute() -> list[int]:
        eos = getattr(tokenizer, "eos_token_id", None)
        if not has_chat_template(tokenizer):
            return [eos] if eos is not None else []
        text = _apply_template(tokenizer, [{"role": "user", "content": "hi"},
                                           {"role": "assistant", "content": _SENTINEL}], False)
        i = text.rfind(_SENTINEL)
        suffix = text[i + len(_SENTINEL):] if i >= 0 else ""
        ids = list(tokenizer(suffix, add_special_tokens=False)["input_ids"])
        if eos is not None and eos in ids:
            return ids[: ids.index(eos) + 1]
        ids = list(tokenizer(suffix.rstrip(), add_special_tokens=False)["input_ids"])
        return ids or ([eos] if eos is not None else [])

    return list(_memo(tokenizer, "eot", compute))


def encode_prompt(tokenizer: Any, messages: Sequence[Message], max_tokens: int) -> tuple[list[int], bool]:
    """Token ids of the formatted prompt, at most ``max_tokens``, truncated from the left.

    Returns ``(ids, was_truncated)``. The oldest messages are dropped first (a leading
    system message is always kept); if the latest message alone is still too long, tokens
    are cut from the left of its text. A budget too small for the system message and the
    template's own tokens is a UserError.
    """
    if max_tokens < 1:
        raise UserError(f"max prompt tokens must be at least 1, got {max_tokens}")
    msgs = list(messages)
    system = msgs[:1] if msgs and msgs[0]["role"] == "system" else []
    rest = msgs[len(system):]

    def encode(kept: list[Message]) -> list[int]:
        return tokenize_text(tokenizer, format_prompt(tokenizer, system + kept))

    ids = encode(rest)
    if len(ids) <= max_tokens:
        return ids, False
    # drop the oldest messages: the smallest k such that rest[k:] fits (length shrinks as k grows)
    lo, hi = 1, len(rest) - 1
    if hi >= lo:
        last_only = encode(rest[hi:])
        if len(last_only) <= max_tokens:
            best = last_only
            while lo < hi:
                mid = (lo + hi) // 2
                cand = encode(rest[mid:])
                if len(cand) <= max_tokens:
                    hi, best = mid, cand
                else:
                    lo = mid + 1
            return best, True
    if not rest:
        raise UserError(f"max prompt tokens {max_tokens} is too small: the system message alone takes {len(ids)} tokens")
    # even the latest message alone is too long: keep the end of its text
    last = rest[-1]
    overhead = len(encode([{"role": last["role"], "content": ""}]))
    if overhead >= max_tokens:
        raise UserError(f"max prompt tokens {max_tokens} is too small: the chat template and system message "
                        f"alone take {overhead} tokens")
    content_ids = tokenizer(last["content"], add_special_tokens=False)["input_ids"]
    keep = min(len(content_ids), max_tokens - overhead)
    while keep > 0:
        text = tokenizer.decode(content_ids[len(content_ids) - keep:], skip_special_tokens=False)
        ids = encode([{"role": last["role"], "content": text}])
        if len(ids) <= max_tokens:
            return ids, True
        keep -= max(1, len(ids) - max_tokens)
    return encode([{"role": last["role"], "content": ""}]), True


def encode_response(tokenizer: Any, text: str, max_tokens: int) -> list[int]:
    """Response ids followed by the end-of-turn token(s), right-truncated to ``max_tokens``."""
    if max_tokens < 1:
        raise UserError(f"max response tokens must be at least 1, got {max_tokens}")
    body = text if has_chat_template(tokenizer) else " " + text
    ids = list(tokenizer(body, add_special_tokens=False)["input_ids"]) + end_of_turn_ids(tokenizer)
    return ids[:max_tokens]


@dataclass(frozen=True)
class Encoded:
    """A prompt and one response as token ids (``input_ids`` = prompt + response)."""

    prompt_ids: list[int]
    response_ids: list[int]
    prompt_truncated: bool

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.response_ids


def encode_rating(tokenizer: Any, record: RatedResponse, max_prompt_tokens: int,
                  max_response_tokens: int) -> Encoded:
    ids, truncated = encode_prompt(tokenizer, record.prompt, max_prompt_tokens)
    return Encoded(ids, encode_response(tokenizer, record.response, max_response_tokens), truncated)


def encode_pair(tokenizer: Any, record: PreferencePair, max_prompt_tokens: int,
                max_response_tokens: int) -> tuple[Encoded, Encoded]:
    """(chosen, rejected), sharing one encoding of the prompt."""
    ids, truncated = encode_prompt(tokenizer, record.prompt, max_prompt_tokens)
    return (Encoded(ids, encode_response(tokenizer, record.chosen, max_response_tokens), truncated),
            Encoded(list(ids), encode_response(tokenizer, record.rejected, max_response_tokens), truncated))
