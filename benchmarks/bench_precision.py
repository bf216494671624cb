"""fp32 against bf16 (autocast, and bf16 weights) for one LoRA or full forward+backward of the real model.

    OMP_NUM_THREADS=1 python benchmarks/bench_precision.py [--mode lora|full] [--batch 8] [--tokens 128] [--reps 4]

Times ``--reps`` forward+backward passes of the decoder (random token ids, the reward model's
last-token read-out) per variant, alternating the variants each round, and prints the median seconds
and the speed-up over fp32. The first round is warm-up and is dropped.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from perlhf.models.heads import load_backbone
from perlhf.models.lora import LoraOptions, apply_lora

VARIANTS = {"fp32": ("float32", False), "bf16-autocast": ("float32", True), "bf16-weights": ("bfloat16", False)}


def build(dtype: str, mode: str):
    backbone = load_backbone("smollm2-135m", kind="causal", dtype=dtype)
    backbone.config.use_cache = False
    if mode == "lora":
        return apply_lora(backbone, LoraOptions(rank=8, alpha=16, dropout=0.0, targets="attention")).base_model.model.model
    backbone.requires_grad_(True)
    return backbone.model


def one_step(body, ids: torch.Tensor, autocast: bool) -> float:
    t = time.perf_counter()
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast):
        hidden = body(input_ids=ids).last_hidden_state
    hidden[:, -1].float().sum().backward()
    for p in body.parameters():
        p.grad = None
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["lora", "full"], default="lora")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=4)
    args = ap.parse_args()
    bodies = {name: build(dtype, args.mode) for name, (dtype, _) in VARIANTS.items()}
    ids = torch.randint(1, 40000, (args.batch, args.tokens), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(args.reps + 1):
        order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            s = one_step(bodies[name], ids, VARIANTS[name][1])
            if r > 0:
                times[name].append(s)
    base = statistics.median(times["fp32"])
    print(f"{args.mode}, {args.batch}x{args.tokens} tokens, {torch.get_num_threads()} thread(s), "
          f"median of {args.reps}:")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<14} {med:6.2f} s/step  speed-up over fp32 {base / med:.2f}x")


if __name__ == "__main__":
    main()
