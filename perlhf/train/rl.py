"""``perlhf rl``: REINFORCE with the KL to the SFT anchor folded into the return (PERL, PAPER.md).

One step of the loop (:func:`train_rl`), the same in both modes:

1. **sampling** — ``prompts_per_step`` prompts, ``samples_per_prompt`` responses each,
   from the policy (temperature ``T``, KV cache, left padding; :mod:`perlhf.train.generation`);
2. **reward** — the reward model scores (prompt, response) under ``torch.inference_mode``;
3. **anchor** — log-probs of the sampled tokens under the anchor (LoRA mode: the
   backbone with adapters disabled = the merged SFT model; full mode: a frozen copy);
4. **learning** — per micro-batch: the policy's log-probs (with gradient), the returns
   ``Z_t = (1 - beta) r - beta sum_{t'>=t} KL_t'`` (:mod:`perlhf.train.rl_losses`),
   the baseline, ``policy_loss + value_loss``, backward; then one optimizer step on the
   policy and value parameters only (two parameter groups, two learning rates).

Baselines (``--baseline``): ``value`` (the paper's learned value ``V(s_t)``: a LoRA adapter
+ scalar head on the same backbone, or a separate model in full mode), ``rloo`` (for each
sample, the mean reward of the other samples of its prompt) or ``mean`` (the batch mean
reward). The per-sequence baselines use the reward term ``(1 - beta) r`` only, so they are
known before the learning forward and never depend on the sample they serve (unbiased).

Reward models (:mod:`perlhf.train.rl_rewards`): a ``perlhf rm`` folder, an ensemble or any
sequence-classification model. The reward always sees **text**: the policy's response is
decoded and re-tokenized with the reward model's own tokenizer and chat template, exactly
as the reward model was trained (:func:`perlhf.data.render.encode_prompt` / ``encode_response``), so a reward
model with a different tokenizer works and no token-id mismatch can go unnoticed.
A response cut by ``--max-new-tokens`` is scored as written (the reward model sees the
end-of-turn token that the template adds).

Dropout is off throughout RL (models in eval mode), so the learner's distribution
is exactly the sampler's. Every random draw of a step is seeded by ``(seed, step)``:
``--resume`` repeats exactly what the uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from perlhf.config import config_to_dict, option
from perlhf.errors import UserError
from perlhf.faults import crash_point
from perlhf.io import atomic_directory, dumps_json
from perlhf.models.backbone import POLICY, VALUE, SeparateModels, SharedBackbone, value_positions
from perlhf.models.ensemble import AGGREGATES
from perlhf.runs import (
    Reporter,
    RunDir,
    check_finite,
    episode_seed,
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
from perlhf.train.generation import Rollout, sample, sequence_logprobs
from perlhf.train.optim import adamw_with_warmup
from perlhf.train.options import MODES, TrainingOptions, check_non_negative, check_positive
from perlhf.train.rl_losses import (
    KL_ESTIMATORS,
    explained_variance,
    kl_folded_returns,
    masked_mean,
    mean_baseline,
    policy_loss,
    rloo_baseline,
    sequence_kl,
    value_loss,
)
from perlhf.train.rl_rewards import EnsembleReward, RewardFunction, check_reward_model_arg, load_reward

log = logging.getLogger(__name__)

PHASES = ("sampling", "reward", "anchor", "learning")
SAMPLES_FILE = "samples.jsonl"


@dataclass
class RLConfig(TrainingOptions):
    """Options of perlhf rl."""

    # Policy (and value) learning rates when --learning-rate is not given: the best of each mode on the
    # sentiment validation prompts (20 steps x 16 episodes). LoRA 1e-3: benchmarks/SENTIMENT_RESULTS.md
    # (one seed, and 0.750-0.828 over 3 seeds); full 3e-5: benchmarks/DEMO_RESULTS.md over 3 seeds (mean
    # 0.740, lowest 0.703, against 5e-5's 0.711 and 0.656: 5e-5 over-optimises the reward model).
    DEFAULT_LR = {"lora": 1e-3, "full": 3e-5}  # noqa: RUF012

    # the stage's own options
    policy: str | None = option(None, "the starting policy and KL anchor: the merged SFT model folder "
                                "(`perlhf sft --merge` writes <run>/merged), or any causal LM")
    reward_model: str | None = option(None, "a `perlhf rm` output folder (final/, best/ or a merge), or a "
                                      "sequence-classification model folder / hub id")
    reward_placement: str = option("auto", "lora mode: where a LoRA reward adapter goes. shared: on the policy "
                                   "backbone (refused unless trained on the same base weights); separate: its own "
                                   "base model, merged; auto: shared when the base fingerprints match",
                                   choices=["auto", "shared", "separate"])
    ensemble_reward: str = option("mean", "a reward-model ensemble (`perlhf rm --ensemble K`): the reward is the "
                                  "members' mean; mean-minus-std: mean - --ensemble-penalty x their standard "
                                  "deviation (penalises responses the members disagree on, where a policy "
                                  "exploits one of them); min: the most pessimistic member",
                                  choices=list(AGGREGATES))
    ensemble_penalty: float = option(1.0, "the weight k of --ensemble-reward mean-minus-std (>= 0)")
    baseline: str = option("rloo", "rloo: leave-one-out mean of the other samples of the prompt (the default: "
                           "ahead of the value model at 16 episodes per step on the sentiment sweep, and cheaper); "
                           "value: learned value model (the paper); mean: batch mean reward",
                           choices=["value", "rloo", "mean"])
    beta: float = option(0.05, "KL weight: the return is (1 - beta) * reward - beta * KL to the anchor")
    kl_estimator: str = option("k1", "per-token KL estimator: k1 = log p - log p_anchor; k3 = exp(-d) - 1 + d",
                               choices=list(KL_ESTIMATORS))
    temperature: float = option(0.7, "sampling temperature (the learner uses the same one)")
    max_new_tokens: int = option(64, "longest response sampled")
    max_prompt_tokens: int = option(256, "prompt budget: longer prompts lose their oldest turns (counted in the log)")
    samples_per_prompt: int = option(4, "responses sampled per prompt (>= 2 for --baseline rloo)")
    prompts_per_step: int = option(4, "prompts per optimizer step (all processes together); episodes per step = "
                                   "this x --samples-per-prompt (16 by default; the paper used 128)")
    micro_batch_size: int = option(8, "episodes per forward/backward pass in the anchor and learning phases")
    value_learning_rate: float | None = option(None, "value learning rate (default: the policy's default)")
    max_prompts: int | None = option(None, "use at most this many training prompts (a fixed random subset)")
    fold_adapters: bool = option(True, "lora: sampling, shared-reward scoring and the anchor run on plain layers, the "
                                 "adapter folded into scratch copies of the adapted weights (faster; costs one copy "
                                 "of those weights meanwhile). false: through peft's adapter path")
    log_every: int = option(1, "log metrics every N steps")
    sample_every: int = option(10, "write a few (prompt, response, reward) to samples.jsonl every N steps (0: off)")
    num_samples_logged: int = option(2, "how many samples to write each time")
    merge: bool = option(False, "also write <output-dir>/merged: the trained policy as a plain model (lora: the "
                         "adapter merged in), the start of another RL run or of `perlhf eval`")

    # group options with this stage's default or help
    task: str = option("taskmaster-coffee", "task whose training-split contexts are the RL prompts")
    path: str | None = option(None, "data file for --task jsonl (pairs or ratings): the prompts of its records are used")
    mode: str = option("lora", "lora: policy and value are LoRA adapters on one frozen backbone; "
                       "full: separate policy, value, anchor and reward models", choices=MODES)
    lora_rank: int = option(8, "LoRA rank of the policy and value adapters")
    learning_rate: float | None = option(None, "policy learning rate (default: 1e-3 for lora, 3e-5 for full: the "
                                           "best of each mode on sentiment validation prompts, "
                                           "benchmarks/DEMO_RESULTS.md; the paper used 1e-4 for 5k steps)")
    max_grad_norm: float = option(1.0, "gradient clipping norm, per model (0: off)")
    max_steps: int = option(100, "optimizer steps")
    gradient_checkpointing: bool = option(False, "learning phase: recompute activations in the backward pass "
                                          "(less memory, about a third more learning time)")
    output_dir: str = option("runs/rl", "run directory (config, metrics.jsonl, samples.jsonl, checkpoints, final)")
    save_every: int = option(25, "write a checkpoint every N steps (0: only at the end)")
    seed: int = option(0, "random seed (prompt order, sampling)")

    def validate(self) -> None:
        from perlhf.models.loading import portable_name

        self.policy, self.reward_model = portable_name(self.policy), portable_name(self.reward_model)
        super().validate()
        if not 0.0 <= self.beta <= 1.0:
            raise UserError(f"--beta must be in [0, 1], got {self.beta}")
        if self.temperature <= 0:
            raise UserError(f"--temperature must be > 0, got {self.temperature}")
        check_positive(self, "max_new_tokens", "max_prompt_tokens", "samples_per_prompt", "prompts_per_step",
                       "micro_batch_size", "log_every")
        check_positive(self, "value_learning_rate", "max_prompts", optional=True)
        check_non_negative(self, "ensemble_penalty", "sample_every", "num_samples_logged")
        if self.baseline == "rloo" and self.samples_per_prompt < 2:
            raise UserError("--baseline rloo needs --samples-per-prompt 2 or more")

    @property
    def value_lr(self) -> float:
        if self.value_learning_rate is not None:
            return self.value_learning_rate
        return self.DEFAULT_LR[self.mode]

    @property
    def episodes_per_step(self) -> int:
        return self.prompts_per_step * self.samples_per_prompt


@dataclass(frozen=True)
class RLPrompt:
    """A prompt as the policy sees it (token ids) and as the reward model will (chat messages)."""

    ids: tuple[int, ...]
    # what the reward model reads; () is a conversation the assistant opens (no turn before the response),
    # None a prompt given as token ids only, which a reward model that reads text cannot score
    messages: tuple[dict[str, str], ...] | None = None
    truncated: bool = False
    id: str = ""


# -- one step's maths --------------------------------------------------------------------------------
def sequence_baseline(kind: str, rewards: torch.Tensor, beta: float, group_size: int,
                      batch_mean_reward: float | None = None) -> torch.Tensor | None:
    """Per-sequence baseline from the reward term ``(1 - beta) r`` (``None`` for ``value``);
    ``batch_mean_reward`` is the whole batch's mean reward for ``mean`` (default: this batch's)."""
    if kind == "rloo":
        return rloo_baseline((1.0 - beta) * rewards, group_size)
    if kind == "mean":
        return mean_baseline((1.0 - beta) * rewards,
                             None if batch_mean_reward is None else (1.0 - beta) * batch_mean_reward)
    return None


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def anchor_logprobs(models, rollout: Rollout, temperature: float, micro_batch_size: int) -> torch.Tensor:
    """Log-probs of the sampled tokens under the anchor, in the learner's micro-batches."""
    out = []
    with models.anchor() as anchor:
        for sl in _chunks(rollout.input_ids.shape[0], micro_batch_size):
            mb = rollout.select(sl)
            out.append(sequence_logprobs(anchor, mb.input_ids, mb.attention_mask, mb.response_mask, temperature))
    return torch.cat(out, dim=0)


