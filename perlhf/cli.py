"""The ``perlhf`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``;
``register`` adds a parser whose ``func`` runs the command. Modules keep heavy
imports (torch, transformers) inside their command functions so that
``perlhf --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from perlhf import __version__
from perlhf.errors import UserError

# Subcommand modules, in the order they appear in --help.
COMMAND_MODULES = [
    "perlhf.data.cli",
    "perlhf.models.cli",
    "perlhf.train.rm_cli",
    "perlhf.train.sft_cli",
    "perlhf.train.rl_cli",
    "perlhf.eval.cli",
    "perlhf.compare_cli",
    "perlhf.demo_cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perlhf",
        description="Parameter-efficient RLHF (PERL): LoRA and full fine-tuning side by side "
        "for SFT, reward models and RL, with quality, peak memory and speed reported.",
    )
    parser.add_argument("--version", action="version", version=f"perlhf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not getattr(args, "accepts_extra", False):
            parser.error("unrecognized arguments: " + " ".join(extra))
        args.extra = extra
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        rc = args.func(args)
    except UserError as exc:
        if args.verbose:
            raise
        print(f"perlhf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"perlhf {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
