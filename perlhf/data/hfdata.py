"""Shared plumbing for the datasets published on the Hugging Face hub (SHP, TL;DR).

Rows come either from local files in the dataset's own schema (JSONL, JSON or
Parquet; a single file, or a directory whose file names start with the split
name, e.g. ``train.jsonl``, ``validation-00000-of-00001.parquet`` or SHP's
``askculinary/test.json``) or from the hub through ``datasets.load_dataset``
(online, or offline from the ``datasets`` cache with ``HF_DATASETS_OFFLINE=1``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from perlhf.data.readers import is_record_file, iter_records
from perlhf.data.sources import candidate_roots
from perlhf.errors import UserError

log = logging.getLogger(__name__)

_SPLIT_PREFIXES = (("train", "train"), ("validation", "validation"), ("valid", "validation"),
                   ("val", "validation"), ("dev", "validation"), ("test", "test"))


def split_from_name(path: Path) -> str | None:
    """``train`` / ``validation`` / ``test`` from a file name such as ``valid1.jsonl``, else None."""
    base = path.name.lower().split(".")[0]
    for prefix, split in _SPLIT_PREFIXES:
        if base.startswith(prefix):
            return split
    return None


def find_split_files(path: Path) -> dict[str | None, list[Path]]:
    """Record files under ``path`` by split (key None: a file with no split in its name)."""
    if path.is_file():
        return {None: [path]}
    if not path.is_dir():
        raise UserError(f"{path}: no such file or directory")
    files = sorted(p for p in path.rglob("*") if p.is_file() and is_record_file(p))
    if not files:
        raise UserError(f"{path}: no .jsonl, .json or .parquet files inside")
    by_split: dict[str | None, list[Path]] = {}
    for f in files:
        by_split.setdefault(split_from_name(f), []).append(f)
    if len(by_split) > 1 and None in by_split:
        log.warning("%s: ignoring files whose names name no split: %s", path,
                    ", ".join(str(f) for f in by_split.pop(None)))
    return by_split


def local_source(task: str, subdir: str, path: str | os.PathLike | None,
                 data_dir: str | os.PathLike | None) -> tuple[Path, str] | None:
    """The local file or directory to read for ``task``: ``path`` if given, else
    ``<root>/<subdir>`` in the first data root that has it; None if there is none."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise UserError(f"--path {path}: no such file or directory")
        return p, "--path"
    for origin, root in candidate_roots(data_dir):
        p = root / subdir
        if p.exists():
            return p, origin
    return None


def iter_local(path: Path) -> Iterator[tuple[str | None, Path, str, Any]]:
    """``(split or None, file, where, row)`` for every row of the local files under ``path``."""
    for split, files in find_split_files(path).items():
        for f in files:
            for where, row in iter_records(f):
                yield split, f, where, row


def load_hub(task: str, dataset_id: str, config: str | None, download: bool) -> dict[str, Any]:
    """``datasets.load_dataset(dataset_id, config)`` as ``{split: rows}``; a clear UserError on failure."""
    hint = f"pass --path FILE_OR_DIR with local files in the {dataset_id} schema"
    if not download and os.environ.get("HF_DATASETS_OFFLINE") != "1":
        raise UserError(f"no local {task} files found and downloads are turned off; {hint}")
    try:
        import datasets

        dd = datasets.load_dataset(dataset_id, config) if config else datasets.load_dataset(dataset_id)
    except Exception as exc:  # network, missing cache, hub errors: all reported the same way
        raise UserError(f"could not load {dataset_id} from the Hugging Face hub ({type(exc).__name__}: {exc}); "
                        f"{hint}") from None
    return {str(name): ds for name, ds in dd.items()}
