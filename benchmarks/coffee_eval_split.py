"""Split a `perlhf eval` over every test context into the contexts an earlier, smaller eval judged and
the others: the others are an independent replication of the smaller eval's verdict.

    python benchmarks/coffee_eval_split.py runs/coffee-rl/eval-all-full-answers.jsonl --first 128

``--first N`` (with ``--seed``, ``--task``, ``--split``) names the subset that ``perlhf eval --num-prompts N``
draws (perlhf.eval.judge.eval_subset), so the split needs no file of the smaller eval. Prints, for the
seen contexts, the fresh ones and all of them: the judge's win / tie / loss of RL against SFT, the win
rate with ties half ± its standard error, and how many SE it lies above 50%; the same for the training
reward model.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from perlhf.eval.judge import eval_subset, win_rate, win_tie_loss


def verdict(rows: list[dict], who: str) -> str:
    rates = win_tie_loss([r[f"{who}_rl"] for r in rows], [r[f"{who}_sft"] for r in rows])
    rate, se = win_rate(rates)
    return (f"{100 * rates['win']:.0f}% / {100 * rates['tie']:.0f}% / {100 * rates['loss']:.0f}% | "
            f"{rate:.3f} ± {se:.3f} | {(rate - 0.5) / se:+.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("answers", type=Path, help="the --samples-out JSONL of the eval over every context")
    ap.add_argument("--first", type=int, default=128, help="--num-prompts of the smaller eval")
    ap.add_argument("--seed", type=int, default=0, help="--seed of the smaller eval")
    ap.add_argument("--task", default="taskmaster-coffee")
    ap.add_argument("--split", default="test")
    ap.add_argument("--data-dir", default=os.environ.get("PERLHF_DATA_DIR"))
    args = ap.parse_args()
    from perlhf.data import load_task, prompts_of

    rows = [json.loads(line) for line in args.answers.read_text().splitlines() if line.strip()]
    raw = prompts_of(load_task(args.task, data_dir=args.data_dir), args.split)
    if len(rows) != len(raw):
        raise SystemExit(f"{args.answers}: {len(rows)} answers but {len(raw)} {args.split} prompts; "
                         "pass the eval run over every context (--num-prompts at least that many)")
    seen = {p.id for p in eval_subset(raw, args.first, args.seed)}
    groups = {f"the {args.first} contexts of the smaller eval": [r for r in rows if r["id"] in seen],
              "the other contexts (fresh)": [r for r in rows if r["id"] not in seen], "all": rows}
    print(f"{args.answers}\n")
    print("| contexts | n | judge win / tie / loss | judge win rate ± SE | SE above 50% | "
          "training RM win / tie / loss | training RM win rate ± SE | SE above 50% |")
    print("|---|---|---|---|---|---|---|---|")
    for name, group in groups.items():
        print(f"| {name} | {len(group)} | {verdict(group, 'judge')} | {verdict(group, 'reward')} |")


if __name__ == "__main__":
    main()
