"""The reward-model recipe: ``perlhf rm train``.

Reads top to bottom as the stage it is:

1. load the task's splits (pairs or ratings) and tokenize them
   (prompt truncated from the left, response capped);
2. build the reward model: backbone body + scalar head, LoRA adapters
   (``--mode lora``) or every weight trainable (``--mode full``);
3. score the test split once before training (the "untrained" baseline);
4. train: length-bucketed batches, chosen and rejected in one forward pass,
   gradient accumulation, data-parallel through accelerate; the loss follows
   the data kind (Bradley-Terry for pairs, BCE for ratings);
5. every ``--eval-every`` steps: validation metrics, keep the best weights,
   write a resumable checkpoint;
6. at the end: restore the best weights, score the test split, write
   ``final/`` (standard peft adapter + head) and ``summary.json`` with the
   quality and cost figures.

Determinism: the batches of a step depend only on (data, seed, step) and each
micro-batch seeds torch from (seed, step, micro-batch index), so ``--resume``
and ``torchrun --nproc_per_node N`` repeat the single-process run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from perlhf.config import config_to_dict, option
from perlhf.errors import UserError
from perlhf.faults import crash_point
from perlhf.models.ensemble import ENSEMBLE_DATA
from perlhf.models.heads import RewardInfo, RewardModel, ScalarHead, hidden_size_of, save_reward_model
from perlhf.runs import (
    Reporter,
    RunDir,
    check_batch_fits,
    check_finite,
    load_optimizer,
    load_trainer_state,
    save_optimizer,
    save_trainer_state,
    seed_everything,
    stage_entry,
    step_seed,
)
from perlhf.train.batching import (
    Batch,
    collate,
    eval_batches,
    split_by_tokens,
    split_micro_batches,
    step_schedule,
)
from perlhf.train.losses import reward_loss
from perlhf.train.metrics import length_baselines, margin_over_baseline, reward_metrics, selection_metric
from perlhf.train.optim import adamw_with_warmup
from perlhf.train.options import (
    DTYPES,
    MODES,
    BatchOptions,
    LoraDropoutGroup,
    TrainingOptions,
    check_positive,
)

log = logging.getLogger(__name__)

TRAINABLE_FILE = "trainable.safetensors"


@dataclass
class RewardConfig(BatchOptions, LoraDropoutGroup, TrainingOptions):
    """Options of perlhf rm train."""

    # --learning-rate when not given: LoRA 1e-3 (all-linear) and full 5e-5, the rates of the sentiment reward
    # models (test AUC 0.851 LoRA, 0.879 full, 40 steps x 16). On Coffee (benchmarks/COFFEE_RM_RESULTS.md)
    # validation preferred LoRA 3e-4 to 1e-3 by less than one standard error: not yet a reason to change.
    # The paper's 1e-4 was tuned for 5k steps of 128; short runs want more.
    DEFAULT_LR = {"lora": 1e-3, "full": 5e-5}  # noqa: RUF012

    # the stage's own options
    model: str = option("smollm2-135m", "backbone: an offline name (smollm2-135m), a local folder or a hub id; "
                        "causal LMs and encoders both work")
    head_bias: bool = option(True, "give the scalar head a bias (pairwise models never move it; false makes a "
                             "rating model export exactly to AutoModelForSequenceClassification: `perlhf rm export`)")
    micro_batch_tokens: int | None = option(None, "cap on the padded tokens of one forward pass (rows x width; a "
                                            "pair is 2 rows): wider micro-batches are cut into several passes "
                                            "whose gradients add up to the same step, so peak activation memory "
                                            "follows this cap, not the widest batch")
    eval_batch_size: int = option(16, "examples per evaluation forward pass (per process)")
    eval_every: int = option(50, "validate, keep the best weights and checkpoint every N steps (and at the end)")
    bucket_window: int = option(32, "length bucketing: sort examples within windows of this many batches "
                                "(1: no bucketing across batches)")
    train_shard: str = option("all", "train on shard I/K of the training conversations (e.g. 1/2), disjoint "
                              "from the other shards by conversation: train an independent judge on 2/2")
    ensemble: int = option(1, "train K LoRA reward models on one frozen backbone in one run (members differ by "
                           "seed and by --ensemble-data); final/ holds the K members, the ensemble scores their "
                           "mean, and RL can penalise their disagreement (perlhf rl --ensemble-reward)")
    ensemble_data: str = option("bootstrap", "what each ensemble member trains on. bootstrap: a resample with "
                                "replacement of the training examples; shards: disjoint 1/K shards by "
                                "conversation; all: every example (members differ only by seed)",
                                choices=list(ENSEMBLE_DATA))
    eval_untrained: bool = option(True, "score the test split before training (the untrained baseline)")

    # group options with this stage's default or help
    task: str = option("taskmaster-coffee", "task to train on: pairs (hh-harmless, shp, tldr, jsonl) or "
                       "thumbs-up/down ratings (taskmaster-coffee, taskmaster-ticketing, jsonl); the loss follows")
    path: str | None = option(None, "data file for --task jsonl ({prompt, chosen, rejected} or {prompt, response, label})")
    dtype: str = option("float32", "backbone weight dtype (the head stays float32)", choices=DTYPES)
    mode: str = option("lora", "lora: train LoRA adapters + the head on a frozen backbone; full: train every weight",
                       choices=MODES)
    learning_rate: float | None = option(None, "AdamW learning rate; default 1e-3 for lora, 5e-5 for full "
                                         "(LoRA wants 10-20x the full-tuning rate in short runs)")
    batch_size: int = option(16, "examples (pairs or rated responses) per optimizer step, over all processes")
    output_dir: str = option("runs/rm", "run directory (config, metrics.jsonl, checkpoints, final/, summary.json)")
    save_every: int = option(0, "also checkpoint every N steps between validations (0: only when validating)")
    seed: int = option(0, "seed for the head, the data order, the subsets and dropout")

    def validate(self) -> None:
        from perlhf.data.splits import parse_shard
        from perlhf.models.loading import portable_name

        self.model = portable_name(self.model)
        super().validate()
        self.validate_batches()
        check_positive(self, "eval_batch_size", "eval_every", "bucket_window")
        check_positive(self, "micro_batch_tokens", optional=True)
        if self.ensemble < 1:
            raise UserError(f"--ensemble must be at least 1 (1: one reward model), got {self.ensemble}")
        if self.ensemble > 1 and self.mode != "lora":
            raise UserError(f"--ensemble {self.ensemble} needs --mode lora: the members share one frozen backbone "
                            "(K fully tuned models would be K backbones; train them as separate runs)")
        parse_shard(self.train_shard)

# --------------------------------------------------------------------------- data
@dataclass
class EncodedSplit:
    """A tokenized split. Ratings: ``first`` holds each sequence; pairs: ``first`` the chosen
    and ``second`` the rejected (prompt + response token ids)."""

    name: str
    kind: str
    first: list[list[int]]
    second: list[list[int]] | None
    labels: list[int] | None
    prompts_truncated: int = 0

    def __len__(self) -> int:
        return len(self.first)

    @functools.cached_property
    def lengths(self) -> list[int]:
        if self.second is None:
            return [len(s) for s in self.first]
        return [max(len(a), len(b)) for a, b in zip(self.first, self.second, strict=True)]

    def batch(self, indices: list[int], pad_id: int) -> Batch:
        """One padded batch; pairs are laid out chosen rows then rejected rows (one forward)."""
        if self.second is None:
            assert self.labels is not None
            return collate([self.first[i] for i in indices], pad_id, [self.labels[i] for i in indices])
        return collate([self.first[i] for i in indices] + [self.second[i] for i in indices], pad_id)


def subset(records: list[Any], limit: int | None, seed: int) -> list[Any]:
    """A seeded random subset in the original order (all records when ``limit`` is None)."""
    if limit is None or limit >= len(records):
        return list(records)
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


def load_splits(cfg: RewardConfig, task: Any | None = None) -> tuple[str, dict[str, list[Any]]]:
    """The task's kind and its train/validation/test records (subsets applied); empty splits refused.
    ``task``: an already loaded :class:`perlhf.data.TaskData` (else ``cfg.task`` is loaded)."""
    from perlhf.data import load_task

    task = task if task is not None else load_task(cfg.task, data_dir=cfg.data_dir, path=cfg.path)
    if task.kind not in ("pair", "rating"):
        raise UserError(f"--task {cfg.task}: holds {task.kind} records; a reward model needs preference "
                        "pairs or thumbs-up/down ratings")
    from perlhf.data.splits import parse_shard, shard_records

    train = shard_records(task.splits.get("train", []), *parse_shard(cfg.train_shard))
    splits = {
        "train": subset(train, cfg.max_train_examples, cfg.seed),
        "validation": subset(task.splits.get("validation", []), cfg.max_eval_examples, cfg.seed + 1),
        "test": subset(task.splits.get("test", []), cfg.max_eval_examples, cfg.seed + 2),
    }
    for name, records in splits.items():
        if not records:
            raise UserError(f"--task {cfg.task}: the {name} split is empty; use a larger data file "
                            "(or larger --max-*-examples)")
    if task.kind == "rating" and len({r.label for r in splits["train"]}) < 2:
        raise UserError(f"--task {cfg.task}: the train split has only label {splits['train'][0].label}; "
                        "a thumbs-up/down reward model needs both labels")
    return task.kind, splits


def encode_split(name: str, kind: str, records: list[Any], tokenizer: Any, cfg: RewardConfig) -> EncodedSplit:
    """prompt ids (left-truncated to the budget) + response ids (capped, ending with end-of-turn)."""
    from perlhf.data.render import encode_prompt, encode_response

    first: list[list[int]] = []
    second: list[list[int]] = []
    labels: list[int] = []
    truncated = 0
    for rec in records:
        prompt, was_cut = encode_prompt(tokenizer, rec.prompt, cfg.max_prompt_tokens)
        truncated += int(bool(was_cut))
        prompt = list(prompt)
        if kind == "pair":
            first.append(prompt + list(encode_response(tokenizer, rec.chosen, cfg.max_response_tokens)))
            second.append(prompt + list(encode_response(tokenizer, rec.rejected, cfg.max_response_tokens)))
        else:
            first.append(prompt + list(encode_response(tokenizer, rec.response, cfg.max_response_tokens)))
            labels.append(int(rec.label))
    return EncodedSplit(name, kind, first, second if kind == "pair" else None,
                        labels if kind == "rating" else None, truncated)


# --------------------------------------------------------------------------- model
def build_reward_model(cfg: RewardConfig) -> tuple[RewardModel, str]:
    """The trainable reward model and its backbone kind ("causal" or "encoder")."""
    from perlhf.models.heads import is_causal_lm, load_backbone

    kind = "causal" if is_causal_lm(cfg.model) else "encoder"
    backbone = load_backbone(cfg.model, kind=kind, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)
    return make_reward_model(backbone, cfg), kind


def make_reward_model(backbone: torch.nn.Module, cfg: RewardConfig) -> RewardModel:
    """Put a seeded scalar head on ``backbone`` and make the right parameters trainable."""
    if getattr(backbone, "config", None) is not None:
        backbone.config.use_cache = False
    if cfg.gradient_checkpointing:
        from perlhf.models.loading import enable_gradient_checkpointing

        enable_gradient_checkpointing(backbone)
        if cfg.mode == "lora":
            # Inputs must require grad for checkpointed segments whose weights are all frozen.
            backbone.enable_input_require_grads()
    head = ScalarHead(hidden_size_of(backbone), bias=cfg.head_bias)
    head.reset_parameters(torch.Generator().manual_seed(cfg.seed))
    if cfg.mode == "lora":
        from perlhf.models.lora import apply_lora

        backbone = apply_lora(backbone, cfg.lora_options())  # base frozen, adapter trainable
    else:
        backbone.requires_grad_(True)
        _freeze_unused_lm_head(backbone)
    model = RewardModel(backbone, head)
    model.head.requires_grad_(True)
    model.train()
    return model


def _freeze_unused_lm_head(model: torch.nn.Module) -> None:
    """The LM head is never used by a reward model; freeze it unless it is tied to the input embeddings."""
    out, inp = None, None
    with contextlib.suppress(AttributeError, NotImplementedError):
        out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is not None and (inp is None or out.weight is not inp.weight):
        out.requires_grad_(False)


def trainable_state(model: RewardModel) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_trainable(model: RewardModel, folder: Path) -> None:
    from safetensors.torch import save_file

    save_file(trainable_state(model), str(folder / TRAINABLE_FILE))


def load_trainable(model: RewardModel, folder: Path) -> None:
    """Restore exactly the trainable tensors saved by :func:`save_trainable`."""
    from safetensors.torch import load_file

    state = load_file(str(folder / TRAINABLE_FILE))
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise UserError(f"{folder / TRAINABLE_FILE}: does not match this model (missing {missing[:3]}, "
                        f"unexpected {extra[:3]}); was the run's --mode/--model/--lora-* changed?")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)


# --------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def score_split(model: RewardModel, data: EncodedSplit, pad_id: int, batch_size: int, device: torch.device,
                rank: int = 0, world: int = 1) -> list[float]:
    """Scores of a split (pairs: chosen scores then rejected scores), sharded over processes."""
    was_training = model.training
    model.eval()
    n = len(data)
    first = [0.0] * n
    second = [0.0] * n
    mine: list[tuple[int, float, float]] = []
    for batch_idx in eval_batches(data.lengths, batch_size)[rank::world]:
        batch = data.batch(batch_idx, pad_id).to(device)
        scores = model(batch.input_ids, batch.attention_mask).float().cpu().tolist()
        k = len(batch_idx)
        for j, i in enumerate(batch_idx):
            mine.append((i, scores[j], scores[k + j] if data.second is not None else 0.0))
    if world > 1:
        from accelerate.utils import gather_object

        mine = gather_object(mine)
    for i, a, b in mine:
        first[i], second[i] = a, b
    model.train(was_training)
    return first + second if data.second is not None else first


def evaluate(model: RewardModel, data: EncodedSplit, pad_id: int, cfg: RewardConfig, accelerator: Any) -> dict:
    with accelerator.autocast():  # --mixed-precision applies to evaluation too
        scores = score_split(model, data, pad_id, cfg.eval_batch_size, accelerator.device,
                             accelerator.process_index, accelerator.num_processes)
    return reward_metrics(data.kind, scores, data.labels)


def batch_accuracy(kind: str, scores: torch.Tensor, labels: torch.Tensor | None) -> float:
    """Training-batch accuracy for the progress bar."""
    if kind == "pair":
        n = scores.shape[0] // 2
        return float((scores[:n] > scores[n:]).float().mean())
    assert labels is not None
    return float(((scores > 0).float() == labels).float().mean())


# --------------------------------------------------------------------------- one optimizer step
@dataclass
class StepStats:
    loss: float
    accuracy: float
    grad_norm: float
    real_tokens: int
    padded_tokens: int


def train_step(model: Any, optimizer: Any, scheduler: Any, accelerator: Any, cfg: RewardConfig, kind: str,
               train: EncodedSplit, pad_id: int, step: int, micro: list[list[int]]) -> StepStats:
    """One optimizer step: this process's share of the micro-batches (gradient accumulation;
    gradients averaged over processes on the last one), a finiteness check, then the update.

    Pairs are scored in one forward pass (chosen rows then rejected rows); each micro-batch
    seeds torch from (seed, step, micro-batch index), so dropout masks do not depend on the
    number of processes."""
    world, rank = accelerator.num_processes, accelerator.process_index
    mine = list(range(rank, len(micro), world))
    loss_sum = torch.zeros((), device=accelerator.device)
    acc_sum = 0.0
    real = padded = 0
    rows = 2 if kind == "pair" else 1
    # --micro-batch-tokens: each micro-batch in one or more forward passes, each pass's loss weighted
    # by its share of the micro-batch, so the gradient is the micro-batch mean either way.
    passes = [(m, c) for m in mine for c in split_by_tokens(micro[m], train.lengths, rows, cfg.micro_batch_tokens)]
    for j, (m, chunk) in enumerate(passes):
        batch = train.batch(chunk, pad_id).to(accelerator.device)
        if chunk[0] == micro[m][0]:
            torch.manual_seed(step_seed(cfg.seed, step) + m)
        weight = len(chunk) / len(micro[m])
        sync = accelerator.no_sync(model) if j < len(passes) - 1 else contextlib.nullcontext()
        with sync:
            scores = model(batch.input_ids, batch.attention_mask)
            loss = reward_loss(kind, scores, batch.labels)
            accelerator.backward(loss * (weight / cfg.grad_accum))
        loss_sum += loss.detach() * weight
        acc_sum += batch_accuracy(kind, scores.detach(), batch.labels) * weight
        real += batch.real_tokens
        padded += batch.padded_tokens
    step_loss = float(accelerator.reduce(loss_sum / cfg.grad_accum, reduction="mean"))
    grad_norm = float(accelerator.clip_grad_norm_(
        [p for p in model.parameters() if p.requires_grad],
        cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")))
    check_finite(step, loss=step_loss, grad_norm=grad_norm)  # before the update: no NaN weights, ever
    crash_point("step", step)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    counts = torch.tensor([real, padded], dtype=torch.float64, device=accelerator.device)
    real, padded = (int(x) for x in accelerator.reduce(counts, reduction="sum").tolist())
    return StepStats(step_loss, acc_sum / len(mine), grad_norm, real, padded)


# --------------------------------------------------------------------------- logging
# --------------------------------------------------------------------------- the recipe
@stage_entry
def train_reward_model(cfg: RewardConfig, *, task: Any | None = None, backbone: torch.nn.Module | None = None,
                       tokenizer: Any | None = None, info_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the whole stage; returns the summary (also written to ``summary.json``).

    The Python API (:mod:`perlhf.api`) may pass the data as a loaded ``task`` (a
    :class:`perlhf.data.TaskData`, e.g. from :func:`perlhf.data.task_from_records`) instead of
    ``cfg.task``, and a ``backbone`` model with its ``tokenizer`` instead of loading ``cfg.model``
    (a LoRA run removes its adapter layers from that model again at the end). ``info_extra``
    is added to the final model's ``perlhf_reward.json`` extras (an ensemble member's place)."""
    from perlhf.measure import PeakMemory, count_parameters
    from perlhf.models import load_tokenizer
    from perlhf.models.fingerprint import base_fingerprint
    from perlhf.runs import make_accelerator, precision_summary, prepare_run

    cfg.validate()
    if cfg.ensemble > 1:
        from perlhf.train.reward_ensemble import train_ensemble

        return train_ensemble(cfg, task=task, backbone=backbone, tokenizer=tokenizer)
    # cpu=True without CUDA: accelerate only sets up gloo data parallelism under torchrun when told "cpu".
    accelerator = make_accelerator(mixed_precision=cfg.mixed_precision)
    main = accelerator.is_main_process
    world = accelerator.num_processes
    n_micro = cfg.grad_accum * world
    if cfg.batch_size % n_micro:
        raise UserError(f"--batch-size {cfg.batch_size} must be divisible by --grad-accum x processes "
                        f"= {cfg.grad_accum} x {world}")

    RunDir.check(Path(cfg.output_dir), overwrite=cfg.overwrite, resume=cfg.resume)  # fail before the slow part

    # 1. Data (before the run directory exists, so a bad option or file leaves nothing behind).
    if backbone is not None and tokenizer is None:
        raise UserError("a backbone model given in Python needs its tokenizer too (tokenizer=...)")
    kind, records = load_splits(cfg, task)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model, cfg.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = int(tokenizer.pad_token_id)
    data = {name: encode_split(name, kind, recs, tokenizer, cfg) for name, recs in records.items()}
    metric_name = selection_metric(kind)
    check_batch_fits(len(data["train"]), cfg.batch_size)  # before the run folder exists
    for name, split in data.items():
        if split.prompts_truncated:
            log.info("%s: %d of %d prompts cut to %d tokens (oldest turns dropped)",
                     name, split.prompts_truncated, len(split), cfg.max_prompt_tokens)

    # The run directory (main process decides; the others wait and then see it).
    run = prepare_run(accelerator, cfg.output_dir, overwrite=cfg.overwrite, resume=cfg.resume,
                      config={**config_to_dict(cfg), "learning_rate_used": cfg.lr, "num_processes": world})
    seed_everything(cfg.seed)

    memory = PeakMemory(accelerator.device).start()
    # 2. Model and optimizer.
    if backbone is not None:
        causal = type(backbone).__name__.endswith(("ForCausalLM", "LMHeadModel"))
        model, backbone_kind = make_reward_model(backbone, cfg), "causal" if causal else "encoder"
    else:
        model, backbone_kind = build_reward_model(cfg)
    fingerprint = base_fingerprint(model)
    trainable_params, total_params = count_parameters(model)
    optimizer, scheduler = adamw_with_warmup([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                             weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps)

    state: dict[str, Any] = {"step": 0, "best_step": None, "best_metric": None, "untrained": None}
    if run.resumed_from is not None:
        load_trainable(model, run.resumed_from)
        load_optimizer(run.resumed_from, optimizer, scheduler)
        state = load_trainer_state(run.resumed_from)
        if main:
            _truncate_metrics(run, state["step"])
        log.info("resuming from %s (step %d)", run.resumed_from, state["step"])
    model, optimizer = accelerator.prepare(model, optimizer)
    inner: RewardModel = accelerator.unwrap_model(model)
    reporter = Reporter(run, cfg.report_to, config_to_dict(cfg), enabled=main)

    # 3. The untrained model, for reference.
    if state["untrained"] is None and cfg.eval_untrained:
        state["untrained"] = {"test": evaluate(inner, data["test"], pad_id, cfg, accelerator)}
        reporter.log(0, "untrained", {f"test_{k}": v for k, v in state["untrained"]["test"].items()})

    # 4. Train.
    prev_cost = state.get("cost_raw")  # the cost of the run's earlier processes (resume)
    train = data["train"]
    lengths = train.lengths
    step_times: list[float] = []
    tokens = {"real": 0, "padded": 0, "examples": 0, "seconds": 0.0}
    warmup = min(2, max(0, cfg.max_steps - state["step"] - 1))
    recent_loss: deque[float] = deque(maxlen=20)
    recent_acc: deque[float] = deque(maxlen=20)
    bar = None
    if main and cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=state["step"], desc=f"rm {cfg.mode}", dynamic_ncols=True)
    model.train()
    for step, epoch, batch_indices in step_schedule(lengths, cfg.batch_size, cfg.seed, cfg.max_steps,
                                                    start_step=state["step"], window_batches=cfg.bucket_window):
        t0 = time.perf_counter()
        micro = split_micro_batches(batch_indices, lengths, n_micro)
        stats = train_step(model, optimizer, scheduler, accelerator, cfg, kind, train, pad_id, step, micro)
        elapsed = time.perf_counter() - t0
        step_times.append(elapsed)
        if len(step_times) > warmup:
            tokens["real"] += stats.real_tokens
            tokens["padded"] += stats.padded_tokens
            tokens["examples"] += cfg.batch_size
            tokens["seconds"] += elapsed
        recent_loss.append(stats.loss)
        recent_acc.append(stats.accuracy)
        reporter.log(step, "train", {**dataclasses.asdict(stats), "lr": scheduler.get_last_lr()[0],
                                     "epoch": epoch, "step_s": elapsed})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{sum(recent_loss) / len(recent_loss):.4f}",
                            acc=f"{sum(recent_acc) / len(recent_acc):.3f}")

        # 5. Validate and keep the best (every --eval-every); checkpoint then and every --save-every.
        validate = step % cfg.eval_every == 0 or step == cfg.max_steps
        improved = False
        if validate:
            val = evaluate(inner, data["validation"], pad_id, cfg, accelerator)
            reporter.log(step, "validation", val)
            improved = state["best_metric"] is None or val[metric_name] > state["best_metric"]
            if improved:
                state["best_metric"], state["best_step"] = val[metric_name], step
        if validate or (cfg.save_every and step % cfg.save_every == 0):
            state["step"] = step
            state["cost_raw"] = _cost_so_far(prev_cost, step_times, tokens, warmup, memory)  # for --resume
            if main:
                if improved:
                    _write_best(run, inner, step, val)
                _write_checkpoint(run, inner, optimizer, scheduler, state, cfg.keep_checkpoints)
            accelerator.wait_for_everyone()
        if validate and bar is not None:
            bar.write(f"step {step}: validation {metric_name} {val[metric_name]:.4f} "
                      f"(best {state['best_metric']:.4f} at step {state['best_step']})")
    if bar is not None:
        bar.close()

    # 6. Best weights -> test metrics -> final/ + summary.
    best_dir = run.path / "best"
    if (best_dir / TRAINABLE_FILE).is_file():
        load_trainable(inner, best_dir)
    test = evaluate(inner, data["test"], pad_id, cfg, accelerator)
    memory.stop()
    length = length_baselines(kind, records["train"], records["test"])
    margin = margin_over_baseline(test, length)
    log.info("test %s %.3f; length only at best %.3f (shorter wins %.3f, longer %.3f, logistic %.3f): %+.1f SE",
             length["metric"], test[length["metric"]], length["best"], length["shorter_wins"],
             length["longer_wins"], length["logistic"], margin)
    summary: dict[str, Any] = {
        "stage": "rm",
        "task": cfg.task,
        "kind": kind,
        "model": cfg.model,
        "mode": cfg.mode,
        "lora_rank": cfg.lora_rank if cfg.mode == "lora" else None,
        "learning_rate": cfg.lr,
        "steps": cfg.max_steps,
        "batch_size": cfg.batch_size,
        **precision_summary(accelerator),
        "num_processes": world,
        "examples": {k: len(v) for k, v in data.items()},
        "prompts_truncated": {k: v.prompts_truncated for k, v in data.items()},
        "selection_metric": metric_name,
        "best_step": state["best_step"],
        "validation_best": state["best_metric"],
        "test": test,
        "untrained": state["untrained"],
        "majority_baseline": test.get("majority_baseline", 0.5),
        "length_baselines": length,
        "length_margin_se": margin,
        "params": {"trainable": trainable_params, "total": total_params,
                   "trainable_pct": 100.0 * trainable_params / total_params},
        "cost": _cost(_cost_so_far(prev_cost, step_times, tokens, warmup, memory), memory),
        "base_fingerprint": fingerprint,
        "final_dir": str(run.path / "final"),
    }
    if main:
        info = RewardInfo(base_model=cfg.model, mode=cfg.mode, base_fingerprint=fingerprint,
                          max_prompt_tokens=cfg.max_prompt_tokens, max_response_tokens=cfg.max_response_tokens,
                          task_kind=kind, task=cfg.task, backbone=backbone_kind,
                          lora=dataclasses.asdict(cfg.lora_options()) if cfg.mode == "lora" else None,
                          extra={"best_step": state["best_step"], "test": test,
                                 "train_shard": cfg.train_shard, "seed": cfg.seed, **(info_extra or {})})
        save_reward_model(inner, run.path / "final", info, tokenizer)
        crash_point("final", cfg.max_steps)
        reporter.log(cfg.max_steps, "test", test)
        run.write_summary(summary)
    reporter.close()
    accelerator.wait_for_everyone()
    if backbone is not None and cfg.mode == "lora":
        inner.backbone.unload()  # the caller's model back as it was given: no adapter layers left in it
    return {**summary, "is_main_process": main}


