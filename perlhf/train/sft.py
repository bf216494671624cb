"""Supervised fine-tuning: the starting policy and the KL anchor of RL.

Token-level SFT: each example is a context (prompt tokens, rendered with the
chat template and ending with the assistant header) and a target reply
(response tokens, ending with the end-of-turn token). The loss is the mean
cross-entropy over **response tokens only**; prompt and padding positions get
the label ``-100``. With ``--mode lora`` only a LoRA adapter trains (peft, the
presets of :mod:`perlhf.models.lora`); with ``--mode full`` every weight does.

``--merge`` folds the adapter into the base and writes a plain model folder
(safetensors + tokenizer + ``perlhf_sft.json``): the model ``perlhf rl``
starts from and keeps frozen as its anchor.

Recipe (:func:`run_sft`): load data -> tokenize -> model (+ LoRA) -> loop of
optimizer steps (:func:`train_sft`) with validation, checkpoints and resume
(:mod:`perlhf.runs`) -> final adapter/model (+ merged model) -> summary.json.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from perlhf.config import config_to_dict, option
from perlhf.errors import UserError
from perlhf.faults import crash_point
from perlhf.io import atomic_directory
from perlhf.models.loading import write_plain_model
from perlhf.models.lora import save_adapter
from perlhf.runs import (
    Reporter,
    RunDir,
    check_batch_fits,
    check_finite,
    iterate_steps,
    load_optimizer,
    load_trainer_state,
    make_accelerator,
    precision_summary,
    prepare_run,
    progress_bar,
    save_optimizer,
    save_trainer_state,
    seed_everything,
    stage_entry,
    step_seed,
)
from perlhf.train.optim import adamw_with_warmup
from perlhf.train.options import (
    MODES,
    BatchOptions,
    LoraDropoutGroup,
    TrainingOptions,
    check_non_negative,
    check_positive,
)

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass
class SFTConfig(BatchOptions, LoraDropoutGroup, TrainingOptions):
    """Options of perlhf sft."""

    DEFAULT_LR = {"lora": 1e-4, "full": 1e-5}  # noqa: RUF012

    # the stage's own options
    model: str = option("smollm2-135m", "base model: a Hugging Face id, a local folder or smollm2-135m (offline)")
    eval_every: int = option(50, "evaluate on validation every N steps (0: only at the end)")
    log_every: int = option(10, "log training metrics every N steps")
    merge: bool = option(False, "also write <output-dir>/merged: the adapter merged into a plain model (the RL start)")

    # group options with this stage's default or help
    task: str = option("taskmaster-coffee-dialogues", "task to train on: dialogues (every assistant turn is a "
                       "target), or pairs (the chosen response) or ratings (the thumbs-up responses)")
    path: str | None = option(None, "data file for --task jsonl: dialogues {messages}, pairs or ratings "
                              "(see perlhf data list)")
    mode: str = option("lora", "lora: train a LoRA adapter on a frozen base; full: train every weight",
                       choices=MODES)
    learning_rate: float | None = option(None, "peak learning rate (default: 1e-4 for lora, 1e-5 for full)")
    warmup_steps: int = option(10, "linear learning-rate warm-up steps")
    batch_size: int = option(8, "examples per optimizer step (all processes together)")
    grad_accum: int = option(1, "micro-batches per optimizer step (each batch_size / grad_accum examples)")
    max_train_examples: int | None = option(None, "use at most this many training examples (a fixed random subset)")
    max_eval_examples: int | None = option(256, "validation examples scored at each evaluation (none: all)")
    output_dir: str = option("runs/sft", "run directory (config, metrics.jsonl, checkpoints, final model)")
    seed: int = option(0, "random seed (data order, dropout)")

    def validate(self) -> None:
        from perlhf.models.loading import portable_name

        self.model = portable_name(self.model)
        super().validate()
        self.validate_batches()
        check_non_negative(self, "eval_every")
        check_positive(self, "log_every")
        if self.batch_size % self.grad_accum:
            raise UserError(f"--batch-size {self.batch_size} must be a multiple of --grad-accum {self.grad_accum}")
        if self.mode == "full" and self.merge:
            log.info("--merge with --mode full: the final model is already plain; merged/ is a copy of it")

@dataclass(frozen=True)
class SFTExample:
    """One target: the prompt tokens (context) and the response tokens (the reply)."""

    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]


# -- batching and loss -----------------------------------------------------------------------------
def collate_sft(examples: Sequence[SFTExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 except on response tokens)."""
    seqs = [list(e.prompt_ids) + list(e.response_ids) for e in examples]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    for i, (e, s) in enumerate(zip(examples, seqs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
        p = len(e.prompt_ids)
        labels[i, p : len(s)] = torch.tensor(list(e.response_ids), dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def sft_token_losses(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of response-token cross-entropies, number of response tokens)`` for a batch."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    logits = out.logits[:, :-1, :].float()
    targets = batch["labels"][:, 1:]
    loss_sum = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss_sum, (targets != IGNORE_INDEX).sum()


# -- data --------------------------------------------------------------------------------------------
def encode_dialogues(tokenizer, dialogues: Sequence[Any], *, max_prompt_tokens: int,
                     max_response_tokens: int) -> tuple[list[SFTExample], int]:
    """Every assistant turn of every dialogue as an :class:`SFTExample`, and how many contexts
    were truncated (from the left: the oldest turns go first, see :mod:`perlhf.data.render`)."""
    return encode_targets(tokenizer, dialogue_targets(dialogues), max_prompt_tokens=max_prompt_tokens,
                          max_response_tokens=max_response_tokens)


def dialogue_targets(dialogues: Sequence[Any]) -> list[tuple[Any, str]]:
    """(context, assistant reply) for every assistant turn of every dialogue."""
    return [t for d in dialogues for t in d.targets()]


def sft_targets(records: Sequence[Any]) -> list[tuple[Any, str]]:
    """SFT targets of any record kind: every assistant turn of a dialogue, a pair's chosen response,
    a thumbs-up rating's response (thumbs-down ones are not imitated). Pure."""
    out: list[tuple[Any, str]] = []
    for r in records:
        if r.kind == "dialogue":
            out.extend(r.targets())
        elif r.kind == "pair":
            out.append((r.prompt, r.chosen))
        elif r.kind == "rating" and r.label == 1:
            out.append((r.prompt, r.response))
    return out


def encode_targets(tokenizer, targets: Sequence[tuple[Any, str]], *, max_prompt_tokens: int,
                   max_response_tokens: int) -> tuple[list[SFTExample], int]:
    """Tokenize (context, reply) targets; returns the examples and how many contexts were truncated."""
    from perlhf.data.render import encode_prompt, encode_response

    out = []
    truncated = 0
    for context, reply in targets:
        p, cut = encode_prompt(tokenizer, context, max_prompt_tokens)
        r = encode_response(tokenizer, reply, max_response_tokens)
        truncated += int(cut)
        if p and r:
            out.append(SFTExample(tuple(p), tuple(r)))
    return out, truncated


def _subset(items: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return items
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(items), generator=g)[:n].tolist()
    return [items[i] for i in sorted(idx)]


# -- model -----------------------------------------------------------------------------------------------
def prepare_sft_model(model: torch.nn.Module, cfg: SFTConfig) -> torch.nn.Module:
    """Wrap in LoRA (mode lora) or unfreeze every weight (mode full)."""
    if cfg.mode == "lora":
        from perlhf.models.lora import apply_lora

        opts = cfg.lora_options()
        torch.manual_seed(cfg.seed)  # the adapter's random init depends on the run's seed only
        model = apply_lora(model, opts)
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    if cfg.gradient_checkpointing:
        from perlhf.models.loading import enable_gradient_checkpointing

        enable_gradient_checkpointing(model)
    return model


def is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config")


def save_trainable(model: torch.nn.Module, folder: Path) -> None:
    """Adapter (PEFT format) for LoRA, full weights (safetensors) for full tuning."""
    if is_peft(model):
        save_adapter(model, str(folder / "adapter"))
    else:
        from safetensors.torch import save_model

        folder.mkdir(parents=True, exist_ok=True)
        save_model(model, str(folder / "model.safetensors"))


def load_trainable(model: torch.nn.Module, folder: Path) -> None:
    if is_peft(model):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
        set_peft_model_state_dict(model, state)
    else:
        from safetensors.torch import load_model

        load_model(model, str(folder / "model.safetensors"))


def merge_to_plain(model: torch.nn.Module) -> torch.nn.Module:
    """The adapter folded into the base weights (a plain transformers model)."""
    if is_peft(model):
        return model.merge_and_unload()
    return model


# -- the loop ------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_sft(model: torch.nn.Module, examples: Sequence[SFTExample], pad_id: int, batch_size: int,
                 device: torch.device) -> dict[str, float]:
    """Mean response-token loss and perplexity over ``examples``."""
    if not examples:
        return {}
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate_sft(examples[i : i + batch_size], pad_id).items()}
        s, n = sft_token_losses(model, batch)
        total += float(s)
        count += int(n)
    model.train(was)
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}


