"""Eager against ``torch.compile`` (inductor) for one forward+backward of the real model's decoder.

    python benchmarks/bench_compile.py [--mode full|lora] [--batch 16] [--tokens 200] [--reps 3] [--no-autocast]

Section 5 of RESULTS.md profiled a full-tuning reward-model step on this CPU: a third of it is
unfused elementwise work (RMSNorm, RoPE, SwiGLU, residuals). This measures whether inductor's
fusion pays, and what the compilation costs: the first compiled call's time is printed apart, and
the steps after it alternate eager/compiled. One fixed shape (a bucketed run sees many widths, each
a recompilation unless compiled with dynamic shapes).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_precision import build, one_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["lora", "full"], default="full")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-autocast", action="store_true")
    ap.add_argument("--dynamic", action="store_true", help="torch.compile(dynamic=True): one compilation for every "
                    "sequence length; the timed steps then alternate between --tokens and --tokens - 24")
    args = ap.parse_args()
    autocast = not args.no_autocast
    eager = build("float32", args.mode)
    compiled_body = build("float32", args.mode)
    compiled = torch.compile(compiled_body, dynamic=True if args.dynamic else None)
    gen = torch.Generator().manual_seed(0)
    shapes = [args.tokens, args.tokens - 24] if args.dynamic else [args.tokens]
    batches = [torch.randint(1, 40000, (args.batch, t), generator=gen) for t in shapes]
    one_step(eager, batches[0], autocast)  # warm-up
    t0 = time.perf_counter()
    one_step(compiled, batches[0], autocast)
    first = time.perf_counter() - t0
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for r in range(args.reps):
        ids = batches[r % len(batches)]
        for name in (["eager", "compiled"] if r % 2 == 0 else ["compiled", "eager"]):
            times[name].append(one_step(eager if name == "eager" else compiled, ids, autocast))
    e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
    print(f"{args.mode}, {args.batch}x{'/'.join(map(str, shapes))} tokens{' (dynamic)' if args.dynamic else ''}, "
          f"{'bf16 autocast' if autocast else 'fp32'}, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print(f"  first compiled call (compilation + step): {first:.1f} s")
    print(f"  eager    {e:6.2f} s/step  {[round(x, 2) for x in times['eager']]}")
    print(f"  compiled {c:6.2f} s/step  {[round(x, 2) for x in times['compiled']]}  speed-up {e / c:.2f}x")


if __name__ == "__main__":
    main()
