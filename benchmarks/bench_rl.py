"""RL benchmark: perlhf rl against TRL's RLOOTrainer, LoRA and full, one run.

    /work/bench-venv/bin/python benchmarks/bench_rl.py run    [--steps 3] [--warmup 1] [--reps 1] [--threads 1] [--out runs/bench/rl]
                                                              [--reward-model runs/bench/rm/perlhf-lora-rep0/final]
    /work/bench-venv/bin/python benchmarks/bench_rl.py report [--out runs/bench/rl]

Four variants, each in a fresh process, alternating order between repetitions:

* ``perlhf-lora``  ``perlhf rl --mode lora --baseline rloo`` (Python API ``run_rl``): policy = LoRA r=8
                   (alpha 16, q/k/v/o) on the one frozen backbone, anchor = the same backbone with
                   the adapter off, the LoRA reward model (a ``perlhf rm`` folder trained on the same
                   base) attached to the same backbone;
* ``perlhf-full``  ``--mode full``: separate policy, anchor and (merged) reward models;
* ``trl-lora``     ``RLOOTrainer`` + peft ``LoraConfig`` of the same shape (reference = adapter disabled);
                   the reward is the same perlhf reward model, merged, as a separate model, called
                   through a reward function that scores the same text the same way
                   (``perlhf.train.reward.score_texts``);
* ``trl-full``     ``RLOOTrainer`` on the whole model (TRL loads a second copy as reference).

Same for all: policy smollm2-135m (float32), prompts from hh-harmless train contexts (a fixed
pool of ``--max-prompts``, prompt cut to ``MAX_PROMPT`` tokens by perlhf's encoder; TRL gets the
same prompts as text), 4 prompts x 2 samples = 8 episodes per step, at most 32 new tokens,
temperature 0.7, no top-k/top-p, KL on (beta 0.05), one optimizer step per batch, no gradient
checkpointing, fp32. Timing: median seconds per step after ``--warmup`` (each step = sampling +
reward + reference log-probs + learning); peak RSS = VmHWM reset at the start of the window
(model loading + training).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_rm import HWM, MIXED, MODEL, _status_kib, describe_runs, on_cuda, sync  # noqa: E402

VARIANTS = ["perlhf-lora", "trl-lora", "perlhf-full", "trl-full"]
# perlhf only, not in the default set: LoRA sampling through peft's unmerged path (no folding), and
# --gradient-checkpointing in the learning phase
EXTRA = ["perlhf-lora-nofold", "perlhf-lora-gc", "perlhf-full-gc"]
PROMPTS_PER_STEP, SAMPLES, MAX_NEW, MAX_PROMPT = 4, 2, 32, 128
BETA, TEMPERATURE = 0.05, 0.7
LR = {"lora": 1e-4, "full": 2e-6}
MAX_PROMPTS = 64


def rl_prompts(data_dir: str, seed: int = 0):
    """perlhf's own RL prompt pool (run_rl's selection and encoding)."""
    import torch

    from perlhf.data import load_task, prompts_of
    from perlhf.models import load_tokenizer
    from perlhf.train.rl import encode_rl_prompts

    tok = load_tokenizer(MODEL, padding_side="left")
    raw = prompts_of(load_task("hh-harmless", data_dir=data_dir), "train")
    g = torch.Generator().manual_seed(seed)
    raw = [raw[i] for i in sorted(torch.randperm(len(raw), generator=g)[:MAX_PROMPTS].tolist())]
    return tok, encode_rl_prompts(tok, raw, MAX_PROMPT)


def run_perlhf(mode: str, steps: int, warmup: int, data_dir: str, reward_model: str, out: Path, *,
               fold: bool = True, gradient_checkpointing: bool = False) -> dict:
    from perlhf.train.rl import RLConfig, run_rl

    cfg = RLConfig(policy=MODEL, reward_model=reward_model, task="hh-harmless", data_dir=data_dir,
                   output_dir=str(out), mode=mode, baseline="rloo", beta=BETA, temperature=TEMPERATURE,
                   max_new_tokens=MAX_NEW, max_prompt_tokens=MAX_PROMPT, samples_per_prompt=SAMPLES,
                   prompts_per_step=PROMPTS_PER_STEP, micro_batch_size=PROMPTS_PER_STEP * SAMPLES,
                   learning_rate=LR[mode], max_steps=steps, max_prompts=MAX_PROMPTS, lora_rank=8,
                   sample_every=0, save_every=0, overwrite=True, seed=0, mixed_precision=MIXED,
                   fold_adapters=fold, gradient_checkpointing=gradient_checkpointing)
    with HWM() as mem:
        summary = run_rl(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("split") == "train"]
    return {"step_times": [r["time_step"] for r in rows],
            "phases": {p: [r[f"time_{p}"] for r in rows] for p in ("sampling", "reward", "anchor", "learning")},
            "response_length": [r["response_length"] for r in rows], "kl": [r["kl"] for r in rows],
            "reward_mean": [r["reward_mean"] for r in rows], "peak_rss": mem.peak, "peak_rss_delta": mem.delta,
            "memory_kind": mem.kind,
            "reward_placement": summary.get("reward_placement"), "trainable": summary.get("trainable_parameters")}


class PerlhfRewardFunc:
    """TRL reward function: the perlhf reward model (merged, separate, inference mode) on the
    same (prompt messages, response text) as perlhf rl scores."""

    def __init__(self, folder: str, prompts):
        import torch

        from perlhf.models.heads import load_reward_model, load_tokenizer_for

        model, info = load_reward_model(folder, dtype=torch.float32)
        if info.mode == "lora":
            model.backbone = model.backbone.merge_and_unload()
        self.model = model.requires_grad_(False).eval().to("cuda" if on_cuda() else "cpu")
        self.tok = load_tokenizer_for(folder, info)
        self.info = info
        self.prompts = prompts
        self.__name__ = "perlhf_rm"

    def __call__(self, prompts, completions, pid, **kwargs):
        from perlhf.train.scoring import score_texts

        items = [(list(self.prompts[i].messages), c) for i, c in zip(pid, completions, strict=True)]
        return score_texts(self.model, self.tok, items, self.info.max_prompt_tokens, self.info.max_response_tokens,
                           batch_size=PROMPTS_PER_STEP * SAMPLES)


def run_trl(mode: str, steps: int, warmup: int, data_dir: str, reward_model: str, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    from perlhf.models import resolve_model

    tok, prompts = rl_prompts(data_dir)
    texts = [tok.decode(list(p.ids), skip_special_tokens=False) for p in prompts]
    ds = Dataset.from_dict({"prompt": texts, "pid": list(range(len(prompts)))})
    args = RLOOConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=PROMPTS_PER_STEP * SAMPLES,
                      gradient_accumulation_steps=1, num_generations=SAMPLES, max_completion_length=MAX_NEW,
                      temperature=TEMPERATURE, top_k=0, top_p=1.0, beta=BETA, num_iterations=1,
                      learning_rate=LR[mode], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                      max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to="none",
                      bf16=MIXED == "bf16", gradient_checkpointing=False, seed=0, use_cpu=not on_cuda(),
                      dataloader_num_workers=0,
                      disable_tqdm=True, log_completions=False)

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.t0, self.logs = [], None, []

        def on_step_begin(self, *a, **k):
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync()
            self.times.append(time.perf_counter() - self.t0)

        def on_log(self, args, state, control, logs=None, **k):
            self.logs.append(dict(logs or {}))

    clock = Clock()
    peft_config = None
    if mode == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    with HWM() as mem:
        model = AutoModelForCausalLM.from_pretrained(resolve_model(MODEL).path, dtype=torch.float32)
        reward = PerlhfRewardFunc(reward_model, prompts)
        trainer = RLOOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok,
                              peft_config=peft_config, callbacks=[clock])
        trainer.train()
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    logs = [x for x in clock.logs if "kl" in x or "reward" in x]
    return {"step_times": clock.times, "peak_rss": mem.peak, "peak_rss_delta": mem.delta, "memory_kind": mem.kind,
            "trainable": trainable,
            "response_length": [x.get("completions/mean_length") for x in logs],
            "kl": [x.get("kl") for x in logs], "reward_mean": [x.get("reward") for x in logs],
            "ref_model_copy": trainer.ref_model is not None}


def one(variant: str, rep: int, steps: int, warmup: int, data_dir: str, reward_model: str, out: Path) -> None:
    lib, mode = variant.split("-")[:2]
    run_dir = out / f"{variant}-rep{rep}"
    load0 = os.getloadavg()[0]
    if lib == "perlhf":
        res = run_perlhf(mode, steps, warmup, data_dir, reward_model, run_dir, fold=not variant.endswith("-nofold"),
                         gradient_checkpointing=variant.endswith("-gc"))
    else:
        res = run_trl(mode, steps, warmup, data_dir, reward_model, run_dir)
    import torch

    res.update({"variant": variant, "rep": rep, "steps": steps, "warmup": warmup,
                "torch_threads": torch.get_num_threads(),
                "median_step_s": statistics.median(res["step_times"][warmup:]),
                "loadavg_start": load0, "loadavg_end": os.getloadavg()[0],
                "process_peak_rss": _status_kib("VmHWM") * 1024, "mixed_precision": MIXED, "model": MODEL,
                "device": torch.cuda.get_device_name() if on_cuda() else "cpu"})
    (out / f"{variant}-rep{rep}.json").write_text(json.dumps(res, indent=1))
    lens = [x for x in res["response_length"] if x is not None]
    print(f"{variant} rep{rep}: {res['median_step_s']:.2f} s/step (steps {[round(t, 1) for t in res['step_times']]}), "
          f"peak {res['peak_rss'] / 2**20:.0f} MiB (+{res['peak_rss_delta'] / 2**20:.0f}), mean response "
          f"{statistics.mean(lens) if lens else float('nan'):.1f} tokens, load {load0:.1f}->{res['loadavg_end']:.1f}",
          flush=True)


def run_all(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (Path(args.reward_model) / "perlhf_reward.json").is_file():
        sys.exit(f"--reward-model {args.reward_model}: not a perlhf rm folder (run bench_rm.py first, or train one "
                 "with `perlhf rm --task hh-harmless --model smollm2-135m`)")
    for rep in range(args.reps):
        seq = list(args.variants) if rep % 2 == 0 else list(args.variants)[::-1]
        for v in seq:
            if (out / f"{v}-rep{rep}.json").is_file() and not args.overwrite:
                print(f"{v} rep{rep}: done, skipped")
                continue
            cmd = [sys.executable, __file__, "one", "--variant", v, "--rep", str(rep), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--data-dir", args.data_dir, "--out", str(out),
                   "--reward-model", args.reward_model]
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                   "TRANSFORMERS_VERBOSITY": "error", "PERLHF_BENCH_MIXED": args.mixed_precision}
            if args.threads:
                env["OMP_NUM_THREADS"] = str(args.threads)
            r = subprocess.run(cmd, env=env)
            if r.returncode:
                print(f"{v} rep{rep}: FAILED (exit {r.returncode})", flush=True)
    report(args)


def report(args) -> None:
    out = Path(args.out)
    by: dict[str, list[dict]] = {}
    for p in sorted(out.glob("*-rep*.json")):
        r = json.loads(p.read_text())
        by.setdefault(r["variant"], []).append(r)
    med = {}
    print("\n" + describe_runs(by))
    print("\n| variant | reps | s/step (median) | peak memory MiB | increase MiB | mean response tokens | load |")
    print("|---|---|---|---|---|---|---|")
    for v in VARIANTS + EXTRA:
        rs = by.get(v)
        if not rs:
            continue
        m = {k: statistics.median(r[k] for r in rs) for k in ("median_step_s", "peak_rss", "peak_rss_delta",
                                                               "loadavg_start")}
        lens = [x for r in rs for x in r["response_length"] if x is not None]
        m["len"] = statistics.mean(lens) if lens else float("nan")
        med[v] = m
        print(f"| {v} | {len(rs)} | {m['median_step_s']:.2f} | {m['peak_rss'] / 2**20:.0f} | "
              f"{m['peak_rss_delta'] / 2**20:.0f} | {m['len']:.1f} | {m['loadavg_start']:.1f} |")
    for v in ("perlhf-lora", "perlhf-full", *EXTRA):
        for r in by.get(v, []):
            ph = {k: statistics.median(x[r["warmup"]:]) for k, x in r.get("phases", {}).items()}
            print(f"  {v} rep{r['rep']} phases (median s): " + ", ".join(f"{k} {x:.2f}" for k, x in ph.items()))

    def ratio(a, b, key):
        return f"{med[a][key] / med[b][key]:.2f}" if a in med and b in med else "n/a"

    print("\nratios (medians):")
    print(f"  perlhf-lora / trl-lora s/step:          {ratio('perlhf-lora', 'trl-lora', 'median_step_s')}")
    print(f"  perlhf-lora / trl-lora peak RSS:        {ratio('perlhf-lora', 'trl-lora', 'peak_rss')}")
    print(f"  perlhf-lora / trl-lora RSS increase:    {ratio('perlhf-lora', 'trl-lora', 'peak_rss_delta')}")
    print(f"  perlhf lora / full peak RSS:            {ratio('perlhf-lora', 'perlhf-full', 'peak_rss')}")
    print(f"  perlhf lora / full RSS increase:        {ratio('perlhf-lora', 'perlhf-full', 'peak_rss_delta')}")
    print(f"  perlhf full / lora s/step (speed-up):   {ratio('perlhf-full', 'perlhf-lora', 'median_step_s')}")
    print(f"  trl lora / full peak RSS:               {ratio('trl-lora', 'trl-full', 'peak_rss')}")
    print(f"  trl full / lora s/step (speed-up):      {ratio('trl-full', 'trl-lora', 'median_step_s')}")
    print(f"  perlhf lora no-fold / fold s/step:      {ratio('perlhf-lora-nofold', 'perlhf-lora', 'median_step_s')}")
    print(f"  perlhf lora-gc / full-gc peak:          {ratio('perlhf-lora-gc', 'perlhf-full-gc', 'peak_rss')}")
    print(f"  perlhf lora-gc / full (no gc) peak:     {ratio('perlhf-lora-gc', 'perlhf-full', 'peak_rss')}")
    print(f"  perlhf full-gc / lora-gc s/step:        {ratio('perlhf-full-gc', 'perlhf-lora-gc', 'median_step_s')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "report", "one"):
        p = sub.add_parser(name)
        p.add_argument("--out", default="runs/bench/rl")
        p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
        p.add_argument("--reward-model", default="runs/bench/rm/perlhf-lora-rep0/final")
        p.add_argument("--steps", type=int, default=3)
        p.add_argument("--warmup", type=int, default=1)
        if name == "run":
            p.add_argument("--reps", type=int, default=1)
            p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS + EXTRA)
            p.add_argument("--mixed-precision", default="no", choices=["no", "bf16"],
                           help="bf16: autocast in both libraries (perlhf --mixed-precision bf16, TRL bf16=True)")
            p.add_argument("--overwrite", action="store_true")
            p.add_argument("--threads", type=int, default=0,
                           help="OMP_NUM_THREADS for every variant (0: torch's default). On a shared, oversubscribed "
                           "CPU, 1 avoids OpenMP barrier spinning in the many tiny decode-time GEMMs")
        if name == "one":
            p.add_argument("--variant", required=True, choices=VARIANTS + EXTRA)
            p.add_argument("--rep", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "run":
        run_all(args)
    elif args.cmd == "report":
        report(args)
    else:
        one(args.variant, args.rep, args.steps, args.warmup, args.data_dir, args.reward_model, Path(args.out))


if __name__ == "__main__":
    main()
