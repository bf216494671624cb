"""``perlhf data list | stats TASK | show TASK``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from perlhf.config import bool_flag
from perlhf.errors import UserError

DEFAULT_MODEL = "smollm2-135m"
MODEL_HELP = ("model whose tokenizer and chat template to use: an offline name (smollm2-135m), a local "
              "Hugging Face model folder, or a hub id org/name; 'none' skips tokenization")


def register(subparsers: argparse._SubParsersAction) -> None:
    from perlhf.data.tasks import TASKS

    parser = subparsers.add_parser(
        "data",
        help="list the datasets, print their statistics, or show examples as the model sees them",
        description="Datasets turned into records (ratings, preference pairs, prompts, dialogues) with "
        "deterministic train/validation/test splits. Data is looked up in --data-dir, then "
        "$PERLHF_DATA_DIR, then the user cache ($PERLHF_CACHE/data, default ~/.cache/perlhf/data), "
        "then downloaded from the public sources with checksums.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda _args: (parser.print_help(), 2)[1])

    p_list = actions.add_parser("list", help="list the tasks", description="List the task names with their "
                                "record kind and source.")
    p_list.set_defaults(func=cmd_list)

    task_help = "task name: " + ", ".join(TASKS)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("task", metavar="TASK", help=task_help)
        p.add_argument("--data-dir", default=None, metavar="DIR",
                       help="data folder searched first, laid out like the perlhf data cache "
                       "(e.g. ../shared/data); default: $PERLHF_DATA_DIR, then the user cache, then a download")
        p.add_argument("--path", default=None, metavar="FILE",
                       help="your own file or folder: required for the jsonl task; local files in the "
                       "dataset's schema for shp/tldr; a different file for the others")
        p.add_argument("--no-download", dest="download", action="store_false",
                       help="never download: fail if the data is not found locally")
        p.add_argument("--split-fractions", default="0.8,0.1,0.1", metavar="TRAIN,VAL,TEST",
                       help="fractions for hash-based splits (default: 0.8,0.1,0.1)")
        p.add_argument("--model", default=DEFAULT_MODEL, metavar="M", help=f"{MODEL_HELP} (default: {DEFAULT_MODEL})")
        bool_flag(p, "--trust-remote-code", "allow a hub model's own tokenizer code to run (only if you trust it)")

    p_stats = actions.add_parser(
        "stats", help="per-split record counts, label balance and token-length percentiles",
        description="Print, per split, the record count, the label balance (share of thumbs-up / positive) or "
        "pair count, and p50/p90/p99/max token lengths of prompts (formatted with the chat template, "
        "untruncated) and responses (with the end-of-turn token) under the model's tokenizer.",
    )
    common(p_stats)
    p_stats.add_argument("--max-prompt-tokens", type=int, default=None, metavar="N",
                         help="also count the prompts longer than N tokens (they would be truncated from the left)")
    bool_flag(p_stats, "--json", "print the statistics as JSON instead of a table")
    p_stats.set_defaults(func=cmd_stats)

    p_show = actions.add_parser(
        "show", help="print examples exactly as the model will see them",
        description="Print the first N records of a split as the model sees them: the formatted prompt "
        "(chat template, left-truncated to --max-prompt-tokens) and the response(s) with their end-of-turn "
        "token, decoded from the token ids.",
    )
    common(p_show)
    p_show.add_argument("-n", "--num", type=int, default=3, metavar="N", help="number of examples (default: 3)")
    p_show.add_argument("--split", default="train", choices=["train", "validation", "test"],
                        help="split to take the examples from (default: train)")
    p_show.add_argument("--max-prompt-tokens", type=int, default=1024, metavar="N",
                        help="prompt token budget; longer prompts lose their oldest turns (default: 1024)")
    p_show.add_argument("--max-response-tokens", type=int, default=256, metavar="N",
                        help="response token budget, truncated on the right (default: 256)")
    p_show.set_defaults(func=cmd_show)


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UserError(f"--split-fractions {text!r}: expected three numbers like 0.8,0.1,0.1") from None


def _load(args: argparse.Namespace):
    from perlhf.data.tasks import load_task

    return load_task(args.task, args.data_dir, download=args.download,
                     split_fractions=_fractions(args.split_fractions), path=args.path)


def load_tokenizer(model: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer of ``model`` through :func:`perlhf.models.load_tokenizer`; None for ``none``."""
    if model.lower() == "none":
        return None
    from perlhf.models import load_tokenizer as _load_tokenizer

    return _load_tokenizer(model, trust_remote_code=trust_remote_code)