def train_sft(cfg: SFTConfig, model: torch.nn.Module, train: Sequence[SFTExample], *,
              pad_id: int, run: RunDir | None = None, validation: Sequence[SFTExample] = (),
              accelerator=None) -> dict[str, Any]:
    """The optimizer loop; ``model`` is already prepared (:func:`prepare_sft_model`). Returns the last metrics."""
    accelerator = accelerator or make_accelerator(mixed_precision=cfg.mixed_precision)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UserError("no trainable parameters: check --mode and --lora-targets")
    optimizer, scheduler = adamw_with_warmup(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                             warmup_steps=cfg.warmup_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    start_step = 0
    if run is not None and run.resumed_from is not None:
        state = load_trainer_state(run.resumed_from)
        load_trainable(accelerator.unwrap_model(model), run.resumed_from)
        load_optimizer(run.resumed_from, optimizer, scheduler)
        start_step = int(state["step"])
        if accelerator.is_main_process:
            run.truncate_metrics_after(start_step)
        log.info("resumed from %s (step %d)", run.resumed_from, start_step)
    world, rank = accelerator.num_processes, accelerator.process_index
    micro = cfg.batch_size // cfg.grad_accum
    model.train()
    last: dict[str, Any] = {}
    if start_step and run is not None:  # a resumed run reports its last step even when none is left to run
        rows = [r for r in run.read_metrics() if int(r["step"]) == start_step]
        last = next((dict(r) for r in rows if r.get("split") == "train"), {})
        val = next((r for r in rows if r.get("split") == "validation"), None)
        if last and val is not None:
            last["validation"] = {k: v for k, v in val.items() if k not in ("step", "split")}
    t_last = time.perf_counter()
    main = accelerator.is_main_process
    reporter = Reporter(run, cfg.report_to, config_to_dict(cfg), enabled=main)
    bar = progress_bar(main and cfg.progress, cfg.max_steps, start_step, f"sft {cfg.mode}")
    say = log.debug if bar is not None else log.info  # the bar shows what the per-step lines would
    for step, epoch, batch_idx in iterate_steps(len(train), cfg.batch_size, cfg.seed, cfg.max_steps, start_step):
        torch.manual_seed(step_seed(cfg.seed, step) + rank)
        examples = [train[i] for i in batch_idx]
        micro_batches = [examples[i : i + micro] for i in range(0, len(examples), micro)]
        n_tokens_total = sum(len(e.response_ids) for e in examples)
        loss_sum = 0.0
        for mb in micro_batches:
            mine = mb[rank::world]
            if not mine:
                continue
            batch = {k: v.to(device) for k, v in collate_sft(mine, pad_id).items()}
            s, _ = sft_token_losses(model, batch)
            # normalised by the whole step's token count (all processes): micro-batches add up to the mean;
            # DDP averages over processes, so multiply back by the world size.
            loss = s * world / n_tokens_total
            accelerator.backward(loss)
            loss_sum += float(s.detach())
        loss_value = float(accelerator.reduce(torch.tensor(loss_sum, device=device), "sum")) / n_tokens_total
        check_finite(step, loss=loss_value)
        grad_norm = None
        if cfg.max_grad_norm > 0:
            grad_norm = float(accelerator.clip_grad_norm_(params, cfg.max_grad_norm))
            check_finite(step, grad_norm=grad_norm)
        crash_point("step", step)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        last = {"step": step, "split": "train", "epoch": epoch, "loss": loss_value, "grad_norm": grad_norm,
                "lr": scheduler.get_last_lr()[0]}
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            now = time.perf_counter()
            last["seconds_per_step"] = (now - t_last) / (cfg.log_every if step % cfg.log_every == 0 else 1)
            t_last = now
            reporter.log(step, "train", last)
            say("step %d loss %.4f", step, loss_value)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if validation and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.max_steps):
            ev = evaluate_sft(model, list(validation)[: cfg.max_eval_examples], pad_id, micro, device)
            reporter.log(step, "validation", ev)
            last["validation"] = ev
            (bar.write if bar is not None else log.info)(f"step {step}: validation loss {ev['loss']:.4f}")
        if run is not None and accelerator.is_main_process and (
                (cfg.save_every and step % cfg.save_every == 0) or step == cfg.max_steps):
            with run.checkpoint_writer(step) as tmp:
                save_trainable(accelerator.unwrap_model(model), tmp)
                save_optimizer(tmp, optimizer, scheduler)
                save_trainer_state(tmp, {"step": step, "epoch": epoch, "stage": "sft"})
            run.prune_checkpoints(cfg.keep_checkpoints)
        accelerator.wait_for_everyone()
    if bar is not None:
        bar.close()
    reporter.close()
    return last


