"""Tables of `benchmarks/rl_pipeline.sh`'s runs: RL full vs LoRA with the judge's verdicts.

    python benchmarks/rl_pipeline_report.py [--out runs/rl-pipeline]

Writes ``<out>/report/report.md`` (+ ``report.json`` and plots) with perlhf's own report writer:
reward first/last/gain, KL, the judge's win/tie/loss against SFT on held-out prompts, the training
reward model's held-out gain, peak memory, step time by phase, LoRA as a ratio of full. Also
prints the reward models' test metrics.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from perlhf.compare import RESULT_READERS, Mode, machine, versions
from perlhf.demo import _eval_quality
from perlhf.io import atomic_write_text
from perlhf.report import write_report
from perlhf.runs import RunDir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/rl-pipeline"))
    out = ap.parse_args().out
    results = []
    for mode, slug in ((Mode("full", None), "full"), (Mode("lora:r8", 8), "lora")):
        run = out / f"rl-{slug}"
        summary = json.loads((run / "summary.json").read_text())
        res = RESULT_READERS["rl"](mode, summary, RunDir(run).read_metrics())
        ev = out / f"eval-{slug}.json"
        if ev.is_file():
            res.quality.update(_eval_quality(json.loads(ev.read_text())))
        res.run_dir = str(run)
        results.append(res)
    meta = {"task": "taskmaster-coffee", "model": "smollm2-135m (SFT, LoRA merged)",
            "size": "benchmarks/rl_pipeline.sh sizes", "command": "bash benchmarks/rl_pipeline.sh",
            "versions": versions(), "machine": machine()}
    paths = write_report(out / "report", "rl", results, meta)
    lines = ["", "## The reward models (test split, best validation checkpoint)", "",
             "| model | role | test accuracy | test AUC ± s.e. | untrained AUC | majority baseline | best val AUC (step) |",
             "|---|---|---|---|---|---|---|"]
    for name, role in (("rm", "the reward RL optimises (shard 1/2)"), ("judge", "the independent judge (shard 2/2)")):
        s = json.loads((out / name / "summary.json").read_text())
        t, un = s["test"], ((s.get("untrained") or {}).get("test") or {})
        se = f" ± {t['auc_se']:.3f}" if t.get("auc_se") is not None else ""
        lines.append(f"| {name} | {role} | {t['accuracy']:.3f} | {t['auc']:.3f}{se} | "
                     f"{un.get('auc', float('nan')):.3f} | {t['majority_baseline']:.3f} | "
                     f"{s.get('validation_best') or float('nan'):.3f} ({s.get('best_step')}) |")
    md = paths["markdown"]
    atomic_write_text(md, md.read_text() + "\n".join(lines) + "\n")
    print(md.read_text())

if __name__ == "__main__":
    main()
