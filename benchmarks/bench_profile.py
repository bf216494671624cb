"""Where a perlhf reward-model training step spends its time (torch.profiler), by operator class.

    python benchmarks/bench_profile.py --mode full [--batch-pairs 8] [--width 160] [--out runs/bench/profile]
    python benchmarks/bench_profile.py --mode lora --ab 3    # A/B: perlhf's model vs the model TRL trains

``--ab N``: instead of profiling, time N alternating steps of perlhf's reward model and of the
model TRL's RewardTrainer trains (``AutoModelForSequenceClassification`` + the same peft LoRA,
fused AdamW as transformers' default ``adamw_torch_fused``) on the *same* padded batch, in one
process, so that both see the same machine load: the per-token cost at equal shapes.

Builds perlhf's reward model (``perlhf.train.reward.build_reward_model``, smollm2-135m, fp32),
takes one bucketed batch of hh-harmless train pairs whose width is closest to ``--width``
(perlhf's own encoding and collation), runs one warm-up step, then profiles one step
(forward + backward + clip + AdamW step, as ``train_reward_model`` does) and prints the self
CPU time per operator class and the top operators, plus the matmul FLOP/s inside aten::mm/addmm/bmm
(from the profiler's FLOP counter) against the step's 6NT / 4NT count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CLASSES = [
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")),
    ("attention", ("scaled_dot_product", "_flash_attention", "_efficient_attention", "softmax")),
    ("optimizer", ("adam", "_foreach", "lerp", "addcdiv", "addcmul", "sqrt")),
    ("embedding", ("embedding",)),
    ("copies/layout", ("copy_", "contiguous", "clone", "cat", "to_copy", "_to_copy", "transpose", "view", "reshape",
                       "expand", "permute", "slice", "index", "select", "narrow", "unsqueeze", "as_strided")),
]


def classify(name: str) -> str:
    n = name.lower()
    for cls, keys in CLASSES:
        if any(k in n for k in keys):
            return cls
    return "elementwise/other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["lora", "full"], default="full")
    ap.add_argument("--batch-pairs", type=int, default=8)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--out", default="runs/bench/profile")
    ap.add_argument("--ab", type=int, default=0, help="alternating A/B rounds instead of a profile")
    args = ap.parse_args()

    import torch
    from bench_limit import matmul_params, train_flops
    from bench_rm import MAX_PROMPT, MAX_RESPONSE, encoded_splits
    from torch.profiler import ProfilerActivity, profile

    from perlhf.train.batching import bucketed_batches
    from perlhf.train.losses import reward_loss
    from perlhf.train.reward import RewardConfig, build_reward_model

    tok, splits = encoded_splits(args.data_dir)
    train = splits["train"]
    batches = bucketed_batches(train.lengths, args.batch_pairs, 0, 0, 32)
    widths = [max(train.lengths[i] for i in b) for b in batches]
    pick = min(range(len(batches)), key=lambda j: abs(widths[j] - args.width))
    batch = train.batch(batches[pick], tok.pad_token_id)
    cfg = RewardConfig(task="hh-harmless", mode=args.mode, lora_rank=8, max_prompt_tokens=MAX_PROMPT,
                       max_response_tokens=MAX_RESPONSE, gradient_checkpointing=args.gradient_checkpointing,
                       learning_rate=5e-4 if args.mode == "lora" else 5e-5)
    model, _ = build_reward_model(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    def step():
        scores = model(batch.input_ids, batch.attention_mask)
        loss = reward_loss("pair", scores, batch.labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    if args.ab:
        return ab(args, model, step, batch, tok)
    step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=False) as prof:
        step()
    wall = time.perf_counter() - t0
    by_class: dict[str, float] = defaultdict(float)
    mm_flops = 0.0
    mm_time = 0.0
    rows = []
    for ev in prof.key_averages():
        self_s = ev.self_cpu_time_total / 1e6
        by_class[classify(ev.key)] += self_s
        if ev.flops:
            mm_flops += ev.flops
        if classify(ev.key) == "matmul":
            mm_time += self_s
        rows.append((self_s, ev.key, ev.count))
    total = sum(by_class.values())
    counts = matmul_params(model)
    n_lora = counts["lora"]
    flops = train_flops(args.mode, counts["matmul"] - (0 if args.mode == "lora" else 0), batch.real_tokens, n_lora)
    print(f"mode {args.mode}, {batch.input_ids.shape[0]} sequences x {batch.input_ids.shape[1]} tokens "
          f"(real {batch.real_tokens}, padding {1 - batch.real_tokens / batch.padded_tokens:.1%}), torch threads "
          f"{torch.get_num_threads()}, gradient checkpointing {args.gradient_checkpointing}")
    print(f"profiled step wall {wall:.2f} s (profiler overhead included); self CPU total {total:.2f} s")
    for cls, s in sorted(by_class.items(), key=lambda x: -x[1]):
        print(f"  {cls:18s} {s:7.2f} s  {s / total:6.1%}")
    print(f"matmul kernels: profiler FLOPs {mm_flops / 1e9:.1f} GFLOP in {mm_time:.2f} s -> "
          f"{mm_flops / max(mm_time, 1e-9) / 1e9:.1f} GFLOP/s inside matmuls")
    print(f"formula ({'6NT' if args.mode == 'full' else '4NT+6N_lora T'}, real tokens): {flops / 1e9:.1f} GFLOP "
          f"-> {flops / wall / 1e9:.1f} GFLOP/s over the step")
    print("top operators by self CPU time:")
    for s, key, count in sorted(rows, reverse=True)[:15]:
        print(f"  {s:7.3f} s  x{count:<5d} {key}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile-{args.mode}{'-gc' if args.gradient_checkpointing else ''}.json").write_text(json.dumps(
        {"by_class": by_class, "wall": wall, "mm_flops": mm_flops, "mm_time": mm_time, "formula_flops": flops,
         "shape": list(batch.input_ids.shape), "real_tokens": batch.real_tokens,
         "top": sorted(rows, reverse=True)[:30]}, indent=1))


def ab(args, model, perlhf_step, batch, tok) -> None:
    import statistics

    import torch
    from transformers import AutoModelForSequenceClassification

    from perlhf.models import resolve_model

    other = AutoModelForSequenceClassification.from_pretrained(resolve_model("smollm2-135m").path, num_labels=1,
                                                               dtype=torch.float32)
    other.config.pad_token_id = tok.pad_token_id
    if args.mode == "lora":
        from peft import LoraConfig, get_peft_model

        other = get_peft_model(other, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="SEQ_CLS",
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    other.train()
    oparams = [p for p in other.parameters() if p.requires_grad]
    oopt = torch.optim.AdamW(oparams, lr=5e-4 if args.mode == "lora" else 5e-5, weight_decay=0.0, fused=True)

    def trl_step():
        logits = other(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        ch, rj = torch.chunk(logits.squeeze(-1), 2)
        loss = -torch.nn.functional.logsigmoid(ch - rj).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(oparams, 1.0)
        oopt.step()
        oopt.zero_grad(set_to_none=True)

    times = {"perlhf": [], "trl-model": []}
    fns = {"perlhf": perlhf_step, "trl-model": trl_step}
    for fn in fns.values():
        fn()  # warm-up
    for r in range(args.ab):
        for name in (("perlhf", "trl-model") if r % 2 == 0 else ("trl-model", "perlhf")):
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    shape = tuple(batch.input_ids.shape)
    for name, ts in times.items():
        print(f"{name:10s} {args.mode}: median {statistics.median(ts):.2f} s/step over {len(ts)} ({[round(t, 2) for t in ts]}) "
              f"on {shape[0]}x{shape[1]}")
    print(f"perlhf / trl-model time ratio at equal shape: "
          f"{statistics.median(times['perlhf']) / statistics.median(times['trl-model']):.2f}")


if __name__ == "__main__":
    main()
