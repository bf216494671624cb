"""What an ensemble of K LoRA reward models costs to score with, against one reward model and against
K separately loaded reward models: peak memory and time per scored batch (issue 14).

    python benchmarks/bench_ensemble.py runs/ensemble/ensemble/final [--batch-size 16] [--repeats 10] \
        [--output benchmarks/results/ensemble-.../scoring_cost.json]

Each configuration runs in a fresh process (so its peak memory is its own), loads its models, scores
one warm-up batch, then ``--repeats`` timed batches of the same texts: ``--batch-size`` (prompt,
response) pairs from the test split of the ensemble's task.

- ``one``: member 0 alone (``load_reward_model``, peft adapter path);
- ``separate``: the K members, each loaded as its own reward model (K backbones);
- ``ensemble-loop``: one backbone, K adapters, one forward per member (``set_adapter``);
- ``ensemble-batched``: one backbone, the batch repeated K times in one forward, peft choosing each row's
  adapter (per-sample adapter selection, ``adapter_names``).

Memory is the process's peak RSS over the window (loading + scoring) minus the RSS before it (CPU), or
the CUDA allocator's peak. Compare ratios within one run on one machine only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

CONFIGS = ("one", "separate", "ensemble-loop", "ensemble-batched")

CHILD = textwrap.dedent("""
    import json, statistics, sys, time
    from pathlib import Path
    import torch
    from perlhf.measure import PeakMemory
    from perlhf.models.ensemble import EnsembleInfo, load_ensemble
    from perlhf.models.heads import load_reward_model, load_tokenizer_for
    from perlhf.data import load_task
    from perlhf.data.render import encode_prompt, encode_response
    from perlhf.train.batching import collate

    folder, config, batch_size, repeats = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    info, infos = EnsembleInfo.load(folder)
    tok = load_tokenizer_for(folder / info.members[0], infos[0])
    records = load_task(sys.argv[5] or info.task, path=sys.argv[6] or None).split("test")[:batch_size]
    seqs = [list(encode_prompt(tok, r.prompt, info.max_prompt_tokens)[0])
            + list(encode_response(tok, getattr(r, "response", None) or r.chosen, info.max_response_tokens))
            for r in records]
    batch = collate(seqs, int(tok.pad_token_id))
    with PeakMemory("cpu") as mem:
        if config == "one":
            model = load_reward_model(folder / info.members[0])[0]
            score = lambda: model(batch.input_ids, batch.attention_mask)
        elif config == "separate":
            models = [load_reward_model(folder / m)[0] for m in info.members]
            score = lambda: torch.stack([m(batch.input_ids, batch.attention_mask) for m in models])
        else:
            ens = load_ensemble(folder, how=config.removeprefix("ensemble-"))[0]
            score = lambda: ens.member_scores(batch.input_ids, batch.attention_mask)
        times = []
        with torch.inference_mode():
            out = score()
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = score()
                times.append(time.perf_counter() - t0)
            mem.sample()
    print(json.dumps({"config": config, "members": info.size, "batch_size": batch_size,
                      "tokens": int(batch.attention_mask.sum()), "padded_tokens": batch.input_ids.numel(),
                      "median_batch_s": statistics.median(times), "times_s": times,
                      "peak_memory_delta_bytes": mem.delta_bytes, "peak_memory_bytes": mem.peak_bytes,
                      "first_scores": out.reshape(-1, len(seqs))[:, :4].tolist()}))
""")


def cpu_description() -> dict[str, str]:
    import torch

    from perlhf.compare import machine

    return {"cpu": machine(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "threads": str(torch.get_num_threads())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ensemble", type=Path, help="an ensemble folder (final/ of `perlhf rm --ensemble K`)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--task", default="", help="the task whose test texts are scored (default: the ensemble's)")
    ap.add_argument("--path", default="", help="the data file of --task jsonl")
    args = ap.parse_args()
    results = []
    for config in CONFIGS:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(args.ensemble), config, str(args.batch_size),
                               str(args.repeats), args.task, args.path], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"{config}: failed\n{proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{config:17s} {r['median_batch_s'] * 1000:8.1f} ms/batch  peak +{r['peak_memory_delta_bytes'] / 2**20:6.0f} MiB",
              file=sys.stderr)
    one = results[0]
    table = ["| configuration | models in memory | time per batch (ms) | x one RM | peak memory (MiB, over the "
             "process start) | x one RM |", "|---|---|---|---|---|---|"]
    for r in results:
        held = {"one": "1 backbone + 1 adapter", "separate": f"{r['members']} backbones + {r['members']} adapters"}.get(
            r["config"], f"1 backbone + {r['members']} adapters")
        table.append(f"| {r['config']} | {held} | {r['median_batch_s'] * 1000:.1f} | "
                     f"{r['median_batch_s'] / one['median_batch_s']:.2f} | {r['peak_memory_delta_bytes'] / 2**20:.0f} | "
                     f"{r['peak_memory_delta_bytes'] / one['peak_memory_delta_bytes']:.2f} |")
    report = {"ensemble": str(args.ensemble), "machine": cpu_description(), "batch_size": args.batch_size,
              "repeats": args.repeats, "results": results, "table": table,
              "command": "python benchmarks/bench_ensemble.py " + " ".join(sys.argv[1:])}
    print("\n".join(table))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
