"""Reward-model benchmark: perlhf rm against TRL's RewardTrainer, LoRA and full, one run.

    /work/bench-venv/bin/python benchmarks/bench_rm.py run    [--steps 3] [--warmup 1] [--reps 2] [--threads 1] [--out runs/bench/rm-1t]
    /work/bench-venv/bin/python benchmarks/bench_rm.py report [--out runs/bench/rm]
    python benchmarks/bench_rm.py padding                     # whole-epoch padding: perlhf bucketing vs random batches

Four variants, each in a fresh process (so its peak memory is its own), in alternating
order (rep 0: A B C D, rep 1: D C B A, ...) so that both libraries see the same machine load:

* ``perlhf-lora``  perlhf's Python API (``train_reward_model``), LoRA r=8, alpha 16, on q,k,v,o;
* ``perlhf-full``  the same, every weight trained;
* ``trl-lora``     TRL ``RewardTrainer`` + peft ``LoraConfig`` of the same shape (r=8, alpha 16,
                   dropout 0, q/k/v/o, the score head trained: task_type SEQ_CLS);
* ``trl-full``     ``RewardTrainer`` on the whole ``AutoModelForSequenceClassification``.

Same for all: model smollm2-135m (float32), HH-RLHF harmless dev pairs (perlhf's train split),
8 pairs per step (16 sequences, chosen + rejected in one forward), sequences of at most
256 tokens: both libraries get *the same token ids* (perlhf's encoding: prompt left-truncated
to 192 tokens, response capped at 64 tokens including the end-of-turn), constant learning
rate (5e-4 LoRA, 5e-5 full), AdamW, no weight decay, grad-norm clip 1.0, no gradient
checkpointing, float32 (TRL's defaults turn gradient checkpointing and bf16 autocast on; they
are turned off so that both sides compute the same thing). Each library batches as it
does by default: perlhf buckets by length, TRL samples at random.

Per run: median seconds per step after ``--warmup`` steps (TRL: on_step_begin -> on_step_end,
perlhf: its own ``step_s``, both = collate + forward + backward + clip + optimizer step),
examples/s, real and padded tokens, peak RSS (VmHWM reset at the start of the window:
model construction + training; also the window's increase over the RSS at its start), achieved
FLOP/s (bench_limit.train_flops over real tokens) against the matmul peak measured in the same
process just before training, and pairwise accuracy on perlhf's hh-harmless test split after training.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

VARIANTS = ["perlhf-lora", "trl-lora", "perlhf-full", "trl-full"]
# perlhf with --gradient-checkpointing (not in the default set; `run --variants perlhf-lora-gc perlhf-full-gc`)
GC_VARIANTS = ["perlhf-lora-gc", "perlhf-full-gc"]
LR = {"lora": 5e-4, "full": 5e-5}
MAX_PROMPT, MAX_RESPONSE, MAX_LEN = 192, 64, 256
MAX_EVAL = 32  # seeded subsets of validation and test (perlhf --max-eval-examples; the same pairs for TRL)
# The offline default; PERLHF_BENCH_MODEL names another folder (e.g. bench_gpu.sh's random-initialised copy of
# smollm2-135m's architecture on a machine without the GGUF: cost figures do not depend on the weights).
MODEL = os.environ.get("PERLHF_BENCH_MODEL", "smollm2-135m")
# no | bf16 (autocast, fp32 master weights, both libraries), set by `run --mixed-precision` for every variant
MIXED = os.environ.get("PERLHF_BENCH_MIXED", "no")
BATCH = int(os.environ.get("PERLHF_BENCH_BATCH", "8"))


# ----------------------------------------------------------------------------------- memory
def _status_kib(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def on_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def sync() -> None:
    if on_cuda():
        import torch

        torch.cuda.synchronize()


class HWM:
    """Peak memory of this process over a window. CPU: the kernel's VmHWM (peak RSS), reset at
    the start (``echo 5 > /proc/self/clear_refs``), so no sampling thread competes with training.
    CUDA: the caching allocator's peak of allocated bytes (``max_memory_allocated``), reset at the
    start; exact, unlike RSS (see RESULTS.md, "Where CPU memory goes")."""

    def __enter__(self):
        import torch

        self.kind = "cuda_allocated" if on_cuda() else "rss"
        if self.kind == "cuda_allocated":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start_rss = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.start_rss = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        import torch

        if self.kind == "cuda_allocated":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.peak = _status_kib("VmHWM") * 1024
        self.delta = self.peak - self.start_rss


# ----------------------------------------------------------------------------------- data
def encoded_splits(data_dir: str):
    """perlhf's own train/test encoding of hh-harmless (the token ids both libraries get)."""
    from perlhf.models import load_tokenizer
    from perlhf.train.reward import RewardConfig, encode_split, load_splits

    cfg = RewardConfig(task="hh-harmless", data_dir=data_dir, max_prompt_tokens=MAX_PROMPT,
                       max_response_tokens=MAX_RESPONSE, max_eval_examples=MAX_EVAL, seed=0)
    kind, records = load_splits(cfg)
    tok = load_tokenizer(MODEL)
    return tok, {name: encode_split(name, kind, recs, tok, cfg) for name, recs in records.items()}


