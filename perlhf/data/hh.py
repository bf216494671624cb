"""Anthropic HH-RLHF, harmless-base: preference pairs.

Each JSONL line is ``{"chosen": TEXT, "rejected": TEXT}``, each a whole dialogue of
``\\n\\nHuman: ...`` / ``\\n\\nAssistant: ...`` turns; the two share a prefix and differ
in the final assistant reply. The prompt is the longest shared prefix that ends
with an ``\\n\\nAssistant:`` marker (not simply "everything before the last
Assistant marker": in 5 of the 1,156 dev pairs one reply itself holds extra
turns); ``chosen``/``rejected`` are the rest of each text, stripped. The prompt's
turns become user/assistant messages.

Pairs are grouped for splitting by their first human message, so dialogues that
open the same way never straddle splits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from perlhf.data.readers import iter_jsonl, require
from perlhf.data.records import Message, PreferencePair
from perlhf.errors import DataError

log = logging.getLogger(__name__)

ASSISTANT = "\n\nAssistant:"
_TURN_RE = re.compile(r"\n\n(Human|Assistant):")
_ROLE = {"Human": "user", "Assistant": "assistant"}


def parse_transcript(text: str) -> list[Message]:
    """``\\n\\nHuman: a\\n\\nAssistant: b`` as ``[{"role": "user", ...}, {"role": "assistant", ...}]``.

    Text before the first marker (none in the real data) becomes a user message.
    """
    messages: list[Message] = []
    parts = _TURN_RE.split(text)
    head = parts[0].strip()
    if head:
        messages.append({"role": "user", "content": head})
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": _ROLE[speaker], "content": content.strip()})
    return messages


def split_pair(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """``(prompt_text, chosen_reply, rejected_reply)``: the prompt is the longest common prefix
    ending in ``\\n\\nAssistant:``; None if the texts share no such prefix."""
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(ASSISTANT, 0, n)
    if cut < 0:
        return None
    end = cut + len(ASSISTANT)
    return chosen[:cut], chosen[end:].strip(), rejected[end:].strip()


def parse_pair(obj: object, path: Path, lineno: int, *, skip_identical: bool = False) -> PreferencePair | None:
    where = f"line {lineno}"
    chosen = require(obj, "chosen", path, where)
    rejected = require(obj, "rejected", path, where)
    if chosen == rejected:
        if skip_identical:
            return None
        raise DataError(path, where, "fields 'chosen' and 'rejected' are identical")
    parts = split_pair(chosen, rejected)
    if parts is None:
        raise DataError(path, where, "fields 'chosen'/'rejected': no shared dialogue prefix ending in "
                        "'\\n\\nAssistant:' (expected two transcripts that differ in the final reply)")
    prompt_text, chosen_reply, rejected_reply = parts
    if chosen_reply == rejected_reply:
        if skip_identical:
            return None
        raise DataError(path, where, "fields 'chosen' and 'rejected' have the same final reply")
    messages = parse_transcript(prompt_text)
    if not any(m["role"] == "user" and m["content"] for m in messages):
        raise DataError(path, where, "field 'chosen': empty context (no Human turn before the reply)")
    first_user = next(m["content"] for m in messages if m["role"] == "user" and m["content"])
    return PreferencePair(
        id=f"{path.name}:{lineno}",
        group=first_user,
        prompt=tuple(messages),
        chosen=chosen_reply,
        rejected=rejected_reply,
    )


def load_pairs(path: Path, *, skip_identical: bool = False) -> list[PreferencePair]:
    """All pairs of one HH-RLHF JSONL(.gz) file.

    A pair whose chosen and rejected replies are identical is a DataError, unless
    ``skip_identical`` (used for the full upstream files perlhf downloads itself,
    which a user cannot fix): then it is skipped and counted in a warning.
    """
    path = Path(path)
    out: list[PreferencePair] = []
    skipped = 0
    for lineno, obj in iter_jsonl(path):
        pair = parse_pair(obj, path, lineno, skip_identical=skip_identical)
        if pair is None:
            skipped += 1
        else:
            out.append(pair)
    if skipped:
        log.warning("%s: skipped %d pairs whose chosen and rejected replies are identical", path, skipped)
    return out


def load_files(paths: Sequence[Path], *, skip_identical: bool = False) -> list[PreferencePair]:
    out: list[PreferencePair] = []
    for p in paths:
        out.extend(load_pairs(Path(p), skip_identical=skip_identical))
    return out