# -- the recipe ----------------------------------------------------------------------------------------
@stage_entry
def run_sft(cfg: SFTConfig) -> dict[str, Any]:
    """``perlhf sft``: data, model, loop, final outputs and summary."""
    from perlhf.data import load_task
    from perlhf.measure import PeakMemory, count_parameters
    from perlhf.models import load_causal_lm, load_tokenizer

    accelerator = make_accelerator(mixed_precision=cfg.mixed_precision)
    run = prepare_run(accelerator, cfg.output_dir, overwrite=cfg.overwrite, resume=cfg.resume,
                      config={"stage": "sft", **config_to_dict(cfg), "num_processes": accelerator.num_processes})
    seed_everything(cfg.seed)
    tokenizer = load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    task = load_task(cfg.task, data_dir=cfg.data_dir, path=cfg.path)
    if task.kind not in ("dialogue", "pair", "rating"):
        raise UserError(f"--task {cfg.task}: SFT needs dialogues (every assistant turn a target), pairs (the "
                        f"chosen response) or ratings (the thumbs-up responses), got a {task.kind} task; "
                        "try --task taskmaster-coffee-dialogues")
    if task.kind != "dialogue":
        log.info("SFT targets from a %s task: %s", task.kind,
                 "each pair's chosen response" if task.kind == "pair" else "the thumbs-up (label 1) responses")
    kw = dict(max_prompt_tokens=cfg.max_prompt_tokens, max_response_tokens=cfg.max_response_tokens)
    # Subset the targets before tokenizing: encoding all ~18k Taskmaster contexts takes most of a minute.
    train_targets = _subset(sft_targets(task.split("train")), cfg.max_train_examples, cfg.seed)
    val_targets = _subset(sft_targets(task.split("validation")), cfg.max_eval_examples, cfg.seed)
    train, cut_train = encode_targets(tokenizer, train_targets, **kw)
    validation, _ = encode_targets(tokenizer, val_targets, **kw)
    if not train:
        raise UserError(f"--task {cfg.task}: no training targets after tokenization")
    check_batch_fits(len(train), cfg.batch_size)  # before the model loads and a reporter writes into the run
    log.info("SFT on %d targets (%d validation; %d of %d training contexts truncated to %d tokens), mode %s",
             len(train), len(validation), cut_train, len(train_targets), cfg.max_prompt_tokens, cfg.mode)
    dtype = getattr(torch, cfg.dtype)
    model = prepare_sft_model(load_causal_lm(cfg.model, dtype=dtype, trust_remote_code=cfg.trust_remote_code), cfg)
    trainable, total = count_parameters(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        last = train_sft(cfg, model, train, pad_id=pad_id, run=run, validation=validation, accelerator=accelerator)
    elapsed = time.perf_counter() - t0
    model = accelerator.unwrap_model(model)
    summary: dict[str, Any] = {
        "stage": "sft", "mode": cfg.mode, "model": cfg.model, "task": cfg.task,
        "train_examples": len(train), "validation_examples": len(validation),
        "truncated_train_contexts": cut_train,
        "trainable_parameters": trainable, "total_parameters": total,
        "steps": cfg.max_steps, "seconds": elapsed, "peak_memory": mem.as_dict(),
        **precision_summary(accelerator), "final": last,
    }
    if accelerator.is_main_process:
        final = run.path / "final"
        with atomic_directory(final) as tmp:
            save_trainable(model, tmp)
            tokenizer.save_pretrained(tmp)
            crash_point("final", cfg.max_steps)
        summary["final_dir"] = str(final)
        if cfg.merge:
            merged = write_plain_model(merge_to_plain(model), tokenizer, run.path / "merged",
                                       {"base_model": cfg.model, "mode": cfg.mode, "task": cfg.task,
                                        "steps": cfg.max_steps})
            summary["merged_dir"] = str(merged)
        run.write_summary(summary)
    return summary
