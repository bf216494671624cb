"""Write a random-initialised copy of a model's architecture (config + tokenizer, new weights).

    python benchmarks/make_random_model.py <folder with config.json and tokenizer files> <output folder> [--seed 0]

For cost benchmarks on a machine that cannot get the real weights (a GPU box with no network and a
64 MiB transfer limit): time per step and memory depend on the architecture and the token counts,
not on the weight values. Quality figures from such a model mean nothing, and a random model never
ends its responses early, so every RL sample runs to --max-new-tokens (the same work for every variant).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("output")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    src, out = Path(args.source), Path(args.output)
    config = AutoConfig.from_pretrained(src)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"{out}: random {config.model_type} with {n:,} parameters (seed {args.seed})")


if __name__ == "__main__":
    main()
