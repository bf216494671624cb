"""The option groups every training stage (``rm``, ``sft``, ``rl``) is built from, declared once.

A stage config is a dataclass that inherits the groups it uses and adds its own options::

    @dataclass
    class SFTConfig(BatchOptions, TrainingOptions):
        DEFAULT_LR = {"lora": 1e-4, "full": 1e-5}          # this stage's default rates
        task: str = option("taskmaster-coffee-dialogues", ...)   # a default overridden, in plain view
        merge: bool = option(False, ...)                    # an option of this stage only

So every stage spells an option the same way (``--lora-rank``, ``--warmup-steps``, ``--save-every``,
``--keep-checkpoints``, ``--report-to``, ``--progress``...), checks it the same way (:meth:`validate`), and
``--help`` shows it under the same heading. A field redeclared in a stage keeps its group and its
place; only its default or help text changes. The groups hold options, never behaviour beyond
checking them: the recipes read them. A class that sets ``GROUP`` in its own body is a group (see
:func:`perlhf.config.option_heading`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from perlhf.config import mixed_precision_option, option, progress_option, report_to_option
from perlhf.errors import UserError

DTYPES = ["float32", "bfloat16", "float16"]
MODES = ["lora", "full"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_choices(cfg: Any) -> None:
    """Every option declared with ``choices`` holds one of them (the CLI checks this too; a YAML file or
    a Python call does not go through argparse)."""
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) not in choices:
            raise UserError(f"{_flag(f.name)} {getattr(cfg, f.name)!r}: choose one of {', '.join(choices)}")


def check_positive(cfg: Any, *names: str, optional: bool = False) -> None:
    """Each named option is > 0 (``optional``: or None)."""
    for name in names:
        value = getattr(cfg, name)
        if optional and value is None:
            continue
        if not value > 0:
            raise UserError(f"{_flag(name)} must be positive, got {value}")


def check_non_negative(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value < 0:
            raise UserError(f"{_flag(name)} must be >= 0, got {value}")


@dataclass
class DataOptions:
    GROUP: ClassVar[str] = "data"
    task: str = option("taskmaster-coffee", "task to train on (`perlhf data list`)")
    data_dir: str | None = option(None, "folder with the raw data (else PERLHF_DATA_DIR, the cache, a download)")
    path: str | None = option(None, "data file for --task jsonl (see `perlhf data list`)")


@dataclass
class ModelOptions:
    GROUP: ClassVar[str] = "model and precision"
    dtype: str = option("float32", "weights dtype", choices=DTYPES)
    mixed_precision: str = mixed_precision_option()
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (less memory, slower)")
    trust_remote_code: bool = option(False, "allow the model repository's own Python code to run (off: "
                                     "only architectures transformers ships are loaded)")


@dataclass
class LoraGroup:
    GROUP: ClassVar[str] = "LoRA"
    mode: str = option("lora", "lora: train LoRA adapters on a frozen backbone; full: train every weight",
                       choices=MODES)
    lora_rank: int = option(8, "LoRA rank r (> 0)")
    lora_alpha: float | None = option(None, "LoRA alpha (the update is scaled by alpha / r); default 2 x rank")
    lora_targets: str = option("all-linear", "modules that get adapters: all-linear (every linear layer of the "
                               "blocks, MLP included; the default, ahead of attention-only on the sentiment "
                               "sweep), attention (q, k, v, o projections; the paper's choice), or a "
                               "comma-separated list of module names")

    def lora_options(self):
        """The :class:`perlhf.models.lora.LoraOptions` these options describe."""
        from perlhf.models.lora import LoraOptions

        return LoraOptions(rank=self.lora_rank, alpha=self.lora_alpha, dropout=getattr(self, "lora_dropout", 0.0),
                           targets=self.lora_targets)


@dataclass
class LoraDropoutGroup(LoraGroup):
    """LoRA with input dropout (rm, sft; RL samples and learns in eval mode, so dropout has no place there)."""

    GROUP: ClassVar[str] = "LoRA"
    lora_dropout: float = option(0.0, "dropout on the LoRA input, in [0, 1)")


@dataclass
class OptimizerOptions:
    GROUP: ClassVar[str] = "optimizer"
    # --learning-rate when not given, per --mode; each stage sets its own (and says why beside it).
    DEFAULT_LR: ClassVar[dict[str, float]] = {"lora": 1e-3, "full": 5e-5}
    learning_rate: float | None = option(None, "AdamW learning rate (default: the stage's rate for --mode)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_steps: int = option(0, "linear learning-rate warm-up over this many steps, then constant")
    max_grad_norm: float = option(1.0, "clip the gradient norm to this (0: no clipping)")
    max_steps: int = option(200, "optimizer steps to train")

    @property
    def lr(self) -> float:
        """The learning rate used: ``--learning-rate``, else the stage's default for ``--mode``."""
        return self.learning_rate if self.learning_rate is not None else self.DEFAULT_LR[getattr(self, "mode", "lora")]


@dataclass
class RunOptions:
    GROUP: ClassVar[str] = "run"
    output_dir: str = option("runs/run", "run directory (config.yaml, metrics.jsonl, checkpoints, final/, "
                             "summary.json)")
    seed: int = option(0, "random seed (data order, sampling, dropout, subsets)")
    save_every: int = option(50, "write a checkpoint every N steps (0: only at the end)")
    keep_checkpoints: int = option(2, "complete checkpoints kept")
    overwrite: bool = option(False, "replace an existing run directory")
    resume: bool = option(False, "continue the run in --output-dir from its last checkpoint (the options must "
                          "be the run's own)")
    report_to: str = report_to_option()
    progress: bool = progress_option()


@dataclass
class TrainingOptions(RunOptions, OptimizerOptions, LoraGroup, ModelOptions, DataOptions):
    """The groups every training stage has. :meth:`validate` checks them; a stage's ``validate`` calls it
    first, then checks its own options."""

    def validate(self) -> None:
        check_choices(self)
        if self.mode == "lora":
            self.lora_options().validate()
        check_positive(self, "max_steps", "keep_checkpoints")
        check_positive(self, "learning_rate", optional=True)
        check_non_negative(self, "weight_decay", "warmup_steps", "max_grad_norm", "save_every")


@dataclass
class BatchOptions:
    """Batches of supervised examples (rm, sft): their size, their token budgets, the subsets used."""

    GROUP: ClassVar[str] = "batches"
    batch_size: int = option(16, "examples per optimizer step, over all processes")
    grad_accum: int = option(1, "micro-batches per process per optimizer step (gradient accumulation)")
    max_prompt_tokens: int = option(384, "prompt budget; longer prompts lose their oldest turns")
    max_response_tokens: int = option(128, "response budget; longer responses are cut at the end")
    max_train_examples: int | None = option(None, "train on a seeded random subset of this many examples")
    max_eval_examples: int | None = option(None, "evaluate on a seeded random subset of this many examples "
                                           "(none: all)")

    def validate_batches(self) -> None:
        check_positive(self, "batch_size", "grad_accum", "max_prompt_tokens", "max_response_tokens")
        check_positive(self, "max_train_examples", "max_eval_examples", optional=True)
