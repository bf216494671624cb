"""The table for benchmarks/demo_seeds.sh: the demo's RL judge verdict at each RL seed (the demo's own
run is seed 0), and the mean over seeds with its standard error.

    python benchmarks/demo_seeds_report.py reports/demo runs/demo-seeds > runs/demo-seeds/report.md

Per run: the judge's win rate of the RL policy against the starting policy on the same 128 test
prompts (ties half; its standard error over prompts), the training reward model's win rate on the
same answers (a large gap between the two is the reward-hacking signature), the last 5 steps' mean
training reward and the KL to the start at the eval. Over seeds: the mean win rate and the standard
error of that mean (seed spread, which includes the prompt noise).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

TARGET = 0.65  # issue 11 item 4: both RL policies beat the start under the judge at a win rate of 65%


def run_row(eval_path: Path, rl_dir: Path) -> dict[str, Any]:
    e = json.loads(eval_path.read_text())
    metrics = [json.loads(line) for line in (rl_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [m["reward_mean"] for m in metrics if m.get("split", "train") == "train"]
    judge, own = e["judge_rm"], e["training_reward"]
    return {"judge": judge["win_rate"], "judge_se": judge["win_rate_se"], "own": own["win"] + own.get("tie", 0) / 2,
            "reward_last5": statistics.fmean(train[-5:]), "reward_first5": statistics.fmean(train[:5]),
            "kl": e.get("kl_rl_to_sft"), "judge_auc": judge["judge"]["test"]}


def collect(demo: Path, out: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """{configuration: {seed: row}}. The demo's own runs are seed 0 of `full` and `lora` (marked `demo`);
    the others are OUT/eval-<configuration>-s<seed>.json beside OUT/rl-<configuration>-s<seed>/, where the
    configuration is `full` or `lora` (benchmarks/demo_seeds.sh) or e.g. `full-lr3e-5` (demo_rl_sweep.sh)."""
    runs: dict[str, dict[int, dict[str, Any]]] = {"full": {}, "lora": {}}
    demo_names = {"full": "full", "lora": "lora-r8"}
    for mode, name in demo_names.items():
        if (demo / "runs" / f"eval-{name}.json").exists():
            runs[mode][0] = {**run_row(demo / "runs" / f"eval-{name}.json", demo / "runs" / f"rl-{name}"), "demo": True}
    for path in sorted(out.glob("eval-*-s*.json")):
        config, seed = path.stem.removeprefix("eval-").rsplit("-s", 1)
        runs.setdefault(config, {})[int(seed)] = {**run_row(path, out / f"rl-{config}-s{seed}"),
                                                  "split": json.loads(path.read_text()).get("split")}
    return {k: v for k, v in runs.items() if v}


def render(runs: dict[str, dict[int, dict[str, Any]]], demo: Path) -> str:
    lines = ["| configuration | RL seed | judge win rate vs start ± SE | training RM win rate | training reward, steps 1-5 -> 16-20 | KL at eval |",
             "|---|---|---|---|---|---|"]
    for mode, by_seed in runs.items():
        for seed, r in sorted(by_seed.items()):
            lines.append(f"| {mode} | {seed}{' (the demo)' if r.get('demo') else ''} | {r['judge']:.3f} ± {r['judge_se']:.3f} | "
                         f"{r['own']:.3f} | {r['reward_first5']:+.2f} -> {r['reward_last5']:+.2f} | {r['kl']:.1f} |")
    lines += ["", "| configuration | seeds | mean judge win rate ± SE of the mean | seeds at or above 0.65 | lowest |", "|---|---|---|---|---|"]
    for mode, by_seed in runs.items():
        wins = [r["judge"] for r in by_seed.values()]
        if not wins:
            continue
        se = f" ± {statistics.stdev(wins) / len(wins) ** 0.5:.3f}" if len(wins) > 1 else " (one seed: no SE)"
        lines.append(f"| {mode} | {len(wins)} | {statistics.fmean(wins):.3f}{se} | "
                     f"{sum(w >= TARGET for w in wins)} of {len(wins)} | {min(wins):.3f} |")
    meta = json.loads((demo / "report.json").read_text()) if (demo / "report.json").exists() else {}
    if meta:
        lines += ["", f"Machine of the demo run: {meta.get('machine')}; precision: {meta.get('mixed_precision')}."]
    splits = sorted({r.get("split") or "test" for by_seed in runs.values() for r in by_seed.values()})
    lines.append(f"Prompts judged: 128 of the {' and '.join(splits)} split (eval seed 0: the same prompts in every row).")
    aucs = {r["judge_auc"] for by_seed in runs.values() for r in by_seed.values()}
    lines.append(f"Judge (one model for every row): test AUC {', '.join(f'{a:.3f}' for a in sorted(aucs))}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path, help="the demo's --report-dir (its run is seed 0)")
    ap.add_argument("out", type=Path, help="benchmarks/demo_seeds.sh's output folder")
    a = ap.parse_args()
    print(render(collect(a.demo, a.out), a.demo), end="")


if __name__ == "__main__":
    main()
