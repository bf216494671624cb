"""Run directories, atomic writes, deterministic data order, NaN guard."""

from __future__ import annotations

import json
import math
import os

import pytest

from perlhf.errors import UserError
from perlhf.io import atomic_directory, atomic_write_json
from perlhf.runs import (
    NonFiniteError,
    RunDir,
    check_finite,
    iterate_steps,
    save_trainer_state,
)


def test_atomic_write_json_rejects_nothing_partial(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1, "nan": math.nan})
    assert json.loads(p.read_text()) == {"x": 1, "nan": None}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]


def test_atomic_directory_failure_leaves_nothing(tmp_path):
    final = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_replaces(tmp_path):
    final = tmp_path / "ckpt"
    for v in ("1", "2"):
        with atomic_directory(final) as tmp:
            (tmp / "v").write_text(v)
    assert (final / "v").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_rundir_refuses_existing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(UserError, match="--overwrite"):
        RunDir.prepare(out)
    run = RunDir.prepare(out, overwrite=True)
    assert not run.metrics_path.exists()
    with pytest.raises(UserError, match="exclude"):
        RunDir.prepare(out, overwrite=True, resume=True)


def test_resume_finds_only_complete_checkpoints(tmp_path):
    run = RunDir.prepare(tmp_path / "run")
    with run.checkpoint_writer(10) as d:
        save_trainer_state(d, {"step": 10})
    # an incomplete checkpoint (no trainer_state.json), e.g. after kill -9 mid-write of an old version
    (run.checkpoints_dir / "step-00000020").mkdir()
    resumed = RunDir.prepare(run.path, resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "step-00000010"


def test_resume_of_missing_dir(tmp_path):
    with pytest.raises(UserError, match="--resume"):
        RunDir.prepare(tmp_path / "nothing", resume=True)


def test_metrics_truncate_and_torn_line(tmp_path):
    run = RunDir.prepare(tmp_path / "run")
    for s in range(1, 6):
        run.log_metrics({"step": s, "loss": 1.0 / s})
    with open(run.metrics_path, "a") as fh:
        fh.write('{"step": 6, "lo')  # torn by kill -9
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4, 5]
    run.truncate_metrics_after(3)
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]


def test_check_finite_names_step():
    check_finite(3, loss=1.0, reward=None)
    with pytest.raises(NonFiniteError, match=r"step 7: loss=nan"):
        check_finite(7, loss=float("nan"))


def test_iterate_steps_resume_is_identical():
    full = list(iterate_steps(10, 3, seed=1, max_steps=7))
    assert [s for s, _, _ in full] == list(range(1, 8))
    resumed = list(iterate_steps(10, 3, seed=1, max_steps=7, start_step=4))
    assert resumed == full[4:]
    # each epoch visits distinct examples; different seeds give different orders
    epoch0 = [i for s, e, b in full if e == 0 for i in b]
    assert len(epoch0) == len(set(epoch0)) == 9
    assert list(iterate_steps(10, 3, seed=2, max_steps=7)) != full


def test_iterate_steps_too_few_examples():
    with pytest.raises(UserError, match="batch-size"):
        list(iterate_steps(2, 4, seed=0, max_steps=1))


def test_no_tmp_left_in_rundir(tmp_path):
    run = RunDir.prepare(tmp_path / "run")
    run.save_config({"a": 1})
    run.write_summary({"b": float("inf")})
    names = sorted(os.listdir(run.path))
    assert names == ["config.yaml", "summary.json"]


def test_steps_over_epochs_is_the_one_schedule():
    from perlhf.runs import steps_over_epochs

    def epochs(e):
        return [[10 * e + 0], [10 * e + 1]]

    assert list(steps_over_epochs(epochs, 5)) == [(1, 0, [0]), (2, 0, [1]), (3, 1, [10]), (4, 1, [11]), (5, 2, [20])]
    assert list(steps_over_epochs(epochs, 5, start_step=3)) == [(4, 1, [11]), (5, 2, [20])]
    assert list(steps_over_epochs(lambda e: [], 5)) == []  # no batch: no step, no endless loop


def test_bucketed_step_schedule_resumes_identically_and_refuses_a_batch_larger_than_the_data():
    from perlhf.train.batching import step_schedule

    lengths = [(i * 37) % 50 + 1 for i in range(40)]
    full = list(step_schedule(lengths, 4, seed=3, max_steps=25, window_batches=2))
    assert [s for s, _, _ in full] == list(range(1, 26)) and full[-1][1] == 2  # 10 batches an epoch
    assert list(step_schedule(lengths, 4, seed=3, max_steps=25, start_step=12, window_batches=2)) == full[12:]
    assert all(len(batch) == 4 for _, _, batch in full)
    assert sorted(i for _, _, b in full[:10] for i in b) == list(range(40))  # an epoch sees each example once
    with pytest.raises(UserError, match="only 3 training examples for a batch of 4"):
        step_schedule([1, 2, 3], 4, seed=0, max_steps=1)  # at once, before any step
