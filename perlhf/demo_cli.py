"""``perlhf demo``: SFT -> RM (full vs LoRA) -> RL (full vs LoRA) -> judge -> report, on the offline defaults."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from perlhf.config import add_dataclass_arguments, resolve_config

DESCRIPTION = (
    "The main job: on the offline default model (smollm2-135m) and Taskmaster Coffee, run SFT (LoRA, merged), "
    "reward models (full and LoRA), an independent judge reward model on a disjoint half of the data, RL "
    "(full and LoRA), and the judge's verdicts of each RL policy against the SFT policy; then write a report "
    "(report.md, report.json, plots) and print its main table. About 30 minutes on a 2-core CPU; --quick "
    "runs the same pipeline with tiny budgets in a few minutes."
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