@dataclass
class LearnStats:
    policy_loss: float = 0.0
    value_loss: float | None = None
    kl: float = 0.0
    kl_per_token: float = 0.0
    objective: float = 0.0
    entropy: float = 0.0
    explained_variance: float | None = None
    values_mean: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


class Learner(torch.nn.Module):
    """The learning phase's forward pass: one micro-batch's policy (and value) loss from ``models``.

    A module so that data parallelism is the standard kind: under several processes
    ``accelerator.prepare_model`` wraps it in ``DistributedDataParallel``, and ``accelerator.backward``
    averages the gradients over processes while the last micro-batch's backward runs (the others
    accumulate under ``accelerator.no_sync``). The sampler, anchor and reward never go through it:
    they need no gradient."""

    def __init__(self, models):
        super().__init__()
        self.models = models

    def forward(self, mb: Rollout, rewards: torch.Tensor, logp_anchor: torch.Tensor, seq_baseline: torch.Tensor | None,
                cfg: RLConfig, num_sequences: int, value_tokens: Any) -> dict[str, Any]:
        mask = mb.response_mask
        with self.models.policy() as policy:
            logp, entropy = sequence_logprobs(policy, mb.input_ids, mb.attention_mask, mask, cfg.temperature,
                                              return_entropy=True)
        returns = kl_folded_returns(rewards, logp.detach(), logp_anchor, mask, cfg.beta, cfg.kl_estimator)
        out: dict[str, Any] = {"logp": logp.detach(), "entropy": entropy, "returns": returns}
        if cfg.baseline == "value":
            values = value_positions(self.models.values(mb.input_ids, mb.attention_mask), mb.prompt_len,
                                     mask.shape[1]).float()
            out["value_loss"] = value_loss(values, returns, mask, num_tokens=value_tokens)
            out["policy_loss"] = policy_loss(logp, returns, values, mask, num_sequences=num_sequences)
            out["values"] = values.detach()
            out["loss"] = out["value_loss"] + out["policy_loss"]
        else:
            out["policy_loss"] = policy_loss(logp, returns, seq_baseline, mask, num_sequences=num_sequences)
            out["loss"] = out["policy_loss"]
        return out


