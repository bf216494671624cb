"""Deterministic, group-disjoint splits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from perlhf.data import load_task, prompts_of
from perlhf.data.records import RatedResponse
from perlhf.data.splits import (
    assign_splits,
    assign_with_given,
    check_fractions,
    split_of,
    sub_fractions,
    unit_hash,
)
from perlhf.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _rec(group: str, i: int = 0) -> RatedResponse:
    return RatedResponse(id=f"{group}:{i}", group=group, prompt=({"role": "user", "content": group},),
                         response="r", label=i % 2)


def test_split_of_is_pinned():
    # golden values: a change here silently reshuffles every user's splits
    assert [split_of(f"conv-{i}") for i in range(12)] == [
        "train", "train", "train", "test", "test", "train", "train", "test", "train", "train", "train", "train"]
    assert unit_hash("conv-0") == pytest.approx(0.325825030111695)
    assert Counter(split_of(f"g{i}") for i in range(10_000)).most_common(1)[0][0] == "train"
    assert split_of("dlg-e9wku8shm4zdy7hhylsguc") == split_of("dlg-e9wku8shm4zdy7hhylsguc")


def test_split_of_matches_in_a_fresh_process_with_another_hash_seed():
    groups = [f"conv-{i}" for i in range(200)]
    here = [split_of(g) for g in groups]
    code = ("import json,sys; from perlhf.data.splits import split_of; "
            "print(json.dumps([split_of(g) for g in json.loads(sys.argv[1])]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(groups)], capture_output=True, text=True,
                         env=env, check=True, cwd=REPO)
    assert json.loads(out.stdout) == here


def test_fractions_are_respected_roughly():
    counts = Counter(split_of(f"g{i}", (0.5, 0.25, 0.25)) for i in range(20_000))
    assert abs(counts["train"] / 20_000 - 0.5) < 0.02
    assert abs(counts["test"] / 20_000 - 0.25) < 0.02
    assert all(split_of(f"g{i}", (1, 0, 0)) == "train" for i in range(100))
    assert all(split_of(f"g{i}", (0, 0, 1)) == "test" for i in range(100))


@pytest.mark.parametrize("bad", [(0.8, 0.1), (0.8, 0.3, 0.1), (-0.1, 0.6, 0.5), ("a", 0, 1)])
def test_bad_fractions(bad):
    with pytest.raises(UserError, match="split fractions"):
        check_fractions(bad)


def test_sub_fractions():
    assert sub_fractions((0.8, 0.1, 0.1), ("train", "validation")) == pytest.approx((8 / 9, 1 / 9, 0))
    assert sub_fractions((0.8, 0.1, 0.1), ("validation", "test")) == pytest.approx((0, 0.5, 0.5))


def test_groups_never_cross_splits_and_order_is_kept():
    recs = [_rec(f"g{i % 37}", i) for i in range(500)]
    splits = assign_splits(recs)
    where = {}
    for name, rs in splits.items():
        for r in rs:
            assert where.setdefault(r.group, name) == name
        assert rs == sorted(rs, key=lambda r: int(r.id.split(":")[1]))
    assert sum(len(v) for v in splits.values()) == 500


def test_given_splits_are_kept():
    items = [(_rec("a"), "test"), (_rec("b"), None)]
    out = assign_with_given(items)
    assert out["test"][0].group == "a"
    assert sum(len(v) for v in out.values()) == 2


@pytest.mark.parametrize("task", ["taskmaster-coffee", "taskmaster-ticketing", "hh-harmless"])
def test_real_splits_are_disjoint_by_group_and_deterministic(shared_data_dir, task):
    a = load_task(task, shared_data_dir)
    b = load_task(task, shared_data_dir)
    groups = {s: {r.group for r in rs} for s, rs in a.splits.items()}
    assert not groups["train"] & groups["validation"]
    assert not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    assert {s: [r.id for r in rs] for s, rs in a.splits.items()} == {s: [r.id for r in rs] for s, rs in b.splits.items()}
    n = len(a)
    assert 0.7 < len(a.splits["train"]) / n < 0.9
    # the RL prompts view is deduplicated and comes from the split's own contexts
    prompts = prompts_of(a, "test")
    keys = [tuple((m["role"], m["content"]) for m in p.prompt) for p in prompts]
    assert len(keys) == len(set(keys))
    assert {p.group for p in prompts} <= groups["test"]
