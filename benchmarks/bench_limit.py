"""The machine's limit: measured matmul FLOP/s, and the FLOP count of a training step.

    python benchmarks/bench_limit.py [--sizes 1024 2048 3072] [--repeats 7] [--out runs/bench/limit.json]

Prints (and writes as JSON) the best and median FLOP/s of square matmuls in float32 and,
when the CPU supports it (AVX512-BF16 / AMX), bfloat16, with torch's thread count, plus
the same at the shapes the 135M model actually multiplies (tokens x 576 x 1536 etc.).

The helpers below are imported by bench_rm.py / bench_rl.py to turn a measured step into
achieved FLOP/s:

* full fine-tuning:  ``6 * N * T``  (forward 2NT, backward 4NT: activation grads 2NT +
  weight grads 2NT), N = parameters that take part in matmuls (the transformer blocks;
  the token embedding is a lookup and a reward model never runs the LM head), T = real,
  non-padding tokens;
* LoRA (frozen base):  ``4 * N * T + 6 * N_lora * T``  (forward 2NT; backward 2NT for the
  activation gradients, which must reach the first layer's adapters; no weight gradient
  for frozen weights; the adapters themselves cost a full 6 N_lora T).
Attention-score FLOPs (QK^T, AV: about ``6 * 2 * L * T * ctx * d`` per step) are left out,
as the 6NT convention does; they are a few percent at 256 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

# -------------------------------------------------------------------------------- FLOP formulas


def train_flops(mode: str, n_matmul_params: int, tokens: int, n_lora_params: int = 0) -> float:
    """FLOPs of one training step over ``tokens`` real tokens (see the module docstring)."""
    if mode == "full":
        return 6.0 * n_matmul_params * tokens
    if mode == "lora":
        return 4.0 * n_matmul_params * tokens + 6.0 * n_lora_params * tokens
    raise ValueError(mode)


def matmul_params(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts of a (possibly peft-wrapped) model: total, embedding, matmul (= total - embedding
    - LoRA), LoRA. Tied weights count once."""
    total = emb = lora = 0
    emb_ids = set()
    for m in model.modules():
        if isinstance(m, torch.nn.Embedding):
            emb_ids.add(id(m.weight))
    for name, p in model.named_parameters():  # duplicates (tied) skipped by named_parameters
        n = p.numel()
        total += n
        if id(p) in emb_ids:
            emb += n
        elif "lora_" in name:
            lora += n
    return {"total": total, "embedding": emb, "lora": lora, "matmul": total - emb - lora}


def padding_fraction(real_tokens: int, processed_tokens: int) -> float:
    """Share of the processed (padded) tokens that are padding."""
    return 1.0 - real_tokens / processed_tokens if processed_tokens else float("nan")


# -------------------------------------------------------------------------------- machine


def cpu_info() -> dict:
    info = {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, val = line.partition(":")
            if key.strip() in ("Model name", "CPU family", "Model"):
                info[key.strip().lower().replace(" ", "_")] = val.strip()
            if key.strip() == "Flags":
                flags = set(val.split())
                info["flags"] = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma")))
    except (OSError, subprocess.CalledProcessError):
        pass
    info["loadavg"] = os.getloadavg()
    return info


def bf16_supported() -> bool:
    flags = set(cpu_info().get("flags", []))
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def time_matmul(m: int, k: int, n: int, dtype: torch.dtype, repeats: int, min_s: float = 0.2,
                device: str = "cpu") -> list[float]:
    """FLOP/s of ``[m,k] @ [k,n]`` per repeat (each repeat loops until ``min_s`` has passed)."""
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if a.is_cuda else (lambda: None)
    for _ in range(3):
        torch.mm(a, b)
    sync()
    flops = 2.0 * m * k * n
    out = []
    for _ in range(repeats):
        iters, t0 = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            iters += 1
            sync()
            dt = time.perf_counter() - t0
            if dt >= min_s:
                break
        out.append(flops * iters / dt)
    return out


def measure(sizes: list[int], repeats: int) -> dict:
    dtypes = [torch.float32] + ([torch.bfloat16] if bf16_supported() else [])
    result: dict = {"machine": cpu_info(), "square": {}, "model_shapes": {}}
    # The model's GEMMs: (tokens, hidden) x (hidden, out) for SmolLM2-135M (d=576, kv=192, ffn=1536).
    shapes = {"T2048 x 576 -> 1536 (mlp up)": (2048, 576, 1536), "T2048 x 1536 -> 576 (mlp down)": (2048, 1536, 576),
              "T2048 x 576 -> 576 (q/o proj)": (2048, 576, 576), "T2048 x 576 -> 192 (k/v proj)": (2048, 576, 192)}
    for dt in dtypes:
        name = str(dt).replace("torch.", "")
        result["square"][name] = {}
        for s in sizes:
            r = time_matmul(s, s, s, dt, repeats)
            result["square"][name][str(s)] = {"best": max(r), "median": statistics.median(r)}
        result["model_shapes"][name] = {}
        for label, (m, k, n) in shapes.items():
            r = time_matmul(m, k, n, dt, repeats)
            result["model_shapes"][name][label] = {"best": max(r), "median": statistics.median(r)}
        result[f"peak_{name}"] = max(v["best"] for v in result["square"][name].values())
    result["machine"]["loadavg_after"] = os.getloadavg()
    return result


def load_peak(path: str | Path = "runs/bench/limit.json", dtype: str = "float32") -> float | None:
    p = Path(path)
    if not p.is_file():
        return None
    return float(json.loads(p.read_text())[f"peak_{dtype}"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 3072])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="runs/bench/limit.json")
    args = ap.parse_args()
    res = measure(args.sizes, args.repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    m = res["machine"]
    print(f"CPU: {m.get('model_name')} (family {m.get('cpu_family')} model {m.get('model')}), {m['cores']} cores, "
          f"torch {m['torch']} threads={m['torch_threads']} capability={m['cpu_capability']}")
    print(f"flags: {' '.join(m.get('flags', []))}")
    print(f"load average before {m['loadavg'][0]:.2f}, after {m['loadavg_after'][0]:.2f}")
    for name, by_size in res["square"].items():
        for s, v in by_size.items():
            print(f"  {name:9s} {s}^3 matmul: best {v['best'] / 1e9:7.1f} GFLOP/s  median {v['median'] / 1e9:7.1f}")
        for label, v in res["model_shapes"][name].items():
            print(f"  {name:9s} {label:32s}: best {v['best'] / 1e9:7.1f} GFLOP/s  median {v['median'] / 1e9:7.1f}")
        print(f"PEAK {name}: {res[f'peak_{name}'] / 1e9:.1f} GFLOP/s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
