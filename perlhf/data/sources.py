"""Where data files come from: a local directory, the user cache, or a verified download.

A *data root* is a directory laid out like ``../shared/data``::

    taskmaster/TM-4-2024/reward/reward_00.json ...   (Taskmaster Coffee ratings)
    taskmaster/TM-3-2020/reward/reward_00.json ...   (Taskmaster Ticketing ratings)
    taskmaster/TM-4-2024/data/data_00.json ...       (Taskmaster-4 coffee dialogues)
    hh-rlhf/harmless-base/train.jsonl.gz, test.jsonl.gz   (HH-RLHF harmless-base, full)
    hh-rlhf/harmless-base-dev.jsonl.gz               (1,156-pair dev subset of test)
    shp/, tldr/                                      (optional local copies, see shp.py/tldr.py)

Roots are tried in this order, and the first one holding a task's files wins:

1. the ``data_dir`` argument (``--data-dir`` on the command line);
2. the environment variable ``PERLHF_DATA_DIR``;
3. the user cache: ``$PERLHF_CACHE/data`` (else ``$XDG_CACHE_HOME/perlhf/data``, else
   ``~/.cache/perlhf/data``);
4. a download into the user cache from the public raw URLs, each file verified
   against a SHA-256 kept in this module. The download is written under a
   temporary name and renamed only once its hash matches; on a mismatch
   :class:`~perlhf.errors.ChecksumError` names the file and both hashes and
   nothing is left in the cache.

The HH-RLHF files' hashes could not be known offline when this was written, so
they are not pinned (``None``): on the first download their SHA-256 is recorded
in ``<cache>/RECORDED_SHA256SUMS`` and logged, and later downloads are checked
against the recorded value (trust on first use).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from perlhf.errors import ChecksumError, UserError
from perlhf.io import follow_umask

log = logging.getLogger(__name__)

TASKMASTER_BASE_URL = "https://raw.githubusercontent.com/google-research-datasets/Taskmaster/master/"
HH_BASE_URL = "https://raw.githubusercontent.com/anthropics/hh-rlhf/master/"

#: SHA-256 of the Taskmaster files (commit d92cb6a), keyed by path inside the Taskmaster repository.
TASKMASTER_SHA256: dict[str, str] = {
    "TM-3-2020/ontology/apis.json": "7fe0545dece5dce292c19cc21b02afb0b88fb02a7929d2f8605fe4d6d965a6e0",
    "TM-3-2020/ontology/entities.json": "1eda5ddeb63a25778418105a3af6956d2009e46384e53943e7abd9876dd962d3",
    "TM-3-2020/reward/reward_00.json": "3b35c36b1df6f53142746e3921133971c4a0409cd56afcc4f4ec05b1bc1a9ee1",
    "TM-3-2020/reward/reward_01.json": "4ae68457d5977160e77c4e01bd28f07ffdca0840947b0e4a1e9fb119d4150927",
    "TM-3-2020/reward/reward_02.json": "b81ef285225471e2db8dbb5bedb58f4cf4da1c8aa1fb44ed29ff894f675a8953",
    "TM-3-2020/reward/reward_03.json": "c7feda53f890074be86a7778efa672b5d70a9a323831304889815e2fc5dcb26c",
    "TM-3-2020/reward/reward_04.json": "14a121bcc178ba9b5044d9ddde7fa21dd01e53b6382de4d9fbc19a86fdc756f2",
    "TM-3-2020/reward/reward_05.json": "ad68debd6c9fec9a3f5fd6ad4990300e5e379ac283f7d400fad4b4cfc1b67b77",
    "TM-3-2020/reward/reward_06.json": "a2e36d561ab8026d6771cae79e003e9bc3a674b27cda8eedf2e78b5f24ad3396",
    "TM-3-2020/reward/reward_07.json": "323cce6a474f98003bf3661dabde98fbf916cf2ffb49cbd52d36d35fbc09ffb2",
    "TM-4-2024/data/data_00.json": "d9440d1a46e6ba9f8c680a77a7dc7a42b0b3266ef555aeac6160b0d5ac37c647",
    "TM-4-2024/data/data_01.json": "2577d6af1c9d7cc5540d5193206d35b000ebeff59925c1076ce724f1a85b8964",
    "TM-4-2024/data/data_02.json": "b353618d9709c6bdeafa08682526e04047ad28d5f9acd65ed7878482a90d49df",
    "TM-4-2024/data/data_03.json": "45fe8eb52af674b69972d172c911f9cfd6f5044b61338b524997edf1a4861641",
    "TM-4-2024/data/data_04.json": "bf5f2e3704aab48f657ec97f8d9bf041abec17a1cd3e56206c3424910875088d",
    "TM-4-2024/data/data_05.json": "3d158e9880bfea3e5db18d008cf1f726f1d802eca28c2b71fc291274b9ee60ba",
    "TM-4-2024/data/data_06.json": "dd0546a6aaf430a812f4cfb5d8f9f0c823136ba2e77e78103b50a8e95080759c",
    "TM-4-2024/data/data_07.json": "b61f11f3c950c330049906ae249e858503ec7c905fcad5b4a7edd851ccf07bbc",
    "TM-4-2024/reward/reward_00.json": "79f809857b90e8afe28c542dbcbdea79a1a1e365aa4626b6ec2fdc37785a9f24",
    "TM-4-2024/reward/reward_01.json": "818fe4604d23cbb3b77aebf98f28300ae411ca3305a4b730d19bd8ff69ab9455",
    "TM-4-2024/reward/reward_02.json": "433851379c7143299b2570ffc7c40a8f57ddabf0c8278ad123da7a7dac64c867",
    "TM-4-2024/reward/reward_03.json": "d2f96717912652d3bd0a7aa907aa0b798aa35465e5ee5a768f0de118d08fe149",
    "TM-4-2024/reward/reward_04.json": "73ae7f65dc98f1906eac243cf95cc75f7b6489ef5e4a7cf8c787f4704672a7df",
    "TM-4-2024/reward/reward_05.json": "8d0c124fd06b261596fc72e188fbd326d1b5dd559ecbf3a585a513c1f3e12cf1",
    "TM-4-2024/reward/reward_06.json": "55ce13a025dcfb842ef2de75e4cfafb07a1f1938905d5c4e59e5b440a7ce624c",
}

#: HH-RLHF harmless-base files. Their SHA-256 was not knowable offline (the shared dev
#: file is a re-compressed subset), so it is recorded on first download (see module doc).
HH_SHA256: dict[str, str | None] = {
    "harmless-base/train.jsonl.gz": None,
    "harmless-base/test.jsonl.gz": None,
}

RECORDED_SUMS_NAME = "RECORDED_SHA256SUMS"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data root: its path inside the root, where to download it, its SHA-256."""

    rel: str
    url: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Layout:
    """A set of files that together make up one task's data (all must be present)."""

    name: str
    files: tuple[RemoteFile, ...]

    @property
    def downloadable(self) -> bool:
        return all(f.url for f in self.files)


