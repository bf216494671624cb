"""Reward-model ensembles (issue 14) on a tiny random Llama: the maths, training K members on one
backbone, scoring with one backbone in memory, RL with each aggregate, and the bad inputs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from perlhf.errors import UserError
from perlhf.models.ensemble import (
    ENSEMBLE_INFO,
    EnsembleInfo,
    aggregate,
    disagreement,
    load_ensemble,
    member_train_records,
    write_ensemble,
)
from perlhf.models.heads import REWARD_INFO, load_reward_model
from perlhf.train.reward import RewardConfig, train_reward_model

K = 3


# ------------------------------------------------------------------------------------ the maths
def test_aggregates_against_hand_computed_values():
    s = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, -2.0]])  # 2 members x 3 items
    assert aggregate(s, "mean").tolist() == [2.0, 0.0, 0.0]
    assert aggregate(s, "min").tolist() == [1.0, 0.0, -2.0]
    assert disagreement(s).tolist() == [1.0, 0.0, 2.0]  # population std over members
    assert aggregate(s, "mean-minus-std", penalty=0.5).tolist() == [1.5, 0.0, -1.0]
    assert aggregate(s[:1], "mean-minus-std").tolist() == s[0].tolist()  # one member: no spread
    with pytest.raises(ValueError, match="unknown ensemble aggregate"):
        aggregate(s, "median")
    with pytest.raises(ValueError, match="members, items"):
        aggregate(s[0], "mean")


def test_member_records_bootstrap_shards_and_all():
    records = [SimpleNamespace(i=i, group=f"conv{i // 2}") for i in range(40)]
    boot = [member_train_records(records, "bootstrap", k, 4, seed=0) for k in range(4)]
    assert all(len(b) == len(records) for b in boot)
    assert all(max(Counter(r.i for r in b).values()) > 1 for b in boot)  # drawn with replacement
    assert len({tuple(r.i for r in b) for b in boot}) == 4  # members differ
    assert [r.i for r in boot[1]] == [r.i for r in member_train_records(records, "bootstrap", 1, 4, seed=0)]
    assert [r.i for r in boot[1]] != [r.i for r in member_train_records(records, "bootstrap", 1, 4, seed=1)]
    shards = [member_train_records(records, "shards", k, 3, seed=0) for k in range(3)]
    ids = [r.i for s in shards for r in s]
    assert sorted(ids) == list(range(40))  # disjoint and complete
    groups = [{r.group for r in s} for s in shards]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])  # by conversation
    assert member_train_records(records, "all", 2, 3, seed=0) == records
    with pytest.raises(ValueError):
        member_train_records(records, "all", 3, 3, seed=0)


# ------------------------------------------------------------------------------------ training
def _cfg(env: Path, out: Path, **kw) -> RewardConfig:
    base = dict(task="jsonl", path=str(env / "pairs.jsonl"), model=str(env / "tiny"), batch_size=8,
                max_steps=4, eval_every=2, learning_rate=1e-3, output_dir=str(out), progress=False,
                report_to="none", max_prompt_tokens=32, max_response_tokens=16, ensemble=K, mixed_precision="no")
    base.update(kw)
    return RewardConfig(**base)


@pytest.fixture(scope="module")
def ensemble_run(tiny_env, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ens") / "run"
    summary = train_reward_model(_cfg(tiny_env, out))
    return out, summary


def test_members_train_and_save_as_standard_adapters(ensemble_run, tiny_env):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, summary = ensemble_run
    final = out / "final"
    info, infos = EnsembleInfo.load(final)
    assert info.members == [f"member-{k}" for k in range(K)] and info.data == "bootstrap"
    assert len({i.base_fingerprint for i in infos}) == 1  # one frozen base: every member on the same weights
    assert [i.extra["ensemble_member"] for i in infos] == list(range(K))
    assert [i.extra["seed"] for i in infos] == list(range(K))
    heads, adapters = set(), set()
    for name in info.members:
        base = AutoModelForCausalLM.from_pretrained(tiny_env / "tiny")
        PeftModel.from_pretrained(base, str(final / name))  # a standard peft adapter folder
        heads.add((final / name / "head.safetensors").read_bytes())
        adapters.add((final / name / "adapter_model.safetensors").read_bytes())
    assert len(heads) == K and len(adapters) == K  # seeds and bootstrap samples differ
    assert summary["ensemble"] == K and len(summary["members"]) == K
    assert set(summary["aggregates"]) == {"mean", "mean-minus-std", "min"}
    assert summary["test"] == summary["aggregates"]["mean"]["test"]
    assert 0 <= summary["best_single_member"]["member"] < K
    assert json.loads((out / "summary.json").read_text())["ensemble"] == K
    for k in range(K):  # each member is an ordinary rm run folder
        assert (out / "members" / f"member-{k}" / "summary.json").is_file()


def test_ensemble_scores_equal_members_scored_one_by_one(ensemble_run):
    from perlhf.train.scoring import score_texts

    out, _ = ensemble_run
    final = out / "final"
    model, info = load_ensemble(final)
    from perlhf.models.heads import load_tokenizer_for

    tok = load_tokenizer_for(final / info.members[0], load_reward_model(final / info.members[0])[1])
    items = [([{"role": "user", "content": f"Tell me about cats {i}."}], "Thank you!" if i % 2 else "No.")
             for i in range(6)]
    one_by_one = torch.tensor([score_texts(load_reward_model(final / n)[0], tok, items, 32, 16) for n in info.members])
    from perlhf.data.render import encode_prompt, encode_response
    from perlhf.train.batching import collate

    seqs = [list(encode_prompt(tok, m, 32)[0]) + list(encode_response(tok, t, 16)) for m, t in items]
    batch = collate(seqs, int(tok.pad_token_id))
    with torch.inference_mode():
        loop = model.member_scores(batch.input_ids, batch.attention_mask, how="loop")
        batched = model.member_scores(batch.input_ids, batch.attention_mask, how="batched")
    torch.testing.assert_close(loop, one_by_one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-5)
    for how in ("mean", "min", "mean-minus-std"):
        model.aggregate, model.penalty = how, 0.7
        with torch.inference_mode():
            got = model(batch.input_ids, batch.attention_mask)
        torch.testing.assert_close(got, aggregate(one_by_one, how, 0.7), atol=1e-5, rtol=1e-5)
    # one backbone in memory: the base weights are held once, whatever K is
    base_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and "heads" not in n)
    single = load_reward_model(final / info.members[0])[0]
    assert base_params == sum(p.numel() for n, p in single.named_parameters() if "lora_" not in n
                              and not n.startswith("head"))


def test_a_given_backbone_comes_back_without_adapters(tiny_env, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from perlhf.models.fingerprint import base_fingerprint

    model = AutoModelForCausalLM.from_pretrained(tiny_env / "tiny")
    before = base_fingerprint(model)
    cfg = _cfg(tiny_env, tmp_path / "run", ensemble=2, ensemble_data="all", eval_untrained=False)
    train_reward_model(cfg, backbone=model, tokenizer=AutoTokenizer.from_pretrained(tiny_env / "tiny"))
    assert not hasattr(model, "peft_config")
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert base_fingerprint(model) == before


def test_resume_keeps_finished_members(ensemble_run, tiny_env, tmp_path):
    out, _ = ensemble_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "final")
    (copy / "summary.json").unlink()
    shutil.rmtree(copy / "members" / "member-2")  # the last member never started
    kept = (copy / "members" / "member-0" / "metrics.jsonl").read_bytes()
    summary = train_reward_model(_cfg(tiny_env, copy, resume=True))
    assert (copy / "members" / "member-0" / "metrics.jsonl").read_bytes() == kept  # not retrained
    assert (copy / "final" / ENSEMBLE_INFO).is_file() and len(summary["members"]) == K
    again = (copy / "final" / "member-2" / "adapter_model.safetensors").read_bytes()
    assert again == (out / "final" / "member-2" / "adapter_model.safetensors").read_bytes()  # same seed, same data


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(("kw", "match"), [
    ({"ensemble": 0}, "--ensemble must be at least 1"),
    ({"mode": "full"}, "needs --mode lora"),
    ({"ensemble": 20, "ensemble_data": "shards"}, "member .* would train on"),
])
def test_bad_ensemble_options_write_nothing(tiny_env, tmp_path, kw, match):
    out = tmp_path / "run"
    with pytest.raises(UserError, match=match):
        train_reward_model(_cfg(tiny_env, out, **kw))
    assert not out.exists()


def test_broken_ensemble_folders_are_refused(ensemble_run, tmp_path):
    out, _ = ensemble_run
    bad = tmp_path / "missing"
    shutil.copytree(out / "final", bad)
    shutil.rmtree(bad / "member-1")
    with pytest.raises(UserError, match="member member-1 is missing"):
        EnsembleInfo.load(bad)

    other = tmp_path / "other-base"
    shutil.copytree(out / "final", other)
    info = json.loads((other / "member-2" / REWARD_INFO).read_text())
    info["base_fingerprint"] = "sha256:" + "0" * 64
    (other / "member-2" / REWARD_INFO).write_text(json.dumps(info))
    with pytest.raises(UserError, match="member member-2 was trained on base weights"):
        EnsembleInfo.load(other)

    mixed = tmp_path / "mixed"
    shutil.copytree(out / "final", mixed)
    info = json.loads((mixed / "member-1" / REWARD_INFO).read_text())
    info["task_kind"] = "rating"
    (mixed / "member-1" / REWARD_INFO).write_text(json.dumps(info))
    with pytest.raises(UserError, match="do not mix pairwise and rating"):
        EnsembleInfo.load(mixed)
    target = tmp_path / "written"
    with pytest.raises(UserError, match="do not mix pairwise and rating"):
        write_ensemble(target, [mixed / "member-0", mixed / "member-1"])
    assert not target.exists()


# ------------------------------------------------------------------------------------ RL
@pytest.mark.parametrize(("mode", "how"), [("lora", "mean"), ("lora", "mean-minus-std"), ("lora", "min"),
                                           ("full", "mean-minus-std")])
def test_rl_with_each_aggregate_logs_disagreement(ensemble_run, tiny_env, tmp_path, mode, how):
    from perlhf.train.rl import RLConfig, run_rl

    out, _ = ensemble_run
    cfg = RLConfig(policy=str(tiny_env / "tiny"), reward_model=str(out / "final"), task="jsonl",
                   path=str(tiny_env / "pairs.jsonl"), prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4,
                   baseline="rloo", max_steps=2, max_prompt_tokens=32, mode=mode, ensemble_reward=how,
                   ensemble_penalty=0.5, output_dir=str(tmp_path / "rl"), progress=False, report_to="none",
                   mixed_precision="no", sample_every=1, num_samples_logged=4)
    summary = run_rl(cfg)
    assert summary["reward_ensemble"] == {"members": K, "aggregate": how, "penalty": 0.5}
    assert summary["reward_placement"] == ("shared" if mode == "lora" else "separate")
    rows = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train"]
    assert len(train) == 2
    for r in train:
        assert r["reward_disagreement"] > 0  # the members differ
        if how == "mean":
            assert r["reward_mean"] == pytest.approx(r["reward_members_mean"], abs=1e-5)
        else:
            assert r["reward_mean"] < r["reward_members_mean"]
    samples = [json.loads(line) for line in (tmp_path / "rl" / "samples.jsonl").read_text().splitlines()]
    for s in samples:  # each logged episode: every member's score, and the reward their aggregate
        assert len(s["reward_members"]) == K
        assert s["reward"] == pytest.approx(float(aggregate(torch.tensor([s["reward_members"]]).T, how, 0.5)[0]),
                                            abs=1e-4)


def test_rl_ensemble_options_need_an_ensemble(ensemble_run, tiny_env, tmp_path):
    from perlhf.train.rl import RLConfig, run_rl

    out, _ = ensemble_run
    cfg = RLConfig(policy=str(tiny_env / "tiny"), reward_model=str(out / "members" / "member-0" / "final"),
                   task="jsonl", path=str(tiny_env / "pairs.jsonl"), ensemble_reward="min",
                   output_dir=str(tmp_path / "rl"), progress=False, report_to="none", max_steps=1)
    with pytest.raises(UserError, match="needs a reward-model ensemble"):
        run_rl(cfg)
    assert not (tmp_path / "rl").exists()
    with pytest.raises(UserError, match="--ensemble-penalty"):
        RLConfig(ensemble_penalty=-1.0).validate()


def test_rm_score_an_ensemble_gives_the_mean_and_each_member(ensemble_run, tmp_path):
    from perlhf.cli import main

    out, _ = ensemble_run
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": "Tell me about cats.", "response": "Thank you!"}) + "\n"
                   + json.dumps({"prompt": "Hi", "chosen": "Thank you, a great question!", "rejected": "No."}) + "\n")
    dst = tmp_path / "scored.jsonl"
    assert main(["rm", "score", "--model-dir", str(out / "final"), "--input", str(src), "--output", str(dst)]) == 0
    text, pair = (json.loads(line) for line in dst.read_text().splitlines())
    assert len(text["member_scores"]) == K
    assert text["score"] == pytest.approx(sum(text["member_scores"]) / K, abs=1e-6)
    assert text["disagreement"] == pytest.approx(float(torch.tensor(text["member_scores"]).std(unbiased=False)),
                                                 abs=1e-6)
    assert pair["margin"] == pytest.approx(pair["score_chosen"] - pair["score_rejected"], abs=1e-6)
    assert len(pair["member_scores_chosen"]) == K and "disagreement_rejected" in pair


def test_shared_members_stay_frozen_and_out_of_the_optimizer(ensemble_run, tiny_env):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from perlhf.train.rl import RLConfig, build_models
    from perlhf.train.rl_rewards import load_reward

    out, _ = ensemble_run
    cfg = RLConfig(policy=str(tiny_env / "tiny"), reward_model=str(out / "final"), mode="lora", baseline="value",
                   ensemble_reward="min")
    models = build_models(cfg, AutoModelForCausalLM.from_pretrained(tiny_env / "tiny"))
    reward = load_reward(cfg, models, torch.device("cpu"), torch.float32,
                         policy_tokenizer=AutoTokenizer.from_pretrained(tiny_env / "tiny"))
    assert reward.placement == "shared" and len(reward.members) == K
    trained = {id(p) for group in models.parameter_groups().values() for p in group}
    for name in ("policy", "value", "policy"):
        models.use(name)
        for k in range(K):
            params = models.adapter_parameters(f"reward-{k}")
            assert params and not any(p.requires_grad or id(p) in trained for p in params)
    assert not any(p.requires_grad for p in models.reward_heads.parameters())
    with torch.inference_mode(), models.reward_model("reward-1") as rm:  # member 1, folded, scores like itself
        ids = torch.tensor([[5, 6, 7, 8]])
        mask = torch.ones_like(ids)
        folded = rm(ids, mask)
    alone = load_reward_model(out / "final" / "member-1")[0]
    with torch.inference_mode():
        torch.testing.assert_close(folded, alone(ids, mask), atol=1e-5, rtol=1e-5)


def test_python_api_trains_and_scores_an_ensemble(tiny_env, tmp_path):
    import perlhf

    rm = perlhf.train_reward_model(str(tiny_env / "pairs.jsonl"), model=str(tiny_env / "tiny"),
                                   output_dir=str(tmp_path / "rm"), ensemble=2, ensemble_data="all", batch_size=8,
                                   max_steps=2, eval_every=2, progress=False, report_to="none",
                                   max_prompt_tokens=32, max_response_tokens=16, mixed_precision="no")
    model, info = rm.load()
    assert info.size == 2 and rm.summary["ensemble"] == 2
    items = [("Tell me about cats.", "Thank you!"), ("Hi", "No.")]
    got = rm.score(items)
    by_member = [load_reward_model(rm.final_dir / name)[0] for name in info.members]
    from perlhf.train.scoring import score_texts

    tok = perlhf.models.load_tokenizer(str(tiny_env / "tiny"))
    msgs = [([{"role": "user", "content": p}], r) for p, r in items]
    each = [score_texts(m, tok, msgs, 32, 16) for m in by_member]
    assert got == pytest.approx([(a + b) / 2 for a, b in zip(*each, strict=True)], abs=1e-5)


def test_an_ensemble_on_other_base_weights_is_refused_shared_and_loaded_separately_on_auto(ensemble_run, tiny_env):
    import copy

    from transformers import AutoModelForCausalLM

    from perlhf.train.rl import RLConfig, build_models
    from perlhf.train.rl_rewards import load_reward

    out, _ = ensemble_run
    policy = AutoModelForCausalLM.from_pretrained(tiny_env / "tiny")
    with torch.no_grad():
        policy.get_input_embeddings().weight.add_(0.01)  # other base weights than the members were trained on
    for placement in ("shared", "auto"):
        cfg = RLConfig(reward_model=str(out / "final"), reward_placement=placement, mode="lora",
                       lora_targets="all-linear", lora_rank=4)
        models = build_models(cfg, copy.deepcopy(policy))  # build_models wraps its model in place
        if placement == "shared":
            with pytest.raises(UserError, match="the ensemble was trained on base weights .* cannot share"):
                load_reward(cfg, models, torch.device("cpu"), torch.float32)
        else:
            reward = load_reward(cfg, models, torch.device("cpu"), torch.float32)
            assert reward.placement == "separate" and len(reward.members) == K


def test_eval_takes_an_ensemble_as_judge_and_as_training_reward(ensemble_run, tiny_env, tmp_path, monkeypatch):
    """`perlhf eval --judge-rm <ensemble final/>`: the members' mean judges; the ensemble's own test figure
    (written beside it) decides whether it is strong enough; sharing weights and data is flagged."""
    import perlhf.eval.judge as judge_module
    from perlhf.eval.cli import EvalConfig
    from perlhf.eval.judge import run_eval
    from perlhf.train.rl import RLConfig, run_rl

    out, summary = ensemble_run
    info, _ = EnsembleInfo.load(out / "final")
    assert info.extra["test"] == summary["test"]  # the ensemble's own test metrics, beside its members
    run_rl(RLConfig(policy=str(tiny_env / "tiny"), reward_model=str(out / "final"), task="jsonl",
                    path=str(tiny_env / "pairs.jsonl"), prompts_per_step=2, samples_per_prompt=2, max_new_tokens=4,
                    max_steps=1, max_prompt_tokens=32, output_dir=str(tmp_path / "rl"), progress=False,
                    report_to="none", mixed_precision="no", sample_every=0))
    cfg = EvalConfig(sft=str(tiny_env / "tiny"), rl=str(tmp_path / "rl"), judge_rm=str(out / "final"),
                     reward_model=str(out / "final"), task="jsonl", path=str(tiny_env / "pairs.jsonl"),
                     num_prompts=4, max_new_tokens=4, max_prompt_tokens=32, output=str(tmp_path / "eval.json"),
                     samples_out=str(tmp_path / "answers.jsonl"))
    cfg.validate()
    report = run_eval(cfg)
    judge = report["judge_rm"]
    # --samples-out: every judged answer with the scores the verdict came from
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 4
    assert sum(a["judge_rl"] for a in answers) / 4 == pytest.approx(judge["mean_rl"])
    assert sum(a["judge_rl"] > a["judge_sft"] for a in answers) / 4 == pytest.approx(judge["win"])
    assert sum(a["reward_sft"] for a in answers) / 4 == pytest.approx(report["training_reward"]["mean_sft"])
    assert judge["judge"]["shares_backbone"] is True and judge["judge"]["shares_data"] is True
    assert judge["judge"]["test"] == summary["test"][judge["judge"]["metric"]]
    assert judge["win"] + judge["tie"] + judge["loss"] == pytest.approx(1.0)
    assert report["training_reward"]["mean_rl"] == pytest.approx(judge["mean_rl"])  # the same ensemble

    # --sft-answers-from: a second eval judges against the first one's SFT answers, not new ones
    again = dataclasses.replace(cfg, output=str(tmp_path / "eval2.json"), samples_out=str(tmp_path / "answers2.jsonl"),
                                sft_answers_from=str(tmp_path / "eval.json"))
    calls = []
    real = judge_module.generate_answers
    monkeypatch.setattr(judge_module, "generate_answers", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    second = run_eval(again)
    assert len(calls) == 1  # the RL policy only
    assert [json.loads(x)["sft"] for x in (tmp_path / "answers2.jsonl").read_text().splitlines()] == \
        [a["sft"] for a in answers]
    assert second["judge_rm"]["mean_sft"] == pytest.approx(judge["mean_sft"])
    assert second["sft_answers_from"] == str((tmp_path / "answers.jsonl").resolve())
    other = dataclasses.replace(again, temperature=0.9, output=str(tmp_path / "eval3.json"))
    with pytest.raises(UserError, match=r"eval\.json.*temperature 0\.7 there, 0\.9 here"):
        run_eval(other)
    assert not (tmp_path / "eval3.json").exists()
