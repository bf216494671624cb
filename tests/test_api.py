"""The Python API: stages from Python with the caller's own data, model and tokenizer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import perlhf
from perlhf.errors import UserError

README = Path(__file__).resolve().parents[1] / "README.md"


def _pairs(env: Path) -> list[dict]:
    return [json.loads(line) for line in (env / "pairs.jsonl").read_text().splitlines()]


def test_reward_model_from_records_and_a_model_object(tiny_env, tmp_path, smol_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_env / "tiny")
    rm = perlhf.train_reward_model(_pairs(tiny_env), model=model, tokenizer=smol_tokenizer,
                                   output_dir=tmp_path / "rm", batch_size=8, max_steps=2, eval_every=2,
                                   max_prompt_tokens=32, max_response_tokens=16, progress=False, report_to="none")
    assert isinstance(rm, perlhf.RewardModelResult)
    assert rm.final_dir == tmp_path / "rm" / "final" and rm.summary["kind"] == "pair"
    assert rm.summary["examples"]["train"] > 0
    scores = rm.score([("Say hi", "Hello there!"), ([{"role": "user", "content": "Say hi"}], "No.")])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


def test_datasets_dataset_and_a_jsonl_path_are_data_too(tiny_env, tmp_path):
    from datasets import Dataset

    kw = dict(model=str(tiny_env / "tiny"), batch_size=8, max_steps=1, eval_every=1, max_prompt_tokens=32,
              max_response_tokens=16, progress=False, report_to="none")
    a = perlhf.train_reward_model(Dataset.from_list(_pairs(tiny_env)), output_dir=tmp_path / "a", **kw)
    b = perlhf.train_reward_model(tiny_env / "pairs.jsonl", output_dir=tmp_path / "b", **kw)
    assert a.summary["examples"] == b.summary["examples"]
    assert a.summary["test"] == b.summary["test"]


def test_sft_then_rl_from_python(tiny_env, tmp_path):
    rm = perlhf.train_reward_model(tiny_env / "pairs.jsonl", model=str(tiny_env / "tiny"), output_dir=tmp_path / "rm",
                                   batch_size=8, max_steps=1, eval_every=1, max_prompt_tokens=32,
                                   max_response_tokens=16, progress=False, report_to="none")
    sft = perlhf.train_sft(model=str(tiny_env / "tiny"), task="imdb-sentiment-dialogues", output_dir=tmp_path / "sft",
                           max_steps=1, batch_size=2, max_train_examples=4, max_eval_examples=2, eval_every=0,
                           max_prompt_tokens=32, max_response_tokens=8, merge=True)
    assert sft.final_dir == tmp_path / "sft" / "merged"
    rl = perlhf.train_rl(policy=sft.final_dir, reward_model=rm, task="jsonl", path=str(tiny_env / "pairs.jsonl"),
                         output_dir=tmp_path / "rl", max_steps=2, prompts_per_step=2, samples_per_prompt=2,
                         max_new_tokens=4, max_prompt_tokens=32, sample_every=0,
                         warmup_steps=2, merge=True)
    assert rl.summary["steps"] == 2 and (rl.final_dir / "policy").is_dir()
    # the same layout as sft: <run>/final (the trained adapters), <run>/merged (a plain model)
    assert rl.summary["merged_dir"] == str(tmp_path / "rl" / "merged")
    from transformers import AutoModelForCausalLM

    from perlhf.train.rl import check_policy_folder

    AutoModelForCausalLM.from_pretrained(tmp_path / "rl" / "merged")
    check_policy_folder(str(tmp_path / "rl" / "merged"))  # a valid start for another RL run
    # --warmup-steps 2: the policy rate ramps up to the lora default (1e-3) over two steps
    rows = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows if r.get("split") == "train"] == pytest.approx([5e-4, 1e-3])


def test_bad_options_and_data_are_one_clear_error(tiny_env, tmp_path):
    with pytest.raises(UserError, match="learnin_rate"):
        perlhf.train_reward_model(tiny_env / "pairs.jsonl", output_dir=tmp_path / "x", learnin_rate=1e-3)
    with pytest.raises(UserError, match="record 2"):
        perlhf.train_reward_model([{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a"}],
                                  output_dir=tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    # config=: a whole stage config (what the CLI passes), never mixed with options or another stage's
    from perlhf.train.reward import RewardConfig
    from perlhf.train.sft import SFTConfig

    with pytest.raises(UserError, match=r"config= and options \(lora_rank\) together"):
        perlhf.train_sft(config=SFTConfig(output_dir=str(tmp_path / "z")), lora_rank=4)
    with pytest.raises(UserError, match="config= must be a SFTConfig, got RewardConfig"):
        perlhf.train_sft(config=RewardConfig(output_dir=str(tmp_path / "z")))
    assert not (tmp_path / "z").exists()


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python API example, run as written (real offline model, a few steps)."""
    text = README.read_text()
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md has no <!-- api-example --> python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["rm"].summary["steps"] > 0
    assert len(namespace["scores"]) == 2


def test_sft_from_the_users_jsonl_dialogues_or_pairs(tiny_env, tmp_path):
    dialogues = tmp_path / "dialogues.jsonl"
    with open(dialogues, "w") as fh:
        for i in range(12):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"hi {i}"},
                                              {"role": "assistant", "content": "Hello!"},
                                              {"role": "user", "content": "bye"},
                                              {"role": "assistant", "content": "Goodbye."}]}) + "\n")
    kw = dict(model=str(tiny_env / "tiny"), task="jsonl", max_steps=1, batch_size=2, eval_every=0,
              max_prompt_tokens=32, max_response_tokens=8)
    a = perlhf.train_sft(path=str(dialogues), output_dir=tmp_path / "a", **kw)
    assert a.summary["train_examples"] >= 12  # two assistant turns per dialogue, most in train
    b = perlhf.train_sft(path=str(tiny_env / "pairs.jsonl"), output_dir=tmp_path / "b", **kw)
    assert b.summary["train_examples"] == 48  # the chosen response of each training pair


def test_sft_targets_of_every_record_kind():
    from perlhf.data.records import Dialogue, PreferencePair, RatedResponse
    from perlhf.train.sft import sft_targets

    user = ({"role": "user", "content": "q"},)
    recs = [PreferencePair(id="p", group="g", prompt=user, chosen="good", rejected="bad"),
            RatedResponse(id="r1", group="g", prompt=user, response="liked", label=1),
            RatedResponse(id="r0", group="g", prompt=user, response="disliked", label=0),
            Dialogue(id="d", group="g", messages=(*user, {"role": "assistant", "content": "a"}))]
    assert [t for _, t in sft_targets(recs)] == ["good", "liked", "a"]
