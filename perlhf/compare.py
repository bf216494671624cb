"""``perlhf compare``: run every mode of a stage on the same data, seed and budget, then report.

Each mode runs in a fresh ``python -m perlhf <stage> ...`` process (the CLI, which calls
:mod:`perlhf.api`), so peak memory is that mode's own: CPU peak memory is sampled RSS, which a
process does not give back after a full-model run, so two modes in one process would measure the
second against the first's high-water mark. The command is also what the report prints for
rerunning a mode by hand. Modes are written ``full``, ``lora:rN`` (LoRA of
rank N) or, for reward models, ``lora:rNxK`` (an ensemble of K LoRA reward
models of rank N on one backbone: ``perlhf rm --ensemble K``). A mode that fails is reported as failed with its error and the others
still run; Ctrl-C stops the running mode, and the report is written from the
modes that finished.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perlhf.errors import UserError
from perlhf.report import ModeResult, write_report
from perlhf.runs import RunDir

log = logging.getLogger(__name__)

STAGES = ("rm", "rl")
# Options that turn a stage's own progress bar off (its output goes to a log file; compare shows progress).
STAGE_QUIET_ARGS = {"rm": ["--progress", "false"]}
_MODE_RE = re.compile(r"^lora:r(\d+)(?:x(\d+))?$")


@dataclass(frozen=True)
class Mode:
    """A parameterisation: full fine-tuning or LoRA of some rank."""

    name: str
    rank: int | None
    ensemble: int | None = None  # rm: K LoRA members on one backbone

    def stage_args(self) -> list[str]:
        if self.rank is None:
            return ["--mode", "full"]
        return ["--mode", "lora", "--lora-rank", str(self.rank),
                *(["--ensemble", str(self.ensemble)] if self.ensemble else [])]

    @property
    def slug(self) -> str:
        if self.rank is None:
            return "full"
        return f"lora-r{self.rank}" + (f"x{self.ensemble}" if self.ensemble else "")


def parse_modes(text: str) -> list[Mode]:
    """Parse ``full,lora:r1,lora:r8`` into modes; a bad entry raises a UserError saying which and why."""
    modes: list[Mode] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise UserError(f"--modes {text!r}: empty entry (remove the doubled or trailing comma)")
        if item == "full":
            mode = Mode("full", None)
        elif item == "lora":
            raise UserError(f"--modes: {item!r} needs a rank, e.g. lora:r8")
        else:
            m = _MODE_RE.match(item)
            if not m:
                raise UserError(f"--modes: cannot parse {item!r}: write 'full', 'lora:rN' with N a positive "
                                "integer rank, or 'lora:rNxK' for an ensemble of K reward models, e.g. "
                                "full,lora:r1,lora:r8,lora:r8x4")
            rank = int(m.group(1))
            if rank <= 0:
                raise UserError(f"--modes: {item!r}: the LoRA rank must be > 0")
            members = int(m.group(2)) if m.group(2) else None
            if members is not None and members < 2:
                raise UserError(f"--modes: {item!r}: an ensemble needs K >= 2 members (lora:r{rank} is one model)")
            mode = Mode(item, rank, members)
        if mode in modes:
            raise UserError(f"--modes: {item!r} is listed twice")
        modes.append(mode)
    return modes


def _rm_result(mode: Mode, summary: dict[str, Any], metrics: list[dict[str, Any]]) -> ModeResult:
    test = summary.get("test") or {}
    kind = summary.get("kind")
    quality = {f"test_{k}": v for k, v in test.items() if k in ("accuracy", "auc") and v is not None}
    best = (summary.get("best_single_member") or {}).get("test") or {}  # an ensemble: its best member alone
    quality.update({f"best_member_test_{k}": v for k, v in best.items() if k in ("accuracy", "auc") and v is not None})
    untrained = ((summary.get("untrained") or {}).get("test") or {}).get("accuracy")
    baselines = {"untrained accuracy": untrained} if untrained is not None else {}
    if kind == "rating":
        baselines["majority-class accuracy"] = summary.get("majority_baseline")
    cost = summary.get("cost") or {}
    curve = [(int(r["step"]), float(r["loss"])) for r in metrics
             if r.get("split") == "train" and isinstance(r.get("loss"), int | float)]
    return ModeResult(mode=mode.name, stage="rm", rank=mode.rank, ensemble=mode.ensemble, quality=quality,
                      baselines={k: v for k, v in baselines.items() if v is not None},
                      peak_memory_bytes=cost.get("peak_memory_bytes"), step_time_s=cost.get("median_step_s"),
                      trainable_params=(summary.get("params") or {}).get("trainable"),
                      total_params=(summary.get("params") or {}).get("total"), curve=curve, curve_name="training loss")


def _rl_result(mode: Mode, summary: dict[str, Any], metrics: list[dict[str, Any]]) -> ModeResult:
    first, last = summary.get("reward_first"), summary.get("reward_last")
    quality = {"reward_first": first, "reward_last": last,
               "reward_gain": (last - first) if first is not None and last is not None else None,
               "kl_last": summary.get("kl_last")}
    curve = [(int(r["step"]), float(r["reward_mean"])) for r in metrics
             if isinstance(r.get("reward_mean"), int | float) and "step" in r]
    return ModeResult(mode=mode.name, stage="rl", rank=mode.rank,
                      quality={k: v for k, v in quality.items() if v is not None},
                      peak_memory_bytes=(summary.get("peak_memory") or {}).get("peak_bytes"),
                      step_time_s=summary.get("median_seconds_per_step"),
                      phases_s=summary.get("median_phase_seconds") or {},
                      trainable_params=summary.get("trainable_parameters"),
                      total_params=summary.get("total_parameters_in_memory"), curve=curve,
                      curve_name="reward (batch mean)")


RESULT_READERS = {"rm": _rm_result, "rl": _rl_result}


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (a torn last line, mid-write, is left out)."""
    return RunDir(path.parent).read_metrics()


