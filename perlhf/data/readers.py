"""Reading raw data files with errors that name the file, the line or record, and the field.

Every loader goes through these helpers so that a malformed file stops with one
:class:`~perlhf.errors.DataError` (invalid JSON, a truncated ``.gz``, a missing
field...) instead of a traceback from deep inside ``json`` or ``gzip``.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from perlhf.errors import DataError

_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _is_gz(path: Path) -> bool:
    return path.suffix == ".gz"


def read_text(path: str | Path) -> str:
    """The whole file as text (``.gz`` decompressed); a truncated or corrupt ``.gz`` is a DataError."""
    path = Path(path)
    try:
        if _is_gz(path):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return fh.read()
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, None, "no such file") from None
    except _GZIP_ERRORS as exc:
        raise DataError(path, None, f"truncated or corrupt gzip file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"byte {exc.start}", "not valid UTF-8 text") from None


def _json_error(path: Path, exc: json.JSONDecodeError, line_offset: int = 0) -> DataError:
    return DataError(path, f"line {exc.lineno + line_offset}, column {exc.colno}", f"invalid JSON: {exc.msg}")


def read_json(path: str | Path) -> Any:
    """Parse a whole JSON file (``.gz`` allowed)."""
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None


def read_json_array(path: str | Path) -> list[Any]:
    """A JSON file that must hold an array (e.g. a Taskmaster reward or data file)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(path, None, f"expected a JSON array of records, found a JSON {type(data).__name__}")
    return data


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSONL file (``.gz`` allowed).

    Invalid JSON names the line; a truncated ``.gz`` names the last line read.
    """
    path = Path(path)
    lineno = 0
    try:
        fh = gzip.open(path, "rt", encoding="utf-8") if _is_gz(path) else open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, None, "no such file") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, start=1):  # noqa: B007 - lineno used after the loop
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(path, f"line {lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}") from None
                yield lineno, obj
        except _GZIP_ERRORS as exc:
            raise DataError(path, f"after line {lineno}", f"truncated or corrupt gzip file ({exc})") from None
        except UnicodeDecodeError as exc:
            raise DataError(path, f"line {lineno + 1}", f"not valid UTF-8 text ({exc.reason})") from None


def require(obj: Any, key: str, path: Path, where: str, *, types: type | tuple[type, ...] = str) -> Any:
    """``obj[key]``, checked to exist and to have one of ``types``; else a DataError naming the field."""
    if not isinstance(obj, dict):
        raise DataError(path, where, f"expected a JSON object, found {type(obj).__name__}")
    if key not in obj:
        raise DataError(path, where, f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise DataError(path, where, f"field {key!r}: expected {names}, found {type(value).__name__}")
    return value


def binary_label(value: Any, path: Path, where: str, field: str) -> int:
    """A 0/1 label (``0``, ``1``, ``0.0``, ``1.0``, ``true``, ``false``); anything else is a DataError."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    raise DataError(path, where, f"field {field!r}: expected 0 or 1, found {value!r}")


RECORD_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet")


def is_record_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in RECORD_FILE_SUFFIXES)


def iter_records(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, record)`` from a JSONL, JSON (array or JSON Lines) or Parquet file.

    ``where`` is ``"line N"`` for JSON Lines, ``"record N"`` for a JSON array and
    ``"row N"`` for Parquet (0-based), ready for a DataError.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
        except FileNotFoundError:
            raise DataError(path, None, "no such file") from None
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise DataError(path, None, f"not a readable Parquet file ({exc})") from None
        for i, row in enumerate(rows):
            yield f"row {i}", row
        return
    if name.endswith((".json", ".json.gz")):
        text = read_text(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":  # not a single JSON value: maybe JSON Lines under a .json name
                raise _json_error(path, exc) from None
            data = None
        if data is not None:
            if not isinstance(data, list):
                raise DataError(path, None, f"expected a JSON array of records, found a JSON {type(data).__name__}")
            for i, rec in enumerate(data):
                yield f"record {i}", rec
            return
    for lineno, obj in iter_jsonl(path):
        yield f"line {lineno}", obj
