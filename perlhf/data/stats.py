"""Per-split statistics of a task: counts, label balance, token-length percentiles.

Prompt lengths are those of the *untruncated* formatted prompt (chat template and
generation prompt included), so they show how much a token budget would cut;
``truncated`` counts the prompts longer than ``max_prompt_tokens``. Response
lengths include the end-of-turn token(s). For pairs both responses count; for
dialogues every assistant turn is a response and its context a prompt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from perlhf.data.records import SPLITS, Dialogue, PreferencePair, Prompt, RatedResponse, Record
from perlhf.data.render import auto_bos_id, end_of_turn_ids, format_prompt
from perlhf.data.tasks import TaskData

PERCENTILES = (50, 90, 99)


def percentiles(values: Sequence[int], qs: Sequence[int] = PERCENTILES) -> dict[str, int]:
    """Nearest-rank percentiles plus ``max`` (empty dict for no values)."""
    if not values:
        return {}
    s = sorted(values)
    out = {f"p{q}": s[max(0, math.ceil(q / 100 * len(s)) - 1)] for q in qs}
    out["max"] = s[-1]
    return out


@dataclass
class SplitStats:
    split: str
    records: int
    positive: float | None = None  # fraction labelled 1 (ratings, labelled prompts)
    pairs: int | None = None
    targets: int | None = None  # assistant turns (dialogues)
    prompt_tokens: dict[str, int] = field(default_factory=dict)
    response_tokens: dict[str, int] = field(default_factory=dict)
    truncated: int | None = None  # prompts longer than max_prompt_tokens
    prompts_counted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _texts(records: Sequence[Record], tokenizer: Any) -> tuple[list[str], list[str]]:
    prompts: list[str] = []
    responses: list[str] = []
    for r in records:
        if isinstance(r, RatedResponse):
            prompts.append(format_prompt(tokenizer, r.prompt))
            responses.append(r.response)
        elif isinstance(r, PreferencePair):
            prompts.append(format_prompt(tokenizer, r.prompt))
            responses.extend([r.chosen, r.rejected])
        elif isinstance(r, Prompt):
            prompts.append(format_prompt(tokenizer, r.prompt))
        elif isinstance(r, Dialogue):
            for ctx, target in r.targets():
                prompts.append(format_prompt(tokenizer, ctx))
                responses.append(target)
    return prompts, responses


def _lengths(tokenizer: Any, texts: list[str], extra: int) -> list[int]:
    if not texts:
        return []
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(x) + extra for x in ids]


def _measure(records: Sequence[Record], tokenizer: Any) -> tuple[list[int], list[int]]:
    """(prompt lengths, response lengths) in tokens."""
    prompts, responses = _texts(records, tokenizer)
    bos = 1 if auto_bos_id(tokenizer) is not None else 0
    body = responses if getattr(tokenizer, "chat_template", None) else [" " + t for t in responses]
    return _lengths(tokenizer, prompts, bos), _lengths(tokenizer, body, len(end_of_turn_ids(tokenizer)))


def split_stats(name: str, records: Sequence[Record], tokenizer: Any = None,
                max_prompt_tokens: int | None = None,
                lengths: tuple[list[int], list[int]] | None = None) -> SplitStats:
    """Stats of one list of records (``lengths`` reuses token lengths measured before)."""
    st = SplitStats(split=name, records=len(records))
    labels = [r.label for r in records if isinstance(r, RatedResponse | Prompt) and r.label is not None]
    if labels:
        st.positive = sum(labels) / len(labels)
    if records and isinstance(records[0], PreferencePair):
        st.pairs = len(records)
    if records and isinstance(records[0], Dialogue):
        st.targets = sum(len(r.targets()) for r in records)  # type: ignore[union-attr]
    if tokenizer is not None or lengths is not None:
        plen, rlen = lengths if lengths is not None else _measure(records, tokenizer)
        st.prompt_tokens = percentiles(plen)
        st.response_tokens = percentiles(rlen)
        st.prompts_counted = len(plen)
        if max_prompt_tokens is not None:
            st.truncated = sum(1 for n in plen if n > max_prompt_tokens)
    return st


def task_stats(task: TaskData, tokenizer: Any = None, max_prompt_tokens: int | None = None) -> list[SplitStats]:
    """Stats of every split, then of all splits together (split name ``total``)."""
    out = []
    all_p: list[int] = []
    all_r: list[int] = []
    for s in SPLITS:
        records = task.splits.get(s, [])
        lengths = _measure(records, tokenizer) if tokenizer is not None else None
        if lengths is not None:
            all_p += lengths[0]
            all_r += lengths[1]
        out.append(split_stats(s, records, None, max_prompt_tokens, lengths))
    out.append(split_stats("total", task.all(), None, max_prompt_tokens,
                           (all_p, all_r) if tokenizer is not None else None))
    return out


def _pct(p: dict[str, int]) -> str:
    return "/".join(str(p[k]) for k in ("p50", "p90", "p99", "max")) if p else "-"


def format_stats(task: TaskData, stats: list[SplitStats], model: str | None = None,
                 max_prompt_tokens: int | None = None) -> str:
    """A plain-text table of :func:`task_stats`."""
    lines = [f"task {task.name} ({task.kind}): {len(task):,} records from {len(task.files)} file(s) "
             f"[{task.origin}]"]
    if task.files:
        common = task.files[0].parent if len(task.files) > 1 else task.files[0]
        lines.append(f"  read: {common}" + (f" ({', '.join(f.name for f in task.files)})" if len(task.files) > 1 else ""))
    if model:
        lines.append(f"token lengths under the {model} tokenizer: p50/p90/p99/max")
    headers = ["split", "records"]
    label_col = {"rating": "thumbs-up", "prompt": "positive"}.get(task.kind)
    has_labels = any(s.positive is not None for s in stats)
    if has_labels:
        headers.append(label_col or "positive")
    if task.kind == "pair":
        headers.append("pairs")
    if task.kind == "dialogue":
        headers.append("agent turns")
    if model:
        headers += ["prompt tokens", "response tokens"] if task.kind != "prompt" else ["prompt tokens"]
        if max_prompt_tokens is not None:
            headers.append(f"prompts > {max_prompt_tokens} tokens")
    rows = []
    for s in stats:
        row = [s.split, f"{s.records:,}"]
        if has_labels:
            row.append("-" if s.positive is None else f"{100 * s.positive:.1f}%")
        if task.kind == "pair":
            row.append(f"{s.pairs or 0:,}")
        if task.kind == "dialogue":
            row.append(f"{s.targets or 0:,}")
        if model:
            row.append(_pct(s.prompt_tokens))
            if task.kind != "prompt":
                row.append(_pct(s.response_tokens))
            if max_prompt_tokens is not None:
                n = s.truncated or 0
                frac = f" ({100 * n / s.prompts_counted:.1f}%)" if s.prompts_counted else ""
                row.append(f"{n:,}{frac}")
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines.append(fmt.format(*headers))
    lines.extend(fmt.format(*r) for r in rows)
    return "\n".join(lines)
