"""``perlhf demo``: the whole PERL recipe on the offline defaults, LoRA against full fine-tuning.

SFT (LoRA, merged: the RL start and anchor) -> reward model, full and LoRA
(trained on one half of the training conversations) -> an independent judge
reward model (trained on the other half) -> RL, full and LoRA (both against the
LoRA reward model) -> evaluation of each RL policy against the SFT policy under
the judge -> report. Every step runs in a fresh ``python -m perlhf`` process
(so peak memory is per mode) with its log under ``<report-dir>/runs/``.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from perlhf.compare import (
    Mode,
    last_error,
    machine,
    mode_command,
    prepare_report_dir,
    run_mode,
    run_process,
    versions,
)
from perlhf.config import mixed_precision_option, option
from perlhf.errors import UserError
from perlhf.io import atomic_write_json, atomic_write_text
from perlhf.report import ModeResult, markdown_table, write_report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """How big each step of the demo is."""

    sft_steps: int
    sft_batch: int
    rm_steps: int
    rm_batch: int
    rm_eval_examples: int
    rm_eval_every: int
    rl_steps: int
    rl_prompts_per_step: int
    rl_samples_per_prompt: int
    max_prompt_tokens: int
    max_response_tokens: int
    max_new_tokens: int
    eval_prompts: int
    judge_steps: int = 0  # the judge reward model's steps (0: rm_steps)


# Sized for a 2-core CPU with smollm2-135m: the full demo in about 30 minutes, --quick in a few.
FULL = Budget(sft_steps=16, sft_batch=8, rm_steps=24, rm_batch=8, rm_eval_examples=64, rm_eval_every=12,
              rl_steps=8, rl_prompts_per_step=4, rl_samples_per_prompt=2, max_prompt_tokens=160,
              max_response_tokens=48, max_new_tokens=24, eval_prompts=24)
# The offline sentiment task (no SFT step; a MiniLM judge): sized from benchmarks/SENTIMENT_RESULTS.md.
SENTIMENT = Budget(sft_steps=0, sft_batch=0, rm_steps=40, rm_batch=16, rm_eval_examples=256, rm_eval_every=20,
                   rl_steps=20, rl_prompts_per_step=4, rl_samples_per_prompt=4, max_prompt_tokens=64,
                   max_response_tokens=40, max_new_tokens=24, eval_prompts=128, judge_steps=60)
SENTIMENT_QUICK = Budget(sft_steps=0, sft_batch=0, rm_steps=2, rm_batch=4, rm_eval_examples=16, rm_eval_every=2,
                         rl_steps=2, rl_prompts_per_step=2, rl_samples_per_prompt=2, max_prompt_tokens=64,
                         max_response_tokens=24, max_new_tokens=8, eval_prompts=4, judge_steps=3)
#: Rated tasks whose policy is the instruct model itself (no SFT) and whose judge is an encoder.
SENTIMENT_TASKS = ("rotten-tomatoes-sentiment", "imdb-sentiment")
SENTIMENT_JUDGE = "minilm-l6"
#: Per-stage, per-mode learning rates of the sentiment task; the RL ones were chosen on validation prompts by
#: benchmarks/sentiment_sweep.sh (SENTIMENT_RESULTS.md: LoRA 1e-3 and full 5e-5 beat 5e-4/2e-3 and 2e-5, one seed);
#: full RL's 3e-5 is from benchmarks/demo_rl_sweep.sh over 3 RL seeds on validation prompts (DEMO_RESULTS.md:
#: mean judge win rate 0.740, lowest 0.703, against 5e-5's 0.711 and 0.656).
SENTIMENT_LR = {("rm", "lora"): "1e-3", ("rm", "full"): "5e-5", ("rl", "lora"): "1e-3", ("rl", "full"): "3e-5"}
#: Learning-rate warm-up steps of the sentiment RL, per mode (demo_rl_sweep.sh, 3 seeds on validation, DEMO_RESULTS.md):
#: full at 3e-5 with 5 steps 0.758 (lowest 0.742) against 0.740 (lowest 0.703) without; LoRA keeps none (0.794
#: without, lower with).
SENTIMENT_RL_WARMUP = {"full": 5, "lora": 0}
QUICK = Budget(sft_steps=2, sft_batch=4, rm_steps=2, rm_batch=4, rm_eval_examples=8, rm_eval_every=2,
               rl_steps=2, rl_prompts_per_step=2, rl_samples_per_prompt=2, max_prompt_tokens=96,
               max_response_tokens=24, max_new_tokens=8, eval_prompts=4)


@dataclass
class DemoConfig:
    """Options of ``perlhf demo``."""

    model: str = option("smollm2-135m", "base model (an offline name, a local folder or a hub id)")
    task: str = option("rotten-tomatoes-sentiment", "rated task for the reward models and the RL prompts. "
                       "rotten-tomatoes-sentiment (offline; or imdb-sentiment): no SFT, a MiniLM encoder judge, "
                       "RLOO; taskmaster-coffee: the paper's task, SFT on --sft-task, a LoRA judge")
    sft_task: str = option("taskmaster-coffee-dialogues", "dialogue task for SFT")
    data_dir: str | None = option(None, "folder with the raw data (else PERLHF_DATA_DIR, the cache, a download)")
    report_dir: str = option("reports/demo", "folder for the report, the plots and every step's run and log")
    overwrite: bool = option(False, "replace an existing --report-dir")
    quick: bool = option(False, "tiny budgets (a few minutes): checks that the whole pipeline works, "
                         "numbers mean nothing")
    lora_rank: int = option(8, "LoRA rank of the LoRA modes (the paper's r=8)")
    seed: int = option(0, "seed of every step")
    # fp32 by default, unlike the stages: the demo's budgets and settings were chosen and measured in fp32, and
    # bf16 autocast changes its results (benchmarks/DEMO_RESULTS.md: on an AVX512_BF16 CPU, auto's bf16 took the
    # LoRA RM from 0.758 to 0.641 accuracy, full RL from 0.781 to 0.633 under the judge, LoRA's RM speed-up to 0.99x).
    mixed_precision: str = mixed_precision_option(
        "no", ". The demo's default is no (fp32): its budgets were chosen and its README figures measured in "
        "fp32; auto's bf16 is faster on such hardware but gives other results (benchmarks/DEMO_RESULTS.md)")

    def validate(self) -> None:
        if self.lora_rank <= 0:
            raise UserError(f"--lora-rank must be > 0, got {self.lora_rank}")


@dataclass
class Step:
    name: str
    weight: float  # rough share of the total time, for the overall ETA
    steps: int  # the optimizer steps shown on its progress bar (0: no bar)


def _plan(b: Budget) -> list[Step]:
    return [*([Step("sft", 1.0, b.sft_steps)] if b.sft_steps else []), Step("rm full", 1.6, b.rm_steps), Step("rm lora", 1.0, b.rm_steps),
            Step("rm judge", 1.0, b.judge_steps or b.rm_steps), Step("rl full", 2.2, b.rl_steps), Step("rl lora", 1.6, b.rl_steps),
            Step("eval full", 0.6, 0), Step("eval lora", 0.6, 0)]


class Progress:
    """A progress bar per step and an overall ETA from the steps' rough weights."""

    def __init__(self, plan: list[Step]):
        self.plan = {s.name: s for s in plan}
        self.total = sum(s.weight for s in plan)
        self.done = 0.0
        self.start = time.perf_counter()
        self.bar = None

    def begin(self, name: str):
        from tqdm.auto import tqdm

        step = self.plan[name]
        self.bar = tqdm(total=step.steps or None, desc=f"{name:<9}", unit="step", leave=True, dynamic_ncols=True,
                        bar_format="{desc} {bar} {n_fmt}/{total_fmt} steps [{elapsed}]{postfix}" if step.steps else
                        "{desc} working [{elapsed}]{postfix}")
        self.bar.set_postfix_str(self.eta_text())

        def update(n: int) -> None:
            if self.bar is not None and step.steps and n > self.bar.n:
                self.bar.update(min(n, step.steps) - self.bar.n)
                if self.done > 0 or self.bar.n >= max(2, step.steps // 4):  # model loading skews the first steps
                    self.bar.set_postfix_str(self.eta_text(step.weight * self.bar.n / step.steps))

        return update

    def end(self, name: str, status: str) -> None:
        self.done += self.plan[name].weight
        if self.bar is not None:
            self.bar.set_postfix_str(f"{status}; {self.eta_text()}")
            self.bar.close()
            self.bar = None

    def eta_text(self, partial: float = 0.0) -> str:
        """Elapsed and remaining minutes; ``partial``: the weight done so far of the stage that runs."""
        elapsed = time.perf_counter() - self.start
        done = self.done + partial
        if done <= 0:
            return "overall ETA: after the first few steps"
        remaining = elapsed / done * (self.total - done)
        return f"overall: {elapsed / 60:.1f} min elapsed, ETA {remaining / 60:.1f} min"


def _precision_used(cfg: DemoConfig) -> str:
    """What --mixed-precision resolved to on this machine, and why (the stages resolve it the same way)."""
    import torch

    from perlhf import precision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = precision.choose(cfg.mixed_precision, device=device, native_bf16=precision.native_bf16(device))
    return f"{chosen.mode} ({chosen.reason})"


def _perlhf(*args: str) -> list[str]:
    return [sys.executable, "-m", "perlhf", *args]


def _shown(cmd: list[str]) -> str:
    return "perlhf " + shlex.join(cmd[3:])


def budget_for(cfg: DemoConfig) -> Budget:
    if cfg.task in SENTIMENT_TASKS:
        return SENTIMENT_QUICK if cfg.quick else SENTIMENT
    return QUICK if cfg.quick else FULL


def _mode_args(cfg: DemoConfig, stage: str, mode: Mode) -> list[str]:
    """The sentiment task's per-mode learning rates, RL warm-up and all-linear LoRA; nothing for the others."""
    if cfg.task not in SENTIMENT_TASKS:
        return []
    kind = "full" if mode.rank is None else "lora"
    warmup = SENTIMENT_RL_WARMUP[kind] if stage == "rl" else 0
    return ["--learning-rate", SENTIMENT_LR[(stage, kind)], *(["--lora-targets", "all-linear"] if mode.rank else []),
            *(["--warmup-steps", str(warmup)] if warmup else [])]


def _data_args(cfg: DemoConfig) -> list[str]:
    return ["--data-dir", cfg.data_dir] if cfg.data_dir else []


# The demo's command of each step, less its output paths: run_demo runs them, and the benchmarks that rerun a
# step at other seeds or settings (demo_seeds.sh, demo_rl_sweep.sh) take them from `python -m perlhf.demo`.
def demo_rm_args(cfg: DemoConfig, b: Budget, sft_model: str | Path) -> list[str]:
    """``perlhf rm train`` options every reward model of the demo shares (both modes and the judge)."""
    sentiment = cfg.task in SENTIMENT_TASKS
    return ["--task", cfg.task, *_data_args(cfg), "--model", str(sft_model), "--max-steps", str(b.rm_steps),
            "--batch-size", str(b.rm_batch), "--eval-every", str(b.rm_eval_every),
            "--max-eval-examples", str(b.rm_eval_examples), "--max-train-examples",
            # at least 64: a tiny random subset of an 86%-positive task can hold one label only
            str(2000 if sentiment else max(64, b.rm_steps * b.rm_batch)), "--max-prompt-tokens", str(b.max_prompt_tokens),
            "--max-response-tokens", str(b.max_response_tokens), "--seed", str(cfg.seed),
            "--report-to", "none", "--mixed-precision", cfg.mixed_precision]


def _rm_mode_args(cfg: DemoConfig, mode: Mode) -> list[str]:
    """A training reward model's own options: shard 1/2 of the training data, the mode's rate."""
    return ["--train-shard", "1/2", *_mode_args(cfg, "rm", mode)]


def demo_judge_args(cfg: DemoConfig, b: Budget) -> tuple[Mode, list[str]]:
    """The judge's mode and options after :func:`demo_rm_args`: shard 2/2 (data the reward model never saw), another
    seed. The sentiment judge is an encoder with its own weights and tokenizer (full fine-tuning of MiniLM);
    the others are a LoRA reward model on the SFT model. (Its untrained score is not needed: its own test AUC
    is what qualifies it.)"""
    args = ["--train-shard", "2/2", "--seed", str(cfg.seed + 1)]
    if cfg.task not in SENTIMENT_TASKS:
        return Mode(f"lora:r{cfg.lora_rank}", cfg.lora_rank), args
    return Mode("full", None), [*args, "--model", SENTIMENT_JUDGE, "--learning-rate", "1e-4", "--warmup-steps", "5",
                                "--batch-size", str(2 * b.rm_batch), "--max-steps", str(b.judge_steps or b.rm_steps),
                                "--max-eval-examples", str(2 * b.rm_eval_examples)]


def demo_rl_args(cfg: DemoConfig, b: Budget, sft_model: str | Path, reward_dir: str | Path) -> list[str]:
    """``perlhf rl`` options of both modes (add :func:`_mode_args` for the mode's rate and warm-up)."""
    args = ["--policy", str(sft_model), "--reward-model", str(reward_dir), "--task", cfg.task, *_data_args(cfg),
            "--max-steps", str(b.rl_steps), "--prompts-per-step", str(b.rl_prompts_per_step),
            "--samples-per-prompt", str(b.rl_samples_per_prompt), "--max-new-tokens", str(b.max_new_tokens),
            "--max-prompt-tokens", str(b.max_prompt_tokens), "--max-prompts",
            str(b.rl_steps * b.rl_prompts_per_step), "--seed", str(cfg.seed), "--mixed-precision", cfg.mixed_precision]
    if cfg.task in SENTIMENT_TASKS:  # RLOO over the samples of a prompt (SENTIMENT_RESULTS.md)
        args += ["--baseline", "rloo"]
    return args


def demo_eval_args(cfg: DemoConfig, b: Budget, sft_model: str | Path, reward_dir: str | Path,
                   judge_dir: str | Path | None) -> list[str]:
    """``perlhf eval`` and its options, less ``--rl`` and the files it writes."""
    return ["eval", "--sft", str(sft_model), "--reward-model", str(reward_dir),
            *(["--judge-rm", str(judge_dir)] if judge_dir else []), "--task", cfg.task, *_data_args(cfg),
            "--split", "test", "--num-prompts", str(b.eval_prompts), "--max-new-tokens", str(b.max_new_tokens),
            "--max-prompt-tokens", str(b.max_prompt_tokens), "--batch-size", "16", "--seed", str(cfg.seed)]


DEMO_STEPS = ("rm-full", "rm-lora", "rm-judge", "rl-full", "rl-lora", "eval")


def demo_step_command(cfg: DemoConfig, step: str, *, sft_model: str | Path | None = None,
                      reward_dir: str | Path | None = None, judge_dir: str | Path | None = None) -> list[str]:
    """The ``perlhf`` arguments of one step of ``perlhf demo`` as run_demo runs it, less ``--output-dir`` (or
    eval's ``--rl`` and outputs): ``sft_model`` defaults to the task's RL start (the instruct model for the
    sentiment task), ``reward_dir`` / ``judge_dir`` name a finished demo's reward model and judge."""
    if step not in DEMO_STEPS:
        raise UserError(f"unknown demo step {step!r}: one of {', '.join(DEMO_STEPS)}")
    b = budget_for(cfg)
    sft = sft_model or (cfg.model if cfg.task in SENTIMENT_TASKS else None)
    if sft is None:
        raise UserError(f"--task {cfg.task} starts RL from an SFT model: pass --sft-model (a demo's runs/sft/merged)")
    stage, _, kind = step.partition("-")
    lora = Mode(f"lora:r{cfg.lora_rank}", cfg.lora_rank)
    mode = lora if kind == "lora" else Mode("full", None)
    if stage == "rm":
        if kind == "judge":
            mode, own = demo_judge_args(cfg, b)
        else:
            own = _rm_mode_args(cfg, mode)
        return mode_command("rm", mode, [*demo_rm_args(cfg, b, sft), *own])
    if reward_dir is None:
        raise UserError(f"demo step {step} needs --reward-dir (a demo's runs/rm-lora-r8/final)")
    if stage == "rl":
        return mode_command("rl", mode, [*demo_rl_args(cfg, b, sft, reward_dir), *_mode_args(cfg, "rl", mode)])
    return demo_eval_args(cfg, b, sft, reward_dir, judge_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m perlhf.demo STEP [options]``: print the demo's command of STEP (:func:`demo_step_command`), one
    argument a line, for a benchmark script to rerun it with other seeds or settings (a later option wins)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m perlhf.demo", description=main.__doc__.splitlines()[0])
    ap.add_argument("step", choices=DEMO_STEPS)
    ap.add_argument("--task", default=DemoConfig.task)
    ap.add_argument("--data-dir")
    ap.add_argument("--sft-model")
    ap.add_argument("--reward-dir")
    ap.add_argument("--judge-dir")
    args = ap.parse_args(argv)
    cfg = DemoConfig(task=args.task, data_dir=args.data_dir)
    try:
        cmd = demo_step_command(cfg, args.step, sft_model=args.sft_model, reward_dir=args.reward_dir,
                                judge_dir=args.judge_dir)
    except UserError as exc:
        print(f"python -m perlhf.demo: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(cmd))
    return 0


def _run_sft(cfg: DemoConfig, b: Budget, runs: Path, data: list[str], progress: Progress,
             commands: list[str]) -> Path:
    sft_dir = runs / "sft"
    sft_cmd = _perlhf("sft", "--model", cfg.model, "--task", cfg.sft_task, *data, "--mode", "lora",
                      "--lora-rank", str(cfg.lora_rank), "--merge", "true", "--max-steps", str(b.sft_steps),
                      "--batch-size", str(b.sft_batch), "--max-prompt-tokens", str(b.max_prompt_tokens),
                      "--max-response-tokens", str(b.max_response_tokens), "--max-eval-examples",
                      str(b.rm_eval_examples), "--max-train-examples", str(b.sft_steps * b.sft_batch), "--eval-every", str(b.sft_steps), "--save-every", str(b.sft_steps),
                      "--seed", str(cfg.seed), "--output-dir", str(sft_dir), "--overwrite", "true",
                      "--mixed-precision", cfg.mixed_precision)
    commands.append(_shown(sft_cmd))
    update = progress.begin("sft")
    rc = run_process(sft_cmd, runs / "sft.log", sft_dir / "metrics.jsonl", update)
    sft_model = sft_dir / "merged"
    progress.end("sft", "ok" if rc == 0 else "failed")
    if rc != 0 or not sft_model.is_dir():
        raise UserError(f"the SFT step failed (exit {rc}): {last_error(runs / 'sft.log')}; "
                        f"full log: {runs / 'sft.log'}")
    return sft_model


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    b = budget_for(cfg)
    sentiment = cfg.task in SENTIMENT_TASKS
    logging.getLogger("perlhf.compare").setLevel(logging.WARNING)  # the progress bars say what runs
    out = Path(cfg.report_dir)
    prepare_report_dir(out, cfg.overwrite)
    runs = out / "runs"
    progress = Progress(_plan(b))
    data = _data_args(cfg)
    commands: list[str] = []
    t0 = time.perf_counter()

    # 1. SFT: LoRA, merged into a plain model = the RL start and the KL anchor. The sentiment task
    #    starts from the instruct model itself, which already writes review-like text.
    if sentiment:
        sft_model = cfg.model
    else:
        sft_model = _run_sft(cfg, b, runs, data, progress, commands)

    # 2. Reward models on the SFT model: full and LoRA on shard 1/2 of the training conversations,
    #    the judge (LoRA) on shard 2/2, so the judge never saw the policy's reward data.
    lora = Mode(f"lora:r{cfg.lora_rank}", cfg.lora_rank)
    modes = [Mode("full", None), lora]
    rm_args = demo_rm_args(cfg, b, sft_model)
    rm_results: list[ModeResult] = []
    for mode in modes:
        name = f"rm {'full' if mode.rank is None else 'lora'}"
        # The untrained model is the same for every mode (the head is seeded on its own and LoRA's B starts
        # at zero), so only the first mode scores it; the others take its baseline (about 30 s saved).
        shared = next((r.baselines for r in rm_results if "untrained accuracy" in r.baselines), None)
        res = run_mode("rm", mode, out, [*rm_args, *_rm_mode_args(cfg, mode), *(["--eval-untrained", "false"] if shared else [])],
                       on_progress=progress.begin(name))
        if shared and res.status == "ok":
            res.baselines["untrained accuracy"] = shared["untrained accuracy"]
        progress.end(name, res.status)
        rm_results.append(res)
        commands.append(res.command)
    judge_mode, judge_args = demo_judge_args(cfg, b)
    judge = run_mode("rm", judge_mode, out, [*rm_args, *judge_args, "--eval-untrained", "false"],
                     on_progress=progress.begin("rm judge"), run_name="rm-judge")
    progress.end("rm judge", judge.status)
    commands.append(judge.command)
    judge_dir = Path(judge.run_dir) / "final" if judge.status == "ok" else None

    # 3. RL, full and LoRA, both against the same reward model (the LoRA one if it trained).
    reward = next((r for r in reversed(rm_results) if r.status == "ok"), None)
    rl_results: list[ModeResult] = []
    evals: dict[str, dict[str, Any]] = {}
    if reward is None:
        rl_results = [ModeResult(m.name, "rl", rank=m.rank, status="failed",
                                 error="no reward model trained (see the rm section)") for m in modes]
    else:
        reward_dir = str(Path(reward.run_dir) / "final")
        rl_args = demo_rl_args(cfg, b, sft_model, reward_dir)
        for mode in modes:
            name = f"rl {'full' if mode.rank is None else 'lora'}"
            res = run_mode("rl", mode, out, [*rl_args, *_mode_args(cfg, "rl", mode)],
                           on_progress=progress.begin(name))
            progress.end(name, res.status)
            rl_results.append(res)
            commands.append(res.command)
        # 4. Each RL policy against the SFT policy on held-out prompts, under the judge. Every eval after the
        #    first judges against the first one's SFT answers (the same answers, not generated again).
        first_eval: Path | None = None
        for mode, res in zip(modes, rl_results, strict=True):
            name = f"eval {'full' if mode.rank is None else 'lora'}"
            progress.begin(name)
            if res.status != "ok":
                progress.end(name, "skipped")
                continue
            eval_out = runs / f"eval-{mode.slug}.json"
            cmd = _perlhf(*demo_eval_args(cfg, b, sft_model, reward_dir, judge_dir), "--rl", res.run_dir,
                          "--output", str(eval_out), "--samples-out", str(runs / f"eval-{mode.slug}-answers.jsonl"),
                          *(["--sft-answers-from", str(first_eval)] if first_eval else []))
            commands.append(_shown(cmd))
            rc = run_process(cmd, runs / f"eval-{mode.slug}.log")
            progress.end(name, "ok" if rc == 0 else "failed")
            if rc == 0 and eval_out.exists():
                first_eval = first_eval or eval_out
                evals[mode.name] = json.loads(eval_out.read_text())
                res.quality.update(_eval_quality(evals[mode.name]))
            else:
                res.error = f"eval failed: {last_error(runs / f'eval-{mode.slug}.log')}"

    meta = {"task": cfg.task, "model": cfg.model, "size": "quick (tiny budgets)" if cfg.quick else "demo budgets",
            "command": "perlhf " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["demo"] else "perlhf demo",
            "versions": versions(), "machine": machine(), "mixed_precision": _precision_used(cfg)}
    write_report(out / "rm", "rm", rm_results, meta)
    write_report(out / "rl", "rl", rl_results, meta)
    summary = {"budget": asdict(b), "minutes": (time.perf_counter() - t0) / 60, "sft_model": str(sft_model),
               "reward_model": reward.run_dir if reward else None, "judge": str(judge_dir) if judge_dir else None,
               "rm": [asdict(r) for r in rm_results], "rl": [asdict(r) for r in rl_results], "eval": evals,
               "commands": commands, **meta}
    table = main_table(rm_results, rl_results)
    atomic_write_text(out / "report.md", render_demo_report(table, summary))
    atomic_write_json(out / "report.json", {**summary, "main_table": table})
    failed = [f"{r.stage} {r.mode}" for r in [*rm_results, *rl_results] if r.status != "ok"]
    failed += [f"eval {m}" for m in (r.mode for r in rl_results if r.status == "ok") if m not in evals]
    return {"table": table, "report": out / "report.md", "minutes": summary["minutes"], "failed": failed}


def _eval_quality(ev: dict[str, Any]) -> dict[str, float]:
    q: dict[str, float] = {}
    if "judge_rm" in ev:
        j = ev["judge_rm"]
        q.update({"judge_win": j["win"], "judge_tie": j["tie"], "judge_loss": j["loss"]})
        if "win_rate" in j:
            q.update({"judge_win_rate": j["win_rate"], "judge_win_rate_se": j["win_rate_se"]})
    if "training_reward" in ev:
        q["heldout_reward_gain"] = ev["training_reward"]["gain"]
    if isinstance(ev.get("kl_rl_to_sft"), int | float):
        q["heldout_kl"] = ev["kl_rl_to_sft"]
    api = (ev.get("api_calls") or {}).get("rl") or {}
    if isinstance(api.get("known_api_rate"), int | float):
        q["api_calls_parse_and_known"] = api["known_api_rate"]
    return q


def main_table(rm: list[ModeResult], rl: list[ModeResult]) -> list[dict[str, Any]]:
    """One row per mode: RM quality and cost, RL reward gain, KL, judge verdicts and cost, LoRA vs full."""
    from perlhf.report import relative_to_full

    rm_rel, rl_rel = relative_to_full(rm), relative_to_full(rl)
    rows = []
    for r_rm, r_rl in zip(rm, rl, strict=True):
        rows.append({
            "mode": r_rm.mode,
            "rm_status": r_rm.status, "rm_test_accuracy": r_rm.quality.get("test_accuracy"),
            "rm_test_auc": r_rm.quality.get("test_auc"),
            "rm_memory_pct_of_full": rm_rel[r_rm.mode]["memory_pct_of_full"],
            "rm_speedup": rm_rel[r_rm.mode]["speedup_over_full"],
            "rl_status": r_rl.status, "rl_reward_gain": r_rl.quality.get("reward_gain"),
            "rl_kl": r_rl.quality.get("kl_last"),
            "judge_win": r_rl.quality.get("judge_win"), "judge_tie": r_rl.quality.get("judge_tie"),
            "judge_loss": r_rl.quality.get("judge_loss"),
            "judge_win_rate": r_rl.quality.get("judge_win_rate"),
            "judge_win_rate_se": r_rl.quality.get("judge_win_rate_se"),
            "rl_memory_pct_of_full": rl_rel[r_rl.mode]["memory_pct_of_full"],
            "rl_speedup": rl_rel[r_rl.mode]["speedup_over_full"],
        })
    return rows


def _f(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def format_main_table(rows: list[dict[str, Any]]) -> str:
    headers = ["mode", "RM test acc", "RM AUC", "RM mem % full", "RM speed-up", "RL reward gain", "RL KL",
               "judge win/tie/loss vs start (SFT)", "judge win rate ± SE", "RL mem % full", "RL speed-up"]
    body = []
    for r in rows:
        wtl = ("–" if r["judge_win"] is None else
               f"{r['judge_win']:.0%} / {r['judge_tie']:.0%} / {r['judge_loss']:.0%}")
        body.append([r["mode"] + ("" if r["rm_status"] == r["rl_status"] == "ok" else " (failed step)"),
                     _f(r["rm_test_accuracy"], ".3f"), _f(r["rm_test_auc"], ".3f"),
                     _f(r["rm_memory_pct_of_full"], ".0f"), _f(r["rm_speedup"], ".2f"),
                     _f(r["rl_reward_gain"], "+.3f"), _f(r["rl_kl"], ".4f"), wtl,
                     "–" if r.get("judge_win_rate") is None else
                     f"{r['judge_win_rate']:.3f} ± {r['judge_win_rate_se']:.3f}",
                     _f(r["rl_memory_pct_of_full"], ".0f"), _f(r["rl_speedup"], ".2f")])
    return markdown_table(headers, body)


def render_demo_report(rows: list[dict[str, Any]], s: dict[str, Any]) -> str:
    lines = [
        "# perlhf demo: LoRA against full fine-tuning, SFT -> RM -> RL", "",
        f"Model `{s['model']}`, task `{s['task']}`, {s['size']}; {s['minutes']:.1f} minutes on {s['machine']}.", "",
        format_main_table(rows), "",
        "RM: reward model test accuracy / AUC (best validation checkpoint). RL reward gain: mean training "
        "reward over the last steps minus the first steps. Judge: an independent reward model trained on the "
        "other half of the training data" + (f" with another backbone ({SENTIMENT_JUDGE}, an encoder; the 'SFT' "
                                             "policy is the instruct model RL starts from)"
                                             if s["task"] in SENTIMENT_TASKS else "") +
        " scores each RL policy's and the SFT policy's answers to held-out prompts; win rate counts ties "
        "half, with its standard error. Memory: peak (CUDA allocator max, or the process's peak resident memory on CPU); "
        "speed-up: full fine-tuning's median step time over the mode's.", "",
        "Details: [reward models](rm/report.md), [RL](rl/report.md); every step's run folder and log are in "
        "`runs/`, and every judged answer with its judge and training-reward scores in "
        "`runs/eval-<mode>-answers.jsonl`.", "",
        "## Commands", "", "```", *s["commands"], "```", "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in s["versions"].items()), "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
