"""The table of benchmarks/sentiment_sweep.sh: each RL configuration judged on validation prompts.

    python benchmarks/sentiment_sweep_report.py runs/sentiment-sweep > runs/sentiment-sweep/report.md

Per configuration: the training reward of the first and last 5 steps (pooled-episode SE), KL to
the anchor and response length at the end, and the judge's win rate (ties half) against the starting
policy on 64 validation prompts, with its SE. Choices are made on this table (validation), never on
the test split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sentiment_report import load, rows, windows  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    print("| configuration | reward steps 1-5 | reward steps 16-20 | KL (held-out) | chars RL / start | "
          "judge win rate ± SE (validation) | RL step (s) |")
    print("|---|---|---|---|---|---|---|")
    for ev in sorted(args.out.glob("eval-*.json")):
        name = ev.stem.removeprefix("eval-")
        e = load(ev)
        hist = [r for r in rows(args.out / name / "metrics.jsonl") if r.get("split") == "train"]
        w = windows(hist, "reward_mean", 5)
        s = load(args.out / name / "summary.json")
        j = e["judge_rm"]
        print(f"| {name} | {w[0][2]:+.3f} ± {w[0][3]:.3f} | {w[-1][2]:+.3f} ± {w[-1][3]:.3f} | "
              f"{e['kl_rl_to_sft']:.1f} | {e['response_chars']['rl']:.0f} / {e['response_chars']['sft']:.0f} | "
              f"{j['win_rate']:.3f} ± {j['win_rate_se']:.3f} | {s['median_seconds_per_step']:.1f} |")


if __name__ == "__main__":
    main()