def learn_from_rollout(models, rollout: Rollout, rewards: torch.Tensor, logp_anchor: torch.Tensor,
                       cfg: RLConfig, *, num_tokens: float | None = None,
                       batch_mean_reward: float | None = None, learner: torch.nn.Module | None = None,
                       accelerator: Any | None = None) -> LearnStats:
    """Forward/backward over micro-batches (gradients accumulate; the caller steps the optimizer).

    ``num_tokens`` (the value loss's token count) and ``batch_mean_reward`` (the ``mean`` baseline)
    default to this batch's; data parallelism passes the global ones (per process), and a ``learner``
    prepared by ``accelerator`` (:class:`Learner` in DDP), whose backward averages the processes'
    gradients: the gradient of the whole batch. Without them: one process, ``Learner(models)``."""
    learner = learner if learner is not None else Learner(models)
    n = rollout.input_ids.shape[0]
    mask_all = rollout.response_mask
    total_tokens = mask_all.sum().clamp(min=1)
    value_tokens = total_tokens if num_tokens is None else num_tokens
    seq_b = sequence_baseline(cfg.baseline, rewards, cfg.beta, cfg.samples_per_prompt, batch_mean_reward)
    p_loss = v_loss = 0.0
    kls, ents, zs, vs, masks = [], [], [], [], []
    chunks = list(_chunks(n, cfg.micro_batch_size))
    for i, sl in enumerate(chunks):
        mb = rollout.select(sl)
        last = i == len(chunks) - 1  # DDP averages the accumulated gradients in the last backward only
        sync = contextlib.nullcontext() if accelerator is None or last else accelerator.no_sync(learner)
        with sync:
            out = learner(mb, rewards[sl], logp_anchor[sl], seq_b[sl] if seq_b is not None else None, cfg, n,
                          value_tokens)
            if accelerator is not None:
                accelerator.backward(out["loss"])
            else:
                out["loss"].backward()
        p_loss += float(out["policy_loss"].detach())
        if "value_loss" in out:
            v_loss += float(out["value_loss"].detach())
            vs.append(out["values"])
        kls.append(sequence_kl(out["logp"], logp_anchor[sl], mb.response_mask, cfg.kl_estimator))
        ents.append(out["entropy"])
        zs.append(out["returns"])
        masks.append(mb.response_mask)
    width = mask_all.shape[1]
    seq_kl = torch.cat(kls)
    z = torch.cat([_pad_to(t, width) for t in zs])
    stats = LearnStats(
        policy_loss=p_loss,
        kl=float(seq_kl.mean()),
        kl_per_token=float(seq_kl.sum() / total_tokens),
        objective=float(((1.0 - cfg.beta) * rewards - cfg.beta * seq_kl).mean()),
        entropy=float(masked_mean(torch.cat([_pad_to(t, width) for t in ents]), mask_all)),
    )
    if cfg.baseline == "value":
        v = torch.cat([_pad_to(t, width) for t in vs])
        stats.value_loss = v_loss
        stats.explained_variance = explained_variance(v, z, mask_all)
        stats.values_mean = float(masked_mean(v, mask_all))
    return stats


