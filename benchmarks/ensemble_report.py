"""Tables and a plot for benchmarks/ensemble_pipeline.sh: the single reward model, the ensemble (mean,
aggregates, every member, the best member) and the judge against their baselines; RL against the
single RM and against the ensemble (training reward, members' disagreement, KL, length); the
reward-hacking watch (the single RM's and the judge's scores of every logged episode, per window);
the judge's verdict on each RL policy; and what the ensemble cost.

    python benchmarks/ensemble_report.py runs/ensemble [--window 5] > runs/ensemble/report.md
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentiment_report import eval_table, length_baselines, load, rows, user_turn, windows  # noqa: E402

RUNS = ("single", "ensemble")


def _fig(test: dict[str, Any]) -> str:
    return f"{test['auc']:.3f} ± {test['auc_se']:.3f}"


def rm_table(out: Path) -> list[str]:
    import yaml

    lines = ["| reward model | test AUC ± SE | test accuracy | validation AUC |", "|---|---|---|---|"]
    single = load(out / "rm" / "summary.json")
    lines.append(f"| single (seed 0, all of shard 1/2) | {_fig(single['test'])} | {single['test']['accuracy']:.3f} | "
                 f"{single['validation_best']:.3f} |")
    ens = load(out / "ensemble" / "summary.json")
    for how, split in ens["aggregates"].items():
        lines.append(f"| ensemble of {ens['ensemble']}, {how} | {_fig(split['test'])} | "
                     f"{split['test']['accuracy']:.3f} | {split['validation']['auc']:.3f} |")
    best = ens["best_single_member"]
    lines.append(f"| its best member by validation (member {best['member']}) | {_fig(best['test'])} | "
                 f"{best['test']['accuracy']:.3f} | {best['validation']['auc']:.3f} |")
    for k, m in enumerate(ens["members"]):
        lines.append(f"| member {k} (seed {m['seed']}, bootstrap of {m['train_examples']}) | {_fig(m['test'])} | "
                     f"{m['test']['accuracy']:.3f} | {m['validation']['auc']:.3f} |")
    judge = load(out / "judge" / "summary.json")
    lines.append(f"| judge (MiniLM-L6, full, shard 2/2) | {_fig(judge['test'])} | {judge['test']['accuracy']:.3f} | "
                 f"{judge['validation_best']:.3f} |")
    cfg = yaml.safe_load((out / "rm" / "config.yaml").read_text()) or {}
    lb = length_baselines(single["task"], cfg.get("max_eval_examples") or single["test"]["n"], cfg.get("seed", 0) + 2)
    untrained = (single.get("untrained") or {}).get("test") or {}
    lines += ["", f"Baselines on the same {single['test']['n']} test reviews: untrained "
              f"AUC {untrained.get('auc', float('nan')):.3f}, majority class accuracy "
              f"{single['majority_baseline']:.3f}, length only: AUC {lb['longer_positive_auc']:.3f} (longer wins) / "
              f"{lb['shorter_positive_auc']:.3f} (shorter wins) ± {lb['auc_se']:.3f}."]
    return lines


def rl_table(out: Path, size: int) -> tuple[list[str], dict[str, list]]:
    lines = ["| RL against | steps | reward it optimised ± SE | members' mean | members' disagreement (std) | "
             "KL to anchor | response tokens |", "|---|---|---|---|---|---|---|"]
    curves = {}
    for run in RUNS:
        f = out / f"rl-{run}" / "metrics.jsonl"
        if not f.is_file():
            continue
        hist = [r for r in rows(f) if r.get("split") == "train" and "reward_mean" in r]
        curves[run] = hist
        rw, kl, ln = (windows(hist, k, size) for k in ("reward_mean", "kl", "response_length"))
        mm = windows(hist, "reward_members_mean", size) if "reward_members_mean" in hist[0] else None
        dis = windows(hist, "reward_disagreement", size) if "reward_disagreement" in hist[0] else None
        for i, (a, b, m, se) in enumerate(rw):
            lines.append(f"| {run} | {a}-{b} | {m:+.3f} ± {se:.3f} | "
                         f"{f'{mm[i][2]:+.3f}' if mm else ''} | {f'{dis[i][2]:.3f}' if dis else ''} | "
                         f"{kl[i][2]:.3f} | {ln[i][2]:.1f} |")
    return lines, curves


def watch_table(out: Path, size: int) -> tuple[list[str], dict[str, list]]:
    """Per window, every logged episode of each run scored by the single RM and by the judge: a run
    exploiting the single RM shows its score rising while the judge's stays flat or falls."""
    from perlhf.models.heads import load_reward_model, load_tokenizer_for
    from perlhf.train.scoring import score_texts

    scorers = {}
    for name in ("rm", "judge"):
        model, info = load_reward_model(out / name / "final")
        scorers[name] = (model, load_tokenizer_for(out / name / "final", info), info)
    lines = ["| RL against | steps | episodes | single RM score ± SE | judge score ± SE |", "|---|---|---|---|---|"]
    series: dict[str, list] = {}
    for run in RUNS:
        f = out / f"rl-{run}" / "samples.jsonl"
        if not f.is_file():
            continue
        samples = rows(f)
        items = [([{"role": "user", "content": user_turn(r["prompt"])}], r["response"]) for r in samples]
        scored = {name: score_texts(m, tok, items, info.max_prompt_tokens, info.max_response_tokens, 64)
                  for name, (m, tok, info) in scorers.items()}
        steps = sorted({r["step"] for r in samples})
        for i in range(0, len(steps), size):
            window = set(steps[i:i + size])
            idx = [k for k, r in enumerate(samples) if r["step"] in window]

            def ms(v):
                return statistics.fmean(v), statistics.stdev(v) / math.sqrt(len(v))

            (rm_m, rm_se), (j_m, j_se) = ms([scored["rm"][k] for k in idx]), ms([scored["judge"][k] for k in idx])
            series.setdefault(run, []).append((min(window), max(window), rm_m, rm_se, j_m, j_se))
            lines.append(f"| {run} | {min(window)}-{max(window)} | {len(idx)} | {rm_m:+.3f} ± {rm_se:.3f} | "
                         f"{j_m:+.3f} ± {j_se:.3f} |")
    return lines, series


