"""The generic JSONL task (users' own pairs or ratings) and its bad-input cases."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from perlhf.data import load_task
from perlhf.data.records import PreferencePair, RatedResponse
from perlhf.errors import DataError, UserError

FIXTURES = Path(__file__).parent / "fixtures"


def test_pairs_file():
    t = load_task("jsonl", path=FIXTURES / "user_pairs.jsonl")
    assert t.kind == "pair" and len(t) == 3
    recs = {r.id: r for r in t.all()}
    assert all(isinstance(r, PreferencePair) for r in recs.values())
    first = recs["user_pairs.jsonl:1"]
    assert first.prompt == ({"role": "user", "content": "Write a haiku about rain."},)
    assert first.chosen == "Soft rain on the roof"
    second = recs["user_pairs.jsonl:2"]
    assert [m["role"] for m in second.prompt] == ["system", "user"]
    assert second in t.splits["test"]  # the record's own split field
    assert recs["color-1"].group == "g1"


def test_ratings_file():
    t = load_task("jsonl", path=FIXTURES / "user_ratings.jsonl")
    assert t.kind == "rating" and len(t) == 3
    recs = t.all()
    assert all(isinstance(r, RatedResponse) for r in recs)
    assert sorted(r.label for r in recs) == [0, 1, 1]
    # identical prompts share a group, hence a split
    same = [r for r in recs if r.prompt[0]["content"] == "Say hi."]
    assert len({r.group for r in same}) == 1
    assert len(t.splits["validation"]) >= 1


def test_gzipped_file(tmp_path):
    p = tmp_path / "pairs.jsonl.gz"
    p.write_bytes(gzip.compress((FIXTURES / "user_pairs.jsonl").read_bytes()))
    assert len(load_task("jsonl", path=p)) == 3


def test_needs_a_path():
    with pytest.raises(UserError, match="needs a file: pass --path"):
        load_task("jsonl")
    with pytest.raises(UserError, match="no such file"):
        load_task("jsonl", path="/nonexistent/file.jsonl")


def _write(tmp_path: Path, objs) -> Path:
    p = tmp_path / "mine.jsonl"
    p.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return p


GOOD_PAIR = {"prompt": "q", "chosen": "a", "rejected": "b"}
GOOD_RATING = {"prompt": "q", "response": "a", "label": 1}


@pytest.mark.parametrize("objs, pattern", [
    ([GOOD_PAIR, '{"prompt": "q", "chosen": '], r"mine.jsonl, line 2, column \d+: invalid JSON"),
    ([GOOD_PAIR, {"prompt": "q", "chosen": "a"}], r"line 2: missing field 'rejected'"),
    ([{"chosen": "a", "rejected": "b"}], r"line 1: missing field 'prompt'"),
    ([{"prompt": "q"}], r"line 1: missing field 'chosen'/'rejected'"),
    ([GOOD_RATING, {"prompt": "q", "response": "a"}], r"line 2: missing field 'label'"),
    ([{**GOOD_RATING, "label": 0.7}], r"line 1: field 'label': expected 0 or 1, found 0.7"),
    ([{**GOOD_RATING, "label": 2}], r"line 1: field 'label': expected 0 or 1"),
    ([{**GOOD_PAIR, "prompt": ""}], r"line 1: field 'prompt': empty context"),
    ([{**GOOD_PAIR, "prompt": []}], r"line 1: field 'prompt': empty context"),
    ([{**GOOD_PAIR, "prompt": [{"role": "system", "content": "x"}, {"role": "user", "content": " "}]}],
     r"line 1: field 'prompt': empty context"),
    ([{**GOOD_PAIR, "prompt": [{"role": "human", "content": "hi"}]}],
     r"line 1: field 'prompt\[0\].role': unknown role 'human'"),
    ([{**GOOD_PAIR, "prompt": [{"role": "user"}]}], r"line 1: field 'prompt\[0\].content': missing field"),
    ([{**GOOD_PAIR, "rejected": "a"}], r"line 1: fields 'chosen' and 'rejected' are identical"),
    ([GOOD_PAIR, GOOD_RATING], r"line 2: expected a pair .* like line 1, found a rating"),
    ([{**GOOD_PAIR, "split": "holdout"}], r"line 1: field 'split': unknown split 'holdout'"),
    (["[1, 2]"], r"line 1: expected a JSON object"),
    ([], r"no records"),
])
def test_bad_input(tmp_path, objs, pattern):
    p = _write(tmp_path, objs)
    with pytest.raises(DataError, match=pattern) as exc:
        load_task("jsonl", path=p)
    assert str(p) in str(exc.value)


def test_truncated_gz(tmp_path):
    raw = gzip.compress((json.dumps(GOOD_PAIR) + "\n").encode() * 500)
    p = tmp_path / "mine.jsonl.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"mine.jsonl.gz, after line \d+: truncated or corrupt gzip"):
        load_task("jsonl", path=p)


def test_dialogue_lines(tmp_path):
    from perlhf.data import jsonl
    from perlhf.errors import DataError

    f = tmp_path / "d.jsonl"
    f.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
                 '{"messages": [{"role": "user", "content": "only a question"}]}\n')
    with pytest.raises(DataError, match="line 2.*no assistant turn"):
        jsonl.load_file(f)
    f.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
                 '{"prompt": "x", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(DataError, match="line 2.*expected a dialogue"):
        jsonl.load_file(f)
