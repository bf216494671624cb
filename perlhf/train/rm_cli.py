"""``perlhf rm``: train (the default), merge and score reward models.

    perlhf rm [train] --task hh-harmless --mode lora --lora-rank 8 --output-dir runs/rm-hh
    perlhf rm merge --model-dir runs/rm-hh/final --output runs/rm-hh/merged
    perlhf rm score --model-dir runs/rm-hh/final --input texts.jsonl [--output scores.jsonl]

Multi-process: ``torchrun --nproc_per_node 2 -m perlhf rm ...`` (gloo on CPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from perlhf.config import add_dataclass_arguments, bool_flag, resolve_config
from perlhf.errors import DataError, UserError

TRAIN_HELP = "train a reward model (LoRA or full fine-tuning) on pairs or thumbs-up/down ratings"


def register(sub: Any) -> None:
    from perlhf.train.reward import RewardConfig

    parser = sub.add_parser(
        "rm", help="reward models: train (default), merge, export, score",
        description=TRAIN_HELP + ". `perlhf rm --task ...` is short for `perlhf rm train --task ...`; "
        "see also `perlhf rm merge --help` and `perlhf rm score --help`.",
    )
    add_dataclass_arguments(parser, RewardConfig)
    parser.set_defaults(func=_train)
    rm_sub = parser.add_subparsers(dest="rm_command", metavar="{train,merge,export,score}")

    train = rm_sub.add_parser("train", help=TRAIN_HELP, description=TRAIN_HELP)
    add_dataclass_arguments(train, RewardConfig)
    train.set_defaults(func=_train)

    merge = rm_sub.add_parser(
        "merge", help="fold a LoRA reward model's adapter into the base weights (a plain model for serving)",
        description="Write a merged reward model folder: the base model with the LoRA adapter folded in, "
        "plus the scalar head. It scores like the adapter model (within float rounding) at the cost "
        "of a plain model.")
    _folder_to_folder(merge, "a reward model folder (RUN/final)", "the merged model")
    merge.set_defaults(func=_merge)

    export = rm_sub.add_parser(
        "export", help="write a standard AutoModelForSequenceClassification folder (no perlhf needed to serve it)",
        description="Write the reward model as a transformers AutoModelForSequenceClassification folder "
        "(num_labels 1, LoRA merged, the head as the score layer, the pad token in the config) that "
        "transformers, TRL or vLLM load without perlhf. Pairwise models and rating models trained with "
        "--head-bias false score exactly as in perlhf; a rating head's bias has no place in the standard "
        "score layer, so those exports score that constant lower (kept as config.perlhf_score_bias).")
    _folder_to_folder(export, "a reward model folder (RUN/final or a merge)", "the exported model")
    export.set_defaults(func=_export)

    score = rm_sub.add_parser(
        "score", help="score a JSONL of texts or pairs with a reward model",
        description="Each input line is {\"prompt\", \"response\"} (a text to score) or {\"prompt\", \"chosen\", "
        "\"rejected\"} (a pair); prompt is a string (one user turn) or a list of {role, content} messages. "
        "Each output line is the input plus \"score\" (texts) or \"score_chosen\", \"score_rejected\", "
        "\"margin\" (pairs).")
    score.add_argument("--model-dir", type=Path, required=True,
                       help="a reward model folder (final/ or merged), or an ensemble's final/ (scores its mean, "
                       "with each member's score and their disagreement)")
    score.add_argument("--input", type=Path, required=True, help="JSONL file of texts or pairs")
    score.add_argument("--output", type=Path, default=None, help="write scored JSONL here (default: stdout)")
    score.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default: 16)")
    bool_flag(score, "--trust-remote-code", "allow code from the model repository")
    score.set_defaults(func=_score)


def _folder_to_folder(parser: argparse.ArgumentParser, source: str, result: str) -> None:
    """The options of a command that reads one reward model folder and writes another."""
    parser.add_argument("--model-dir", type=Path, required=True, help=source)
    parser.add_argument("--output", type=Path, required=True, help=f"folder to write {result} to")
    bool_flag(parser, "--overwrite", "replace --output if it exists")
    bool_flag(parser, "--trust-remote-code", "allow code from the model repository")


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and (out.is_file() or any(out.iterdir())) and not overwrite:
        raise UserError(f"--output {out} already exists: pass --overwrite to replace it")


def _train(args: argparse.Namespace) -> int:
    from perlhf.api import train_reward_model
    from perlhf.train.reward import RewardConfig

    summary = train_reward_model(config=resolve_config(RewardConfig, args)).summary
    if summary.get("is_main_process", True):
        print(format_summary(summary))
    return 0


def format_summary(s: dict[str, Any]) -> str:
    """A few human-readable lines of a run summary."""
    if s.get("ensemble"):
        return format_ensemble_summary(s)
    m = s["selection_metric"]
    test = s["test"]
    untrained = (s["untrained"] or {}).get("test")
    before = ""
    if untrained:  # named per figure: the untrained AUC is the one that says whether training helped
        before = f"untrained accuracy {untrained['accuracy']:.4f}" + (
            f", AUC {untrained['auc']:.4f}" if "auc" in untrained else "") + "; "
    lines = [
        f"reward model ({s['mode']}, {s['task']}, {s['kind']}): test accuracy {test['accuracy']:.4f}"
        + (f", AUC {test['auc']:.4f}" if "auc" in test else "")
        + f" ({before}majority baseline {s['majority_baseline']:.4f})",
        f"best validation {m} {s['validation_best']:.4f} at step {s['best_step']}",
        f"trainable parameters {s['params']['trainable']:,} of {s['params']['total']:,} "
        f"({s['params']['trainable_pct']:.3f}%)",
    ]
    c = s["cost"]
    if c["median_step_s"] is not None:
        lines.append(f"median step {c['median_step_s']:.3f} s, {c['examples_per_s']:.2f} examples/s, "
                     f"{c['real_tokens_per_s']:.0f} tokens/s (padding {100 * c['padding_fraction']:.1f}%)")
    lines.append(f"peak memory {c['peak_memory_bytes'] / 2**20:.0f} MiB ({c['peak_memory_kind']})")
    lines.append(f"model: {s['final_dir']}")
    return "\n".join(lines)


def format_ensemble_summary(s: dict[str, Any]) -> str:
    """The lines of an ensemble run's summary: the ensemble, its best single member, each member."""
    m = s["selection_metric"]
    key = "auc" if "auc" in s["test"] else "accuracy"

    def fig(split: dict[str, Any]) -> str:
        return f"{key} {split[key]:.4f}" + (f" ± {split[key + '_se']:.4f}" if split.get(key + "_se") else "")

    best = s["best_single_member"]
    untrained = (s["untrained"] or {}).get("test")
    lines = [f"reward-model ensemble of {s['ensemble']} LoRA members ({s['task']}, {s['kind']}, "
             f"--ensemble-data {s['ensemble_data']}): test {fig(s['test'])} (mean score)"
             + (f", untrained {key} {untrained[key]:.4f}" if untrained else "")
             + f", majority baseline {s['majority_baseline']:.4f}"]
    for how, split in s["aggregates"].items():
        if how != "mean":
            lines.append(f"  aggregate {how}: test {fig(split['test'])}")
    lines.append(f"best single member (by validation {m}): member {best['member']}, test {fig(best['test'])}")
    for k, member in enumerate(s["members"]):
        lines.append(f"  member {k} (seed {member['seed']}, {member['train_examples']} examples): "
                     f"validation {member['validation'][m]:.4f}, test {fig(member['test'])}")
    c = s["cost"]
    lines.append(f"trainable parameters {s['params']['trainable']:,} of {s['params']['total']:,} "
                 f"({s['params']['trainable_pct']:.3f}%); training {c['train_s']:.0f} s; "
                 f"peak memory {c['peak_memory_bytes'] / 2**20:.0f} MiB ({c['peak_memory_kind']})")
    lines.append(f"ensemble: {s['final_dir']}")
    return "\n".join(lines)