def cost_lines(out: Path) -> list[str]:
    single, ens = load(out / "rm" / "summary.json"), load(out / "ensemble" / "summary.json")
    lines = ["| | single RM | ensemble | ratio |", "|---|---|---|---|"]
    s_train = single["cost"]["median_step_s"] * single["steps"]
    members = [load(f / "summary.json") for f in sorted((out / "ensemble" / "members").iterdir())]
    e_train = sum(m["cost"]["median_step_s"] * m["steps"] for m in members)
    lines.append(f"| RM training: median step x steps, all members (s) | {s_train:.0f} | {e_train:.0f} | "
                 f"{e_train / s_train:.2f} |")
    lines.append(f"| RM training peak memory (MiB) | {single['cost']['peak_memory_bytes'] / 2**20:.0f} | "
                 f"{ens['cost']['peak_memory_bytes'] / 2**20:.0f} | "
                 f"{ens['cost']['peak_memory_bytes'] / single['cost']['peak_memory_bytes']:.2f} |")
    rl = {run: load(out / f"rl-{run}" / "summary.json") for run in RUNS if (out / f"rl-{run}" / "summary.json").is_file()}
    if len(rl) == 2:
        a, b = rl["single"], rl["ensemble"]
        lines.append(f"| RL median step (s) | {a['median_seconds_per_step']:.1f} | {b['median_seconds_per_step']:.1f} | "
                     f"{b['median_seconds_per_step'] / a['median_seconds_per_step']:.2f} |")
        ra, rb = a["median_phase_seconds"]["reward"], b["median_phase_seconds"]["reward"]
        lines.append(f"| RL reward phase per step (s) | {ra:.2f} | {rb:.2f} | {rb / ra:.2f} |")
        pa, pb = a["peak_memory_bytes_max_step"], b["peak_memory_bytes_max_step"]
        lines.append(f"| RL peak memory of a step (MiB) | {pa / 2**20:.0f} | {pb / 2**20:.0f} | {pb / pa:.2f} |")
        la, lb = a["load_peak_memory"]["peak_bytes"], b["load_peak_memory"]["peak_bytes"]
        lines.append(f"| RL models loaded, peak (MiB) | {la / 2**20:.0f} | {lb / 2**20:.0f} | {lb / la:.2f} |")
    return lines


def plot(curves: dict[str, list], series: dict[str, list], size: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    colors = {"single": "tab:red", "ensemble": "tab:blue"}
    for run, hist in curves.items():
        w = windows(hist, "reward_mean", size)
        axes[0].errorbar([(a + b) / 2 for a, b, _, _ in w], [m for *_, m, _ in w], yerr=[se for *_, se in w],
                         marker="o", capsize=3, color=colors[run], label=f"{run}: reward it optimised")
        if "reward_disagreement" in hist[0]:
            axes[1].plot([r["step"] for r in hist], [r["reward_disagreement"] for r in hist], color=colors[run],
                         label=f"{run}: members' std")
        axes[1].plot([r["step"] for r in hist], [r["kl"] for r in hist], color=colors[run], ls="--",
                     label=f"{run}: KL")
    for run, s in series.items():
        x = [(a + b) / 2 for a, b, *_ in s]
        axes[2].errorbar(x, [r[2] for r in s], yerr=[r[3] for r in s], marker="o", capsize=3, color=colors[run],
                         label=f"{run}: single-RM score")
        axes[2].errorbar(x, [r[4] for r in s], yerr=[r[5] for r in s], marker="s", capsize=3, color=colors[run],
                         ls=":", label=f"{run}: judge score")
    axes[0].set(xlabel="RL step", ylabel="reward", title=f"training reward ({size}-step windows ± SE)")
    axes[1].set(xlabel="RL step", title="disagreement and KL")
    axes[2].set(xlabel="RL step", title="watch: single RM vs independent judge")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--window", type=int, default=5)
    args = ap.parse_args()
    print("## Reward models (test split)\n", *rm_table(args.out), "", sep="\n")
    rl_lines, curves = rl_table(args.out, args.window)
    print("## RL: the reward each run optimised, the ensemble's disagreement, KL, length\n", *rl_lines, "", sep="\n")
    watch, series = watch_table(args.out, args.window)
    print("## Reward-hacking watch: every logged episode scored by the single RM and by the judge\n", *watch, "",
          sep="\n")
    ev_lines, _ = eval_table(args.out, names=RUNS)
    print("## Judged against the starting policy (128 held-out test prompts)\n", *ev_lines, "", sep="\n")
    print("## What the ensemble cost\n", *cost_lines(args.out), "", sep="\n")
    if curves:
        plot(curves, series, args.window, args.out / "ensemble_curves.png")
        print("![curves](ensemble_curves.png)")


if __name__ == "__main__":
    main()
