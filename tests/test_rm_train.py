"""`perlhf rm` end to end on a tiny random Llama with the SmolLM2 tokenizer and tiny JSONL tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from perlhf.errors import UserError
from perlhf.runs import NonFiniteError
from perlhf.train import reward
from perlhf.train.reward import RewardConfig, train_reward_model

REPO = Path(__file__).resolve().parents[1]


def _cfg(env: Path, out: Path, **kw) -> RewardConfig:
    base = dict(task="jsonl", path=str(env / "pairs.jsonl"), model=str(env / "tiny"), batch_size=8,
                max_steps=6, eval_every=3, learning_rate=1e-3, output_dir=str(out), progress=False,
                report_to="none", max_prompt_tokens=32, max_response_tokens=16)
    base.update(kw)
    return RewardConfig(**base)


def _final_tensors(run: Path) -> dict[str, torch.Tensor]:
    final = run / "final"
    out = {f"head.{k}": v for k, v in load_file(str(final / "head.safetensors")).items()}
    weights = final / "adapter_model.safetensors"
    if not weights.is_file():
        weights = final / "model.safetensors"
    out.update(load_file(str(weights)))
    return out


@pytest.fixture
def built(monkeypatch) -> dict:
    """Captures the reward model a run builds (``model``) and a copy of its initial weights (``initial``)."""
    captured: dict = {}
    build = reward.build_reward_model

    def spy(cfg):
        model, kind = build(cfg)
        captured["model"] = model
        captured["initial"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return model, kind

    monkeypatch.setattr(reward, "build_reward_model", spy)
    return captured


def test_lora_run_trains_adapter_and_head_only(tiny_env, tmp_path, built):
    summary = train_reward_model(_cfg(tiny_env, tmp_path / "run"))
    model, initial = built["model"], built["initial"]
    changed_adapter = changed_head = 0
    for name, p in model.named_parameters():
        if "lora_" in name:
            changed_adapter += int(not torch.equal(p, initial[name]))
        elif name.startswith("head."):
            changed_head += int(not torch.equal(p, initial[name]))
        else:  # every base weight bit-identical
            assert torch.equal(p, initial[name]), name
            assert not p.requires_grad
    assert changed_adapter > 0 and changed_head >= 1  # the bias gets no gradient from Bradley-Terry
    # the run's outputs
    run = tmp_path / "run"
    assert {"config.yaml", "metrics.jsonl", "summary.json", "final", "best"} <= {p.name for p in run.iterdir()}
    assert summary["params"]["trainable"] < summary["params"]["total"]
    for key in ("median_step_s", "examples_per_s", "real_tokens_per_s", "padded_tokens_per_s",
                "padding_fraction", "peak_memory_bytes"):
        assert summary["cost"][key] is not None and summary["cost"][key] >= 0
    assert summary["test"]["accuracy"] > summary["untrained"]["test"]["accuracy"]
    length = summary["length_baselines"]  # length-only rules beside every result
    assert length["metric"] == "accuracy" and length["n"] == summary["test"]["n"]
    assert length["shorter_wins"] + length["longer_wins"] == pytest.approx(1.0)
    assert length["best"] == max(length["shorter_wins"], length["longer_wins"], length["logistic"])
    se = summary["test"]["accuracy_se"]
    margin = summary["length_margin_se"]
    assert margin == pytest.approx((summary["test"]["accuracy"] - length["best"]) / se) if se else margin != margin
    splits = [json.loads(line)["split"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert splits.count("train") == 6 and splits.count("validation") == 2 and splits[0] == "untrained"


def test_ratings_full_mode_and_score_cli(tiny_env, tmp_path):
    summary = train_reward_model(_cfg(tiny_env, tmp_path / "run", path=str(tiny_env / "ratings.jsonl"),
                                      mode="full", learning_rate=1e-3, gradient_checkpointing=True))
    assert summary["kind"] == "rating" and summary["params"]["trainable_pct"] > 50
    for key in ("accuracy", "auc", "majority_baseline"):
        assert 0 <= summary["test"][key] <= 1
    assert summary["length_baselines"]["metric"] == "auc" and 0 <= summary["length_baselines"]["logistic"] <= 1
    # score texts and pairs with the saved model: same scores as the model in memory would give
    texts = tmp_path / "texts.jsonl"
    texts.write_text(json.dumps({"prompt": "Tell me about stone.", "response": "Sure, stone is nice."}) + "\n"
                     + json.dumps({"prompt": [{"role": "user", "content": "Tell me about music."}],
                                   "chosen": "Sure, music is nice.", "rejected": "Go away."}) + "\n")
    from perlhf.train.rm_cli import _score

    out = tmp_path / "scores.jsonl"
    import argparse

    _score(argparse.Namespace(model_dir=tmp_path / "run" / "final", input=texts, output=out, batch_size=4,
                              trust_remote_code=False))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert isinstance(rows[0]["score"], float)
    assert rows[1]["margin"] == pytest.approx(rows[1]["score_chosen"] - rows[1]["score_rejected"])


def test_lora_with_gradient_checkpointing_moves_adapter(tiny_env, tmp_path):
    train_reward_model(_cfg(tiny_env, tmp_path / "run", gradient_checkpointing=True, max_steps=3))
    lora_b = [v for k, v in _final_tensors(tmp_path / "run").items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)


def test_resume_after_interruption_equals_uninterrupted(tiny_env, tmp_path):
    full = _cfg(tiny_env, tmp_path / "a", max_steps=8, eval_every=2, lora_dropout=0.1)
    train_reward_model(full)
    # "interrupted": stopped after step 4 with a torn checkpoint left behind, then resumed to step 8
    train_reward_model(_cfg(tiny_env, tmp_path / "b", max_steps=4, eval_every=2, lora_dropout=0.1))
    torn = tmp_path / "b" / "checkpoints" / "step-00000006"
    torn.mkdir()
    (torn / "trainable.safetensors").write_bytes(b"garbage")  # no trainer_state.json: incomplete
    sb = train_reward_model(_cfg(tiny_env, tmp_path / "b", max_steps=8, eval_every=2, lora_dropout=0.1,
                                 resume=True))
    # the summary's cost covers both processes: 4 - 2 warm-up steps before the stop, 4 - 2 after it
    assert sb["cost"]["timed_steps"] == 4 and sb["cost"]["peak_memory_bytes"] > 0
    assert sb["cost"]["examples_per_s"] is not None
    a, b = _final_tensors(tmp_path / "a"), _final_tensors(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"], r.get("loss")) for r in ma] == [(r["step"], r["split"], r.get("loss")) for r in mb]


def test_resume_refuses_changed_options(tiny_env, tmp_path):
    train_reward_model(_cfg(tiny_env, tmp_path / "run", max_steps=3))
    with pytest.raises(UserError, match="--learning-rate"):
        train_reward_model(_cfg(tiny_env, tmp_path / "run", max_steps=6, resume=True, learning_rate=1e-2))


def test_existing_output_dir_is_refused(tiny_env, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    with pytest.raises(UserError, match="--overwrite"):
        train_reward_model(_cfg(tiny_env, tmp_path / "run"))


def test_nan_loss_stops_naming_the_step_without_checkpoint(tiny_env, tmp_path, monkeypatch):
    real_loss = reward.reward_loss
    calls = {"n": 0}

    def poisoned(kind, scores, labels=None):
        calls["n"] += 1
        loss = real_loss(kind, scores, labels)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setattr(reward, "reward_loss", poisoned)
    with pytest.raises(NonFiniteError, match="step 4"):
        train_reward_model(_cfg(tiny_env, tmp_path / "run", max_steps=6, eval_every=2))
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step-00000002"]
    for t in load_file(str(tmp_path / "run" / "checkpoints" / "step-00000002" / "trainable.safetensors")).values():
        assert torch.isfinite(t).all()
    assert not (tmp_path / "run" / "final").exists()


def test_empty_split_is_refused(tiny_env, tmp_path):
    rows = [json.loads(x) for x in (tiny_env / "pairs.jsonl").read_text().splitlines()]
    data = tmp_path / "no-test.jsonl"
    data.write_text("".join(json.dumps({**r, "split": "train" if r["split"] == "test" else r["split"]}) + "\n"
                            for r in rows))
    with pytest.raises(UserError, match="test split is empty"):
        train_reward_model(_cfg(tiny_env, tmp_path / "run", path=str(data)))


@pytest.mark.parametrize("bad,match", [(dict(lora_rank=0), "--lora-rank"),
                                       (dict(lora_targets="nope_proj"), "nope_proj.*q_proj"),
                                       (dict(task="no-such-task"), "no-such-task"),
                                       (dict(model="no-such-model"), "no-such-model"),
                                       (dict(batch_size=6, grad_accum=4), "divisible")])
def test_bad_options(tiny_env, tmp_path, bad, match):
    with pytest.raises(UserError, match=match):
        train_reward_model(_cfg(tiny_env, tmp_path / "run", **bad))


def _torchrun_two(port_base: int, module: str, *args: str) -> None:
    """``torchrun --nproc_per_node 2 -m MODULE ARGS`` on CPU (gloo), one OpenMP thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(port_base + os.getpid() % 1000), "-m", module, *args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_processes_match_one_process(tiny_env, tmp_path):
    """torchrun --nproc_per_node 2 (gloo, CPU) at global batch 8 == 1 process with 2 accumulation steps."""
    args = ["rm", "--task", "jsonl", "--path", str(tiny_env / "pairs.jsonl"), "--model", str(tiny_env / "tiny"),
            "--batch-size", "8", "--max-steps", "4", "--eval-every", "2", "--learning-rate", "1e-3",
            "--max-prompt-tokens", "32", "--max-response-tokens", "16", "--progress", "false",
            "--report-to", "none", "--lora-dropout", "0.1"]
    _torchrun_two(29500, "perlhf.train.rm_cli", *args, "--output-dir", str(tmp_path / "two"))
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["num_processes"] == 2
    train_reward_model(_cfg(tiny_env, tmp_path / "one", max_steps=4, eval_every=2, grad_accum=2, lora_dropout=0.1))
    a, b = _final_tensors(tmp_path / "one"), _final_tensors(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_resume_after_kill_9_equals_uninterrupted(tiny_env, tmp_path):
    """SIGKILL a training process once it has written a checkpoint, resume, compare with a clean run."""
    import signal
    import time

    kw = dict(max_steps=12, eval_every=1)
    args = ["rm", "--task", "jsonl", "--path", str(tiny_env / "pairs.jsonl"), "--model", str(tiny_env / "tiny"),
            "--batch-size", "8", "--max-steps", "12", "--eval-every", "1", "--learning-rate", "1e-3",
            "--max-prompt-tokens", "32", "--max-response-tokens", "16", "--progress", "false",
            "--report-to", "none", "--output-dir", str(tmp_path / "killed")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "perlhf.train.rm_cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if ckpts.is_dir() and any((p / "trainer_state.json").is_file() for p in ckpts.iterdir()):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "summary.json").exists()
    train_reward_model(_cfg(tiny_env, tmp_path / "killed", resume=True, **kw))
    train_reward_model(_cfg(tiny_env, tmp_path / "clean", **kw))
    a, b = _final_tensors(tmp_path / "clean"), _final_tensors(tmp_path / "killed")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bf16_mixed_precision_trains_lora_and_keeps_fp32_weights(tiny_env, tmp_path, built):
    summary = train_reward_model(_cfg(tiny_env, tmp_path / "run", mixed_precision="bf16", max_steps=3))
    assert summary["mixed_precision"] == "bf16"
    for name, p in built["model"].named_parameters():
        assert p.dtype == torch.float32, name  # autocast: the weights and the optimizer stay fp32
        if "lora_" not in name and not name.startswith("head."):
            assert torch.equal(p, built["initial"][name]), name
    lora_b = [v for k, v in _final_tensors(tmp_path / "run").items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 and v.dtype == torch.float32 for v in lora_b)
    assert all(isinstance(v, float) and v == v for v in summary["test"].values() if isinstance(v, float))


def test_fp16_on_cpu_is_refused_with_the_option_named(tiny_env, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 autocast is allowed on CUDA")
    with pytest.raises(UserError, match="--mixed-precision fp16"):
        train_reward_model(_cfg(tiny_env, tmp_path / "run", mixed_precision="fp16"))
    assert not (tmp_path / "run").exists()


def test_rl_cli_on_jsonl_prompts_under_torchrun_two_processes_and_resume(tiny_env, tmp_path):
    """`perlhf rl` with the prompts of a user's JSONL file, data-parallel over 2 CPU processes (gloo):
    one run directory (only the main process creates it), every step logged once with both
    processes' episodes, then --resume under torchrun continues from the checkpoint."""
    train_reward_model(_cfg(tiny_env, tmp_path / "rm", max_steps=2, eval_every=2))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = ["rl", "--policy", str(tiny_env / "tiny"), "--reward-model", str(tmp_path / "rm" / "final"),
            "--task", "jsonl", "--path", str(tiny_env / "pairs.jsonl"), "--prompts-per-step", "2",
            "--samples-per-prompt", "2", "--max-new-tokens", "4", "--max-prompt-tokens", "32",
            "--save-every", "2", "--output-dir", str(tmp_path / "rl")]

    def torchrun(*extra: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_port", str(29600 + os.getpid() % 1000), "-m", "perlhf", *args, *extra],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]

    torchrun("--max-steps", "2")
    run = tmp_path / "rl"
    assert json.loads((run / "summary.json").read_text())["reward_placement"] == "shared"
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text())["num_processes"] == 2
    torchrun("--max-steps", "3", "--resume")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(r["episodes"] == 4 for r in train)  # 2 prompts x 2 samples, over both processes


@pytest.mark.parametrize("baseline", ["rloo", "value"])
def test_rl_two_processes_match_one_process(baseline, tiny_env, tmp_path):
    """Issue 12: `perlhf rl` over 2 CPU processes (gloo) at 4 prompts x 2 samples a step samples the
    same episodes and ends with the same policy (and value) as 1 process: each episode's sampling noise
    comes from the step and its global index, and the losses are normalised over the whole batch."""
    from perlhf.cli import main

    train_reward_model(_cfg(tiny_env, tmp_path / "rm", max_steps=2, eval_every=2))
    args = ["rl", "--policy", str(tiny_env / "tiny"), "--reward-model", str(tmp_path / "rm" / "final"),
            "--task", "jsonl", "--path", str(tiny_env / "pairs.jsonl"), "--prompts-per-step", "4",
            "--samples-per-prompt", "2", "--max-new-tokens", "6", "--max-prompt-tokens", "32",
            "--max-steps", "3", "--baseline", baseline, "--temperature", "1.0", "--learning-rate", "1e-2",
            "--progress", "false", "--report-to", "none"]
    _torchrun_two(29700, "perlhf", *args, "--output-dir", str(tmp_path / "two"))
    assert main([*args, "--output-dir", str(tmp_path / "one")]) == 0

    def steps(run: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r for r in rows if r.get("split") == "train"]

    one, two_steps = steps(tmp_path / "one"), steps(tmp_path / "two")
    assert [r["episodes"] for r in two_steps] == [8, 8, 8]
    for a, b in zip(one, two_steps, strict=True):
        for key in ("reward_mean", "kl", "response_length"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), (a["step"], key)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one" / "final").rglob("*.safetensors"))
    assert files
    changed = False
    for rel in files:
        a, b = load_file(str(tmp_path / "one" / rel)), load_file(str(tmp_path / "two" / rel))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=f"{rel}: {k}")
            changed |= "lora_B" in k and bool(a[k].abs().max() > 0)
    assert changed  # the policy learned something: the comparison is not of two untrained adapters


def test_split_by_tokens_respects_the_cap_and_keeps_order():
    from perlhf.train.batching import split_by_tokens

    lengths = [3, 5, 5, 7, 20, 8]
    items = [0, 1, 2, 3, 5, 4]  # sorted by length
    assert split_by_tokens(items, lengths, 2, None) == [items]
    chunks = split_by_tokens(items, lengths, 2, 30)
    assert [i for c in chunks for i in c] == items
    for c in chunks:
        assert len(c) == 1 or 2 * len(c) * max(lengths[i] for i in c) <= 30
    assert chunks[-1] == [4]  # wider than the cap alone: a chunk of its own
    assert chunks == [[0, 1, 2], [3], [5], [4]]


@pytest.mark.parametrize("path", ["pairs.jsonl", "ratings.jsonl"])
def test_micro_batch_tokens_gives_the_same_training(tiny_env, tmp_path, path):
    """Cutting each batch into several forward passes under a token cap changes memory, not the result."""
    runs = {}
    for cap in (None, 48):
        out = tmp_path / f"run-{cap}"
        summary = train_reward_model(_cfg(tiny_env, out, path=str(tiny_env / path), mode="full", max_steps=3,
                                          eval_every=3, micro_batch_tokens=cap))
        runs[cap] = (_final_tensors(out), summary)
    def padded(cap):
        rows = [json.loads(line) for line in (tmp_path / f"run-{cap}" / "metrics.jsonl").read_text().splitlines()]
        return sum(r["padded_tokens"] for r in rows if r["split"] == "train")

    assert padded(48) < padded(None)  # the batches really were cut (narrower passes pad less)
    ref, capped = runs[None][0], runs[48][0]
    assert ref.keys() == capped.keys()
    for k in ref:
        torch.testing.assert_close(capped[k], ref[k], atol=1e-5, rtol=1e-4)
    assert runs[48][1]["test"]["accuracy"] == runs[None][1]["test"]["accuracy"]


def test_untrained_model_is_the_same_in_every_mode(tiny_env, tmp_path):
    """`perlhf demo` scores the untrained model once and shows it for full and LoRA: that needs both modes to
    start from the same function (a head seeded on its own, LoRA's B at zero)."""
    ids = torch.randint(0, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    scores = {}
    for mode in ("full", "lora"):
        model, _ = reward.build_reward_model(_cfg(tiny_env, tmp_path / mode, mode=mode, lora_targets="all-linear"))
        model.eval()
        with torch.no_grad():
            scores[mode] = model(ids, mask)
    assert scores["full"].abs().max() > 0
    torch.testing.assert_close(scores["lora"], scores["full"], rtol=1e-5, atol=1e-6)
    other, _ = reward.build_reward_model(_cfg(tiny_env, tmp_path / "s1", mode="full", seed=1))
    with torch.no_grad():
        assert not torch.allclose(other.eval()(ids, mask), scores["full"])  # the check can fail: the seed matters


def test_summary_lines_name_each_untrained_figure():
    """The untrained model's accuracy and AUC are named as such, not one bare number after the trained AUC
    (on an 86%-positive task an untrained accuracy of 0.71 beside AUC 0.74 read as 'training gained 0.03')."""
    from perlhf.train.rm_cli import format_summary

    test = {"accuracy": 0.8653, "auc": 0.7408, "auc_se": 0.033}
    s = {"ensemble": None, "selection_metric": "auc", "mode": "full", "task": "taskmaster-coffee", "kind": "rating",
         "test": test, "untrained": {"test": {"accuracy": 0.7077, "auc": 0.5252}}, "majority_baseline": 0.8653,
         "validation_best": 0.7229, "best_step": 100,
         "params": {"trainable": 10, "total": 10, "trainable_pct": 100.0},
         "cost": {"median_step_s": None, "peak_memory_bytes": 2**20, "peak_memory_kind": "cpu_rss_sampled"},
         "final_dir": "out/final"}
    first = format_summary(s).splitlines()[0]
    assert "AUC 0.7408 (untrained accuracy 0.7077, AUC 0.5252; majority baseline 0.8653)" in first
    s["untrained"] = None
    assert "(majority baseline 0.8653)" in format_summary(s).splitlines()[0]
