"""Where a reward-model step's memory goes on CPU: resident memory after each phase of two steps.

    OMP_NUM_THREADS=1 python benchmarks/bench_memory.py --mode lora|full [--batch 16] [--tokens 200] [--gc]

Prints the process RSS (MiB) after loading the model, after each forward, backward and optimizer
step, and the peak seen by a 5 ms sampling thread. The gap between "loaded" and "forward 0" is the
activation memory autograd keeps for the backward pass; the gap between LoRA and full after the
first optimizer step is the gradients plus AdamW state of the full model.
"""

from __future__ import annotations

import argparse
import threading
import time

import psutil
import torch

from perlhf.train.reward import RewardConfig, build_reward_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["lora", "full"], default="lora")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--gc", action="store_true", help="gradient checkpointing")
    args = ap.parse_args()
    proc = psutil.Process()

    def rss() -> float:
        return proc.memory_info().rss / 2**20

    print(f"start {rss():.0f}")
    model, _ = build_reward_model(RewardConfig(mode=args.mode, gradient_checkpointing=args.gc))
    print(f"loaded {rss():.0f}")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(1, 40000, (args.batch, args.tokens), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    peak, stop = [0.0], threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    for i in range(2):
        scores = model(ids, mask)
        print(f"forward {i} {rss():.0f} (peak {peak[0]:.0f})")
        scores.sum().backward()
        print(f"backward {i} {rss():.0f} (peak {peak[0]:.0f})")
        opt.step()
        opt.zero_grad(set_to_none=True)
        print(f"optimizer {i} {rss():.0f} (peak {peak[0]:.0f})")
    stop.set()
    thread.join()


if __name__ == "__main__":
    main()
