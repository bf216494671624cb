"""Deterministic train / validation / test splits by a stable hash of each record's group.

The split of a record depends only on its ``group`` (for Taskmaster the
conversation id) and the split fractions: the first 8 bytes of
``sha256("perlhf-split-v1:" + group)`` read as a number in [0, 1) are compared
with the cumulative fractions. Python's ``hash`` is never used (it is salted
per process), so every process, machine and run gets the same splits, and all
records of one group always land in the same split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TypeVar

from perlhf.data.records import SPLITS
from perlhf.errors import UserError

T = TypeVar("T")

_SALT = b"perlhf-split-v1:"

DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative fractions (train, validation, test) summing to 1."""
    try:
        fr = tuple(float(x) for x in fractions)
    except (TypeError, ValueError):
        raise UserError(f"split fractions must be three numbers, got {fractions!r}") from None
    if len(fr) != 3 or any(x < 0 for x in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise UserError(
            f"split fractions must be three non-negative numbers (train, validation, test) summing to 1, got {fractions!r}"
        )
    return fr  # type: ignore[return-value]


def unit_hash(group: str) -> float:
    """A stable number in [0, 1) for ``group``."""
    digest = hashlib.sha256(_SALT + group.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(group: str, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    """The split (``train``, ``validation`` or ``test``) of a group."""
    u = unit_hash(group)
    acc = 0.0
    for name, frac in zip(SPLITS, fractions, strict=True):
        acc += frac
        if u < acc:
            return name
    # rounding at the top end: the last split with a non-zero fraction
    for name, frac in zip(reversed(SPLITS), reversed(tuple(fractions)), strict=True):
        if frac > 0:
            return name
    return SPLITS[-1]


def assign_splits(records: Iterable[T], fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, list[T]]:
    """Split records by the hash of their ``group`` attribute; order within a split is kept."""
    fr = check_fractions(fractions)
    out: dict[str, list[T]] = {name: [] for name in SPLITS}
    cache: dict[str, str] = {}
    for rec in records:
        g = rec.group  # type: ignore[attr-defined]
        s = cache.get(g)
        if s is None:
            s = cache[g] = split_of(g, fr)
        out[s].append(rec)
    return out


def sub_fractions(fractions: Sequence[float], names: Sequence[str]) -> tuple[float, float, float]:
    """Renormalise the fractions of ``names`` only (others 0), e.g. to split an official
    train file into train/validation while its official test file stays the test split."""
    fr = check_fractions(fractions)
    kept = [f if n in names else 0.0 for n, f in zip(SPLITS, fr, strict=True)]
    total = sum(kept)
    if total <= 0:
        # e.g. fractions (0, 0, 1) and names (train, validation): put everything in the first name
        kept = [1.0 if n == names[0] else 0.0 for n in SPLITS]
        total = 1.0
    return tuple(k / total for k in kept)  # type: ignore[return-value]


def assign_with_given(items: Iterable[tuple[T, str | None]],
                      fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, list[T]]:
    """Records with an optional given split: kept where given, else split by the hash of their group."""
    fr = check_fractions(fractions)
    out: dict[str, list[T]] = {name: [] for name in SPLITS}
    for rec, split in items:
        out[split if split is not None else split_of(rec.group, fr)].append(rec)  # type: ignore[attr-defined]
    return out


_SHARD_SALT = b"perlhf-shard-v1:"


def parse_shard(text: str, option: str = "--train-shard") -> tuple[int, int]:
    """``"I/K"`` (1 <= I <= K) -> (I, K); ``"all"`` -> (1, 1)."""
    if text.strip().lower() == "all":
        return 1, 1
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"{option} {text!r}: write I/K (e.g. 1/2) or all") from None
    if not 1 <= i <= k:
        raise UserError(f"{option} {text!r}: need 1 <= I <= K")
    return i, k


def shard_records(records: Iterable[T], index: int, count: int) -> list[T]:
    """The records of shard ``index`` (1-based) of ``count`` disjoint shards, by a stable hash of ``group``.

    Every group falls in exactly one shard, so two models trained on different shards
    (a reward model and an independent judge) never share a conversation. The hash is
    salted differently from :func:`split_of`, so shards are not tied to split boundaries.
    """
    if count == 1:
        return list(records)
    out = []
    for rec in records:
        u = int.from_bytes(hashlib.sha256(_SHARD_SALT + rec.group.encode("utf-8")).digest()[:8], "big")  # type: ignore[attr-defined]
        if u % count == index - 1:
            out.append(rec)
    return out
