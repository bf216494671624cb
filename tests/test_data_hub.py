"""SHP and Reddit TL;DR: their Hugging Face schemas, from local fixture files and a stand-in for the hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from perlhf.data import load_task
from perlhf.errors import DataError, UserError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.delenv("PERLHF_DATA_DIR", raising=False)
    monkeypatch.setenv("PERLHF_CACHE", str(tmp_path / "cache"))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- SHP


def test_shp_from_a_folder_keeps_its_splits():
    t = load_task("shp", path=FIXTURES / "shp")
    assert t.kind == "pair" and {k: len(v) for k, v in t.splits.items()} == {"train": 3, "validation": 1, "test": 1}
    first = t.splits["train"][0]
    assert first.prompt == ({"role": "user", "content": "How long should I rest a steak?"},)
    assert (first.chosen, first.rejected) == ("About five minutes.", "Rest is a myth.")  # labels 1: A preferred
    second = t.splits["train"][1]
    assert (second.chosen, second.rejected) == ("About five minutes.", "Ten minutes for thick cuts.")  # labels 0
    assert first.group == second.group == "p1"
    assert first.id == "p1:ca1:cb1"


def test_shp_from_the_data_root_and_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    root = tmp_path / "root"
    (root / "shp").mkdir(parents=True)
    rows = _rows(FIXTURES / "shp" / "train.jsonl")
    pq.write_table(pa.Table.from_pylist(rows), root / "shp" / "train-00000-of-00001.parquet")
    t = load_task("shp", root)
    assert len(t.splits["train"]) == 3 and t.origin == "--data-dir"


def test_shp_single_file_is_split_by_post(tmp_path):
    p = tmp_path / "shp_all.jsonl"
    p.write_text("".join((FIXTURES / "shp" / f"{s}.jsonl").read_text() for s in ("train", "validation", "test")))
    t = load_task("shp", path=p)
    assert len(t) == 5
    where = {}
    for s, rs in t.splits.items():
        for r in rs:
            assert where.setdefault(r.group, s) == s


def test_shp_through_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, *args, **kwargs):
        calls.append((name, args))
        return {s: _rows(FIXTURES / "shp" / f"{s}.jsonl") for s in ("train", "validation", "test")}

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    t = load_task("shp")
    assert calls == [("stanfordnlp/SHP", ())]
    assert t.origin == "hub:stanfordnlp/SHP" and len(t) == 5 and len(t.splits["test"]) == 1


def test_shp_hub_failure_is_a_user_error(monkeypatch):
    import datasets

    def boom(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(UserError, match="could not load stanfordnlp/SHP.*pass --path"):
        load_task("shp")
    with pytest.raises(UserError, match="downloads are turned off"):
        load_task("shp", download=False)


@pytest.mark.parametrize("change, pattern", [
    ({"labels": 3}, r"field 'labels': expected 0 or 1"),
    ({"history": "  "}, r"field 'history': empty context"),
    ({"human_ref_B": "Ten minutes for thick cuts. "}, r"fields 'human_ref_A' and 'human_ref_B' are identical \(chosen equals rejected\)"),
    ({"human_ref_A": None}, r"field 'human_ref_A': expected str"),
])
def test_shp_bad_rows(tmp_path, change, pattern):
    rows = _rows(FIXTURES / "shp" / "train.jsonl")
    rows[1].update(change)
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="train.jsonl, line 2: " + pattern):
        load_task("shp", path=p)


def test_shp_missing_field(tmp_path):
    rows = _rows(FIXTURES / "shp" / "train.jsonl")
    del rows[0]["post_id"]
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="line 1: missing field 'post_id'"):
        load_task("shp", path=p)


# ----------------------------------------------------------------------------- TL;DR


def test_tldr_from_a_folder():
    t = load_task("tldr", path=FIXTURES / "tldr")
    assert t.kind == "pair" and len(t) == 16
    assert len(t.splits["train"]) == 3
    # the dataset's validation rows are divided into validation and test by post
    assert len(t.splits["validation"]) + len(t.splits["test"]) == 13
    assert t.splits["validation"] and t.splits["test"]
    first = t.splits["train"][0]
    assert first.prompt[0]["content"] == (
        "SUBREDDIT: r/relationships\nTITLE: Title of t3_a\n"
        "POST: My roommate never cleans the kitchen and I am tired of it.\n\nTL;DR:")
    assert (first.chosen, first.rejected) == ("roommate messy, what do", "kitchen")  # choice 0
    second = t.splits["train"][2]
    assert (second.chosen, second.rejected) == ("job offer vs partner", "should I move")  # choice 1
    cnn = [r for r in t.all() if r.group == "cnn_1"]
    assert cnn and cnn[0].prompt[0]["content"].startswith("ARTICLE: A news article text.")


def test_tldr_through_datasets(monkeypatch):
    import datasets

    def fake_load_dataset(name, config=None, **kwargs):
        assert (name, config) == ("openai/summarize_from_feedback", "comparisons")
        return {"train": _rows(FIXTURES / "tldr" / "train.jsonl"),
                "validation": _rows(FIXTURES / "tldr" / "validation.jsonl")}

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    t = load_task("tldr")
    assert t.origin == "hub:openai/summarize_from_feedback" and len(t) == 16


@pytest.mark.parametrize("change, pattern", [
    ({"choice": 2}, r"field 'choice': expected 0 or 1"),
    ({"summaries": [{"text": "a"}]}, r"field 'summaries': expected 2 summaries"),
    ({"summaries": [{"text": "same"}, {"text": " same "}]}, r"field 'summaries': the two summaries are identical"),
    ({"info": {"id": "t3_x", "post": "", "title": "t", "subreddit": "s"}}, r"field 'info.post': empty context"),
    ({"info": {"post": "text"}}, r"missing field 'info.id'"),
])
def test_tldr_bad_rows(tmp_path, change, pattern):
    rows = _rows(FIXTURES / "tldr" / "train.jsonl")
    rows[0].update(change)
    d = tmp_path / "tldr"
    d.mkdir()
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="train.jsonl, line 1: " + pattern):
        load_task("tldr", path=d)


def test_tldr_local_folder_in_the_data_root(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "tldr", root / "tldr")
    assert load_task("tldr", root).origin == "--data-dir"
