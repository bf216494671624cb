"""Stanford Human Preferences (``stanfordnlp/SHP``): Reddit comment pairs.

Schema (per row): ``post_id``, ``domain``, ``history`` (the post), ``c_root_id_A``,
``c_root_id_B``, ``human_ref_A``, ``human_ref_B`` (the two comments), ``labels``
(1 if A is preferred, 0 if B), plus scores and timestamps (unused). A row becomes
a :class:`PreferencePair` whose prompt is the post as one user message, grouped
by ``post_id``. The dataset's own train/validation/test splits are kept; rows
from a file whose name names no split are split by the hash of ``post_id``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from perlhf.data.hfdata import iter_local, load_hub, local_source
from perlhf.data.readers import binary_label, require
from perlhf.data.records import PreferencePair
from perlhf.data.splits import assign_with_given
from perlhf.errors import DataError

log = logging.getLogger(__name__)

DATASET_ID = "stanfordnlp/SHP"


def parse_row(row: Any, path: Path | str, where: str, *, skip_identical: bool = False) -> PreferencePair | None:
    post_id = require(row, "post_id", path, where)
    history = require(row, "history", path, where)
    a = require(row, "human_ref_A", path, where)
    b = require(row, "human_ref_B", path, where)
    if "labels" not in row:
        raise DataError(path, where, "missing field 'labels'")
    label = binary_label(row["labels"], path, where, "labels")
    if not history.strip():
        raise DataError(path, where, "field 'history': empty context")
    if a.strip() == b.strip():
        if skip_identical:
            return None
        raise DataError(path, where, "fields 'human_ref_A' and 'human_ref_B' are identical (chosen equals rejected)")
    chosen, rejected = (a, b) if label == 1 else (b, a)
    ids = [str(row.get("c_root_id_A") or ""), str(row.get("c_root_id_B") or "")]
    rid = f"{post_id}:{ids[0]}:{ids[1]}" if all(ids) else f"{post_id}:{where}"
    return PreferencePair(id=rid, group=post_id, prompt=({"role": "user", "content": history.strip()},),
                          chosen=chosen.strip(), rejected=rejected.strip())


def load(path: str | os.PathLike | None, data_dir: str | os.PathLike | None, download: bool,
         fractions) -> tuple[dict[str, list[PreferencePair]], list[Path], str]:
    """``(splits, files, origin)``: local files (``path`` or ``<data root>/shp``) else the hub."""
    items: list[tuple[PreferencePair, str | None]] = []
    src = local_source("shp", "shp", path, data_dir)
    files: list[Path] = []
    if src is not None:
        root, origin = src
        for split, f, where, row in iter_local(root):
            if not files or files[-1] != f:
                files.append(f)
            rec = parse_row(row, f, where)
            if rec is not None:
                items.append((rec, split))
    else:
        origin = f"hub:{DATASET_ID}"
        skipped = 0
        for split, rows in load_hub("shp", DATASET_ID, None, download).items():
            for i, row in enumerate(rows):
                rec = parse_row(row, f"hf://{DATASET_ID}", f"split {split!r}, row {i}", skip_identical=True)
                if rec is None:
                    skipped += 1
                else:
                    items.append((rec, _SPLIT.get(split)))
        if skipped:
            log.warning("%s: skipped %d pairs with identical comments", DATASET_ID, skipped)
    return assign_with_given(items, fractions), files, origin


_SPLIT = {"train": "train", "validation": "validation", "test": "test"}
