"""Tables for benchmarks/coffee_rm_pipeline.sh: Taskmaster Coffee reward models, LoRA against full
fine-tuning over seeds, beside the untrained model, the majority class and the length-only
baselines, with issue 11's targets marked met or missed.

    python benchmarks/coffee_rm_report.py runs/coffee-rm > runs/coffee-rm/report.md

Every figure comes from the runs' summary.json files (``perlhf rm`` writes the test metrics of the
checkpoint chosen on validation AUC, and the length baselines of perlhf.train.metrics.length_baselines
on the same test turns). Across seeds: the mean and the standard error of the mean (the seeds'
standard deviation / sqrt(k)); each run's own test standard error (Hanley-McNeil) is shown beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

TARGET_AUC, TARGET_GAP = 0.75, 0.02


def runs(out: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """``{configuration: {seed: summary}}`` of every finished run ``OUT/NAME-sSEED``."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(out.glob("*-s*/summary.json")):
        m = re.fullmatch(r"(.+)-s(\d+)", path.parent.name)
        if m:
            found.setdefault(m.group(1), {})[int(m.group(2))] = json.loads(path.read_text())
    return found


def mean_se(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    return m, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan"))


def per_run_table(found: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    lines = ["| configuration | seed | validation AUC (best step) | test AUC ± SE | test accuracy | "
             "length-only best (margin in SE) | median step s | peak memory GB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, seeds in found.items():
        for seed, s in sorted(seeds.items()):
            t, c, lb = s["test"], s.get("cost") or {}, s.get("length_baselines") or {}
            peak = c.get("peak_memory_bytes")
            lines.append(
                f"| {name} | {seed} | {s['validation_best']:.3f} ({s['best_step']}) | {t['auc']:.3f} ± {t['auc_se']:.3f} | "
                f"{t['accuracy']:.3f} | {lb.get('best', float('nan')):.3f} ({s.get('length_margin_se', float('nan')):+.1f}) | "
                f"{c.get('median_step_s') or float('nan'):.2f} | {peak / 2**30 if peak else float('nan'):.2f} |")
    return lines


def summary_table(found: dict[str, dict[int, dict[str, Any]]]) -> tuple[list[str], dict[str, tuple]]:
    lines = ["| configuration | seeds | mean test AUC ± SE of mean | mean validation AUC | mean test accuracy | "
             "trainable params | median step s |", "|---|---|---|---|---|---|---|"]
    stats: dict[str, tuple] = {}
    for name, seeds in found.items():
        ss = list(seeds.values())
        auc = mean_se([s["test"]["auc"] for s in ss])
        stats[name] = (*auc, len(ss), [s["test"]["auc"] for s in ss])
        steps = [s["cost"]["median_step_s"] for s in ss if (s.get("cost") or {}).get("median_step_s")]
        lines.append(f"| {name} | {len(ss)} | {auc[0]:.3f} ± {auc[1]:.3f} | "
                     f"{statistics.fmean(s['validation_best'] for s in ss):.3f} | "
                     f"{statistics.fmean(s['test']['accuracy'] for s in ss):.3f} | "
                     f"{ss[0]['params']['trainable']:,} ({ss[0]['params']['trainable_pct']:.2f}%) | "
                     f"{statistics.fmean(steps) if steps else float('nan'):.2f} |")
    return lines, stats


def baselines(found: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    any_run = next(iter(next(iter(found.values())).values()))
    lb, n = any_run.get("length_baselines") or {}, any_run["test"]["n"]
    untrained = [s["untrained"]["test"]["auc"] for seeds in found.values() for s in seeds.values()
                 if (s.get("untrained") or {}).get("test")]
    lines = [f"On the same {n} test turns (every run scores the same test split):",
             f"- untrained reward model (random head): AUC {untrained[0]:.3f}" if untrained else
             "- untrained reward model: not evaluated",
             f"- majority class (thumbs-up): accuracy {any_run['majority_baseline']:.3f}, AUC 0.500"]
    if lb:
        lines.append(f"- length only: AUC {lb['longer_wins']:.3f} (longer is better), {lb['shorter_wins']:.3f} "
                     f"(shorter is better), {lb['logistic']:.3f} (logistic regression on log-length and length, "
                     f"fitted on the training turns); best {lb['best']:.3f}")
    return lines


def targets(stats: dict[str, tuple], lora: str, full: str) -> list[str]:
    if lora not in stats or full not in stats:
        return [f"Targets not judged: {lora} and {full} both need finished runs."]
    (lm, lse, lk, _), (fm, fse, fk, _) = stats[lora][:4], stats[full][:4]
    gap, gap_se = lm - fm, math.sqrt(lse ** 2 + fse ** 2) if lk > 1 and fk > 1 else float("nan")

    def mark(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    enough = lk >= 3 and fk >= 3
    return [
        f"- Seeds: {lk} LoRA, {fk} full (target at least 3): {mark(enough)}",
        f"- Full test AUC at least {TARGET_AUC}: {fm:.3f} ± {fse:.3f}: {mark(fm >= TARGET_AUC)}",
        f"- LoRA test AUC at least {TARGET_AUC}: {lm:.3f} ± {lse:.3f}: {mark(lm >= TARGET_AUC)}",
        f"- LoRA within {TARGET_GAP} of full (LoRA - full at least -{TARGET_GAP}): {gap:+.3f} ± {gap_se:.3f}: "
        f"{mark(gap >= -TARGET_GAP)}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--lora", default="lora-all-r8-lr1e-3", help="the LoRA configuration the targets judge")
    ap.add_argument("--full", default="full-lr5e-5", help="the full fine-tuning configuration the targets judge")
    args = ap.parse_args()
    found = runs(args.out)
    if not found:
        raise SystemExit(f"{args.out}: no finished runs (NAME-sSEED/summary.json); run coffee_rm_pipeline.sh first")
    any_run = next(iter(next(iter(found.values())).values()))
    print(f"Precision: {any_run.get('mixed_precision')}; steps {any_run['steps']} x batch {any_run['batch_size']}; "
          f"examples {any_run['examples']}.\n")
    table, stats = summary_table(found)
    print("## Test AUC over seeds\n", *table, "", sep="\n")
    print("## Baselines\n", *baselines(found), "", sep="\n")
    print("## Every run\n", *per_run_table(found), "", sep="\n")
    print("## Issue 11 item 3 targets (Coffee)\n", *targets(stats, args.lora, args.full), "", sep="\n")


if __name__ == "__main__":
    main()
