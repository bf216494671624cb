"""`perlhf demo --quick` end to end on the real offline model, on Taskmaster Coffee and on the offline
sentiment task (as CI runs it)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from perlhf.demo import FULL, QUICK, Progress, _plan, format_main_table, main_table
from perlhf.report import ModeResult


def test_main_table_ratios():
    rm = [ModeResult("full", "rm", quality={"test_accuracy": 0.8}, peak_memory_bytes=2e9, step_time_s=4.0),
          ModeResult("lora:r8", "rm", rank=8, quality={"test_accuracy": 0.82}, peak_memory_bytes=1e9,
                     step_time_s=2.0)]
    rl = [ModeResult("full", "rl", quality={"reward_gain": 0.1, "kl_last": 0.01, "judge_win": 0.5, "judge_tie": 0.2,
                                            "judge_loss": 0.3}, peak_memory_bytes=4e9, step_time_s=10.0),
          ModeResult("lora:r8", "rl", rank=8, status="failed", error="boom")]
    rows = main_table(rm, rl)
    assert rows[1]["rm_memory_pct_of_full"] == pytest.approx(50.0)
    assert rows[1]["rm_speedup"] == pytest.approx(2.0)
    assert rows[1]["rl_memory_pct_of_full"] is None
    text = format_main_table(rows)
    assert "50% / 20% / 30%" in text and "lora:r8 (failed step)" in text


def test_budgets_and_eta():
    assert QUICK.rm_steps < FULL.rm_steps and QUICK.rl_steps < FULL.rl_steps
    p = Progress(_plan(QUICK))
    assert "after the first few steps" in p.eta_text()
    update = p.begin("rm full")
    update(2)  # the ETA starts within the first stage, from its share of the steps done
    assert "ETA" in str(p.bar) and "min elapsed" in str(p.bar)
    p.end("rm full", "done")
    p.done = p.total / 2
    assert "ETA" in p.eta_text()
    p.begin("rm lora")
    assert "ETA" in str(p.bar)  # the bar shows the overall ETA, not only its own step count
    p.end("rm lora", "done")


def test_sentiment_budget_skips_sft_and_sets_per_mode_rates():
    from perlhf.compare import Mode
    from perlhf.demo import SENTIMENT, SENTIMENT_QUICK, DemoConfig, _mode_args, budget_for

    cfg = DemoConfig(task="rotten-tomatoes-sentiment")
    assert budget_for(cfg) is SENTIMENT and "sft" not in {s.name for s in _plan(SENTIMENT)}
    assert budget_for(DemoConfig(task="rotten-tomatoes-sentiment", quick=True)) is SENTIMENT_QUICK
    assert budget_for(DemoConfig(task="taskmaster-coffee")) is FULL
    assert _mode_args(cfg, "rl", Mode("lora:r8", 8)) == ["--learning-rate", "1e-3", "--lora-targets", "all-linear"]
    assert _mode_args(cfg, "rm", Mode("full", None)) == ["--learning-rate", "5e-5"]
    # demo_rl_sweep.sh's choice: full RL warms up over 5 steps, LoRA and the reward models do not
    assert _mode_args(cfg, "rl", Mode("full", None)) == ["--learning-rate", "3e-5", "--warmup-steps", "5"]
    assert _mode_args(DemoConfig(task="taskmaster-coffee"), "rl", Mode("full", None)) == []
    # the demo runs in fp32 unless asked (its settings were chosen there; bf16 autocast changed its results)
    assert DemoConfig().mixed_precision == "no"


@pytest.mark.slow
@pytest.mark.parametrize("task", ["taskmaster-coffee", "rotten-tomatoes-sentiment"])
def test_demo_quick_writes_report_with_numbers(task, tmp_path, shared_data_dir, smol_tokenizer):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "perlhf", "demo", "--quick", "--task", task, "--data-dir",
                           str(shared_data_dir), "--report-dir", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "report:" in proc.stdout and "| lora:r8 |" in proc.stdout
    for name in ("report.md", "report.json", "rm/report.md", "rm/report.json", "rl/report.md", "rl/report.json",
                 "rm/peak_memory.png", "rl/step_time.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    rows = {r["mode"]: r for r in report["main_table"]}
    assert set(rows) == {"full", "lora:r8"}
    for row in rows.values():
        assert row["rm_status"] == "ok" and row["rl_status"] == "ok"
        for key in ("rm_test_accuracy", "rl_reward_gain", "rl_kl", "judge_win"):
            assert isinstance(row[key], float) and math.isfinite(row[key]), key
    lora = rows["lora:r8"]
    assert lora["rm_memory_pct_of_full"] > 0 and lora["rl_speedup"] > 0
    for slug in ("full", "lora-r8"):  # every judged answer, with the scores behind the verdict
        answers = [json.loads(line) for line in (out / "runs" / f"eval-{slug}-answers.jsonl").read_text().splitlines()]
        assert len(answers) == report["budget"]["eval_prompts"]
        assert all({"rl", "sft", "judge_rl", "judge_sft", "reward_rl", "reward_sft"} <= set(a) for a in answers)
    # both RL policies are judged against one set of SFT answers: the second eval reuses the first's
    assert "sft_answers_from" not in report["eval"]["full"]
    assert report["eval"]["lora:r8"]["sft_answers_from"] == report["eval"]["full"]["samples_out"]
    assert report["eval"]["lora:r8"]["judge_rm"]["mean_sft"] == report["eval"]["full"]["judge_rm"]["mean_sft"]
    # the untrained model is scored once (full's run) and its baseline shown for both modes
    rm_rows = {r["mode"]: r for r in report["rm"]}
    assert rm_rows["lora:r8"]["baselines"]["untrained accuracy"] == rm_rows["full"]["baselines"]["untrained accuracy"]
    summaries = {slug: json.loads((out / "runs" / f"rm-{slug}" / "summary.json").read_text()) for slug in ("full", "lora-r8")}
    assert summaries["full"]["untrained"] and not summaries["lora-r8"]["untrained"]


def test_demo_step_command_is_what_benchmarks_rerun(capsys):
    """`python -m perlhf.demo STEP` prints the demo's own command of a step (benchmarks/demo_seeds.sh reruns it)."""
    from perlhf.demo import DemoConfig, demo_step_command, main
    from perlhf.errors import UserError

    cfg = DemoConfig()
    rl = demo_step_command(cfg, "rl-full", reward_dir="R")
    assert rl[0] == "rl" and rl[rl.index("--policy") + 1] == "smollm2-135m"  # sentiment: RL from the instruct model
    assert rl[rl.index("--learning-rate") + 1] == "3e-5" and rl[rl.index("--warmup-steps") + 1] == "5"
    assert "rloo" in rl and rl[-2:] == ["--mode", "full"]
    judge = demo_step_command(cfg, "rm-judge")
    assert judge[:2] == ["rm", "train"] and "minilm-l6" in judge and "2/2" in judge
    lora = demo_step_command(cfg, "rm-lora")
    assert lora[lora.index("--train-shard") + 1] == "1/2" and lora[lora.index("--lora-rank") + 1] == "8"
    with pytest.raises(UserError, match="--sft-model"):
        demo_step_command(DemoConfig(task="taskmaster-coffee"), "rm-full")
    with pytest.raises(UserError, match="--reward-dir"):
        demo_step_command(cfg, "eval")
    assert main(["eval", "--reward-dir", "R", "--judge-dir", "J"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "eval" and printed[printed.index("--judge-rm") + 1] == "J"
