"""``perlhf demo``: SFT -> RM (full vs LoRA) -> RL (full vs LoRA) -> judge -> report, on the offline defaults."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from perlhf.config import add_dataclass_arguments, resolve_config

DESCRIPTION = (
    "The main job, offline, LoRA against full fine-tuning: on the default model (smollm2-135m) and the sentiment "
    "task (rotten-tomatoes-sentiment: continue a movie review positively), train reward models (full and LoRA), an "
    "independent judge with another backbone (MiniLM) on a disjoint half of the data, RL from the instruct model "
    "(full and LoRA), and the judge's verdict of each RL policy against the starting policy on held-out prompts; "
    "then write a report (report.md, report.json, plots) and print its main table. 15-30 minutes on a 2-core CPU "
    "in fp32. --task taskmaster-coffee runs the paper's task (SFT on the TM-4 dialogues first); --quick runs the "
    "same pipeline with tiny budgets in a few minutes."
)


def register(sub: Any) -> None:
    from perlhf.demo import DemoConfig

    p = sub.add_parser("demo", help="the whole recipe on the offline defaults, LoRA vs full, with a report",
                       description=DESCRIPTION)
    add_dataclass_arguments(p, DemoConfig)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from perlhf.demo import DemoConfig, format_main_table, run_demo

    cfg = resolve_config(DemoConfig, args)
    out = run_demo(cfg)
    print()
    print(format_main_table(out["table"]))
    print(f"\nfinished in {out['minutes']:.1f} min; report: {out['report']}")
    if out["failed"]:
        print(f"these steps failed (see the report and their logs): {', '.join(out['failed'])}", file=sys.stderr)
        return 1
    return 0
