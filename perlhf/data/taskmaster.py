"""Taskmaster (google-research-datasets/Taskmaster): the PERL paper's thumbs-up/down data.

* ``TM-4-2024/reward`` (Taskmaster Coffee) and ``TM-3-2020/reward`` (Taskmaster
  Ticketing): JSON arrays of ``{conversation_id, context, generation, reward}``,
  where ``context`` is a JSON string holding a list of turns and ``generation`` a
  JSON string holding one agent turn. They become :class:`RatedResponse` records
  (thumbs-up = 1), grouped by ``conversation_id`` for splitting.
* ``TM-4-2024/data``: coffee-ordering self-dialogs whose API traffic sits in the
  ``annotations`` of the utterance after which it happens. They become
  :class:`Dialogue` records, the API traffic expanded into turns.

Rendering of turns into chat messages (the same everywhere, so that SFT targets
from the dialogues and the rated generations of the reward files look alike):

=====================================  ===========  ==============================================
turn                                   role         content
=====================================  ===========  ==============================================
agent text                             assistant    the text, stripped
user text                              user         the text, stripped
agent API call ``{"api": {N: ARGS}}``  assistant    ``API_CALL N {"k":"v"}``
API response ``{"response": {N: R}}``  user         ``API_RESPONSE N {"k":"v"}``
=====================================  ===========  ==============================================

The JSON part is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)``: keys sorted, no spaces, so one call has exactly one
rendering. API responses are *user*-role messages (the records allow the roles
system/user/assistant only, and the response is input the agent reads, not
something it says). :func:`parse_api_call` reads a rendered (or generated)
call back. A few names in the data are empty strings; they render as
``API_CALL  {}`` (two spaces) and parse back to the name ``""``.

Data quirks handled here (real data, counted on commit d92cb6a):

* 6 Coffee reward records have an empty context list ``[]`` (the agent's reply
  is the first turn). They are kept, with an empty prompt, so the totals match
  the published 3,228; an empty or blank ``context`` *string* is a DataError.
* 322 Ticketing agent text turns are the empty string; kept as empty messages.
* In the dialogues, 72 ``request``/``response`` annotation values are not valid
  JSON (mostly doubled quotes such as ``""hot-chocolate-8586""``). They are
  repaired when a simple fix makes them parse; otherwise the raw text is kept
  verbatim after the API name. 75 ``api_call`` groups carry no ``request``;
  they render with empty arguments ``{}``, as the reward files do.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perlhf.data.readers import binary_label, read_json_array, require
from perlhf.data.records import Dialogue, Message, RatedResponse
from perlhf.errors import DataError

log = logging.getLogger(__name__)

API_CALL = "API_CALL"
API_RESPONSE = "API_RESPONSE"

_API_CALL_RE = re.compile(r"API_CALL ([^\s{}\[\]]*) (\{.*\})", re.DOTALL)


class TurnError(ValueError):
    """A malformed turn: ``field`` is the offending field relative to the turn."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"field {field!r}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


