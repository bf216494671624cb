"""Where data comes from: --data-dir, PERLHF_DATA_DIR, the user cache, a verified download.

No network: downloads read ``file://`` URLs of a temporary "remote" folder.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import pytest

from perlhf.data import load_task, sources
from perlhf.errors import ChecksumError, UserError

FIXTURES = Path(__file__).parent / "fixtures"
REWARD_SAMPLE = FIXTURES / "taskmaster_reward_sample.json"
HH_SAMPLE = FIXTURES / "hh_sample.jsonl"
COFFEE = [f"TM-4-2024/reward/reward_0{i}.json" for i in range(7)]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _coffee_root(root: Path, n_files: int = 7) -> Path:
    for rel in COFFEE[:n_files]:
        dest = root / "taskmaster" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REWARD_SAMPLE, dest)
    return root


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean environment: fresh cache, no PERLHF_DATA_DIR, Taskmaster 'remote' = a local folder."""
    monkeypatch.delenv("PERLHF_DATA_DIR", raising=False)
    monkeypatch.setenv("PERLHF_CACHE", str(tmp_path / "cache"))
    remote = tmp_path / "remote"
    for rel in COFFEE:
        (remote / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REWARD_SAMPLE, remote / rel)
    digest = hashlib.sha256(REWARD_SAMPLE.read_bytes()).hexdigest()
    monkeypatch.setattr(sources, "TASKMASTER_BASE_URL", remote.as_uri() + "/")
    monkeypatch.setattr(sources, "TASKMASTER_SHA256", {rel: digest for rel in COFFEE})
    return tmp_path


def test_cache_root_follows_perlhf_cache(env):
    assert sources.cache_root() == env / "cache" / "data"


def test_data_dir_wins_over_env_and_cache(env, monkeypatch):
    a = _coffee_root(env / "a")
    b = _coffee_root(env / "b")
    _coffee_root(sources.cache_root())
    monkeypatch.setenv("PERLHF_DATA_DIR", str(b))
    t = load_task("taskmaster-coffee", a, download=False)
    assert t.origin == "--data-dir" and all(str(f).startswith(str(a)) for f in t.files)
    t = load_task("taskmaster-coffee", download=False)
    assert t.origin == "PERLHF_DATA_DIR" and all(str(f).startswith(str(b)) for f in t.files)
    monkeypatch.delenv("PERLHF_DATA_DIR")
    t = load_task("taskmaster-coffee", download=False)
    assert t.origin == "cache" and all(str(f).startswith(str(sources.cache_root())) for f in t.files)


def test_data_dir_without_the_task_falls_through(env):
    empty = env / "empty"
    empty.mkdir()
    _coffee_root(sources.cache_root())
    assert load_task("taskmaster-coffee", empty, download=False).origin == "cache"


def test_missing_data_dir_is_an_error(env):
    with pytest.raises(UserError, match="--data-dir .*no such directory"):
        load_task("taskmaster-coffee", env / "nope")


def test_partial_data_dir_names_missing_files(env):
    root = _coffee_root(env / "partial", n_files=5)
    with pytest.raises(UserError, match="only part of the taskmaster-coffee data.*reward_05.json.*reward_06.json"):
        load_task("taskmaster-coffee", root)


def test_nothing_found_without_download(env):
    with pytest.raises(UserError, match="no taskmaster-coffee data found.*downloads were turned off"):
        load_task("taskmaster-coffee", download=False)


def test_download_verifies_and_caches(env):
    t = load_task("taskmaster-coffee")
    assert t.origin == "download" and len(t) == 7 * 5
    cached = _files(sources.cache_root())
    assert [p.relative_to(sources.cache_root()).as_posix() for p in cached] == [f"taskmaster/{r}" for r in COFFEE]
    assert not [p for p in cached if p.name.endswith(".part")]
    # next time it comes from the cache
    assert load_task("taskmaster-coffee", download=False).origin == "cache"


def test_partial_cache_downloads_only_what_is_missing(env):
    _coffee_root(sources.cache_root(), n_files=3)
    assert load_task("taskmaster-coffee").origin == "download"
    assert len(_files(sources.cache_root())) == 7


def test_checksum_mismatch_leaves_nothing(env, monkeypatch):
    monkeypatch.setitem(sources.TASKMASTER_SHA256, COFFEE[0], "0" * 64)
    actual = hashlib.sha256(REWARD_SAMPLE.read_bytes()).hexdigest()
    with pytest.raises(ChecksumError) as exc:
        load_task("taskmaster-coffee")
    msg = str(exc.value)
    assert "reward_00.json" in msg and "0" * 64 in msg and actual in msg
    assert _files(sources.cache_root()) == []


def test_download_failure_is_a_user_error(env, monkeypatch):
    monkeypatch.setattr(sources, "TASKMASTER_BASE_URL", (env / "missing-remote").as_uri() + "/")
    with pytest.raises(UserError, match="could not download"):
        load_task("taskmaster-coffee")
    assert _files(sources.cache_root()) == []


def test_fetch_function_can_be_replaced(env, monkeypatch):
    seen = []

    def fake_fetch(url):
        seen.append(url)
        yield REWARD_SAMPLE.read_bytes()

    monkeypatch.setattr(sources, "fetch_chunks", fake_fetch)
    monkeypatch.setattr(sources, "TASKMASTER_BASE_URL", "https://example.invalid/Taskmaster/")
    assert len(load_task("taskmaster-coffee")) == 35
    assert seen[0] == "https://example.invalid/Taskmaster/TM-4-2024/reward/reward_00.json"


def test_unpinned_hh_hash_is_recorded_then_enforced(env, monkeypatch):
    remote = env / "hh-remote" / "harmless-base"
    remote.mkdir(parents=True)
    for split in ("train", "test"):
        with gzip.open(remote / f"{split}.jsonl.gz", "wb") as f:
            f.write(HH_SAMPLE.read_bytes())
    monkeypatch.setattr(sources, "HH_BASE_URL", (env / "hh-remote").as_uri() + "/")
    t = load_task("hh-harmless")
    assert t.origin == "download" and len(t) == 6
    recorded = (sources.cache_root() / sources.RECORDED_SUMS_NAME).read_text()
    digest = sources.sha256_file(remote / "train.jsonl.gz")
    assert f"{digest}  hh-rlhf/harmless-base/train.jsonl.gz" in recorded
    # upstream changes: a fresh download no longer matches the recorded hash
    (sources.cache_root() / "hh-rlhf" / "harmless-base" / "train.jsonl.gz").unlink()
    with gzip.open(remote / "train.jsonl.gz", "wb") as f:
        f.write(HH_SAMPLE.read_bytes()[:-1] + b" \n")
    with pytest.raises(ChecksumError, match=f"expected {digest}"):
        load_task("hh-harmless")
    assert not (sources.cache_root() / "hh-rlhf" / "harmless-base" / "train.jsonl.gz").exists()


def test_pinned_taskmaster_checksums_match_the_shared_copy(shared_data_dir):
    sums = (shared_data_dir / "taskmaster" / "SHA256SUMS").read_text().split("\n")
    pinned = {line.split()[1].removeprefix("./"): line.split()[0] for line in sums if line.strip()}
    assert pinned == sources.TASKMASTER_SHA256