@dataclass(frozen=True)
class Located:
    """The result of :func:`locate`: which layout was found, where, and how."""

    layout: Layout
    root: Path
    origin: str  # "--data-dir", "PERLHF_DATA_DIR", "cache" or "download"
    paths: tuple[Path, ...]


def taskmaster_file(rel: str) -> RemoteFile:
    """A Taskmaster repository path as a file of the data root (under ``taskmaster/``)."""
    return RemoteFile(f"taskmaster/{rel}", TASKMASTER_BASE_URL + rel, TASKMASTER_SHA256[rel])


def taskmaster_files(prefix: str) -> tuple[RemoteFile, ...]:
    """All pinned Taskmaster files under ``prefix`` (e.g. ``TM-4-2024/reward/``), sorted."""
    return tuple(taskmaster_file(rel) for rel in sorted(TASKMASTER_SHA256) if rel.startswith(prefix))


def hh_file(rel: str) -> RemoteFile:
    return RemoteFile(f"hh-rlhf/{rel}", HH_BASE_URL + rel, HH_SHA256[rel])


# ----------------------------------------------------------------------------- roots


def cache_root() -> Path:
    """The user data cache: ``<perlhf cache>/data``, the perlhf cache being ``$PERLHF_CACHE``,
    else ``$XDG_CACHE_HOME/perlhf``, else ``~/.cache/perlhf`` (models live beside, in ``models/``)."""
    base = os.environ.get("PERLHF_CACHE")
    if base:
        return Path(base).expanduser() / "data"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "perlhf" / "data"
    return Path.home() / ".cache" / "perlhf" / "data"


