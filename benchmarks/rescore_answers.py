"""Score the kept answers of an earlier `perlhf eval` again, with the judge and the training reward model of
this run: pools an RL run judged elsewhere (another CPU, a retrained judge) with runs judged here, every
answer scored by the same models.

    python benchmarks/rescore_answers.py runs/coffee-rl2/eval-all-full.json \
        --judge-rm runs/coffee-rl2/judge/final --reward-model runs/coffee-rl2/rm/final \
        --out runs/coffee-rl2/eval-all-full-rescored-answers.jsonl [--answers FILE] [--data-dir ../shared/data]

Reads the eval's JSON report (task, split, seed, the answers file it kept with ``--samples-out``; or
``--answers``), takes each context from the task data by its id, scores both answers (RL and SFT) with
both models (perlhf.eval.judge.score_answers, as `perlhf eval` does), and writes the answers file again
with the new scores. Prints how far each new score is from the old one (the check that a retrained judge
is the same judge) and both verdicts; ``benchmarks/coffee_eval_split.py`` reads the new file.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="the JSON report of the earlier `perlhf eval --samples-out`")
    ap.add_argument("--judge-rm", required=True)
    ap.add_argument("--reward-model", required=True)
    ap.add_argument("--out", type=Path, required=True, help="the answers file with the new scores (JSONL)")
    ap.add_argument("--answers", type=Path, help="the answers file (default: the report's samples_out)")
    ap.add_argument("--data-dir", default=os.environ.get("PERLHF_DATA_DIR"))
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    from perlhf.data import load_task, prompts_of
    from perlhf.eval.judge import score_answers, win_rate, win_tie_loss
    from perlhf.io import atomic_write_text, dumps_json
    from perlhf.models import torch_dtype

    report = json.loads(args.report.read_text())
    answers = args.answers or Path(report["samples_out"])
    rows = [json.loads(line) for line in answers.read_text().splitlines() if line.strip()]
    task = load_task(report["task"], data_dir=args.data_dir, path=report.get("path"))
    by_id = {p.id: p for p in prompts_of(task, report["split"])}
    missing = [r["id"] for r in rows if r["id"] not in by_id]
    if missing:
        raise SystemExit(f"{answers}: {len(missing)} ids not in the {report['split']} split of {report['task']} "
                         f"(first: {missing[0]}); pass the --data-dir that eval read")
    contexts = [list(by_id[r["id"]].prompt) for r in rows]
    dtype = torch_dtype(report.get("dtype", "float32"))
    new = {}
    for who, folder, option in (("judge", args.judge_rm, "--judge-rm"), ("reward", args.reward_model, "--reward-model")):
        new[f"{who}_rl"], new[f"{who}_sft"] = score_answers(
            folder, option, contexts, [[r["rl"] for r in rows], [r["sft"] for r in rows]], dtype, args.batch_size)
    for who in ("judge", "reward"):
        keys = (f"{who}_rl", f"{who}_sft")
        verdicts = {"new": [new[k] for k in keys]}
        if keys[0] in rows[0]:  # the earlier eval's scores: how far each moved, and its verdict
            old = [[r[k] for r in rows] for k in keys]
            for key, before, now in zip(keys, old, verdicts["new"], strict=True):
                moved = max(abs(x - y) for x, y in zip(before, now, strict=True))
                print(f"{key}: largest change from the old score {moved:.2e}")
            verdicts = {"old": old, **verdicts}
        for label, (rl, sft) in verdicts.items():
            rate, se = win_rate(win_tie_loss(rl, sft))
            print(f"{who} win rate, {label} scores: {rate:.4f} ± {se:.4f}")
    atomic_write_text(args.out, "".join(
        dumps_json({**r, **{k: v[i] for k, v in new.items()}}, indent=None) + "\n" for i, r in enumerate(rows)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