def _merge(args: argparse.Namespace) -> int:
    from perlhf.models.heads import merge_reward_model

    out: Path = args.output
    _check_output(out, args.overwrite)
    merge_reward_model(args.model_dir, out, trust_remote_code=args.trust_remote_code)
    print(f"merged reward model written to {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from perlhf.models.heads import export_sequence_classifier

    out: Path = args.output
    _check_output(out, args.overwrite)
    done = export_sequence_classifier(args.model_dir, out, trust_remote_code=args.trust_remote_code)
    print(f"{done['class']} written to {out} (head bias {done['head_bias']:.4g})")
    return 0


def read_score_input(path: Path) -> list[dict[str, Any]]:
    """Lines of {prompt, response} or {prompt, chosen, rejected}; errors name the line and field."""
    from perlhf.data.jsonl import parse_messages
    from perlhf.data.readers import iter_jsonl

    if not path.is_file():
        raise UserError(f"--input {path}: no such file")
    items = []
    for lineno, obj in iter_jsonl(path):
        where = f"line {lineno}"
        if not isinstance(obj, dict) or "prompt" not in obj:
            raise DataError(path, where, "expected an object with a \"prompt\" field")
        messages = parse_messages(obj["prompt"], path, where)
        if "response" in obj:
            texts = [obj["response"]]
        elif "chosen" in obj and "rejected" in obj:
            texts = [obj["chosen"], obj["rejected"]]
        else:
            raise DataError(path, where, "expected \"response\" (a text) or \"chosen\" and \"rejected\" (a pair)")
        for field, t in zip(("response",) if len(texts) == 1 else ("chosen", "rejected"), texts, strict=True):
            if not isinstance(t, str):
                raise DataError(path, where, f"field \"{field}\" must be a string")
        items.append({"obj": obj, "messages": messages, "texts": texts})
    if not items:
        raise UserError(f"--input {path}: no records")
    return items


def _score(args: argparse.Namespace) -> int:
    import torch

    from perlhf.io import dumps_json
    from perlhf.models.ensemble import is_ensemble, load_ensemble
    from perlhf.models.heads import RewardInfo, load_reward_model, load_tokenizer_for
    from perlhf.train.scoring import score_texts, score_texts_by_member

    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    if args.output is not None and args.output.is_dir():
        raise UserError(f"--output {args.output}: is a folder; give a file name for the scored JSONL")
    items = read_score_input(args.input)
    flat = [(it["messages"], t) for it in items for t in it["texts"]]
    members = None
    if is_ensemble(args.model_dir):  # the mean of the members, and each member's score beside it
        model, info = load_ensemble(args.model_dir, trust_remote_code=args.trust_remote_code)
        first = args.model_dir / info.members[0]
        tokenizer = load_tokenizer_for(first, RewardInfo.load(first))
        members = score_texts_by_member(model, tokenizer, flat, info.max_prompt_tokens, info.max_response_tokens,
                                        args.batch_size, progress=len(flat) > args.batch_size)
        scores = [sum(col) / len(col) for col in zip(*members, strict=True)]
    else:
        model, info = load_reward_model(args.model_dir, trust_remote_code=args.trust_remote_code)
        tokenizer = load_tokenizer_for(args.model_dir, info)
        scores = score_texts(model, tokenizer, flat, info.max_prompt_tokens, info.max_response_tokens,
                             args.batch_size, progress=len(flat) > args.batch_size)
    out_lines, k = [], 0
    for it in items:
        obj = dict(it["obj"])
        if len(it["texts"]) == 1:
            obj["score"] = scores[k]
        else:
            obj["score_chosen"], obj["score_rejected"] = scores[k], scores[k + 1]
            obj["margin"] = scores[k] - scores[k + 1]
        if members is not None:
            for j, field in enumerate(("member_scores",) if len(it["texts"]) == 1
                                      else ("member_scores_chosen", "member_scores_rejected")):
                col = [m[k + j] for m in members]
                obj[field] = col
                obj[field.replace("member_scores", "disagreement")] = float(torch.tensor(col).std(unbiased=False))
        k += len(it["texts"])
        out_lines.append(dumps_json(obj, indent=None))
    text = "\n".join(out_lines) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        from perlhf.io import atomic_write_text

        atomic_write_text(args.output, text)
        print(f"{len(items)} records scored -> {args.output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m perlhf.train.rm_cli rm ...``: the rm command alone (same options, same errors)."""
    import logging

    parser = argparse.ArgumentParser(prog="perlhf")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.verbose:
            raise
        print(f"perlhf rm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