def _truncate_metrics(run: RunDir, step: int) -> None:
    """On resume: drop lines after the checkpoint and the test line of a run that had finished."""
    from perlhf.io import atomic_write_text, dumps_json

    kept = [r for r in run.read_metrics() if int(r.get("step", 0)) <= step and r.get("split") != "test"]
    atomic_write_text(run.metrics_path, "".join(dumps_json(r, indent=None) + "\n" for r in kept))


def _write_best(run: RunDir, model: RewardModel, step: int, metrics: dict) -> None:
    from perlhf.io import atomic_directory, atomic_write_json

    with atomic_directory(run.path / "best") as tmp:
        save_trainable(model, tmp)
        atomic_write_json(tmp / "best.json", {"step": step, "validation": metrics})


def _write_checkpoint(run: RunDir, model: RewardModel, optimizer: Any, scheduler: Any, state: dict,
                      keep: int = 2) -> None:
    with run.checkpoint_writer(state["step"]) as tmp:
        save_trainable(model, tmp)
        save_optimizer(tmp, optimizer, scheduler)
        save_trainer_state(tmp, state)  # last: marks the checkpoint complete
    run.prune_checkpoints(keep=keep)


def _cost_so_far(prev: dict | None, step_times: list[float], tokens: dict, warmup: int, memory: Any) -> dict:
    """This process's timed steps (after its warm-up) and tokens added to ``prev``, those of the run's
    earlier processes (``--resume``), so the summary's cost covers the whole run; peak memory is the max."""
    prev = prev or {"timed": [], "real": 0, "padded": 0, "examples": 0, "seconds": 0.0,
                    "peak_memory_bytes": 0, "peak_memory_delta_bytes": 0}
    raw = {"timed": prev["timed"] + step_times[warmup:],
           **{k: prev[k] + tokens[k] for k in ("real", "padded", "examples", "seconds")},
           "peak_memory_bytes": max(prev["peak_memory_bytes"], memory.peak_bytes or 0),
           "peak_memory_delta_bytes": max(prev["peak_memory_delta_bytes"], memory.delta_bytes or 0)}
    return raw


def _cost(raw: dict, memory: Any) -> dict:
    from perlhf.measure import median_step_time

    timed = raw["seconds"]
    return {
        "median_step_s": median_step_time(raw["timed"], warmup=0) if raw["timed"] else None,
        "timed_steps": len(raw["timed"]),
        "examples_per_s": raw["examples"] / timed if timed else None,
        "real_tokens_per_s": raw["real"] / timed if timed else None,
        "padded_tokens_per_s": raw["padded"] / timed if timed else None,
        "padding_fraction": 1 - raw["real"] / raw["padded"] if raw["padded"] else None,
        "peak_memory_bytes": raw["peak_memory_bytes"],
        "peak_memory_delta_bytes": raw["peak_memory_delta_bytes"],
        "peak_memory_kind": memory.kind,
        "process_peak_rss_bytes": memory.process_peak_rss_bytes,
    }