def candidate_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The data roots to search, in priority order, as ``(origin, path)``.

    An explicit ``data_dir`` or ``PERLHF_DATA_DIR`` that does not exist is a UserError
    (a typo should not silently fall through to a download).
    """
    roots: list[tuple[str, Path]] = []
    if data_dir is not None and str(data_dir) != "":
        p = Path(data_dir).expanduser()
        if not p.is_dir():
            raise UserError(f"--data-dir {data_dir}: no such directory")
        roots.append(("--data-dir", p))
    env = os.environ.get("PERLHF_DATA_DIR")
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise UserError(f"PERLHF_DATA_DIR={env}: no such directory")
        roots.append(("PERLHF_DATA_DIR", p))
    roots.append(("cache", cache_root()))
    return roots


def locate(task: str, layouts: Sequence[Layout], data_dir: str | os.PathLike | None = None, *,
           download: bool = True) -> Located:
    """Find the files of ``task``: the first root (see module doc) holding one complete layout.

    Within a root the layouts are tried in order (e.g. HH's full train/test before the dev file).
    A root holding only part of a layout is an error naming the missing files, except the
    cache, where the missing files are downloaded. With nothing found and ``download``
    allowed, the first downloadable layout is downloaded into the cache.
    """
    roots = candidate_roots(data_dir)
    searched = []
    for origin, root in roots:
        searched.append(f"{root} ({origin})")
        for layout in layouts:
            paths = [root / f.rel for f in layout.files]
            present = [p.is_file() for p in paths]
            if all(present):
                return Located(layout, root, origin, tuple(paths))
            if any(present) and origin != "cache":
                missing = [f.rel for f, ok in zip(layout.files, present, strict=True) if not ok]
                raise UserError(
                    f"{root} ({origin}) holds only part of the {task} data ({layout.name}); missing: "
                    + ", ".join(missing)
                )
        log.debug("%s: no %s files under %s", task, task, root)
    targets = [lay for lay in layouts if lay.downloadable]
    if not download or not targets:
        how = "" if not targets else " (downloads were turned off)"
        raise UserError(
            f"no {task} data found{how}; searched: " + "; ".join(searched)
            + ". Pass --data-dir DIR (a directory laid out like the perlhf data cache) or set PERLHF_DATA_DIR"
        )
    layout = targets[0]
    cache = cache_root()
    for f in layout.files:
        dest = cache / f.rel
        if not dest.is_file():
            download_file(f.url, dest, f.sha256, rel=f.rel)  # type: ignore[arg-type]
    return Located(layout, cache, "download", tuple(cache / f.rel for f in layout.files))


# ----------------------------------------------------------------------------- download


def _urlopen_chunks(url: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    try:
        resp = urllib.request.urlopen(url, timeout=60)  # noqa: S310 - http(s) and file:// URLs only
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(
            f"could not download {url} ({getattr(exc, 'reason', exc)}); check the network, "
            "or pass --data-dir DIR with the files already downloaded"
        ) from None
    with resp:
        while True:
            try:
                chunk = resp.read(chunk_size)
            except OSError as exc:
                raise UserError(f"download of {url} failed midway ({exc})") from None
            if not chunk:
                return
            yield chunk


#: The function that streams a URL's bytes; tests replace it (no network in tests).
fetch_chunks: Callable[[str], Iterator[bytes]] = _urlopen_chunks


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_recorded(cache: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    path = cache / RECORDED_SUMS_NAME
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2:
                out[parts[1].strip()] = parts[0]
    return out


def _record_hash(cache: Path, rel: str, digest: str) -> None:
    from perlhf.io import atomic_write_text

    recorded = _read_recorded(cache)
    recorded[rel] = digest
    atomic_write_text(cache / RECORDED_SUMS_NAME, "".join(f"{h}  {r}\n" for r, h in sorted(recorded.items())))


def _mkdirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; return the ones created (deepest first)."""
    created = []
    p = path
    while not p.exists():
        created.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return created


def download_file(url: str, dest: str | os.PathLike, sha256: str | None, *, rel: str | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its SHA-256.

    ``sha256=None`` means "not pinned": the hash recorded on an earlier download (in the
    cache's ``RECORDED_SHA256SUMS``) is enforced if there is one, otherwise the new hash is
    recorded and logged. On a mismatch, ChecksumError names the file and both hashes, and
    neither the file nor any folder created for it is left behind.
    """
    dest = Path(dest)
    cache = cache_root()
    rel = rel or dest.name
    expected = sha256
    if expected is None:
        expected = _read_recorded(cache).get(rel)
    created = _mkdirs(dest.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    follow_umask(tmp)
    ok = False
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            log.info("downloading %s", url)
            for chunk in fetch_chunks(url):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if expected is not None and digest != expected:
            raise ChecksumError(
                f"{rel} (from {url}): SHA-256 mismatch: expected {expected}, got {digest}; "
                "the download was discarded and nothing was kept in the cache"
            )
        os.replace(tmp, dest)
        ok = True
        if sha256 is None and expected is None:
            with contextlib.suppress(OSError):
                _record_hash(cache, rel, digest)
            log.warning("%s has no pinned SHA-256; recorded %s on first download", rel, digest)
        return dest
    finally:
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            for d in created:  # deepest first
                with contextlib.suppress(OSError):
                    d.rmdir()
