"""Disjoint training shards by conversation (reward model vs independent judge)."""

from __future__ import annotations

import pytest

from perlhf.data.records import RatedResponse
from perlhf.data.splits import parse_shard, shard_records
from perlhf.errors import UserError


def _recs(n_groups: int, per_group: int = 3) -> list[RatedResponse]:
    return [RatedResponse(id=f"{g}-{i}", group=f"conv-{g}", prompt=(), response="r", label=i % 2)
            for g in range(n_groups) for i in range(per_group)]


def test_shards_partition_by_group():
    recs = _recs(200)
    a, b = shard_records(recs, 1, 2), shard_records(recs, 2, 2)
    assert len(a) + len(b) == len(recs)
    assert {r.group for r in a}.isdisjoint({r.group for r in b})
    assert 0.35 < len(a) / len(recs) < 0.65
    assert shard_records(recs, 1, 2) == a  # deterministic
    assert shard_records(recs, 1, 1) == recs


@pytest.mark.parametrize("text,expected", [("1/2", (1, 2)), ("2/2", (2, 2)), ("all", (1, 1)), ("3/4", (3, 4))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/2", "3/2", "half", "1/0", "1-2"])
def test_parse_shard_errors(text):
    with pytest.raises(UserError, match="--train-shard"):
        parse_shard(text)