def canonical_json(value: Any) -> str:
    """The one JSON rendering used for API arguments and responses."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def render_api_call(name: str, args: Any) -> str:
    return f"{API_CALL} {name} {canonical_json(args)}"


def render_api_response(name: str, value: Any) -> str:
    return f"{API_RESPONSE} {name} {canonical_json(value)}"


def is_api_call(text: str) -> bool:
    """Whether an answer is an attempted API call (it opens with ``API_CALL``), parsed or not."""
    return text.strip().startswith(API_CALL)


def parse_api_call(text: str) -> tuple[str, dict[str, Any]] | None:
    """``(name, args)`` of a rendered API call such as ``API_CALL get_menu_items {"query":"espresso"}``,
    or None when ``text`` is not one (wrong prefix, arguments not a JSON object, trailing text)."""
    m = _API_CALL_RE.fullmatch(text.strip())
    if not m:
        return None
    try:
        args = json.loads(m.group(2))
    except json.JSONDecodeError:
        return None
    if not isinstance(args, dict):
        return None
    return m.group(1), args


def _single(mapping: Any, field: str) -> tuple[str, Any]:
    if not isinstance(mapping, dict):
        raise TurnError(field, f"expected an object {{NAME: ...}}, found {type(mapping).__name__}")
    if len(mapping) != 1:
        raise TurnError(field, f"expected exactly one API name, found {len(mapping)}")
    ((name, value),) = mapping.items()
    return str(name), value


def _text(turn: dict, field: str = "text") -> str:
    if field not in turn:
        raise TurnError(field, "missing field")
    value = turn[field]
    if not isinstance(value, str):
        raise TurnError(field, f"expected a string, found {type(value).__name__}")
    return value.strip()


def render_turn(turn: dict[str, Any]) -> Message:
    """One Taskmaster reward-file turn as a chat message (see the module doc for the rendering).

    Raises :class:`TurnError` (a ValueError naming the field) for a malformed turn or an unknown role.
    """
    if not isinstance(turn, dict):
        raise TurnError("", f"expected a turn object, found {type(turn).__name__}")
    if "role" not in turn:
        raise TurnError("role", "missing field")
    role = turn["role"]
    if role == "agent":
        if "api" in turn:
            name, args = _single(turn["api"], "api")
            return {"role": "assistant", "content": render_api_call(name, args)}
        return {"role": "assistant", "content": _text(turn)}
    if role == "user":
        return {"role": "user", "content": _text(turn)}
    if role == "api":
        if "response" not in turn:
            raise TurnError("response", "missing field")
        name, value = _single(turn["response"], "response")
        return {"role": "user", "content": render_api_response(name, value)}
    raise TurnError("role", f"unknown role {role!r} (expected 'agent', 'user' or 'api')")


# ----------------------------------------------------------------------------- reward files


def _where(index: int, rec: Any) -> str:
    cid = rec.get("conversation_id") if isinstance(rec, dict) else None
    return f"record {index}" + (f" (conversation_id {cid!r})" if isinstance(cid, str) else "")


def _parse_json_field(text: str, path: Path, where: str, field: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, where, f"field {field!r}: not valid JSON ({exc.msg} at char {exc.pos})") from None


def _source_label(path: Path) -> str:
    """``TM-4-2024/reward_00`` for ``.../TM-4-2024/reward/reward_00.json``."""
    return f"{path.parent.parent.name}/{path.stem}" if path.parent.parent.name else path.stem


def parse_reward_record(rec: Any, path: Path, index: int) -> RatedResponse:
    """One reward-file record as a :class:`RatedResponse` (DataError naming the field if malformed)."""
    where = _where(index, rec)
    cid = require(rec, "conversation_id", path, where)
    context_text = require(rec, "context", path, where)
    generation_text = require(rec, "generation", path, where)
    if "reward" not in rec:
        raise DataError(path, where, "missing field 'reward'")
    label = binary_label(rec["reward"], path, where, "reward")
    if not cid.strip():
        raise DataError(path, where, "field 'conversation_id': empty")
    if not context_text.strip():
        raise DataError(path, where, "field 'context': empty context")
    context = _parse_json_field(context_text, path, where, "context")
    if not isinstance(context, list):
        raise DataError(path, where, f"field 'context': expected a JSON list of turns, found {type(context).__name__}")
    messages = []
    for j, turn in enumerate(context):
        try:
            messages.append(render_turn(turn))
        except TurnError as exc:
            sub = f".{exc.field}" if exc.field else ""
            raise DataError(path, where, f"field 'context[{j}]{sub}': {exc.problem}") from None
    if not generation_text.strip():
        raise DataError(path, where, "field 'generation': empty")
    generation = _parse_json_field(generation_text, path, where, "generation")
    try:
        reply = render_turn(generation)
    except TurnError as exc:
        sub = f".{exc.field}" if exc.field else ""
        raise DataError(path, where, f"field 'generation{sub}': {exc.problem}") from None
    if reply["role"] != "assistant":
        raise DataError(path, where, f"field 'generation.role': expected an agent turn, found {generation.get('role')!r}")
    return RatedResponse(
        id=f"{_source_label(path)}:{index}",
        group=cid,
        prompt=tuple(messages),
        response=reply["content"],
        label=label,
    )


def load_reward_files(paths: Sequence[Path]) -> list[RatedResponse]:
    """All records of Taskmaster reward files, in file order."""
    out: list[RatedResponse] = []
    for path in paths:
        path = Path(path)
        for i, rec in enumerate(read_json_array(path)):
            out.append(parse_reward_record(rec, path, i))
    return out


# ----------------------------------------------------------------------------- dialogues

_DOUBLED_QUOTES = re.compile(r'""([^",:{}\[\]]+)""')
_STRAY_QUOTE = re.compile(r'([^\s:,\[{"])""(\s*[,}\]])')


def _annotation_json(value: str) -> tuple[Any, bool]:
    """``(parsed, True)``, repairing the data's known quote slips, or ``(raw text, False)``."""
    for candidate in (value, _STRAY_QUOTE.sub(r'\1"\2', _DOUBLED_QUOTES.sub(r'"\1"', value))):
        try:
            return json.loads(candidate, strict=False), True
        except json.JSONDecodeError:
            continue
    return value.strip(), False


