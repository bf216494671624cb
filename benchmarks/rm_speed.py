"""Reward-model learning-step speed: full fine-tuning vs LoRA ranks, interleaved in one process.

    python benchmarks/rm_speed.py [--task taskmaster-coffee] [--ranks 8] [--rounds 8] [--batch-size 16]

The paper's RM speed counts the learning step only (forward + backward + optimizer
step). On a shared CPU, back-to-back runs see different background load, so this
script builds every model once and then times one optimizer step of each on the
SAME real batch in turn (the order rotating every round); the first round is
warm-up. Each model's median step time and its speed-up over full tuning come from
the same stretch of wall-clock time, so background load hits them alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="taskmaster-coffee")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--ranks", default="8", help="comma-separated LoRA ranks")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-prompt-tokens", type=int, default=128)
    p.add_argument("--max-response-tokens", type=int, default=32)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--mixed-precision", choices=["no", "bf16"], default="no",
                   help="bf16: autocast the forward pass, as `perlhf rm --mixed-precision bf16` does")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args()

    from perlhf.data import load_task
    from perlhf.models import load_tokenizer
    from perlhf.models.heads import load_backbone
    from perlhf.train.batching import bucketed_batches
    from perlhf.train.losses import reward_loss
    from perlhf.train.reward import RewardConfig, encode_split, make_reward_model

    task = load_task(a.task, data_dir=a.data_dir)
    tok = load_tokenizer(a.model)
    base = dict(task=a.task, model=a.model, max_prompt_tokens=a.max_prompt_tokens,
                max_response_tokens=a.max_response_tokens, gradient_checkpointing=a.gradient_checkpointing)
    cfg0 = RewardConfig(**base)
    train = encode_split("train", task.kind, task.splits["train"][:2000], tok, cfg0)
    batches = [train.batch(b, int(tok.pad_token_id))
               for b in bucketed_batches(train.lengths, a.batch_size, seed=0, epoch=0)[: a.rounds]]

    configs = {"full": RewardConfig(**base, mode="full")}
    for r in (int(x) for x in a.ranks.split(",")):
        configs[f"lora-r{r}"] = RewardConfig(**base, mode="lora", lora_rank=r)
    models, optims = {}, {}
    for name, cfg in configs.items():
        models[name] = make_reward_model(load_backbone(a.model, dtype="float32"), cfg)
        optims[name] = torch.optim.AdamW([q for q in models[name].parameters() if q.requires_grad], lr=cfg.lr)

    times: dict[str, list[float]] = {n: [] for n in models}
    names = list(models)
    for rnd, batch in enumerate(batches):
        order = names[rnd % len(names):] + names[: rnd % len(names)]
        for name in order:
            model, opt = models[name], optims[name]
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.mixed_precision == "bf16"):
                scores = model(batch.input_ids, batch.attention_mask).float()
            loss = reward_loss(task.kind, scores, batch.labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - t0)
        print(f"round {rnd}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names), flush=True)

    med = {n: statistics.median(t[1:]) for n, t in times.items()}
    tokens = statistics.mean(b.padded_tokens for b in batches[1:])
    result = {"task": a.task, "batch_size": a.batch_size, "rounds_timed": len(batches) - 1,
              "mean_padded_tokens_per_batch": tokens, "gradient_checkpointing": a.gradient_checkpointing,
              "mixed_precision": a.mixed_precision, "median_step_s": med, "speedup_vs_full": {n: med["full"] / m for n, m in med.items()}}
    print(json.dumps(result, indent=2))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
