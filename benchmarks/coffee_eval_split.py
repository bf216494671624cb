"""Split a `perlhf eval` over every test context into the contexts an earlier, smaller eval judged and
the others: the others are an independent replication of the smaller eval's verdict. Several evals of the
same contexts (RL runs of other seeds) give each run's rows and their mean, its SE clustered by context.

    python benchmarks/coffee_eval_split.py runs/coffee-rl/eval-all-full-answers.jsonl --first 128
    python benchmarks/coffee_eval_split.py runs/coffee-rl/eval-all-full{,-s1,-s2}-answers.jsonl

``--first N`` (with ``--seed``, ``--task``, ``--split``) names the subset that ``perlhf eval --num-prompts N``
draws (perlhf.eval.judge.eval_subset), so the split needs no file of the smaller eval. Prints, for the
seen contexts, the fresh ones and all of them: the judge's win / tie / loss of RL against SFT, the win
rate with ties half ± its standard error, and how many SE it lies above 50%; the same for the training
reward model. With several files, a "mean of N runs" row per group: each context's score (1 / 0.5 / 0)
averaged over the runs, the SE over contexts (perlhf.eval.judge.seeds_win_rate), since the runs share the
contexts and the SFT answers. ``--by-api`` adds the contexts where the SFT answer is an API call and those
where it is text.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from perlhf.eval.judge import eval_subset, seeds_win_rate, win_rate, win_tie_loss


def verdict(runs: list[list[dict]], who: str) -> str:
    """The judge's (or training reward model's) verdict over one group of contexts: one run, or the mean of
    several on the same contexts."""
    pairs = [([r[f"{who}_rl"] for r in rows], [r[f"{who}_sft"] for r in rows]) for rows in runs]
    each = [win_tie_loss(rl, sft) for rl, sft in pairs]
    rates = {k: sum(e[k] for e in each) / len(each) for k in ("win", "tie", "loss")}
    rate, se = win_rate(each[0]) if len(runs) == 1 else seeds_win_rate(pairs)
    return (f"{100 * rates['win']:.0f}% / {100 * rates['tie']:.0f}% / {100 * rates['loss']:.0f}% | "
            f"{rate:.3f} ± {se:.3f} | {(rate - 0.5) / se:+.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("answers", type=Path, nargs="+",
                    help="the --samples-out JSONL of an eval over every context; several: runs on the same contexts")
    ap.add_argument("--first", type=int, default=128, help="--num-prompts of the smaller eval (0: none)")
    ap.add_argument("--seed", type=int, default=0, help="--seed of the smaller eval")
    ap.add_argument("--task", default="taskmaster-coffee")
    ap.add_argument("--split", default="test")
    ap.add_argument("--data-dir", default=os.environ.get("PERLHF_DATA_DIR"))
    ap.add_argument("--by-api", action="store_true",
                    help="also split the contexts by the SFT answer: an API call, or text (the runs share the SFT answers)")
    args = ap.parse_args()
    from perlhf.data import load_task, prompts_of
    from perlhf.data.taskmaster import is_api_call

    raw = prompts_of(load_task(args.task, data_dir=args.data_dir), args.split)
    runs = {}
    for path in args.answers:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if len(rows) != len(raw):
            raise SystemExit(f"{path}: {len(rows)} answers but {len(raw)} {args.split} prompts; "
                             "pass the eval run over every context (--num-prompts at least that many)")
        if runs and [r["id"] for r in rows] != [r["id"] for r in next(iter(runs.values()))]:
            raise SystemExit(f"{path}: answers other contexts, or in another order, than {args.answers[0]}")
        runs[path.name.removesuffix("-answers.jsonl").removesuffix(".jsonl")] = rows
    seen = {p.id for p in eval_subset(raw, args.first, args.seed)}
    groups = {f"the {args.first} contexts of the smaller eval": lambda r: r["id"] in seen,
              "the other contexts (fresh)": lambda r: r["id"] not in seen} if seen else {}
    if args.by_api:
        groups["SFT answered with an API call"] = lambda r: is_api_call(r["sft"])
        groups["SFT answered in text"] = lambda r: not is_api_call(r["sft"])
    groups["all"] = lambda r: True
    print("\n".join(str(p) for p in args.answers) + "\n")
    print("| contexts | run | n | judge win / tie / loss | judge win rate ± SE | SE above 50% | "
          "training RM win / tie / loss | training RM win rate ± SE | SE above 50% |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, keep in groups.items():
        picked = {run: [r for r in rows if keep(r)] for run, rows in runs.items()}
        rows_of = list(picked.items()) + ([(f"mean of {len(runs)} runs", None)] if len(runs) > 1 else [])
        for run, group in rows_of:
            group_runs = [group] if group is not None else list(picked.values())
            print(f"| {name} | {run} | {len(group_runs[0])} | {verdict(group_runs, 'judge')} | "
                  f"{verdict(group_runs, 'reward')} |")


if __name__ == "__main__":
    main()