def _pad_to(t: torch.Tensor, width: int) -> torch.Tensor:
    return t if t.shape[1] == width else torch.nn.functional.pad(t, (0, width - t.shape[1]))


# -- the loop ----------------------------------------------------------------------------------------------
def make_optimizer(models, cfg: RLConfig):
    """``(AdamW, warm-up schedule)`` over the policy (and value) parameters, each group at its own rate."""
    groups = models.parameter_groups()
    param_groups = [{"params": groups[POLICY], "lr": cfg.lr, "name": POLICY}]
    if VALUE in groups:
        param_groups.append({"params": groups[VALUE], "lr": cfg.value_lr, "name": VALUE})
    return adamw_with_warmup(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps)


def _global_normalisers(rollout: Rollout, rewards: torch.Tensor, cfg: RLConfig, accelerator) -> dict[str, float]:
    """Over several processes, what the baseline needs from the whole batch: for ``value``, the mean over
    processes of the response-token count (the value loss is a token mean: each process divides its sum
    by it, and the processes' gradients are averaged); for ``mean``, the whole batch's mean reward.
    Nothing for ``rloo`` (a prompt's samples are on one process) or in one process."""
    if accelerator.num_processes <= 1:
        return {}
    if cfg.baseline == "value":
        return {"num_tokens": max(_reduce_mean(float(rollout.response_mask.sum()), accelerator), 1.0)}
    if cfg.baseline == "mean":
        return {"batch_mean_reward": _reduce_mean(float(rewards.mean()), accelerator)}
    return {}