def model_counts() -> dict:
    """Parameters of the backbone: total, embedding, matmul (non-embedding), from the config."""
    import torch
    from bench_limit import matmul_params
    from transformers import AutoConfig, AutoModel

    from perlhf.models import resolve_model

    cfg = AutoConfig.from_pretrained(resolve_model(MODEL).path)
    with torch.device("meta"):
        m = AutoModel.from_config(cfg)
    return matmul_params(m)


def lora_param_count() -> int:
    """Parameters of a LoRA r=8 on q,k,v,o of the backbone (computed on the meta device)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModel

    from perlhf.models import resolve_model

    cfg = AutoConfig.from_pretrained(resolve_model(MODEL).path)
    with torch.device("meta"):
        m = get_peft_model(AutoModel.from_config(cfg), LoraConfig(r=8, lora_alpha=16, target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj"]))
    return sum(p.numel() for n, p in m.named_parameters() if "lora_" in n)


def quick_peak(seconds: float = 2.0) -> float:
    """Matmul FLOP/s right now, to set this run's achieved FLOP/s against the machine as it is at
    that moment (the 2 cores are shared): 2048^3 on CPU, 8192^3 on CUDA, in the training's matmul
    dtype (bf16 under --mixed-precision bf16, else fp32; no TF32)."""
    import torch
    from bench_limit import time_matmul

    dtype = torch.bfloat16 if MIXED == "bf16" else torch.float32
    if on_cuda():
        return max(time_matmul(8192, 8192, 8192, dtype, repeats=3, min_s=0.25, device="cuda"))
    return max(time_matmul(2048, 2048, 2048, dtype, repeats=max(1, int(seconds / 0.25)), min_s=0.25))


# ----------------------------------------------------------------------------------- one run
def run_perlhf(mode: str, steps: int, warmup: int, data_dir: str, out: Path, seed: int,
               gradient_checkpointing: bool = False) -> dict:
    from perlhf.train.reward import RewardConfig, train_reward_model

    cfg = RewardConfig(task="hh-harmless", data_dir=data_dir, model=MODEL, mode=mode, lora_rank=8,
                       learning_rate=LR[mode], batch_size=BATCH, max_steps=steps, eval_every=steps,
                       max_prompt_tokens=MAX_PROMPT, max_response_tokens=MAX_RESPONSE, eval_batch_size=16,
                       eval_untrained=False, report_to="none", progress=False, output_dir=str(out),
                       overwrite=True, seed=seed, max_eval_examples=MAX_EVAL,
                       gradient_checkpointing=gradient_checkpointing, mixed_precision=MIXED)
    with HWM() as mem:
        summary = train_reward_model(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train"]
    times = [r["step_s"] for r in train]
    timed = train[warmup:]
    return {"step_times": times, "max_width": max(r["padded_tokens"] // (2 * BATCH) for r in train),
            "real_tokens": sum(r["real_tokens"] for r in timed),
            "padded_tokens": sum(r["padded_tokens"] for r in timed), "timed_seconds": sum(r["step_s"] for r in timed),
            "timed_steps": len(timed), "test_accuracy": summary["test"]["accuracy"], "test_n": summary["test"]["n"],
            "peak_rss": mem.peak, "peak_rss_delta": mem.delta, "memory_kind": mem.kind,
            "perlhf_cost": summary["cost"],
            "trainable_params": summary["params"]["trainable"]}


def run_trl(mode: str, steps: int, warmup: int, data_dir: str, out: Path, tok, splits, seed: int) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainerCallback
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from perlhf.models import resolve_model
    from perlhf.train.batching import eval_batches

    train = splits["train"]
    ds = Dataset.from_dict({"chosen_ids": train.first, "rejected_ids": train.second})
    args = TRLRewardConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH,
                           gradient_accumulation_steps=1, learning_rate=LR[mode], lr_scheduler_type="constant",
                           warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, logging_steps=steps,
                           save_strategy="no", eval_strategy="no", report_to="none", bf16=MIXED == "bf16",
                           gradient_checkpointing=False, max_length=MAX_LEN, seed=seed, data_seed=seed,
                           use_cpu=not on_cuda(),
                           dataloader_num_workers=0, disable_tqdm=True)

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.t0 = [], None

        def on_step_begin(self, *a, **k):
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync()
            self.times.append(time.perf_counter() - self.t0)

    clock = Clock()
    counts = []  # per training forward: (real, padded)

    def hook(module, args, kwargs):
        if module.training:
            m = kwargs["attention_mask"]
            counts.append((int(m.sum()), int(m.numel())))

    peft_config = None
    if mode == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="SEQ_CLS",
                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    with HWM() as mem:
        model = AutoModelForSequenceClassification.from_pretrained(resolve_model(MODEL).path, num_labels=1,
                                                                   dtype=torch.float32)
        model.config.pad_token_id = tok.pad_token_id
        trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                                peft_config=peft_config, callbacks=[clock])
        trainer.model.register_forward_pre_hook(hook, with_kwargs=True)
        trainer.train()
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    # Held-out accuracy on the same test pairs, scored in eval mode, batches sorted by length.
    model = trainer.model.eval()
    device = next(model.parameters()).device
    test = splits["test"]
    n = len(test)
    scores = [0.0] * (2 * n)
    with torch.inference_mode():
        for idx in eval_batches(test.lengths, 16):
            b = test.batch(idx, tok.pad_token_id).to(device)
            s = model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False).logits.squeeze(-1)
            for j, i in enumerate(idx):
                scores[i], scores[n + i] = float(s[j]), float(s[len(idx) + j])
    acc = sum(scores[i] > scores[n + i] for i in range(n)) / n
    timed = counts[warmup:steps]
    times = clock.times
    return {"step_times": times, "max_width": max(c[1] // (2 * BATCH) for c in counts[:steps]),
            "real_tokens": sum(c[0] for c in timed), "padded_tokens": sum(c[1] for c in timed),
            "timed_seconds": sum(times[warmup:]), "timed_steps": len(times[warmup:]), "test_accuracy": acc,
            "test_n": n, "peak_rss": mem.peak, "peak_rss_delta": mem.delta, "memory_kind": mem.kind,
            "trainable_params": trainable}


def one(variant: str, rep: int, steps: int, warmup: int, data_dir: str, out: Path) -> None:
    import torch

    lib, mode = variant.split("-")[:2]
    tok, splits = encoded_splits(data_dir)
    counts = model_counts()
    n_lora = lora_param_count() if mode == "lora" else 0
    load0 = os.getloadavg()[0]
    peak_now = quick_peak()
    run_dir = out / f"{variant}-rep{rep}"
    if lib == "perlhf":
        res = run_perlhf(mode, steps, warmup, data_dir, run_dir, seed=rep,
                         gradient_checkpointing=variant.endswith("-gc"))
    else:
        res = run_trl(mode, steps, warmup, data_dir, run_dir, tok, splits, seed=rep)
    from bench_limit import train_flops

    flops = train_flops(mode, counts["matmul"], res["real_tokens"], n_lora)
    res.update({
        "variant": variant, "rep": rep, "steps": steps, "warmup": warmup, "batch_pairs": BATCH,
        "median_step_s": statistics.median(res["step_times"][warmup:]),
        "examples_per_s": BATCH * res["timed_steps"] / res["timed_seconds"],
        "padding_fraction": 1 - res["real_tokens"] / res["padded_tokens"],
        "achieved_flops": flops / res["timed_seconds"], "matmul_peak_now": peak_now,
        "params": counts, "n_lora": n_lora, "torch_threads": torch.get_num_threads(),
        "loadavg_start": load0, "loadavg_end": os.getloadavg()[0],
        "process_peak_rss": _status_kib("VmHWM") * 1024, "mixed_precision": MIXED, "model": MODEL,
        "device": torch.cuda.get_device_name() if on_cuda() else "cpu",
    })
    (out / f"{variant}-rep{rep}.json").write_text(json.dumps(res, indent=1))
    print(f"{variant} rep{rep}: {res['median_step_s']:.2f} s/step, {res['examples_per_s']:.2f} ex/s, "
          f"peak {res['peak_rss'] / 2**20:.0f} MiB (+{res['peak_rss_delta'] / 2**20:.0f}), pad "
          f"{res['padding_fraction']:.1%}, {res['achieved_flops'] / 1e9:.1f} GFLOP/s "
          f"({res['achieved_flops'] / peak_now:.0%} of {peak_now / 1e9:.0f}), acc {res['test_accuracy']:.3f} "
          f"load {load0:.1f}->{res['loadavg_end']:.1f}", flush=True)


# ----------------------------------------------------------------------------------- driver + report
def run_all(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    order = list(args.variants)
    for rep in range(args.reps):
        seq = order if rep % 2 == 0 else order[::-1]
        for v in seq:
            if (out / f"{v}-rep{rep}.json").is_file() and not args.overwrite:
                print(f"{v} rep{rep}: done, skipped")
                continue
            cmd = [sys.executable, __file__, "one", "--variant", v, "--rep", str(rep), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--data-dir", args.data_dir, "--out", str(out)]
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                   "TRANSFORMERS_VERBOSITY": "error", "PERLHF_BENCH_MIXED": args.mixed_precision,
                   "PERLHF_BENCH_BATCH": str(args.batch)}
            if args.threads:
                env["OMP_NUM_THREADS"] = str(args.threads)
            if subprocess.run(cmd, env=env).returncode:
                print(f"{v} rep{rep}: FAILED", flush=True)
    report(args)


def _load(out: Path) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = {}
    for p in sorted(out.glob("*-rep*.json")):
        r = json.loads(p.read_text())
        by.setdefault(r["variant"], []).append(r)
    return by


def describe_runs(by: dict[str, list[dict]]) -> str:
    """How the runs' memory was measured, on which devices, at which precision (for a report)."""
    def values(key: str, default: str) -> list[str]:
        return sorted({r.get(key, default) for rs in by.values() for r in rs})

    names = {"rss": "peak RSS (VmHWM)", "cuda_allocated": "CUDA max_memory_allocated"}
    return (f"memory: {', '.join(names[k] for k in values('memory_kind', 'rss'))}; devices: "
            f"{', '.join(values('device', 'cpu'))}; mixed precision: {', '.join(values('mixed_precision', 'no'))}")


