"""The few record types every data source is turned into.

A conversation is a list of chat messages ``{"role": ..., "content": ...}``
with roles ``system``, ``user`` and ``assistant`` only, ready for a tokenizer's
chat template (see :mod:`perlhf.data.render`). ``group`` is the key used to
split: all records sharing a group land in the same split (for Taskmaster the
conversation id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
Message = dict[str, str]

SPLITS: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class RatedResponse:
    """One response to a context with a thumbs-up (1) or thumbs-down (0) label."""

    id: str
    group: str
    prompt: tuple[Message, ...]
    response: str
    label: int
    kind: Literal["rating"] = field(default="rating", init=False)


@dataclass(frozen=True)
class PreferencePair:
    """Two responses to the same context, ``chosen`` preferred over ``rejected``."""

    id: str
    group: str
    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    kind: Literal["pair"] = field(default="pair", init=False)


@dataclass(frozen=True)
class Prompt:
    """A context to generate from (RL), with an optional label (e.g. sentiment)."""

    id: str
    group: str
    prompt: tuple[Message, ...]
    label: int | None = None
    kind: Literal["prompt"] = field(default="prompt", init=False)


@dataclass(frozen=True)
class Dialogue:
    """A whole conversation for SFT: every assistant message is a target given what precedes it."""

    id: str
    group: str
    messages: tuple[Message, ...]
    kind: Literal["dialogue"] = field(default="dialogue", init=False)

    def targets(self) -> list[tuple[tuple[Message, ...], str]]:
        """(context, assistant reply) for every assistant message that has a context."""
        out = []
        for i, m in enumerate(self.messages):
            if m["role"] == "assistant" and i > 0:
                out.append((self.messages[:i], m["content"]))
        return out

    def prompts(self) -> list[Prompt]:
        """Each assistant turn's context as a :class:`Prompt` (for RL on dialogue data)."""
        return [
            Prompt(id=f"{self.id}#{i}", group=self.group, prompt=ctx)
            for i, (ctx, _) in enumerate(self.targets())
        ]


Record = RatedResponse | PreferencePair | Prompt | Dialogue
