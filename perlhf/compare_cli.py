"""``perlhf compare``: the paper's tables for your own task, one fresh process per mode."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from perlhf.config import bool_flag
from perlhf.errors import UserError, interrupt_exit_code

DESCRIPTION = (
    "Run every mode (full fine-tuning and LoRA of each rank) of a stage on the same data, seed and step "
    "budget, each in a fresh process so peak memory is per mode, and write a report folder: report.md "
    "(quality per mode; memory as %% of full and speed-up like the paper's Table 1; the rank sweep like "
    "Tables 2-3; the RL phase breakdown; the exact commands and versions), report.json and PNG plots. "
    "Any option not listed here is passed to every mode's stage command, e.g. "
    "`perlhf compare --stage rm --task hh-harmless --modes full,lora:r8 --max-steps 100 --batch-size 8`."
)


def register(sub: Any) -> None:
    p = sub.add_parser("compare", help="compare full fine-tuning and LoRA ranks side by side on one task",
                       description=DESCRIPTION)
    p.add_argument("--stage", choices=["rm", "rl"], default="rm",
                   help="which stage to compare (default: rm); `perlhf demo` runs the whole pipeline")
    p.add_argument("--task", default=None, help="task name passed to each mode (see `perlhf data list`)")
    p.add_argument("--modes", default="full,lora:r1,lora:r4,lora:r8,lora:r16",
                   help="comma-separated modes: 'full', 'lora:rN' and, for --stage rm, 'lora:rNxK' (an ensemble "
                   "of K LoRA reward models on one backbone) (default: %(default)s)")
    p.add_argument("--report-dir", type=Path, default=Path("reports/compare"),
                   help="folder for report.md, report.json, the plots and each mode's run (default: %(default)s)")
    bool_flag(p, "--overwrite", "replace an existing --report-dir")
    p.set_defaults(func=_run, accepts_extra=True)


def _run(args: argparse.Namespace) -> int:
    from perlhf.compare import compare, parse_modes, prepare_report_dir

    modes = parse_modes(args.modes)
    extra = list(getattr(args, "extra", []))
    for bad in ("--mode", "--lora-rank", "--ensemble", "--output-dir", "--overwrite"):
        if any(a == bad or a.startswith(bad + "=") for a in extra):
            raise UserError(f"{bad} is set by perlhf compare for each mode: remove it (use --modes / --report-dir)")
    if args.task:
        extra = ["--task", args.task, *extra]
    prepare_report_dir(args.report_dir, args.overwrite)
    meta = {"task": args.task or "(stage default)", "command": "perlhf " + shlex.join(sys.argv[1:])}
    try:
        results = compare([args.stage], modes, args.report_dir, {args.stage: extra}, meta)
    except KeyboardInterrupt as exc:
        print(f"interrupted: the report in {args.report_dir} shows the modes that finished", file=sys.stderr)
        return interrupt_exit_code(exc)
    rows = results[args.stage]
    print((args.report_dir / args.stage / "report.md").read_text())
    print(f"report: {args.report_dir / args.stage / 'report.md'}")
    return 0 if all(r.status == "ok" for r in rows) else 1
