"""Tables and a plot for benchmarks/sentiment_pipeline.sh (and coffee_rl_pipeline.sh: the same run layout;
set PERLHF_DATA_DIR for the Taskmaster data): reward models against their baselines, the
judge's own strength, RL learning curves (window means with standard errors), KL, length, and the
judge's verdict on each RL policy against the starting policy.

    python benchmarks/sentiment_report.py runs/sentiment [--window 5] [--runs lora full] > runs/sentiment/report.md

Baselines beside each reward model, on the same test subset: the untrained model, the majority
class, and length-only rules (the AUC of "longer is positive" on the response length, and of its
reverse, "shorter is positive"; the better of the two is an upper bound on any length-only
logistic rule's AUC, since AUC only depends on the ranking).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from perlhf.train.metrics import auc_standard_error, roc_auc


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def windows(history: list[dict[str, Any]], key: str, size: int) -> list[tuple[int, int, float, float]]:
    """(first step, last step, mean, standard error) of ``key`` per window of ``size`` steps. The
    reward's error pools the episodes of the window (per-step std and episode counts)."""
    out = []
    for i in range(0, len(history), size):
        w = history[i:i + size]
        means = [r[key] for r in w]
        m = statistics.fmean(means)
        if key == "reward_mean" and all("reward_std" in r and "episodes" in r for r in w):
            n = sum(r["episodes"] for r in w)
            within = sum(r["reward_std"] ** 2 * r["episodes"] for r in w) / n
            between = sum(r["episodes"] * (r[key] - m) ** 2 for r in w) / n
            se = math.sqrt((within + between) / n)
        else:
            se = statistics.stdev(means) / math.sqrt(len(means)) if len(means) > 1 else float("nan")
        out.append((w[0]["step"], w[-1]["step"], m, se))
    return out


def length_baselines(task: str, n: int, seed: int) -> dict[str, float]:
    """AUC of response length (and of its reverse) on the reward model's own test subset."""
    from perlhf.data import load_task
    from perlhf.train.reward import subset

    test = subset(load_task(task).split("test"), n, seed)
    labels = [r.label for r in test]
    lengths = [len(r.response) for r in test]
    longer = roc_auc(lengths, labels)
    pos, neg = sum(labels), len(labels) - sum(labels)
    return {"longer_positive_auc": longer, "shorter_positive_auc": 1 - longer,
            "auc_se": auc_standard_error(max(longer, 1 - longer), pos, neg), "n": len(labels)}


def rm_table(out: Path) -> list[str]:
    lines = ["| reward model | backbone | mode | test AUC | test accuracy | untrained AUC | majority | "
             "length-only AUC (longer / shorter wins) | n |", "|---|---|---|---|---|---|---|---|---|"]
    for name in ("rm", "judge"):
        if not (out / name / "summary.json").is_file():
            continue
        import yaml

        cfg = yaml.safe_load((out / name / "config.yaml").read_text()) or {}
        info = load(out / name / "final" / "perlhf_reward.json")
        test = info["extra"]["test"]
        untrained = next((r for r in rows(out / name / "metrics.jsonl") if r.get("split") == "untrained"), {})
        # the reward model's own test subset: perlhf rm draws it with seed + 2 (perlhf.train.reward.load_splits)
        lb = length_baselines(info["task"], cfg.get("max_eval_examples") or test["n"], cfg.get("seed", 0) + 2)
        acc_se = math.sqrt(test["accuracy"] * (1 - test["accuracy"]) / test["n"])
        lines.append(f"| {name} | {info['base_model']} | {info['mode']} | {test['auc']:.3f} ± {test['auc_se']:.3f} | "
                     f"{test['accuracy']:.3f} ± {acc_se:.3f} | {untrained.get('test_auc', float('nan')):.3f} | "
                     f"{test['majority_baseline']:.3f} | {lb['longer_positive_auc']:.3f} / "
                     f"{lb['shorter_positive_auc']:.3f} (± {lb['auc_se']:.3f}) | {test['n']} |")
    return lines


RUNS = ("lora", "full")  # the RL folders rl-RUN (coffee_rl_pipeline.sh TAG=-s1: rl-full-s1, --runs full-s1)


def rl_tables(out: Path, size: int, runs: tuple[str, ...] = RUNS) -> tuple[list[str], dict[str, list]]:
    curves: dict[str, list] = {}
    lines = ["| mode | steps | training reward (window mean ± SE) | KL to anchor | response tokens |",
             "|---|---|---|---|---|"]
    for mode in runs:
        f = out / f"rl-{mode}" / "metrics.jsonl"
        if not f.is_file():
            continue
        hist = [r for r in rows(f) if r.get("split", "train") == "train" and "reward_mean" in r]
        curves[mode] = hist
        rw, kl, ln = windows(hist, "reward_mean", size), windows(hist, "kl", size), windows(hist, "response_length", size)
        for (a, b, m, se), (_, _, k, _), (_, _, n, _) in zip(rw, kl, ln, strict=True):
            lines.append(f"| {mode} | {a}-{b} | {m:+.3f} ± {se:.3f} | {k:.3f} | {n:.1f} |")
    return lines, curves