def last_error(log_path: Path) -> str:
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["(no output)"])[-1][-500:]


def latest_step(metrics_path: Path) -> int:
    """The highest ``step`` logged so far in a run's metrics.jsonl (0 when none)."""
    steps = [int(r["step"]) for r in _read_metrics(metrics_path) if isinstance(r.get("step"), int)]
    return max(steps, default=0)


def run_process(cmd: list[str], log_path: Path, metrics_path: Path | None = None,
                on_progress: Callable[[int], None] | None = None) -> int:
    """Run ``cmd`` with its output in ``log_path``; report the latest logged step about once a second.

    Ctrl-C (or SIGTERM, under the CLI) terminates the child (then kills it after 30 s) and re-raises.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    return proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    if on_progress is not None and metrics_path is not None:
                        on_progress(latest_step(metrics_path))
        except KeyboardInterrupt:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise


def mode_command(stage: str, mode: Mode, stage_args: Sequence[str]) -> list[str]:
    """The ``perlhf`` arguments that run ``stage`` in ``mode`` (less ``--output-dir``): what :func:`run_mode` runs."""
    return [stage, *(["train"] if stage == "rm" else []), *stage_args, *mode.stage_args(), *STAGE_QUIET_ARGS.get(stage, [])]


def run_mode(stage: str, mode: Mode, out_dir: Path, stage_args: list[str], *, python: str = sys.executable,
             on_progress: Callable[[int], None] | None = None, run_name: str | None = None) -> ModeResult:
    """Run one mode in a fresh process; its stdout/stderr go to ``runs/<stage>-<mode>.log``."""
    run_name = run_name or f"{stage}-{mode.slug}"
    run_dir = out_dir / "runs" / run_name
    log_path = out_dir / "runs" / f"{run_name}.log"
    cmd = [python, "-m", "perlhf", *mode_command(stage, mode, stage_args), "--output-dir", str(run_dir), "--overwrite"]
    shown = "perlhf " + shlex.join(cmd[3:])
    log.info("[%s] %s", mode.name, shown)
    start = time.perf_counter()
    rc = run_process(cmd, log_path, run_dir / "metrics.jsonl", on_progress)
    elapsed = time.perf_counter() - start
    summary_path = run_dir / "summary.json"
    if rc != 0 or not summary_path.exists():
        return ModeResult(mode=mode.name, stage=stage, rank=mode.rank, status="failed",
                          error=f"exit {rc}: {last_error(log_path)} (log: {log_path})", command=shown,
                          run_dir=str(run_dir))
    summary = json.loads(summary_path.read_text())
    result = RESULT_READERS[stage](mode, summary, _read_metrics(run_dir / "metrics.jsonl"))
    result.command = shown
    result.run_dir = str(run_dir)
    log.info("[%s] done in %.0f s", mode.name, elapsed)
    return result


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("perlhf", "torch", "transformers", "peft", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def machine() -> str:
    import os

    import torch

    from perlhf.precision import NATIVE_CPU_FLAGS, cpu_flags

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # the vector unit decides CPU speed, bf16 most of all: AVX2-only CPUs emulate it ~170x slower (precision.py)
    native = [f.upper() for f in NATIVE_CPU_FLAGS if f in (cpu_flags() or set())]
    isa = ", ".join([torch.backends.cpu.get_cpu_capability(), *(native or ["no native bf16"])])
    gpu = f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} CPU cores ({cpu}; {isa}){gpu}"


def prepare_report_dir(path: Path, overwrite: bool) -> None:
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise UserError(f"--report-dir {path} already exists: pass --overwrite to replace it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def compare(stages: list[str], modes: list[Mode], report_dir: Path, stage_args: dict[str, list[str]],
            meta: dict[str, Any]) -> dict[str, list[ModeResult]]:
    """Run every (stage, mode); write ``report_dir/<stage>/report.*`` after each mode finishes."""
    for stage in stages:
        bad = [m.name for m in modes if m.ensemble and stage != "rm"]
        if bad:
            raise UserError(f"--modes {','.join(bad)}: ensembles are reward models (--stage rm); for RL against an "
                            "ensemble pass --reward-model <ensemble final/> and --ensemble-reward to the rl stage")
    results: dict[str, list[ModeResult]] = {s: [] for s in stages}
    meta = {**meta, "versions": versions(), "machine": machine()}
    try:
        for stage in stages:
            for mode in modes:
                results[stage].append(run_mode(stage, mode, report_dir, stage_args.get(stage, [])))
                write_report(report_dir / stage, stage, results[stage], meta)
    except KeyboardInterrupt:
        for stage in stages:
            done = {r.mode for r in results[stage]}
            results[stage] += [ModeResult(mode=m.name, stage=stage, rank=m.rank, status="interrupted",
                                          error="stopped (Ctrl-C or SIGTERM) before this mode finished") for m in modes
                               if m.name not in done]
            write_report(report_dir / stage, stage, results[stage], meta)
        raise
    return results
