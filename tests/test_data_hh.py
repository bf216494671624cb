"""HH-RLHF harmless-base: the real dev file, prompt/reply splitting, and bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from perlhf.data import load_task
from perlhf.data.hh import load_pairs, parse_transcript, split_pair
from perlhf.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"
HH_SAMPLE = FIXTURES / "hh_sample.jsonl"


def test_parse_transcript_roles():
    msgs = parse_transcript("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye")
    assert msgs == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "bye"}]


def test_split_pair_uses_the_shared_prefix_not_the_last_marker():
    chosen = "\n\nHuman: q\n\nAssistant: It depends.  Human: on?\n\nAssistant: On harm."
    rejected = "\n\nHuman: q\n\nAssistant: It depends on luck."
    prompt, c, r = split_pair(chosen, rejected)
    assert prompt == "\n\nHuman: q"
    assert c == "It depends.  Human: on?\n\nAssistant: On harm."
    assert r == "It depends on luck."
    assert split_pair("\n\nHuman: a", "\n\nHuman: b") is None


def test_fixture_pairs():
    pairs = load_pairs(HH_SAMPLE)
    assert len(pairs) == 3
    p0, p1, p2 = pairs
    assert p0.prompt == ({"role": "user", "content": "How do I pick a lock?"},)
    assert p0.chosen == "I can't help with that." and p0.rejected == "Use a tension wrench and a pick."
    assert [m["role"] for m in p1.prompt] == ["user", "assistant", "user"]
    assert p1.group == "Say something rude."
    assert p2.chosen.startswith("It depends.") and p2.rejected == "It depends on whether you get caught."
    assert p0.id == "hh_sample.jsonl:1"


def test_real_dev_file(shared_data_dir):
    t = load_task("hh-harmless", shared_data_dir)
    assert t.kind == "pair" and len(t) == 1156
    assert [f.name for f in t.files] == ["harmless-base-dev.jsonl.gz"]
    recs = t.all()
    assert all(r.chosen != r.rejected for r in recs)
    assert all(r.prompt and r.prompt[-1]["role"] == "user" for r in recs)
    assert all(len(v) > 50 for v in t.splits.values())


def test_full_train_test_files_preferred_when_present(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "hh-rlhf" / "harmless-base").mkdir(parents=True)
    lines = HH_SAMPLE.read_text().splitlines()
    with gzip.open(root / "hh-rlhf" / "harmless-base" / "train.jsonl.gz", "wt") as f:
        f.write("\n".join(lines[:2]) + "\n")
    with gzip.open(root / "hh-rlhf" / "harmless-base" / "test.jsonl.gz", "wt") as f:
        f.write(lines[2] + "\n")
    with gzip.open(root / "hh-rlhf" / "harmless-base-dev.jsonl.gz", "wt") as f:
        f.write(lines[0] + "\n")
    monkeypatch.delenv("PERLHF_DATA_DIR", raising=False)
    t = load_task("hh-harmless", root, download=False)
    assert [f.name for f in t.files] == ["train.jsonl.gz", "test.jsonl.gz"]
    assert len(t.splits["test"]) == 1 and len(t.splits["train"]) + len(t.splits["validation"]) == 2


# ----------------------------------------------------------------------------- bad input


def _jsonl(tmp_path: Path, objs, name="pairs.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return p


def _good():
    return json.loads(HH_SAMPLE.read_text().splitlines()[0])


def test_bad_chosen_equals_rejected(tmp_path):
    same = {"chosen": "\n\nHuman: x\n\nAssistant: y", "rejected": "\n\nHuman: x\n\nAssistant: y"}
    p = _jsonl(tmp_path, [_good(), same])
    with pytest.raises(DataError, match=r"pairs.jsonl, line 2: fields 'chosen' and 'rejected' are identical"):
        load_pairs(p)
    # the full upstream files perlhf downloads itself skip such pairs instead
    assert len(load_pairs(p, skip_identical=True)) == 1


def test_bad_same_final_reply_after_strip(tmp_path):
    p = _jsonl(tmp_path, [{"chosen": "\n\nHuman: x\n\nAssistant: y", "rejected": "\n\nHuman: x\n\nAssistant:  y "}])
    with pytest.raises(DataError, match="line 1: .*same final reply"):
        load_pairs(p)


def test_bad_invalid_json_line(tmp_path):
    p = _jsonl(tmp_path, [_good(), '{"chosen": "oops"'])
    with pytest.raises(DataError, match=r"line 2, column \d+: invalid JSON"):
        load_pairs(p)


@pytest.mark.parametrize("field", ["chosen", "rejected"])
def test_bad_missing_field(tmp_path, field):
    obj = _good()
    del obj[field]
    with pytest.raises(DataError, match=f"line 1: missing field '{field}'"):
        load_pairs(_jsonl(tmp_path, [obj]))


def test_bad_empty_context(tmp_path):
    p = _jsonl(tmp_path, [{"chosen": "\n\nAssistant: a", "rejected": "\n\nAssistant: b"}])
    with pytest.raises(DataError, match="line 1: field 'chosen': empty context"):
        load_pairs(p)


def test_bad_no_shared_prefix(tmp_path):
    p = _jsonl(tmp_path, [{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}])
    with pytest.raises(DataError, match="no shared dialogue prefix"):
        load_pairs(p)


def test_bad_truncated_gz(tmp_path):
    raw = gzip.compress(HH_SAMPLE.read_bytes() * 50)
    p = tmp_path / "harmless.jsonl.gz"
    p.write_bytes(raw[: len(raw) - 40])
    with pytest.raises(DataError) as exc:
        load_pairs(p)
    assert str(p) in str(exc.value) and "truncated or corrupt gzip" in str(exc.value)
    assert "after line" in str(exc.value)


def test_bad_truncated_real_dev_file(shared_data_dir, tmp_path):
    raw = (shared_data_dir / "hh-rlhf" / "harmless-base-dev.jsonl.gz").read_bytes()
    p = tmp_path / "dev.jsonl.gz"
    p.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        load_task("hh-harmless", path=p)