def _render_annotation_value(prefix: str, name: str, raw: str | None) -> str:
    if raw is None:
        return f"{prefix} {name} {canonical_json({})}"
    parsed, ok = _annotation_json(raw)
    if ok:
        return f"{prefix} {name} {canonical_json(parsed)}"
    log.debug("unparseable %s value kept verbatim: %r", prefix, raw[:80])
    return f"{prefix} {name} {parsed}"


def expand_annotations(annotations: Sequence[Any], path: Path, where: str) -> list[Message]:
    """The API traffic of one utterance as messages: each ``api_call`` group (+ ``request``) an
    assistant ``API_CALL`` message, each ``api_response`` group (+ ``response``) a user
    ``API_RESPONSE`` message, in order. Groups are consecutive annotations sharing ``context``."""
    groups: list[tuple[str, list[dict]]] = []
    for k, ann in enumerate(annotations):
        at = f"{where}, annotations[{k}]"
        for key in ("name", "value", "context"):
            require(ann, key, path, at)
        if not groups or groups[-1][0] != ann["context"]:
            groups.append((ann["context"], []))
        groups[-1][1].append(ann)
    out: list[Message] = []
    for ctx, anns in groups:
        head, rest = anns[0], anns[1:]
        kinds = {"api_call": ("request", API_CALL, "assistant"), "api_response": ("response", API_RESPONSE, "user")}
        if head["name"] not in kinds:
            raise DataError(path, f"{where}, annotation group {ctx!r}",
                            f"field 'name': unknown annotation {head['name']!r} (expected 'api_call' or 'api_response' first)")
        body_name, prefix, role = kinds[head["name"]]
        if len(rest) > 1 or (rest and rest[0]["name"] != body_name):
            raise DataError(path, f"{where}, annotation group {ctx!r}",
                            f"field 'name': expected {head['name']!r} optionally followed by {body_name!r}, found "
                            + ", ".join(repr(a["name"]) for a in anns))
        raw = rest[0]["value"] if rest else None
        out.append({"role": role, "content": _render_annotation_value(prefix, head["value"], raw)})
    return out


_SPEAKERS = {"user": "user", "assistant": "assistant", "agent": "assistant"}


def parse_dialogue(rec: Any, path: Path, index: int) -> Dialogue:
    """One TM-4-2024 data record as a :class:`Dialogue` (API traffic expanded)."""
    where = _where(index, rec)
    cid = require(rec, "conversation_id", path, where)
    utterances = require(rec, "utterances", path, where, types=list)
    if not utterances:
        raise DataError(path, where, "field 'utterances': empty dialogue")
    messages: list[Message] = []
    for u_i, utt in enumerate(utterances):
        at = f"{where}, utterances[{u_i}]"
        speaker = require(utt, "speaker", path, at)
        if speaker not in _SPEAKERS:
            raise DataError(path, at, f"field 'speaker': unknown role {speaker!r} (expected 'user' or 'assistant')")
        text = require(utt, "text", path, at)
        messages.append({"role": _SPEAKERS[speaker], "content": text.strip()})
        annotations = utt.get("annotations") or []
        if not isinstance(annotations, list):
            raise DataError(path, at, f"field 'annotations': expected a list, found {type(annotations).__name__}")
        messages.extend(expand_annotations(annotations, path, at))
    return Dialogue(id=cid, group=cid, messages=tuple(messages))


def load_dialogue_files(paths: Sequence[Path]) -> list[Dialogue]:
    out: list[Dialogue] = []
    for path in paths:
        path = Path(path)
        for i, rec in enumerate(read_json_array(path)):
            out.append(parse_dialogue(rec, path, i))
    return out
