"""Reddit TL;DR summary preferences (``openai/summarize_from_feedback``, config ``comparisons``).

Schema (per row): ``info`` (``id``, ``post``, ``title``, ``subreddit``, ``article``,
``site``), ``summaries`` (two ``{text, policy, note}``), ``choice`` (index of the
preferred summary, 0 or 1), ``split``, ``batch``, ``worker``, ``extra``. A row
becomes a :class:`PreferencePair`, grouped by ``info.id`` (the post), whose prompt
is one user message::

    SUBREDDIT: r/{subreddit}
    TITLE: {title}
    POST: {post}

    TL;DR:

(``ARTICLE: {article}`` in place of the three Reddit lines for the few CNN/DM rows
that have no post). The dataset has train and validation only: its train rows stay
train, and its validation rows (row ``split`` ``valid1``/``valid2``) are divided into
validation and test by the hash of the post id, so one post never straddles the
two. Rows with no split information are split by the hash over all three.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from perlhf.data.hfdata import iter_local, load_hub, local_source
from perlhf.data.readers import binary_label, require
from perlhf.data.records import PreferencePair
from perlhf.data.splits import check_fractions, split_of, sub_fractions
from perlhf.errors import DataError

log = logging.getLogger(__name__)

DATASET_ID = "openai/summarize_from_feedback"
CONFIG = "comparisons"


def format_post(info: dict[str, Any], path: Path | str, where: str) -> str:
    post = info.get("post")
    if isinstance(post, str) and post.strip():
        return (f"SUBREDDIT: r/{info.get('subreddit') or ''}\nTITLE: {(info.get('title') or '').strip()}\n"
                f"POST: {post.strip()}\n\nTL;DR:")
    article = info.get("article")
    if isinstance(article, str) and article.strip():
        return f"ARTICLE: {article.strip()}\n\nTL;DR:"
    raise DataError(path, where, "field 'info.post': empty context (no post and no article)")


def _official_split(row: dict[str, Any], file_split: str | None) -> str | None:
    """``train``, ``heldout`` (validation+test, to divide by hash) or None (no split info)."""
    s = row.get("split")
    s = s.lower() if isinstance(s, str) else None
    for name in (s, file_split):
        if name is None:
            continue
        if name.startswith("train"):
            return "train"
        if name.startswith(("valid", "val", "dev", "test")):
            return "heldout"
    return None


def parse_row(row: Any, path: Path | str, where: str, *, skip_identical: bool = False) -> PreferencePair | None:
    info = require(row, "info", path, where, types=dict)
    post_id = info.get("id")
    if not isinstance(post_id, str) or not post_id:
        raise DataError(path, where, "missing field 'info.id'")
    summaries = require(row, "summaries", path, where, types=list)
    if len(summaries) != 2:
        raise DataError(path, where, f"field 'summaries': expected 2 summaries, found {len(summaries)}")
    texts = []
    for k, s in enumerate(summaries):
        texts.append(require(s, "text", path, f"{where}, summaries[{k}]").strip())
    if "choice" not in row:
        raise DataError(path, where, "missing field 'choice'")
    choice = binary_label(row["choice"], path, where, "choice")
    prompt = format_post(info, path, where)
    if texts[0] == texts[1]:
        if skip_identical:
            return None
        raise DataError(path, where, "field 'summaries': the two summaries are identical (chosen equals rejected)")
    return PreferencePair(id=f"{post_id}:{where}", group=post_id, prompt=({"role": "user", "content": prompt},),
                          chosen=texts[choice], rejected=texts[1 - choice])


def load(path: str | os.PathLike | None, data_dir: str | os.PathLike | None, download: bool,
         fractions) -> tuple[dict[str, list[PreferencePair]], list[Path], str]:
    """``(splits, files, origin)``: local files (``path`` or ``<data root>/tldr``) else the hub."""
    fr = check_fractions(fractions)
    heldout_fr = sub_fractions(fr, ("validation", "test"))
    out: dict[str, list[PreferencePair]] = {"train": [], "validation": [], "test": []}
    files: list[Path] = []

    def place(rec: PreferencePair, official: str | None) -> None:
        if official == "train":
            out["train"].append(rec)
        elif official == "heldout":
            out[split_of(rec.group, heldout_fr)].append(rec)
        else:
            out[split_of(rec.group, fr)].append(rec)

    src = local_source("tldr", "tldr", path, data_dir)
    if src is not None:
        root, origin = src
        for split, f, where, row in iter_local(root):
            if not files or files[-1] != f:
                files.append(f)
            rec = parse_row(row, f, where)
            if rec is not None:
                place(rec, _official_split(row, split))
    else:
        origin = f"hub:{DATASET_ID}"
        skipped = 0
        for split, rows in load_hub("tldr", DATASET_ID, CONFIG, download).items():
            for i, row in enumerate(rows):
                rec = parse_row(row, f"hf://{DATASET_ID}", f"split {split!r}, row {i}", skip_identical=True)
                if rec is None:
                    skipped += 1
                else:
                    place(rec, _official_split(row, split))
        if skipped:
            log.warning("%s: skipped %d comparisons with identical summaries", DATASET_ID, skipped)
    return out, files, origin
