"""``perlhf sft``: supervised fine-tuning (LoRA or full), the starting policy and anchor of RL.

    perlhf sft --task taskmaster-coffee-dialogues --mode lora --max-steps 200 --merge --output-dir runs/sft
    perlhf rl --policy runs/sft/merged ...

Multi-process: ``torchrun --nproc_per_node 2 -m perlhf sft ...`` (gloo on CPU).
"""

from __future__ import annotations

import json
from typing import Any

from perlhf.config import add_dataclass_arguments, resolve_config

HELP = "supervised fine-tuning on dialogues (loss on assistant tokens only), LoRA or full; --merge writes the RL start"


def register(sub: Any) -> None:
    from perlhf.train.sft import SFTConfig

    parser = sub.add_parser("sft", help=HELP, description=HELP + ". Every option can also be set in a "
                            "--config YAML file; options on the command line win.")
    add_dataclass_arguments(parser, SFTConfig)
    parser.set_defaults(func=_run)


def _run(args: Any) -> int:
    from perlhf.api import train_sft
    from perlhf.train.sft import SFTConfig

    summary = train_sft(config=resolve_config(SFTConfig, args)).summary
    brief = {k: summary.get(k) for k in ("mode", "train_examples", "trainable_parameters", "seconds",
                                         "final_dir", "merged_dir")}
    brief["validation"] = (summary.get("final") or {}).get("validation")
    print(json.dumps(brief, indent=2))
    return 0
