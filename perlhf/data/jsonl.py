"""Users' own data in JSON Lines (``.jsonl`` or ``.jsonl.gz``), one record per line.

Three shapes, decided by the first record; every line must have the same shape:

* preference pairs: ``{"prompt": P, "chosen": TEXT, "rejected": TEXT}``
* ratings:          ``{"prompt": P, "response": TEXT, "label": 0 | 1}``
* dialogues (SFT):  ``{"messages": [{"role": ..., "content": ...}, ...]}`` with at least one assistant turn

``P`` is either a string (one user message) or a list of chat messages
``[{"role": "system" | "user" | "assistant", "content": TEXT}, ...]``.
Optional fields: ``id`` (default: the line number), ``group`` (the split key;
default: a hash of the prompt, so identical prompts share a split) and
``split`` (``train``, ``validation``/``valid``/``dev`` or ``test``; records
without one are split by the hash of their group).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from perlhf.data.readers import binary_label, iter_jsonl, require
from perlhf.data.records import ROLES, SPLITS, Dialogue, Message, PreferencePair, RatedResponse
from perlhf.errors import DataError

SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
                 "dev": "validation", "test": "test"}


def parse_messages(value: Any, path: Path, where: str, field: str = "prompt") -> tuple[Message, ...]:
    """A prompt given as a string or a list of ``{role, content}`` messages, validated."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(path, where, f"field {field!r}: empty context")
        return ({"role": "user", "content": value},)
    if not isinstance(value, list):
        raise DataError(path, where, f"field {field!r}: expected a string or a list of messages, "
                        f"found {type(value).__name__}")
    if not value:
        raise DataError(path, where, f"field {field!r}: empty context")
    out: list[Message] = []
    for i, m in enumerate(value):
        at = f"{field}[{i}]"
        if not isinstance(m, dict):
            raise DataError(path, where, f"field {at!r}: expected a message object, found {type(m).__name__}")
        for key in ("role", "content"):
            if key not in m:
                raise DataError(path, where, f"field '{at}.{key}': missing field")
            if not isinstance(m[key], str):
                raise DataError(path, where, f"field '{at}.{key}': expected a string, found {type(m[key]).__name__}")
        if m["role"] not in ROLES:
            raise DataError(path, where, f"field '{at}.role': unknown role {m['role']!r} "
                            f"(expected one of {', '.join(ROLES)})")
        out.append({"role": m["role"], "content": m["content"]})
    if not any(m["content"].strip() for m in out if m["role"] != "system"):
        raise DataError(path, where, f"field {field!r}: empty context")
    return tuple(out)


def prompt_group(messages: tuple[Message, ...]) -> str:
    """A stable split key for a prompt: the SHA-256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(list(messages), sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _kind_of(obj: Any, path: Path, where: str) -> str:
    if not isinstance(obj, dict):
        raise DataError(path, where, f"expected a JSON object, found {type(obj).__name__}")
    if "chosen" in obj or "rejected" in obj:
        return "pair"
    if "response" in obj or "label" in obj:
        return "rating"
    if "messages" in obj:
        return "dialogue"
    raise DataError(path, where, "missing field 'chosen'/'rejected' (a pair), 'response'/'label' (a rating) or "
                    "'messages' (a dialogue)")


def _dialogue(obj: dict, path: Any, where: str, default_id: str) -> tuple[Dialogue, str | None]:
    messages = parse_messages(obj["messages"], path, where, field="messages")
    if not any(m["role"] == "assistant" for m in messages[1:]):
        raise DataError(path, where, "field 'messages': no assistant turn after the first message, so nothing "
                        "to learn; SFT learns every assistant reply given what precedes it")
    rid = _optional_str(obj, "id", path, where) or default_id
    group = _optional_str(obj, "group", path, where) or prompt_group(messages[:1])
    return Dialogue(id=rid, group=group, messages=messages), _given_split(obj, path, where)


def _given_split(obj: dict, path: Any, where: str) -> str | None:
    """The record's own ``split`` field, normalised (``dev`` -> ``validation``), or None."""
    split = _optional_str(obj, "split", path, where)
    if split is None:
        return None
    if split.lower() not in SPLIT_ALIASES:
        raise DataError(path, where, f"field 'split': unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    return SPLIT_ALIASES[split.lower()]


def _optional_str(obj: dict, key: str, path: Path, where: str) -> str | None:
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(path, where, f"field {key!r}: expected a string, found {type(value).__name__}")
    return value


def load_file(path: str | Path) -> tuple[str, list[tuple[PreferencePair | RatedResponse, str | None]]]:
    """``(kind, [(record, split or None), ...])`` for a user JSONL file; kind is "pair" or "rating"."""
    path = Path(path)
    return parse_objects(iter_jsonl(path), path)


def parse_objects(items: Any, path: Any, unit: str = "line"
                  ) -> tuple[str, list[tuple[PreferencePair | RatedResponse, str | None]]]:
    """:func:`load_file` for ``(number, object)`` items from anywhere (file lines, a list of dicts, the rows
    of a ``datasets.Dataset``); errors name ``path`` (the source) and ``unit`` + number."""
    kind: str | None = None
    first_line = 0
    out: list[tuple[PreferencePair | RatedResponse, str | None]] = []
    for lineno, obj in items:
        where = f"{unit} {lineno}"
        this = _kind_of(obj, path, where)
        if kind is None:
            kind, first_line = this, lineno
        elif this != kind:
            shape = {"pair": "{prompt, chosen, rejected}", "rating": "{prompt, response, label}",
                     "dialogue": "{messages}"}[kind]
            raise DataError(path, where, f"expected a {kind} {shape} like {unit} {first_line}, found a {this}")
        if kind == "dialogue":
            out.append(_dialogue(obj, path, where, f"{getattr(path, 'name', path)}:{lineno}"))
            continue
        if "prompt" not in obj:
            raise DataError(path, where, "missing field 'prompt'")
        prompt = parse_messages(obj["prompt"], path, where)
        rid = _optional_str(obj, "id", path, where) or f"{getattr(path, 'name', path)}:{lineno}"
        group = _optional_str(obj, "group", path, where) or prompt_group(prompt)
        split = _given_split(obj, path, where)
        rec: PreferencePair | RatedResponse
        if kind == "pair":
            chosen = require(obj, "chosen", path, where)
            rejected = require(obj, "rejected", path, where)
            if chosen.strip() == rejected.strip():
                raise DataError(path, where, "fields 'chosen' and 'rejected' are identical")
            rec = PreferencePair(id=rid, group=group, prompt=prompt, chosen=chosen, rejected=rejected)
        else:
            response = require(obj, "response", path, where)
            if "label" not in obj:
                raise DataError(path, where, "missing field 'label'")
            label = binary_label(obj["label"], path, where, "label")
            rec = RatedResponse(id=rid, group=group, prompt=prompt, response=response, label=label)
        out.append((rec, split))
    if kind is None:
        raise DataError(path, None, "no records (the file is empty)")
    return kind, out
