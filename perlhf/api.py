"""The Python API: the three PERL stages as functions, objects in and typed results out.

Each function takes the stage's options as keyword arguments (the same names as the command-line
options, snake_case: ``mode="lora"``, ``lora_rank=8``, ``max_steps=200``...), runs the same recipe as
the CLI (same checks, run folder, resume, summary) and returns a result with the run's folder, its
summary and a way to load what it trained::

    import perlhf

    pairs = [{"prompt": "Say hi", "chosen": "Hello! How can I help?", "rejected": "No."}, ...]
    rm = perlhf.train_reward_model(pairs, model="smollm2-135m", output_dir="runs/rm", max_steps=100)
    print(rm.summary["test"]["accuracy"])
    scores = rm.score([("Say hi", "Hello there!")])

Data may be a task name (``task="hh-harmless"``), a JSONL path, a list of dicts or a
``datasets.Dataset`` (the fields of :mod:`perlhf.data.jsonl`). ``perlhf.train_reward_model`` also
takes a model object with its tokenizer (``model=my_model, tokenizer=my_tokenizer``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perlhf.errors import UserError


@dataclass
class StageResult:
    """What a stage run produced: its folder, the trained output folder, and the summary."""

    stage: str
    run_dir: Path
    final_dir: Path
    summary: dict[str, Any] = field(repr=False)


@dataclass
class RewardModelResult(StageResult):
    """A trained reward model. ``load()`` gives ``(RewardModel, RewardInfo)`` (an ensemble, ``ensemble=K``:
    ``(EnsembleRewardModel, EnsembleInfo)``); ``score()`` scores (prompt, response) items, a prompt being
    a string or a list of chat messages (an ensemble: the members' mean)."""

    def load(self):
        from perlhf.models.ensemble import is_ensemble, load_ensemble
        from perlhf.models.heads import load_reward_model

        return load_ensemble(self.final_dir) if is_ensemble(self.final_dir) else load_reward_model(self.final_dir)

    def score(self, items: list[tuple[Any, str]], batch_size: int = 16) -> list[float]:
        from perlhf.data.jsonl import parse_messages
        from perlhf.models.ensemble import is_ensemble
        from perlhf.models.heads import RewardInfo, load_tokenizer_for
        from perlhf.train.scoring import score_texts

        model, info = self.load()
        folder = Path(self.final_dir) / info.members[0] if is_ensemble(self.final_dir) else self.final_dir
        tokenizer = load_tokenizer_for(folder, RewardInfo.load(folder))
        texts = [(parse_messages(p, "score()", f"item {i}"), r) for i, (p, r) in enumerate(items, start=1)]
        return score_texts(model, tokenizer, texts, info.max_prompt_tokens, info.max_response_tokens, batch_size)


def _config(cls: type, options: dict[str, Any], config: Any | None = None):
    """The stage config: ``config`` as given (a resolved config, e.g. from the CLI; then no other
    options), else one built from ``options`` and validated."""
    if config is not None:
        if not isinstance(config, cls):
            raise UserError(f"config= must be a {cls.__name__}, got {type(config).__name__}")
        extra = sorted(options)
        if extra:
            raise UserError(f"config= and options ({', '.join(extra)}) together: set them in the config")
        return config
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)}; the options are: {', '.join(sorted(names))}")
    cfg = cls(**options)
    cfg.validate()
    return cfg


def train_reward_model(data: Any | None = None, *, model: Any = "smollm2-135m", tokenizer: Any | None = None,
                       output_dir: str = "runs/rm", config: Any | None = None, **options: Any) -> RewardModelResult:
    """``perlhf rm train`` from Python. ``data``: None (use ``task=``), a JSONL path, a list of pair or
    rating dicts, or a ``datasets.Dataset``. ``model``: a model name or folder, or a transformers model
    object (then pass its ``tokenizer``). ``config``: a whole :class:`~perlhf.train.reward.RewardConfig`
    instead of options (what ``perlhf rm train`` passes)."""
    from perlhf.data import task_from_records
    from perlhf.train.reward import RewardConfig
    from perlhf.train.reward import train_reward_model as run

    backbone = None
    if not isinstance(model, str | Path):
        backbone, model = model, getattr(model, "name_or_path", "") or "in-memory model"
    task = task_from_records(data) if data is not None else None
    if task is not None:
        options.setdefault("task", "records")
    base = {} if config is not None else {"model": str(model), "output_dir": str(output_dir)}
    cfg = _config(RewardConfig, {**base, **options}, config)
    summary = run(cfg, task=task, backbone=backbone, tokenizer=tokenizer)
    return RewardModelResult("rm", Path(cfg.output_dir), _final(cfg, summary), summary)


def train_sft(*, output_dir: str = "runs/sft", config: Any | None = None, **options: Any) -> StageResult:
    """``perlhf sft`` from Python (options as on the command line, or a whole ``config``; ``merge=True``
    writes the RL start, and the result's ``final_dir`` is then the merged model)."""
    from perlhf.train.sft import SFTConfig, run_sft

    cfg = _config(SFTConfig, {**({} if config is not None else {"output_dir": str(output_dir)}), **options}, config)
    summary = run_sft(cfg)
    final = Path(summary["merged_dir"]) if summary.get("merged_dir") else _final(cfg, summary)
    return StageResult("sft", Path(cfg.output_dir), final, summary)


def train_rl(*, policy: str | None = None, reward_model: str | Path | RewardModelResult | None = None,
             output_dir: str = "runs/rl", config: Any | None = None, **options: Any) -> StageResult:
    """``perlhf rl`` from Python; ``reward_model`` may be the result of :func:`train_reward_model`
    (or a whole ``config``, as ``perlhf rl`` passes)."""
    from perlhf.train.rl import RLConfig, run_rl

    if isinstance(reward_model, RewardModelResult):
        reward_model = reward_model.final_dir
    given = {k: str(v) for k, v in (("policy", policy), ("reward_model", reward_model)) if v is not None}
    cfg = _config(RLConfig, {**given, **({} if config is not None else {"output_dir": str(output_dir)}), **options},
                  config)
    summary = run_rl(cfg)
    return StageResult("rl", Path(cfg.output_dir), _final(cfg, summary), summary)


def _final(cfg: Any, summary: dict[str, Any]) -> Path:
    """The run's final/ folder (every process of a multi-process run knows it; only the first writes it)."""
    return Path(summary.get("final_dir") or Path(cfg.output_dir) / "final")
