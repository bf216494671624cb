"""The ``perlhf`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``;
``register`` adds a parser whose ``func`` runs the command. Modules keep heavy
imports (torch, transformers) inside their command functions so that
``perlhf --help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import signal
import sys

from perlhf import __version__
from perlhf.errors import Terminated, UserError, interrupt_exit_code

# Subcommands in the order they appear in --help: (name, module, one-line help). Only the module of
# the command being run is imported (the training ones import torch to build their options), so
# `perlhf --help` and `perlhf data ...` start in a fraction of a second.
COMMANDS = [
    ("data", "perlhf.data.cli", "list the datasets, print their statistics, or show examples as the model sees them"),
    ("models", "perlhf.models.cli", "list the offline models, or show what a model is (parameters, dtype, a continuation)"),
    ("rm", "perlhf.train.rm_cli", "reward models: train (default), merge, export, score"),
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


class Parser(argparse.ArgumentParser):
    """argparse without prefix matching: ``--learning-rat`` is an error, not ``--learning-rate``
    (subcommand parsers inherit the class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


def join_negative_values(argv: list[str]) -> list[str]:
    """``--opt -1e-3`` -> ``--opt=-1e-3``: argparse takes a negative number in exponent form for an
    option and answers "expected one argument". Pure."""
    out: list[str] = []
    for token in argv:
        prev = out[-1] if out else ""
        if _NEGATIVE_NUMBER.match(token) and prev.startswith("--") and "=" not in prev:
            out[-1] = f"{prev}={token}"
        else:
            out.append(token)
    return out


# errno -> what to do, for the OS errors a user causes (a read-only or full disk, a folder given as a file)
OS_ADVICE = {
    errno.EACCES: "choose a folder you can write to (or fix its permissions)",
    errno.EPERM: "choose a folder you can write to (or fix its permissions)",
    errno.EROFS: "the file system is read-only: choose another output folder",
    errno.ENOSPC: "the disk is full: free space (old checkpoints, runs) and rerun; a training run continues "
                  "from its last checkpoint with --resume",
    errno.EDQUOT: "the disk quota is exhausted: free space and rerun (--resume continues a training run)",
    errno.EISDIR: "that path is a folder: give a file name",
    errno.ENOTDIR: "a part of that path is a file, not a folder",
    errno.ENOENT: "no such file or folder: check the path",
}


def os_error_message(exc: OSError) -> str | None:
    """One line naming the file and what to do, for an :class:`OSError` a user can fix; else None."""
    advice = OS_ADVICE.get(exc.errno)
    if advice is None:
        return None
    where = exc.filename if exc.filename is not None else "a file"
    return f"{where}: {exc.strerror or os.strerror(exc.errno)}; {advice}"


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the requested command's module is imported (``None``: all)."""
    parser = Parser(
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
    argv = join_negative_values(sys.argv[1:] if argv is None else list(argv))
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
    # `kill PID` stops a command like Ctrl-C does; also for one started from a background script, whose
    # SIGINT the shell ignores (Python keeps an ignored SIGINT ignored, so there Ctrl-C cannot reach it)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _run(args: argparse.Namespace) -> int:
    try:
        rc = args.func(args)
    except UserError as exc:
        if args.verbose:
            raise
        print(f"perlhf {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        message = os_error_message(exc)
        if message is None or args.verbose:
            raise
        print(f"perlhf {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"perlhf {args.command}: {how}", file=sys.stderr)
        return interrupt_exit_code(exc)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