def _reduce_mean(value: float, accelerator) -> float:
    if accelerator.num_processes <= 1:
        return value
    t = torch.tensor([value], device=accelerator.device, dtype=torch.float64)
    return float(accelerator.reduce(t, "mean"))


def train_rl(cfg: RLConfig, models, reward_fn: RewardFunction, prompts: Sequence[RLPrompt], tokenizer, *,
             eos_token_ids: Sequence[int] | None = None, run: RunDir | None = None, accelerator=None,
             on_step: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """The RL loop. Returns the per-step metrics (also appended to ``run``'s metrics.jsonl)."""
    from perlhf.measure import PeakMemory, PhaseTimer

    accelerator = accelerator or make_accelerator(mixed_precision=cfg.mixed_precision)
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg.prompts_per_step % world:
        raise UserError(f"--prompts-per-step {cfg.prompts_per_step} must be a multiple of the {world} processes")
    models.to(accelerator.device)
    models.eval()  # no dropout: the learner's distribution is the sampler's
    optimizer, scheduler = make_optimizer(models, cfg)
    start_step = 0
    if run is not None and run.resumed_from is not None:
        state = load_trainer_state(run.resumed_from)
        models.load(run.resumed_from)
        load_optimizer(run.resumed_from, optimizer, scheduler)
        start_step = int(state["step"])
        if accelerator.is_main_process:
            run.truncate_metrics_after(start_step, SAMPLES_FILE)
        log.info("resumed from %s (step %d)", run.resumed_from, start_step)
    learner = Learner(models)
    if world > 1:  # DistributedDataParallel (accelerate's): each step's last backward averages the gradients
        learner = accelerator.prepare_model(learner, device_placement=False)
    timer = PhaseTimer(device=accelerator.device)
    reporter = Reporter(run, cfg.report_to, config_to_dict(cfg), enabled=accelerator.is_main_process)
    bar = progress_bar(accelerator.is_main_process and cfg.progress and run is not None, cfg.max_steps, start_step,
                       f"rl {cfg.mode}")
    say = log.debug if bar is not None else log.info  # the bar shows what the per-step lines would
    # A resumed run's summary covers its earlier processes too: their steps come back from metrics.jsonl.
    history: list[dict[str, Any]] = ([r for r in run.read_metrics() if r.get("split") == "train"
                                      and int(r["step"]) <= start_step] if start_step and run is not None else [])
    for step, epoch, batch_idx in iterate_steps(len(prompts), cfg.prompts_per_step, cfg.seed, cfg.max_steps,
                                                start_step):
        torch.manual_seed(step_seed(cfg.seed, step))
        positions = range(rank, len(batch_idx), world)  # this process's prompts, by place in the global batch
        mine = [prompts[batch_idx[j]] for j in positions]
        expanded = [p for p in mine for _ in range(cfg.samples_per_prompt)]  # samples of a prompt contiguous
        # each episode's sampling noise from the step and its global index: 2 processes sample what 1 does
        seeds = [episode_seed(cfg.seed, step, j * cfg.samples_per_prompt + k)
                 for j in positions for k in range(cfg.samples_per_prompt)]
        mem = PeakMemory(accelerator.device).start()
        t_step = time.perf_counter()
        with timer.step(), accelerator.autocast():
            with timer.phase("sampling"), models.sampler() as policy:
                rollout = sample(policy, tokenizer, [p.ids for p in expanded], max_new_tokens=cfg.max_new_tokens,
                                 temperature=cfg.temperature, eos_token_ids=eos_token_ids, seeds=seeds)
            with timer.phase("reward"):
                rewards = reward_fn(expanded, rollout).to(accelerator.device, torch.float32)
            bad = [i for i, r in enumerate(rewards.tolist()) if not math.isfinite(r)]
            if bad:
                check_finite(step, reward=rewards[bad[0]].item())
            with timer.phase("anchor"):
                logp_anchor = anchor_logprobs(models, rollout, cfg.temperature, cfg.micro_batch_size)
            with timer.phase("learning"), _learning_mode(models, cfg.gradient_checkpointing):
                stats = learn_from_rollout(models, rollout, rewards, logp_anchor, cfg, learner=learner,
                                           accelerator=accelerator,
                                           **_global_normalisers(rollout, rewards, cfg, accelerator))
                check_finite(step, policy_loss=stats.policy_loss, value_loss=stats.value_loss, kl=stats.kl)
                norms = {}
                if cfg.max_grad_norm > 0:
                    for g in optimizer.param_groups:
                        norms[g["name"]] = float(torch.nn.utils.clip_grad_norm_(g["params"], cfg.max_grad_norm))
                    check_finite(step, **{f"grad_norm_{k}": v for k, v in norms.items()})
                crash_point("step", step)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                lr_used = optimizer.param_groups[0]["lr"]
                scheduler.step()
        mem.stop()
        phase_times = {name: sum(r.seconds for r in timer.records if r.step == timer.num_steps - 1 and r.name == name)
                       for name in PHASES}
        lengths = rollout.response_lengths
        ensemble_stats = {k: _reduce_mean(v, accelerator) for k, v in reward_fn.step_stats().items()} \
            if hasattr(reward_fn, "step_stats") else {}
        record: dict[str, Any] = {
            "step": step, "split": "train", "epoch": epoch,
            "reward_mean": _reduce_mean(float(rewards.mean()), accelerator),
            "reward_std": float(rewards.std(unbiased=False)),
            **ensemble_stats,
            "kl": _reduce_mean(stats.kl, accelerator),
            "kl_per_token": stats.kl_per_token,
            "objective": _reduce_mean(stats.objective, accelerator),
            "policy_loss": stats.policy_loss,
            "value_loss": stats.value_loss,
            "explained_variance": stats.explained_variance,
            "values_mean": stats.values_mean,
            "entropy": stats.entropy,
            "response_length": float(lengths.float().mean()),
            "ended_fraction": float(rollout.ended.float().mean()),
            "empty_generations": rollout.num_empty,
            "truncated_prompts": sum(p.truncated for p in mine),
            "episodes": len(expanded) * world,
            "lr": lr_used,
            **{f"grad_norm_{k}": v for k, v in norms.items()},
            **{f"time_{k}": v for k, v in phase_times.items()},
            "time_step": time.perf_counter() - t_step,
            "peak_memory_bytes": mem.peak_bytes,
        }
        history.append(record)
        is_main = accelerator.is_main_process
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            reporter.log(step, "train", record)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(reward=f"{record['reward_mean']:.3f}", kl=f"{record['kl']:.3f}")
        if run is not None and is_main and cfg.sample_every and (step % cfg.sample_every == 0 or step == 1):
            _log_samples(run, step, expanded, rollout, rewards, tokenizer, cfg.num_samples_logged,
                         getattr(reward_fn, "last_member_scores", None))
        say("step %d reward %.3f kl %.4f objective %.3f len %.1f (%.1fs)", step, record["reward_mean"],
                 record["kl"], record["objective"], record["response_length"], record["time_step"])
        if on_step is not None:
            on_step(step, record)
        if run is not None and is_main and ((cfg.save_every and step % cfg.save_every == 0)
                                            or step == cfg.max_steps):
            with run.checkpoint_writer(step) as tmp:
                models.save(tmp)
                save_optimizer(tmp, optimizer, scheduler)
                save_trainer_state(tmp, {"step": step, "epoch": epoch, "stage": "rl", "mode": cfg.mode})
            run.prune_checkpoints(cfg.keep_checkpoints)
        accelerator.wait_for_everyone()
    if bar is not None:
        bar.close()
    reporter.close()
    return history


@contextlib.contextmanager
def _learning_mode(models, checkpointing: bool):
    """Checkpointed layers recompute only in train mode; dropout was zeroed by :func:`build_models`."""
    if not checkpointing:
        yield
        return
    models.train()
    try:
        yield
    finally:
        models.eval()


def disable_dropout(model: torch.nn.Module) -> None:
    """Zero every dropout (modules and attention dropout): the learner must see the sampler's distribution."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        config = getattr(m, "config", None)
        if config is not None and getattr(config, "attention_dropout", None):
            config.attention_dropout = 0.0


def _log_samples(run: RunDir, step: int, prompts: Sequence[RLPrompt], rollout: Rollout, rewards: torch.Tensor,
                 tokenizer, n: int, member_scores: torch.Tensor | None = None) -> None:
    with open(run.path / SAMPLES_FILE, "a", encoding="utf-8") as fh:
        for i in range(min(n, len(prompts))):
            prompt_text = tokenizer.decode(list(prompts[i].ids), skip_special_tokens=False)
            line = {"step": step, "prompt": prompt_text[-600:], "response": rollout.response_texts[i],
                    "reward": float(rewards[i])}
            if member_scores is not None:  # an ensemble: every member's score
                line["reward_members"] = [float(x) for x in member_scores[:, i]]
            fh.write(dumps_json(line, indent=None) + "\n")


# -- the recipe ------------------------------------------------------------------------------------------
def policy_eos_ids(tokenizer) -> list[int]:
    """The tokens that end a response: the chat template's end of turn and the tokenizer's EOS."""
    from perlhf.data.render import end_of_turn_ids

    ids = []
    eot = end_of_turn_ids(tokenizer)
    if eot:
        ids.append(eot[-1])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def encode_rl_prompts(tokenizer, prompts: Sequence[Any], max_prompt_tokens: int) -> list[RLPrompt]:
    from perlhf.data.render import encode_prompt

    out = []
    for p in prompts:
        ids, truncated = encode_prompt(tokenizer, p.prompt, max_prompt_tokens)
        out.append(RLPrompt(tuple(ids), tuple(p.prompt), truncated, p.id))
    return out


def check_policy_folder(name: str) -> None:
    """Refuse a checkpoint of the wrong kind passed as ``--policy``, naming what it is."""
    path = Path(name)
    if not path.is_dir():
        return
    if (path / "perlhf_reward.json").is_file():
        raise UserError(f"--policy {name}: this is a reward model folder, not a policy; pass the merged SFT model "
                        "(the merged/ folder of `perlhf sft --merge`)")
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise UserError(f"--policy {name}: this is a LoRA adapter folder; RL needs a plain model to use as "
                        "backbone and anchor: rerun `perlhf sft` with --merge and pass <run>/merged")
    if (path / "adapter").is_dir() and not (path / "config.json").is_file():
        raise UserError(f"--policy {name}: this is an SFT adapter (final/ of a LoRA run); pass the merged/ folder "
                        "written by `perlhf sft --merge`")
    if (path / "policy").is_dir() and (path / "perlhf_rl.json").is_file():
        raise UserError(f"--policy {name}: this is an RL output; to continue that run use --resume, to start "
                        "from it pass its merged/ folder (`perlhf rl --merge`)")


def build_models(cfg: RLConfig, sft_model: torch.nn.Module) -> SharedBackbone | SeparateModels:
    """The policy/value/anchor networks of the chosen mode, from the SFT model."""
    with_value = cfg.baseline == "value"
    if cfg.gradient_checkpointing:
        from perlhf.models.loading import enable_gradient_checkpointing

        disable_dropout(sft_model)
        enable_gradient_checkpointing(sft_model)  # copied with the model in full mode
    if cfg.mode == "lora":
        opts = cfg.lora_options()
        return SharedBackbone(sft_model, opts, with_value=with_value, seed=cfg.seed, fold_adapters=cfg.fold_adapters)
    return SeparateModels.from_model(sft_model, with_value=with_value)


@stage_entry
def run_rl(cfg: RLConfig) -> dict[str, Any]:
    """``perlhf rl``: load, loop, write the final policy (and value) and the summary."""
    from perlhf.data import load_task, prompts_of
    from perlhf.measure import PeakMemory, count_parameters
    from perlhf.models import load_causal_lm, load_tokenizer, torch_dtype

    if not cfg.policy:
        raise UserError("--policy is required: the merged SFT model (`perlhf sft --merge` writes <run>/merged)")
    check_policy_folder(cfg.policy)
    check_reward_model_arg(cfg.reward_model)
    # a bad --policy fails before the run dir exists
    tokenizer = load_tokenizer(cfg.policy, padding_side="left", trust_remote_code=cfg.trust_remote_code)
    accelerator = make_accelerator(mixed_precision=cfg.mixed_precision)
    run = prepare_run(accelerator, cfg.output_dir, overwrite=cfg.overwrite, resume=cfg.resume,
                      config={"stage": "rl", **config_to_dict(cfg), "num_processes": accelerator.num_processes})
    seed_everything(cfg.seed)
    dtype = torch_dtype(cfg.dtype)
    task = load_task(cfg.task, data_dir=cfg.data_dir, path=cfg.path)
    raw = prompts_of(task, "train")
    if cfg.max_prompts is not None and cfg.max_prompts < len(raw):
        g = torch.Generator().manual_seed(cfg.seed)
        raw = [raw[i] for i in sorted(torch.randperm(len(raw), generator=g)[: cfg.max_prompts].tolist())]
    prompts = encode_rl_prompts(tokenizer, raw, cfg.max_prompt_tokens)
    n_trunc = sum(p.truncated for p in prompts)
    log.info("%d RL prompts from %s (%d truncated to %d tokens)", len(prompts), cfg.task, n_trunc,
             cfg.max_prompt_tokens)
    if len(prompts) < cfg.prompts_per_step:  # before the models load and a reporter writes into the run
        raise UserError(f"only {len(prompts)} training prompts for --prompts-per-step {cfg.prompts_per_step}: "
                        "lower --prompts-per-step or use more data")
    t_load = time.perf_counter()
    with PeakMemory(accelerator.device) as load_mem:
        sft_model = load_causal_lm(cfg.policy, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
        models = build_models(cfg, sft_model)
        models.to(accelerator.device)
        reward_fn = load_reward(cfg, models if isinstance(models, SharedBackbone) else None,
                                accelerator.device, dtype, policy_tokenizer=tokenizer)
    load_seconds = time.perf_counter() - t_load
    trainable = sum(p.numel() for g in models.parameter_groups().values() for p in g)
    _, total = count_parameters(models)
    log.info("mode %s, baseline %s, reward %s (%s); %d trainable of %d parameters", cfg.mode, cfg.baseline,
             reward_fn.description if hasattr(reward_fn, "description") else "?",
             getattr(reward_fn, "placement", "?"), trainable, total)
    with PeakMemory(accelerator.device) as mem:
        history = train_rl(cfg, models, reward_fn, prompts, tokenizer, eos_token_ids=policy_eos_ids(tokenizer),
                           run=run, accelerator=accelerator)
    summary = summarize(history, cfg)
    summary.update({
        "stage": "rl", "mode": cfg.mode, "baseline": cfg.baseline, "policy": cfg.policy,
        "reward_model": cfg.reward_model, "reward_placement": getattr(reward_fn, "placement", None),
        "task": cfg.task, "prompts": len(prompts), "truncated_prompts": n_trunc,
        "trainable_parameters": trainable, "total_parameters_in_memory": total,
        "load_seconds": load_seconds, "load_peak_memory": load_mem.as_dict(), "peak_memory": mem.as_dict(),
        **precision_summary(accelerator),
    })
    if isinstance(reward_fn, EnsembleReward):
        summary["reward_ensemble"] = {"members": len(reward_fn.members), "aggregate": reward_fn.how,
                                      "penalty": reward_fn.penalty}
    if accelerator.is_main_process:
        final = run.path / "final"
        with atomic_directory(final) as tmp:
            models.save(tmp, tokenizer=tokenizer)
            crash_point("final", cfg.max_steps)
        summary["final_dir"] = str(final)
        if cfg.merge:  # the same layout as `perlhf sft --merge`: <run>/merged, a plain model
            from perlhf.models.loading import write_plain_model

            merged = write_plain_model(models.merged_policy(), tokenizer, run.path / "merged",
                                       {"stage": "rl", "sft_model": cfg.policy, "mode": cfg.mode,
                                        "steps": cfg.max_steps})
            summary["merged_dir"] = str(merged)
        run.write_summary(summary)
    return summary


def summarize(history: Sequence[dict[str, Any]], cfg: RLConfig, warmup: int = 1) -> dict[str, Any]:
    """First/last rewards and KL, median step and phase times after warm-up, the largest step peak memory."""
    if not history:
        return {}
    k = max(1, min(5, len(history) // 4))

    def avg(key: str, rows) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    timed = list(history[warmup:]) or list(history)
    return {
        "steps": int(history[-1]["step"]),
        "reward_first": avg("reward_mean", history[:k]),
        "reward_last": avg("reward_mean", history[-k:]),
        "kl_last": avg("kl", history[-k:]),
        "objective_last": avg("objective", history[-k:]),
        "entropy_last": avg("entropy", history[-k:]),
        "response_length_last": avg("response_length", history[-k:]),
        **({"reward_members_mean_first": avg("reward_members_mean", history[:k]),
            "reward_members_mean_last": avg("reward_members_mean", history[-k:]),
            "reward_disagreement_first": avg("reward_disagreement", history[:k]),
            "reward_disagreement_last": avg("reward_disagreement", history[-k:])}
           if "reward_disagreement" in history[-1] else {}),
        "empty_generations": sum(r.get("empty_generations", 0) for r in history),
        "median_seconds_per_step": statistics.median(r["time_step"] for r in timed),
        "median_phase_seconds": {p: statistics.median(r[f"time_{p}"] for r in timed) for p in PHASES},
        "peak_memory_bytes_max_step": max(r["peak_memory_bytes"] for r in history),
        "averaged_over_last_steps": k,
    }
