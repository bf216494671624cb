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

# Subcommands in the order they appear in --help: (name, module, one-line help). Only the module of
# the command being run is imported (the training ones import torch to build their options), so
# `perlhf --help` and `perlhf data ...` start in a fraction of a second.
COMMANDS = [
    ("data", "perlhf.data.cli", "list the datasets, print their statistics, or show examples as the model sees them"),
    ("models", "perlhf.models.cli", "list the offline models, or show what a model is (parameters, dtype, a continuation)"),
    ("rm", "perlhf.train.rm_cli", "reward models: train (default), merge, score"),
    ("sft", "perlhf.train.sft_cli", "supervised fine-tuning on dialogues, LoRA or full; --merge writes the RL start"),
    ("rl", "perlhf.train.rl_cli", "RL from a reward model: policy and value as LoRA adapters on one frozen SFT "
     "backbone, or full fine-tuning with separate models"),
    ("eval", "perlhf.eval.cli", "judge the RL policy against the SFT policy on held-out prompts"),
    ("compare", "perlhf.compare_cli", "compare full fine-tuning and LoRA ranks side by side on one task"),
    ("demo", "perlhf.demo_cli", "the whole recipe on the offline defaults, LoRA vs full, with a report"),
]
COMMAND_MODULES = [module for _, module, _ in COMMANDS]


def requested_command(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the global options take no values)."""
    names = {name for name, _, _ in COMMANDS}
    for token in argv:
        if not token.startswith("-"):
            return token if token in names else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the requested command's module is imported (``None``: all)."""
    parser = argparse.ArgumentParser(
        prog="perlhf",
        description="Parameter-efficient RLHF (PERL): LoRA and full fine-tuning side by side "
        "for SFT, reward models and RL, with quality, peak memory and speed reported.",
    )
    parser.add_argument("--version", action="version", version=f"perlhf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = requested_command(argv) if argv is not None else None
    for name, module, help_text in COMMANDS:
        if argv is None or name == wanted:
            importlib.import_module(module).register(sub)
        else:  # listed in --help; never run (the command line named another one)
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
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
