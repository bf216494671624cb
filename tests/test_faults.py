"""Fault injection: kill -9 each training stage during a step, during a checkpoint write and during
the final save, resume after each kill, and check the result against an uninterrupted run bit for bit
(final weights, metrics without timings, RL samples). And a full disk at the final save: one clear
message, and a run that ``--resume`` completes.

Every run is a subprocess (``PERLHF_FAULT=<point>:<step>`` makes it SIGKILL itself there, see
:mod:`perlhf.faults`) with one thread, so the interrupted and the uninterrupted runs compute alike.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from perlhf.cli import main

REPO = Path(__file__).resolve().parents[1]
STEPS = 4
# measured quantities that differ between any two runs (time, memory), left out of the comparison
VOLATILE = re.compile(r"time|second|_s$|memory|rss|per_s|tokens_per|examples_per|eta")


def _argv(stage: str, env: Path, rm_final: Path | None) -> list[str]:
    common = ["--max-steps", str(STEPS), "--save-every", "1", "--keep-checkpoints", "2", "--seed", "3",
              "--max-prompt-tokens", "32"]
    if stage == "rm":
        return ["rm", "train", "--model", str(env / "tiny"), "--task", "jsonl", "--path", str(env / "pairs.jsonl"),
                "--batch-size", "8", "--eval-every", "2", "--save-every", "1", "--keep-checkpoints", "2",
                "--max-response-tokens", "16", "--lora-dropout", "0.1",
                "--progress", "false", "--report-to", "none", "--max-steps", str(STEPS), "--seed", "3",
                "--max-prompt-tokens", "32"]
    if stage == "sft":
        return ["sft", "--model", str(env / "tiny"), "--task", "imdb-sentiment-dialogues", "--batch-size", "2",
                "--max-train-examples", "16", "--max-eval-examples", "4", "--eval-every", "2",
                "--max-response-tokens", "16", "--lora-dropout", "0.1", *common]
    return ["rl", "--policy", str(env / "tiny"), "--reward-model", str(rm_final), "--task", "jsonl",
            "--path", str(env / "pairs.jsonl"), "--prompts-per-step", "2", "--samples-per-prompt", "2",
            "--max-new-tokens", "4", "--baseline", "rloo", "--sample-every", "1", "--num-samples-logged", "4",
            *common]


def _run(argv: list[str], out: Path, fault: str | None = None, resume: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PERLHF_FAULT", None)
    if fault:
        env["PERLHF_FAULT"] = fault
    cmd = [sys.executable, "-m", "perlhf", *argv, "--output-dir", str(out), *(["--resume"] if resume else [])]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _weights(folder: Path) -> dict:
    out = {}
    for f in sorted(folder.rglob("*.safetensors")):
        for k, v in load_file(str(f)).items():
            out[f"{f.relative_to(folder)}:{k}"] = v
    return out


def _log(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return [{k: v for k, v in r.items() if not VOLATILE.search(k)} for r in rows]


def _stable(value):
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not VOLATILE.search(k)}
    return value


@pytest.fixture(scope="module")
def rm_final(tiny_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults-rm") / "rm"
    argv = ["rm", "train", "--model", str(tiny_env / "tiny"), "--task", "jsonl", "--path",
            str(tiny_env / "pairs.jsonl"), "--batch-size", "8", "--max-steps", "2", "--eval-every", "2",
            "--max-prompt-tokens", "32", "--max-response-tokens", "16", "--progress", "false", "--report-to", "none",
            "--output-dir", str(out)]
    assert main(argv) == 0
    return out / "final"


@pytest.mark.parametrize("stage", ["rm", "sft", "rl"])
def test_kill_anywhere_then_resume_is_bit_exact(stage, tiny_env, rm_final, tmp_path):
    argv = _argv(stage, tiny_env, rm_final)
    clean = _run(argv, tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-3000:]
    killed = tmp_path / "killed"
    for fault, resume in ((f"step:{STEPS - 2}", False), (f"checkpoint:{STEPS - 1}", True), (f"final:{STEPS}", True)):
        r = _run(argv, killed, fault=fault, resume=resume)
        assert r.returncode == -signal.SIGKILL, f"{fault}: rc {r.returncode}\n{r.stderr[-3000:]}"
        assert not (killed / "summary.json").exists()
    done = _run(argv, killed, resume=True)
    assert done.returncode == 0, done.stderr[-3000:]
    # no temporaries left by the kills
    assert not [p for p in killed.rglob("*") if p.name.endswith(".tmp") or ".old-" in p.name]
    a, b = _weights(tmp_path / "clean" / "final"), _weights(killed / "final")
    assert a.keys() == b.keys() and a
    for k in a:
        assert a[k].equal(b[k]), k
    assert _log(tmp_path / "clean" / "metrics.jsonl") == _log(killed / "metrics.jsonl")
    assert _log(tmp_path / "clean" / "samples.jsonl") == _log(killed / "samples.jsonl")
    s_clean = json.loads((tmp_path / "clean" / "summary.json").read_text())
    s_killed = json.loads((killed / "summary.json").read_text())
    for key in ("steps", "test", "reward_first", "reward_last", "kl_last", "final"):
        assert _stable(s_clean.get(key)) == _stable(s_killed.get(key)), key


def test_disk_full_at_the_final_save_is_one_message_and_resumable(tiny_env, tmp_path, monkeypatch, capsys):
    """ENOSPC while final/ is written: exit 2 with a message naming the file and --resume; the run's
    checkpoints are intact, so --resume finishes it."""
    import perlhf.models.heads as heads

    argv = ["rm", "train", "--model", str(tiny_env / "tiny"), "--task", "jsonl", "--path",
            str(tiny_env / "pairs.jsonl"), "--batch-size", "8", "--max-steps", "2", "--eval-every", "1",
            "--max-prompt-tokens", "32", "--max-response-tokens", "16", "--progress", "false", "--report-to", "none",
            "--output-dir", str(tmp_path / "run")]
    real = heads.save_reward_model

    def full_disk(model, folder, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "adapter_model.safetensors"))

    monkeypatch.setattr(heads, "save_reward_model", full_disk)
    import perlhf.train.reward as reward

    monkeypatch.setattr(reward, "save_reward_model", full_disk)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "disk is full" in err and "--resume" in err and "adapter_model" in err
    assert (tmp_path / "run" / "checkpoints").is_dir() and not (tmp_path / "run" / "final").exists()
    monkeypatch.setattr(reward, "save_reward_model", real)
    assert main([*argv, "--resume"]) == 0
    assert (tmp_path / "run" / "final" / "perlhf_reward.json").is_file()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test"]["accuracy"] is not None and summary["steps"] == 2


@pytest.mark.parametrize("stage", ["sft", "rl"])
def test_every_stage_has_the_harness_features(stage, tiny_env, rm_final, tmp_path):
    """The features rm had alone: a progress bar with i/N and an ETA, --report-to, the resume check that
    refuses changed options with the diff, a summary over every process of a resumed run, and no
    folder left after an option error."""
    argv = _argv(stage, tiny_env, rm_final)
    half = [*argv[: argv.index("--max-steps") + 1], "2", *argv[argv.index("--max-steps") + 2:]]
    first = _run([*half, "--report-to", "tensorboard"], tmp_path / "run")
    assert first.returncode == 0, first.stderr[-2000:]
    assert re.search(r"2/2 \[\d\d:\d\d<\d\d:\d\d", first.stderr), first.stderr[-1500:]  # i/N [elapsed<ETA]
    if importlib.util.find_spec("tensorboard") is not None:
        assert (tmp_path / "run" / "tensorboard").is_dir()
    refused = _run([*argv, "--learning-rate", "0.5"], tmp_path / "run", resume=True)
    assert refused.returncode == 2 and "--learning-rate" in refused.stderr and "->" in refused.stderr
    done = _run(argv, tmp_path / "run", resume=True)  # --max-steps may grow
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{STEPS}/{STEPS}" in done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    if stage == "rl":
        assert summary["steps"] == STEPS
    else:
        assert summary["final"]["step"] == STEPS
    bad = _run([*argv, "--lora-rank", "0"], tmp_path / "bad")
    assert bad.returncode == 2 and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("stage", ["rm", "sft", "rl"])
def test_resuming_a_finished_run_keeps_its_summary(stage, tiny_env, rm_final, tmp_path):
    """Audit item 4: --resume on a run that already finished runs no step and rewrites summary.json with
    the same steps and quality fields (RL: steps and the first reward over the whole run; rm: test
    metrics; sft: the last step's metrics), and with the precision it chose."""
    argv = [*_argv(stage, tiny_env, rm_final), "--output-dir", str(tmp_path / "run")]
    if stage != "rm":
        argv += ["--progress", "false", "--report-to", "none"]
    assert main(argv) == 0
    first = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert main([*argv, "--resume"]) == 0
    again = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {"mixed_precision", "mixed_precision_reason"} <= again.keys()
    for key in ("steps", "test", "validation_best", "best_step", "reward_first", "reward_last", "kl_last", "final",
                "mixed_precision"):
        assert _stable(first.get(key)) == _stable(again.get(key)), key
    assert any(first.get(k) is not None for k in ("test", "reward_first", "final"))


def test_slow_fault_sleeps_at_every_step_and_kills_nothing(monkeypatch):
    """PERLHF_FAULT=slow:S sleeps S seconds at each optimizer step (the point "step") and nowhere else;
    a point:step fault elsewhere leaves the other steps alone."""
    from perlhf import faults

    slept: list[float] = []
    monkeypatch.setattr(faults.time, "sleep", slept.append)
    monkeypatch.setattr(faults.os, "kill", lambda *a: pytest.fail(f"killed: {a}"))
    monkeypatch.setenv("PERLHF_FAULT", "slow:0.5")
    for step in (1, 2, 3):
        faults.crash_point("step", step)
    faults.crash_point("checkpoint", 2)
    faults.crash_point("final", 3)
    assert slept == [0.5, 0.5, 0.5]
    monkeypatch.setenv("PERLHF_FAULT", "checkpoint:2")
    faults.crash_point("step", 2)
    assert slept == [0.5, 0.5, 0.5]
