"""perlhf compare: mode parsing, a failing mode reported as failed, and a real tiny comparison."""

from __future__ import annotations

import json
import sys

import pytest

from perlhf.compare import Mode, parse_modes, prepare_report_dir, run_mode
from perlhf.errors import UserError


def test_parse_modes():
    assert parse_modes("full,lora:r1,lora:r16") == [Mode("full", None), Mode("lora:r1", 1), Mode("lora:r16", 16)]
    assert Mode("lora:r4", 4).stage_args() == ["--mode", "lora", "--lora-rank", "4"]
    assert Mode("full", None).stage_args() == ["--mode", "full"]
    ens = parse_modes("lora:r8,lora:r8x4")
    assert ens == [Mode("lora:r8", 8), Mode("lora:r8x4", 8, 4)]
    assert ens[1].stage_args() == ["--mode", "lora", "--lora-rank", "8", "--ensemble", "4"]
    assert ens[1].slug == "lora-r8x4" and ens[0].slug == "lora-r8"


def test_ensemble_modes_are_reward_model_modes(tmp_path):
    from perlhf.compare import compare

    with pytest.raises(UserError, match="ensembles are reward models"):
        compare(["rl"], parse_modes("lora:r8x4"), tmp_path, {}, {})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("text,why", [
    ("full,lora:rx", "cannot parse 'lora:rx'"),
    ("lora", "needs a rank"),
    ("full,,lora:r8", "empty entry"),
    ("lora:r0", "must be > 0"),
    ("full,full", "listed twice"),
    ("qlora:r8", "cannot parse 'qlora:r8'"),
    ("lora:r8x1", "needs K >= 2"),
    ("lora:r8x", "cannot parse"),
])
def test_parse_modes_errors(text, why):
    with pytest.raises(UserError, match=why):
        parse_modes(text)


def test_report_dir_refused_unless_overwrite(tmp_path):
    d = tmp_path / "rep"
    d.mkdir()
    (d / "report.md").write_text("old")
    with pytest.raises(UserError, match="--overwrite"):
        prepare_report_dir(d, overwrite=False)
    prepare_report_dir(d, overwrite=True)
    assert list(d.iterdir()) == []


def test_failing_mode_is_reported_not_raised(tmp_path):
    # an unknown task makes the stage exit 2 quickly; compare records it as failed with the error
    res = run_mode("rm", Mode("lora:r2", 2), tmp_path, ["--task", "no-such-task"], python=sys.executable)
    assert res.status == "failed"
    assert "no-such-task" in res.error
    assert (tmp_path / "runs" / "rm-lora-r2.log").exists()


def test_cli_rejects_bad_modes(capsys):
    from perlhf.cli import main

    rc = main(["compare", "--modes", "full,lora:8", "--report-dir", "unused"])
    assert rc == 2
    assert "cannot parse 'lora:8'" in capsys.readouterr().err


def test_cli_forwards_unknown_options_only_to_compare(capsys):
    from perlhf.cli import main

    with pytest.raises(SystemExit):
        main(["data", "list", "--max-steps", "3"])
    assert "unrecognized arguments" in capsys.readouterr().err


def test_report_json_holds_numbers_for_tiny_run(tmp_path, tiny_env):
    """End to end on a tiny model: two modes, each a fresh process, report files with numbers."""
    from perlhf.cli import main

    rep = tmp_path / "rep"
    rc = main(["compare", "--stage", "rm", "--task", "jsonl", "--modes", "full,lora:r2", "--report-dir", str(rep),
               "--path", str(tiny_env / "pairs.jsonl"), "--model", str(tiny_env / "tiny"), "--max-steps", "3",
               "--batch-size", "4", "--eval-every", "3", "--report-to", "none"])
    assert rc == 0
    data = json.loads((rep / "rm" / "report.json").read_text())
    modes = {m["mode"]: m for m in data["modes"]}
    assert set(modes) == {"full", "lora:r2"}
    assert all(m["status"] == "ok" for m in modes.values())
    assert modes["lora:r2"]["trainable_params"] < modes["full"]["trainable_params"]
    assert data["relative_to_full"]["lora:r2"]["memory_pct_of_full"] > 0
    assert isinstance(modes["full"]["quality"]["test_accuracy"], float)
    for png in ("peak_memory.png", "step_time.png", "learning_curves.png"):
        assert (rep / "rm" / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("signame, rc", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_keeps_finished_modes_in_the_report(tmp_path, tiny_env, signame, rc):
    """SIGINT (Ctrl-C) or SIGTERM (`kill PID`) while the second mode runs: exit 130 / 143, the first mode's
    result and run stay, the report says so. Every optimizer step sleeps 2 s (PERLHF_FAULT=slow:2), so the
    second mode is still running when the signal arrives on any CPU."""
    import os
    import signal
    import subprocess
    import time

    rep = tmp_path / "rep"
    cmd = [sys.executable, "-m", "perlhf", "compare", "--stage", "rm", "--task", "jsonl", "--modes", "full,lora:r2",
           "--report-dir", str(rep), "--path", str(tiny_env / "pairs.jsonl"), "--model", str(tiny_env / "tiny"),
           "--max-steps", "3", "--batch-size", "4", "--eval-every", "3", "--report-to", "none"]
    env = {**os.environ, "PERLHF_FAULT": "slow:2"}
    # A suite started in the background (`pytest &` in a script) inherits SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: give the child the default disposition, as a terminal's Ctrl-C would find it.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    second_log = rep / "runs" / "rm-lora-r2.log"
    deadline = time.time() + 300
    while time.time() < deadline and not second_log.exists() and proc.poll() is None:
        time.sleep(0.2)
    assert second_log.exists(), "the second mode never started"
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    data = json.loads((rep / "rm" / "report.json").read_text())
    status = {m["mode"]: m["status"] for m in data["modes"]}
    assert proc.returncode == rc, err[-2000:]
    assert status == {"full": "ok", "lora:r2": "interrupted"}
    assert (rep / "runs" / "rm-full" / "summary.json").exists()
    assert "interrupted" in (rep / "rm" / "report.md").read_text()


def test_machine_names_the_vector_unit_and_bf16():
    """Every report's machine line says what decides CPU speed: the ISA torch dispatches to, and native bf16."""
    import torch

    from perlhf.compare import machine

    line = machine()
    assert torch.backends.cpu.get_cpu_capability() in line
    assert ("AVX512_BF16" in line) or ("AMX" in line) or ("no native bf16" in line)