def cmd_list(args: argparse.Namespace) -> int:
    from perlhf.data.tasks import TASKS

    width = max(len(n) for n in TASKS)
    print("Tasks (perlhf data stats TASK, perlhf data show TASK):")
    for info in TASKS.values():
        print(f"  {info.name:<{width}}  {info.kind:<11} {info.description}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from perlhf.data.stats import format_stats, task_stats

    if args.max_prompt_tokens is not None and args.max_prompt_tokens < 1:
        raise UserError(f"--max-prompt-tokens must be >= 1, got {args.max_prompt_tokens}")
    task = _load(args)
    tokenizer = load_tokenizer(args.model, args.trust_remote_code)
    stats = task_stats(task, tokenizer, args.max_prompt_tokens)
    if args.json:
        print(json.dumps({"task": task.name, "kind": task.kind, "origin": task.origin,
                          "files": [str(f) for f in task.files],
                          "model": None if tokenizer is None else args.model,
                          "splits": [s.as_dict() for s in stats]}, indent=2))
    else:
        print(format_stats(task, stats, None if tokenizer is None else args.model, args.max_prompt_tokens))
    return 0


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False)


def cmd_show(args: argparse.Namespace) -> int:
    from perlhf.data import render
    from perlhf.data.records import Dialogue, PreferencePair, Prompt, RatedResponse

    if args.num < 1:
        raise UserError(f"-n must be >= 1, got {args.num}")
    if args.max_prompt_tokens < 1 or args.max_response_tokens < 1:
        raise UserError("--max-prompt-tokens and --max-response-tokens must be >= 1")
    task = _load(args)
    tokenizer = load_tokenizer(args.model, args.trust_remote_code)
    if tokenizer is None:
        raise UserError("perlhf data show needs a tokenizer: pass --model M (not 'none')")
    records = task.split(args.split)[: args.num]
    print(f"task {task.name} ({task.kind}), split {args.split}: {len(task.splits[args.split]):,} records; "
          f"showing {len(records)} as {args.model} sees them (prompt budget {args.max_prompt_tokens}, "
          f"response budget {args.max_response_tokens} tokens)")
    for i, rec in enumerate(records, start=1):
        extra = ""
        if isinstance(rec, RatedResponse):
            extra = f", label {rec.label} ({'thumbs-up' if rec.label else 'thumbs-down'})"
        elif isinstance(rec, Prompt) and rec.label is not None:
            extra = f", label {rec.label}"
        print(f"\n===== example {i}/{len(records)}: id {rec.id}, group {rec.group}{extra}")
        if isinstance(rec, Dialogue):
            text = render.format_conversation(tokenizer, rec.messages)
            ids = render.tokenize_text(tokenizer, text)
            print(f"----- conversation for SFT: {len(ids)} tokens, {len(rec.targets())} assistant turns are targets")
            print(_decode(tokenizer, ids))
            continue
        ids, truncated = render.encode_prompt(tokenizer, rec.prompt, args.max_prompt_tokens)
        print(f"----- prompt: {len(ids)} tokens{' (oldest turns truncated)' if truncated else ''}")
        print(_decode(tokenizer, ids))
        responses = []
        if isinstance(rec, RatedResponse):
            responses = [("response", rec.response)]
        elif isinstance(rec, PreferencePair):
            responses = [("chosen", rec.chosen), ("rejected", rec.rejected)]
        for label, text in responses:
            rids = render.encode_response(tokenizer, text, args.max_response_tokens)
            print(f"----- {label}: {len(rids)} tokens")
            print(_decode(tokenizer, rids))
    return 0