def report(args) -> None:
    from bench_limit import load_peak

    out = Path(args.out)
    by = _load(out)
    mixed = {r.get("mixed_precision", "no") for rs in by.values() for r in rs}
    on_gpu = any(r.get("device", "cpu") != "cpu" for rs in by.values() for r in rs)
    peak = None if on_gpu else load_peak(args.limit, "bfloat16" if mixed == {"bf16"} else "float32")
    med = {}
    print("\n| variant | reps | s/step (median) | examples/s | peak RSS MiB | RSS increase MiB | padding | "
          "real / padded tokens per timed step | widest batch | GFLOP/s (real tokens) | % of matmul peak now | "
          "% of machine peak | test acc | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for v in VARIANTS + GC_VARIANTS:
        rs = by.get(v)
        if not rs:
            continue
        m = {k: statistics.median(r[k] for r in rs) for k in (
            "median_step_s", "examples_per_s", "peak_rss", "peak_rss_delta", "padding_fraction", "achieved_flops",
            "test_accuracy", "loadavg_start")}
        m["real_step"] = statistics.median(r["real_tokens"] / r["timed_steps"] for r in rs)
        m["padded_step"] = statistics.median(r["padded_tokens"] / r["timed_steps"] for r in rs)
        m["max_width"] = max(r["max_width"] for r in rs)
        m["pct_now"] = statistics.median(r["achieved_flops"] / r["matmul_peak_now"] for r in rs)
        med[v] = m
        pct_machine = f"{m['achieved_flops'] / peak:.0%}" if peak else "n/a"
        print(f"| {v} | {len(rs)} | {m['median_step_s']:.2f} | {m['examples_per_s']:.2f} | {m['peak_rss'] / 2**20:.0f} | "
              f"{m['peak_rss_delta'] / 2**20:.0f} | {m['padding_fraction']:.1%} | {m['real_step']:.0f} / {m['padded_step']:.0f} | "
              f"{m['max_width']:.0f} | {m['achieved_flops'] / 1e9:.1f} | "
              f"{m['pct_now']:.0%} | {pct_machine} | {m['test_accuracy']:.3f} (n={rs[0]['test_n']}) | "
              f"{m['loadavg_start']:.1f} |")
    print("\n" + describe_runs(by))
    if peak:
        print(f"\nmachine {'bf16' if mixed == {'bf16'} else 'fp32'} matmul peak (bench_limit.py, {args.limit}): "
              f"{peak / 1e9:.1f} GFLOP/s")

    def ratio(a, b, key, inv=False):
        if a in med and b in med:
            x = med[b][key] / med[a][key] if inv else med[a][key] / med[b][key]
            return f"{x:.2f}"
        return "n/a"

    print("\nratios (medians):")
    print(f"  perlhf-lora / trl-lora throughput (examples/s): {ratio('perlhf-lora', 'trl-lora', 'examples_per_s')}")
    print(f"  perlhf-lora / trl-lora peak RSS:                {ratio('perlhf-lora', 'trl-lora', 'peak_rss')}")
    print(f"  perlhf-lora / trl-lora RSS increase:            {ratio('perlhf-lora', 'trl-lora', 'peak_rss_delta')}")
    print(f"  perlhf-full / trl-full throughput:              {ratio('perlhf-full', 'trl-full', 'examples_per_s')}")
    print(f"  perlhf lora / full peak RSS:                    {ratio('perlhf-lora', 'perlhf-full', 'peak_rss')}")
    print(f"  perlhf lora / full RSS increase:                {ratio('perlhf-lora', 'perlhf-full', 'peak_rss_delta')}")
    print(f"  perlhf lora vs full speed-up (s/step):          {ratio('perlhf-lora', 'perlhf-full', 'median_step_s', inv=True)}")
    print(f"  perlhf lora-gc / full-gc peak RSS:              {ratio('perlhf-lora-gc', 'perlhf-full-gc', 'peak_rss')}")
    print(f"  perlhf lora-gc / full (no gc) peak RSS:         {ratio('perlhf-lora-gc', 'perlhf-full', 'peak_rss')}")
    print(f"  perlhf lora-gc vs full-gc speed-up (s/step):    {ratio('perlhf-lora-gc', 'perlhf-full-gc', 'median_step_s', inv=True)}")
    print(f"  trl lora / full peak RSS:                       {ratio('trl-lora', 'trl-full', 'peak_rss')}")
    print(f"  trl lora / full RSS increase:                   {ratio('trl-lora', 'trl-full', 'peak_rss_delta')}")
    print(f"  trl lora vs full speed-up (s/step):             {ratio('trl-lora', 'trl-full', 'median_step_s', inv=True)}")
    # Per-rep pairing (same rep = neighbouring in time) for the LoRA throughput ratio.
    pairs = [(a, b) for a in by.get("perlhf-lora", []) for b in by.get("trl-lora", []) if a["rep"] == b["rep"]]
    if pairs:
        print("  per rep perlhf-lora/trl-lora examples/s: "
              + ", ".join(f"rep{a['rep']} {a['examples_per_s'] / b['examples_per_s']:.2f}" for a, b in pairs))


def padding(args) -> None:
    """Padding over whole epochs of the train split, 8 pairs per batch (16 sequences padded to the
    longest): perlhf's length-bucketed schedule against uniformly random batches (TRL's default
    RandomSampler + DataCollatorForPreference). No model needed: this is what each library's
    batching makes the model process, on average, over an epoch."""
    import random

    from perlhf.train.batching import bucketed_batches

    _, splits = encoded_splits(args.data_dir)
    tr = splits["train"]
    seq_len = [(len(a), len(b)) for a, b in zip(tr.first, tr.second, strict=True)]
    width = [max(a, b) for a, b in seq_len]
    real_all = [a + b for a, b in seq_len]

    def stats(batches):
        real = sum(real_all[i] for b in batches for i in b)
        padded = sum(2 * BATCH * max(width[i] for i in b) for b in batches)
        return real, padded

    print(f"train split: {len(tr)} pairs, pair width (max of chosen/rejected) mean {statistics.mean(width):.1f}, "
          f"max {max(width)}; {len(tr) // BATCH} batches of {BATCH} pairs per epoch")
    print("| batching | seeds | padding fraction | padded tokens / batch | real tokens / batch |")
    print("|---|---|---|---|---|")
    for name in ("perlhf (bucket window 32 batches)", "random (TRL default)"):
        tot_r = tot_p = nb = 0
        for seed in range(5):
            if name.startswith("perlhf"):
                batches = bucketed_batches(width, BATCH, seed, 0, 32)
            else:
                order = list(range(len(tr)))
                random.Random(seed).shuffle(order)
                batches = [order[i:i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
            r, p = stats(batches)
            tot_r, tot_p, nb = tot_r + r, tot_p + p, nb + len(batches)
        print(f"| {name} | 0-4 | {1 - tot_r / tot_p:.1%} | {tot_p / nb:.0f} | {tot_r / nb:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "report", "one", "padding"):
        p = sub.add_parser(name)
        p.add_argument("--out", default="runs/bench/rm")
        p.add_argument("--limit", default="runs/bench/limit.json", help="bench_limit.py's JSON (machine peak)")
        p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
        p.add_argument("--steps", type=int, default=3)
        p.add_argument("--warmup", type=int, default=1)
        if name == "run":
            p.add_argument("--reps", type=int, default=2)
            p.add_argument("--mixed-precision", default="no", choices=["no", "bf16"],
                           help="bf16: autocast in both libraries (perlhf --mixed-precision bf16, TRL bf16=True)")
            p.add_argument("--batch", type=int, default=8, help="pairs per step")
            p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS + GC_VARIANTS)
            p.add_argument("--overwrite", action="store_true", help="rerun variants whose JSON exists")
            p.add_argument("--threads", type=int, default=0,
                           help="OMP_NUM_THREADS for every variant (0: torch's default = cores). On a shared, "
                           "oversubscribed CPU, 1 avoids OpenMP threads spinning at barriers while their peer is "
                           "descheduled")
        if name == "one":
            p.add_argument("--variant", required=True, choices=VARIANTS + GC_VARIANTS)
            p.add_argument("--rep", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "run":
        run_all(args)
    elif args.cmd == "report":
        report(args)
    elif args.cmd == "padding":
        padding(args)
    else:
        one(args.variant, args.rep, args.steps, args.warmup, args.data_dir, Path(args.out))


if __name__ == "__main__":
    main()
