"""``perlhf rl``: REINFORCE with a KL-to-anchor penalty and a value (or RLOO / mean) baseline.

    perlhf rl --policy runs/sft/merged --reward-model runs/rm/final --mode lora --baseline value \
        --beta 0.05 --max-steps 100 --output-dir runs/rl-lora
    perlhf rl ... --mode full --output-dir runs/rl-full       # the full fine-tuning baseline

Per step it logs (metrics.jsonl): reward mean/std, KL to the anchor, the objective, policy and
value loss, explained variance, entropy, response length, empty generations, truncated prompts,
the time of each phase (sampling, reward, anchor, learning) and the peak memory; a few samples go
to samples.jsonl every --sample-every steps.
Multi-process: ``torchrun --nproc_per_node 2 -m perlhf rl ...`` (gloo on CPU).
"""

from __future__ import annotations

import json
from typing import Any

from perlhf.config import add_dataclass_arguments, resolve_config

HELP = ("RL from a reward model: policy (and value) as LoRA adapters on one frozen SFT backbone, "
        "or full fine-tuning with separate models")


def register(sub: Any) -> None:
    from perlhf.train.rl import RLConfig

    parser = sub.add_parser("rl", help=HELP, description=HELP + ". Every option can also be set in a "
                            "--config YAML file; options on the command line win.")
    add_dataclass_arguments(parser, RLConfig)
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    from perlhf.api import train_rl
    from perlhf.train.rl import RLConfig

    summary = train_rl(config=resolve_config(RLConfig, args)).summary
    keys = ("mode", "baseline", "reward_placement", "steps", "reward_first", "reward_last", "kl_last",
            "median_seconds_per_step", "median_phase_seconds", "peak_memory_bytes_max_step", "final_dir")
    print(json.dumps({k: summary.get(k) for k in keys}, indent=2))
    return 0
