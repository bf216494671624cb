"""``perlhf eval``: win / tie / loss of the RL policy against the SFT policy on held-out prompts.

    perlhf eval --sft runs/sft/merged --rl runs/rl-lora --judge-rm runs/rm-judge/final \
        --reward-model runs/rm/final --task taskmaster-coffee --num-prompts 64 --output eval.json

See :mod:`perlhf.eval.judge` for what is judged and how.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from perlhf.config import add_dataclass_arguments, option, resolve_config
from perlhf.errors import UserError

HELP = "judge the RL policy against the SFT policy on held-out prompts (independent reward model, LM judge)"


@dataclass
class EvalConfig:
    """Options of ``perlhf eval``."""

    sft: str | None = option(None, "the SFT policy: the merged folder given to `perlhf rl --policy`")
    rl: str | None = option(None, "the `perlhf rl` run folder (or its final/)")
    judge_rm: str | None = option(None, "an independent reward model (a `perlhf rm` folder; ideally trained on a "
                                  "split disjoint from the training reward model's) used as judge")
    reward_model: str | None = option(None, "the training reward model, reported beside the judge")
    judge_lm: str | None = option(None, "optional: a causal LM asked 'A or B?' in both orders")
    task: str = option("taskmaster-coffee", "task whose prompts are judged")
    split: str = option("test", "split of the task to take prompts from", choices=["train", "validation", "test"])
    data_dir: str | None = option(None, "folder with the raw data (else PERLHF_DATA_DIR, the cache, a download)")
    path: str | None = option(None, "data file for --task jsonl (pairs or ratings): the prompts of its records are used")
    num_prompts: int = option(64, "held-out prompts judged (a fixed random subset)")
    max_prompt_tokens: int = option(256, "prompt budget (left truncation, as in RL)")
    max_new_tokens: int = option(64, "longest answer")
    temperature: float = option(0.7, "sampling temperature of both policies")
    batch_size: int = option(8, "prompts per generation / scoring batch")
    tie_margin: float = option(0.0, "reward-model judges: score differences up to this are ties")
    dtype: str = option("float32", "weights dtype", choices=["float32", "bfloat16", "float16"])
    seed: int = option(0, "seed of the prompt subset and of sampling (the same for both policies)")
    output: str = option("eval.json", "where to write the JSON report")
    samples_out: str | None = option(None, "also write every (context, RL answer, SFT answer) to this JSONL, with each "
                                     "answer's judge and training-reward scores")
    sft_answers_from: str | None = option(None, "the JSON report of an earlier `perlhf eval` with the same SFT policy, prompts "
                                          "and sampling options, run with --samples-out: judge against its SFT answers "
                                          "instead of generating them again (several RL policies, one set of SFT answers)")

    def validate(self) -> None:
        from perlhf.models.loading import portable_name

        for name in ("sft", "rl", "judge_rm", "reward_model", "judge_lm"):
            setattr(self, name, portable_name(getattr(self, name)))
        if not self.sft or not self.rl:
            raise UserError("--sft and --rl are both required: the SFT merged model and the `perlhf rl` run")
        if not (self.judge_rm or self.judge_lm or self.reward_model):
            raise UserError("give a judge: --judge-rm (an independent reward model) and/or --judge-lm; "
                            "--reward-model alone only reports the training reward")
        if self.num_prompts <= 0 or self.max_new_tokens <= 0 or self.batch_size <= 0:
            raise UserError("--num-prompts, --max-new-tokens and --batch-size must be positive")
        if self.temperature <= 0:
            raise UserError(f"--temperature must be > 0, got {self.temperature}")
        if self.tie_margin < 0:
            raise UserError(f"--tie-margin must be >= 0, got {self.tie_margin}")


def register(sub: Any) -> None:
    parser = sub.add_parser("eval", help=HELP, description=HELP + ".")
    add_dataclass_arguments(parser, EvalConfig)
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    from perlhf.eval.judge import run_eval

    cfg = resolve_config(EvalConfig, args)
    report = run_eval(cfg)
    print(json.dumps(report, indent=2))
    return 0