def eval_table(out: Path, names: tuple[str, ...] = RUNS) -> tuple[list[str], dict[str, float]]:
    lines = ["| mode | judge win / tie / loss vs start | judge win rate (ties half) ± SE | verdict | "
             "training RM win rate | judge mean score RL / start | KL (held-out) | chars RL / start | "
             "RL step (s) | RL peak memory (MiB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    gains = {}
    for mode in names:
        f = out / f"eval-{mode}.json"
        if not f.is_file():
            continue
        e = load(f)
        j, t = e["judge_rm"], e["training_reward"]
        s = load(out / f"rl-{mode}" / "summary.json")
        rate, se = j.get("win_rate", j["win"] + j["tie"] / 2), j.get("win_rate_se", float("nan"))
        gains[mode] = rate - 0.5
        peak = s.get("peak_memory_bytes_max_step") or s.get("peak_memory_bytes") or float("nan")
        lines.append(f"| {mode} | {j['win']:.0%} / {j['tie']:.0%} / {j['loss']:.0%} | {rate:.3f} ± {se:.3f} | "
                     f"{j.get('verdict', '?')} | {t['win'] + t['tie'] / 2:.3f} | {j['mean_rl']:.3f} / "
                     f"{j['mean_sft']:.3f} | {e['kl_rl_to_sft']:.2f} | {e['response_chars']['rl']:.0f} / "
                     f"{e['response_chars']['sft']:.0f} | {s.get('median_seconds_per_step', float('nan')):.1f} | "
                     f"{peak / 2**20:.0f} |")
    return lines, gains


def user_turn(prompt_text: str) -> str:
    """The last user message of a chat-template prompt as logged in samples.jsonl (ChatML markers)."""
    import re

    found = re.findall(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", prompt_text, re.S)
    return found[-1] if found else prompt_text


def watch_table(out: Path, size: int, runs: tuple[str, ...] = RUNS) -> tuple[list[str], dict[str, list]]:
    """The reward-hacking watch: per window, the training reward of every logged episode beside the
    independent judge's score of the same episodes (run with WATCH=1, which logs all of them). A policy
    that exploits the training RM shows the first rising while the second stays flat or falls."""
    from perlhf.models.heads import load_reward_model, load_tokenizer_for
    from perlhf.train.scoring import score_texts

    judge_dir = out / "judge" / "final"
    lines = ["| mode | steps | episodes | training reward ± SE | judge score ± SE | judge score of the start policy |",
             "|---|---|---|---|---|---|"]
    series: dict[str, list] = {}
    model = tok = info = None
    for mode in runs:
        f = out / f"rl-{mode}" / "samples.jsonl"
        if not f.is_file():
            continue
        samples = rows(f)
        steps = sorted({r["step"] for r in samples})
        if len(samples) < 4 * len(steps):  # a few samples per step: not a watch run
            continue
        if model is None:
            model, info = load_reward_model(judge_dir)
            tok = load_tokenizer_for(judge_dir, info)
        items = [([{"role": "user", "content": user_turn(r["prompt"])}], r["response"]) for r in samples]
        judged = score_texts(model, tok, items, info.max_prompt_tokens, info.max_response_tokens, 64)
        for i in range(0, len(steps), size):
            window = set(steps[i:i + size])
            idx = [k for k, r in enumerate(samples) if r["step"] in window]
            tr = [samples[k]["reward"] for k in idx]
            jd = [judged[k] for k in idx]

            def ms(v):
                m = statistics.fmean(v)
                return m, (statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else float("nan"))

            (tm, tse), (jm, jse) = ms(tr), ms(jd)
            series.setdefault(mode, []).append((min(window), max(window), tm, tse, jm, jse))
            lines.append(f"| {mode} | {min(window)}-{max(window)} | {len(idx)} | {tm:+.3f} ± {tse:.3f} | "
                         f"{jm:+.3f} ± {jse:.3f} | |")
    ev = out / "eval-lora.json" if (out / "eval-lora.json").is_file() else out / "eval-full.json"
    if series and ev.is_file():
        lines.append(f"| start policy | held-out test prompts | {load(ev)['prompts']} | | | "
                     f"{load(ev)['judge_rm']['mean_sft']:+.3f} |")
    return lines, series


def plot(curves: dict[str, list], size: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (mode, hist), color in zip(curves.items(), ("tab:blue", "tab:red", "tab:green"), strict=False):
        w = windows(hist, "reward_mean", size)
        x = [(a + b) / 2 for a, b, _, _ in w]
        ax1.plot([r["step"] for r in hist], [r["reward_mean"] for r in hist], alpha=0.25, color=color)
        ax1.errorbar(x, [m for _, _, m, _ in w], yerr=[se for *_, se in w], marker="o", capsize=3, color=color,
                     label=f"{mode} ({size}-step windows ± SE)")
        ax2.plot([r["step"] for r in hist], [r["kl"] for r in hist], label=mode, color=color)
    ax1.set(xlabel="RL step", ylabel="training reward", title="reward (the training RM)")
    ax2.set(xlabel="RL step", ylabel="KL to anchor (per sequence)", title="KL")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--runs", nargs="+", default=list(RUNS), help="the RL folders rl-RUN to report (default: lora full)")
    args = ap.parse_args()
    runs = tuple(args.runs)
    rl_lines, curves = rl_tables(args.out, args.window, runs)
    ev_lines, gains = eval_table(args.out, runs)
    print("## Reward models (test split)\n", *rm_table(args.out), "", sep="\n")
    print("## RL learning curves\n", *rl_lines, "", sep="\n")
    print("## Judged against the starting policy (held-out test prompts)\n", *ev_lines, "", sep="\n")
    if "lora" in gains and "full" in gains and gains["full"] > 0:
        print(f"LoRA's judge gain / full's: {gains['lora']:+.3f} / {gains['full']:+.3f} = "
              f"{gains['lora'] / gains['full']:.0%}\n")
    watch, series = watch_table(args.out, args.window, runs)
    if series:
        print("## Reward-hacking watch: training reward and judge score of the same episodes\n", *watch, "",
              sep="\n")
    if curves:
        plot(curves, args.window, args.out / "learning_curves.png")
        print("![learning curves](learning_curves.png)")


if __name__ == "__main__":
    main()
