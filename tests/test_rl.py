"""RL correctness guards on tiny random models (CPU, each test well under a minute).

- step 0: KL to the anchor exactly 0; the anchor is the SFT model, not the pre-SFT base;
- LoRA mode: base weights bit-identical after training; gradients only on the policy and
  value adapters and the value head, none on the reward adapter;
- value adapter + head: save and reload give identical values;
- a synthetic reward rises in both modes with every baseline;
- NaN rewards stop the run naming the step; resume repeats the uninterrupted run;
- wrong-kind checkpoints and a reward adapter trained on other base weights are refused.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from perlhf.errors import UserError
from perlhf.models.backbone import SeparateModels, SharedBackbone, value_positions
from perlhf.models.fingerprint import base_fingerprint
from perlhf.models.heads import RewardInfo, RewardModel, ScalarHead, save_reward_model
from perlhf.models.lora import LoraOptions, apply_lora
from perlhf.models.tiny import make_tiny_causal_lm
from perlhf.runs import NonFiniteError, RunDir
from perlhf.train.generation import sample, sequence_logprobs
from perlhf.train.rl import (
    RLConfig,
    RLPrompt,
    anchor_logprobs,
    build_models,
    check_policy_folder,
    learn_from_rollout,
    train_rl,
)
from perlhf.train.rl_rewards import TokenCountReward, load_reward
from perlhf.train.sft import SFTConfig, SFTExample, merge_to_plain, prepare_sft_model, train_sft

VOCAB = 64
EOS = 2
TARGET = 7
LORA = LoraOptions(rank=4, targets="all-linear")


class IdTokenizer:
    eos_token_id = EOS
    pad_token_id = 0

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join(str(i) for i in ids)


def tiny(seed: int = 0) -> torch.nn.Module:
    """A tiny random LM whose (tied) embeddings are scaled up so that its outputs can become peaked."""
    model = make_tiny_causal_lm(VOCAB, seed=seed, eos_token_id=EOS, pad_token_id=0)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(4.0)
    return model


PROMPTS = [RLPrompt((5 + i, 9, 11 + i)) for i in range(8)]


def cfg(**kw) -> RLConfig:
    base = dict(max_steps=3, prompts_per_step=2, samples_per_prompt=2, micro_batch_size=3, max_new_tokens=6, baseline="value",
                temperature=1.0, learning_rate=2e-2, value_learning_rate=1e-2, beta=0.05,
                lora_targets="all-linear", lora_rank=4, save_every=0, sample_every=0)
    base.update(kw)
    return RLConfig(**base)


def sft_model(base: torch.nn.Module) -> torch.nn.Module:
    """A real (tiny) SFT: a LoRA adapter trained a few steps, then merged."""
    c = SFTConfig(mode="lora", learning_rate=5e-2, lora_targets="all-linear", batch_size=2, max_steps=3,
                  warmup_steps=0, eval_every=0, save_every=0)
    model = prepare_sft_model(base, c)
    train_sft(c, model, [SFTExample((5, 6), (TARGET, 8, EOS)), SFTExample((9,), (10, EOS))], pad_id=0)
    return merge_to_plain(model).eval()


# -- step 0 and the anchor ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["lora", "full"])
def test_step0_kl_is_zero_and_anchor_is_the_sft_model(mode):
    pre_sft = tiny()
    sft = sft_model(tiny())
    reference = sft_model(tiny())  # an identical SFT model, kept untouched
    c = cfg(mode=mode)
    models = build_models(c, sft)
    models.eval()
    torch.manual_seed(0)
    with models.policy() as policy:
        roll = sample(policy, IdTokenizer(), [p.ids for p in PROMPTS[:3]], max_new_tokens=6)
    anchor = anchor_logprobs(models, roll, 1.0, micro_batch_size=3)
    with torch.no_grad(), models.policy() as policy:
        logp = sequence_logprobs(policy, roll.input_ids, roll.attention_mask, roll.response_mask, 1.0)
        ref = sequence_logprobs(reference, roll.input_ids, roll.attention_mask, roll.response_mask, 1.0)
        base = sequence_logprobs(pre_sft, roll.input_ids, roll.attention_mask, roll.response_mask, 1.0)
    assert torch.equal(logp, anchor)  # exactly: KL is 0, not just small
    torch.testing.assert_close(anchor, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(anchor, base, atol=1e-3)  # the anchor is not the pre-SFT base
    history = train_rl(c, models, TokenCountReward(TARGET), PROMPTS, IdTokenizer())
    assert history[0]["kl"] == 0.0 and history[0]["kl_per_token"] == 0.0


# -- what trains, what stays frozen ------------------------------------------------------------------
def _reward_adapter(tmp_path, base_model: torch.nn.Module):
    """A `perlhf rm`-style LoRA reward folder trained (here: initialised) on ``base_model``'s weights."""
    import copy

    backbone = apply_lora(copy.deepcopy(base_model), LORA)
    with torch.no_grad():
        for n, p in backbone.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)  # a non-trivial adapter
    head = ScalarHead(64)
    head.reset_parameters(torch.Generator().manual_seed(0))
    info = RewardInfo(base_model="tiny", mode="lora", base_fingerprint=base_fingerprint(base_model),
                      max_prompt_tokens=32, max_response_tokens=16, task_kind="rating")
    return save_reward_model(RewardModel(backbone, head), tmp_path / "rm", info)


def test_lora_mode_trains_only_policy_and_value(tmp_path):
    sft = sft_model(tiny())
    folder = _reward_adapter(tmp_path, sft)
    c = cfg(mode="lora", reward_model=str(folder), reward_placement="shared")
    models = build_models(c, sft)
    text_reward = load_reward(c, models, torch.device("cpu"), torch.float32, policy_tokenizer=IdTokenizer())
    assert text_reward.placement == "shared" and models.reward_head is not None
    before = {n: p.detach().clone() for n, p in models.base_parameters().items()}
    reward_before = {n: p.detach().clone() for n, p in models.peft.named_parameters() if ".reward." in n}
    head_before = {n: p.detach().clone() for n, p in models.reward_head.named_parameters()}
    assert reward_before

    def reward_fn(prompts, rollout):
        # the shared reward adapter scores token ids directly (no tokenizer in this test)
        with torch.inference_mode(), models.reward_model() as rm:
            return rm(rollout.input_ids, rollout.attention_mask).float().clone()

    models.eval()
    torch.manual_seed(0)
    with models.policy() as policy:
        roll = sample(policy, IdTokenizer(), [p.ids for p in PROMPTS[:4]], max_new_tokens=6)
    rewards = reward_fn(PROMPTS[:4], roll)
    anchor = anchor_logprobs(models, roll, 1.0, 3)
    models.value_head.linear.weight.data.normal_(0, 0.1)  # so that the value adapter gets gradient too
    learn_from_rollout(models, roll, rewards, anchor, c)
    trained = {id(p) for g in models.parameter_groups().values() for p in g}
    with_grad = {n for n, p in models.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(".policy." in n for n in with_grad) and any(".value." in n for n in with_grad)
    assert any(n.startswith("value_head") for n in with_grad)
    assert all((".policy." in n or ".value." in n or n.startswith("value_head")) for n in with_grad), with_grad
    assert all(p.grad is None for n, p in models.named_parameters() if ".reward." in n or "reward_head" in n)
    assert all(id(p) in trained for n, p in models.named_parameters() if n in with_grad)

    history = train_rl(c, models, reward_fn, PROMPTS, IdTokenizer())
    assert len(history) == 3
    for n, p in models.base_parameters().items():
        if ".reward." not in n:
            assert torch.equal(p, before[n]), n  # bit-identical base
    for n, p in models.peft.named_parameters():
        if ".reward." in n:
            assert torch.equal(p, reward_before[n]), n
    for n, p in models.reward_head.named_parameters():
        assert torch.equal(p, head_before[n])
    moved = [n for n, p in models.peft.named_parameters() if ".policy." in n and "lora_B" in n and p.abs().sum() > 0]
    assert moved  # the policy adapter left zero


def test_reward_adapter_on_other_base_weights_is_refused(tmp_path):
    folder = _reward_adapter(tmp_path, tiny(seed=1))  # trained on different base weights
    c = cfg(mode="lora", reward_model=str(folder), reward_placement="shared")
    models = build_models(c, sft_model(tiny()))
    with pytest.raises(UserError, match="cannot share the backbone"):
        load_reward(c, models, torch.device("cpu"), torch.float32)


def test_value_adapter_and_head_save_reload_identical(tmp_path):
    c = cfg(mode="lora")
    models = build_models(c, tiny())
    with torch.no_grad():
        for n, p in models.peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
        models.value_head.linear.weight.normal_(0, 0.5)
        models.value_head.linear.bias.fill_(0.3)
    ids = torch.tensor([[0, 5, 6, 7, 8], [9, 10, 11, 12, 13]])
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    models.eval()
    with torch.no_grad():
        v1 = models.values(ids, mask)
        with models.policy() as pol:
            l1 = pol(input_ids=ids, attention_mask=mask).logits
    models.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "value" / "head.safetensors").is_file()
    assert (tmp_path / "ckpt" / "policy" / "adapter_config.json").is_file()
    fresh = build_models(c, tiny())
    fresh.load(tmp_path / "ckpt")
    fresh.eval()
    with torch.no_grad():
        v2 = fresh.values(ids, mask)
        with fresh.policy() as pol:
            l2 = pol(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(v1, v2) and torch.equal(l1, l2)
    assert not torch.equal(v1, torch.zeros_like(v1))
    # a PEFT-standard policy adapter: loadable with PeftModel.from_pretrained
    from peft import PeftModel

    plain = PeftModel.from_pretrained(tiny(), str(tmp_path / "ckpt" / "policy")).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=ids, attention_mask=mask).logits, l1)


def test_full_mode_value_save_reload(tmp_path):
    models = build_models(cfg(mode="full"), tiny())
    assert isinstance(models, SeparateModels)
    with torch.no_grad():
        models.value_model.head.linear.weight.normal_(0, 0.5)
        next(models.policy_model.parameters()).add_(0.1)
    models.save(tmp_path / "c")
    fresh = build_models(cfg(mode="full"), tiny())
    fresh.load(tmp_path / "c")
    ids = torch.tensor([[5, 6, 7]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.equal(models.values(ids, mask), fresh.values(ids, mask))
        assert torch.equal(models.policy_model(input_ids=ids).logits, fresh.policy_model(input_ids=ids).logits)


# -- it learns ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("mode", "baseline"), [("lora", "value"), ("lora", "rloo"), ("lora", "mean"),
                                                ("full", "value"), ("full", "rloo"), ("full", "mean")])
def test_synthetic_reward_rises(mode, baseline):
    c = cfg(mode=mode, baseline=baseline, max_steps=16, prompts_per_step=4, samples_per_prompt=4,
            micro_batch_size=16, max_new_tokens=8, beta=0.0,
            learning_rate=2e-2 if mode == "lora" else 3e-3)
    history = train_rl(c, build_models(c, tiny()), TokenCountReward(TARGET), PROMPTS, IdTokenizer())
    first = sum(r["reward_mean"] for r in history[:4]) / 4
    last = sum(r["reward_mean"] for r in history[-3:]) / 3
    assert last > first + 1.0, [round(r["reward_mean"], 2) for r in history]  # out of 8 tokens
    if baseline == "value":
        assert history[-1]["value_loss"] is not None and history[-1]["explained_variance"] is not None


# -- bad input and resume ------------------------------------------------------------------------------
def test_nan_reward_stops_naming_the_step(tmp_path):
    def nan_at_2(prompts, rollout):
        r = torch.zeros(rollout.input_ids.shape[0])
        if nan_at_2.calls == 1:
            r[0] = float("nan")
        nan_at_2.calls += 1
        return r

    nan_at_2.calls = 0
    c = cfg(save_every=1)
    run = RunDir.prepare(tmp_path / "run")
    with pytest.raises(NonFiniteError, match="step 2"):
        train_rl(c, build_models(c, tiny()), nan_at_2, PROMPTS, IdTokenizer(), run=run)
    assert [p.name for p in run.list_checkpoints()] == ["step-00000001"]


def _length_reward(prompts, rollout):
    """A dense reward (the response length): every episode moves the policy, unlike a rare target token."""
    return rollout.response_mask.sum(-1).float()


def test_resume_repeats_the_uninterrupted_run(tmp_path):
    # a warm-up longer than the first leg: the resumed run must continue the schedule, not restart it
    c4 = cfg(max_steps=4, save_every=2, keep_checkpoints=5, warmup_steps=3)
    a = build_models(c4, tiny())
    ha = train_rl(c4, a, _length_reward, PROMPTS, IdTokenizer(), run=RunDir.prepare(tmp_path / "a"))
    c2 = cfg(max_steps=2, save_every=2, warmup_steps=3)
    train_rl(c2, build_models(c2, tiny()), _length_reward, PROMPTS, IdTokenizer(), run=RunDir.prepare(tmp_path / "b"))
    b = build_models(c4, tiny())
    hb = train_rl(c4, b, _length_reward, PROMPTS, IdTokenizer(), run=RunDir.prepare(tmp_path / "b", resume=True))
    # the history (and so the summary) covers the whole run: steps 1-2 come back from metrics.jsonl
    assert [r["step"] for r in hb] == [1, 2, 3, 4]
    assert [r["reward_mean"] for r in hb] == [r["reward_mean"] for r in ha]
    assert [r["lr"] for r in hb] == pytest.approx([r["lr"] for r in ha]) == [2e-2 / 3, 4e-2 / 3, 2e-2, 2e-2]
    fresh = build_models(c4, tiny())
    moved = 0
    for (n, p), (_, q), (_, f) in zip(a.named_parameters(), b.named_parameters(), fresh.named_parameters(),
                                      strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6, msg=n)
        moved += not torch.equal(p, f)
    assert moved > 0  # the run learned something, so equal weights mean an exact resume


def test_resume_rewrites_samples_and_metrics_after_the_checkpoint(tmp_path):
    """A run killed after logging step 3 but before its checkpoint: --resume from step 2 logs 3 again,
    so metrics.jsonl and samples.jsonl must not keep the first step-3 lines."""
    import shutil

    c3 = cfg(max_steps=3, save_every=2, keep_checkpoints=5, sample_every=1, num_samples_logged=1)
    train_rl(c3, build_models(c3, tiny()), TokenCountReward(TARGET), PROMPTS, IdTokenizer(),
             run=RunDir.prepare(tmp_path / "r"))
    shutil.rmtree(tmp_path / "r" / "checkpoints" / "step-00000003")  # "killed" before this checkpoint
    c4 = cfg(max_steps=4, save_every=2, keep_checkpoints=5, sample_every=1, num_samples_logged=1)
    train_rl(c4, build_models(c4, tiny()), TokenCountReward(TARGET), PROMPTS, IdTokenizer(),
             run=RunDir.prepare(tmp_path / "r", resume=True))
    samples = RunDir.read_jsonl(tmp_path / "r" / "samples.jsonl")
    metrics = RunDir.read_jsonl(tmp_path / "r" / "metrics.jsonl")
    assert [r["step"] for r in samples] == [1, 2, 3, 4]
    assert [r["step"] for r in metrics if r.get("split") == "train"] == [1, 2, 3, 4]


def test_wrong_kind_folders_are_refused(tmp_path):
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "perlhf_reward.json").write_text("{}")
    with pytest.raises(UserError, match="reward model folder, not a policy"):
        check_policy_folder(str(rm))
    adapter = tmp_path / "adapter_only"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="--merge"):
        check_policy_folder(str(adapter))
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "perlhf_sft.json").write_text("{}")
    with pytest.raises(UserError, match="SFT model, not a reward model"):
        load_reward(cfg(reward_model=str(sft)), None, torch.device("cpu"), torch.float32)
    with pytest.raises(UserError, match="--reward-model is required"):
        load_reward(cfg(), None, torch.device("cpu"), torch.float32)


def test_values_align_with_response_tokens():
    values = torch.arange(10.0).view(1, 10)
    assert value_positions(values, prompt_len=4, num_response=6).tolist() == [[3, 4, 5, 6, 7, 8]]


def test_shared_backbone_switching_keeps_trainable_flags():
    m = SharedBackbone(tiny(), LORA, with_value=True)
    for name in ("value", "policy", "value"):
        m.use(name)
        assert all(p.requires_grad for g in m.parameter_groups().values() for p in g)
        assert not any(p.requires_grad for p in m.base_parameters().values())
    with contextlib.suppress(Exception), m.anchor():
        pass


def test_bf16_autocast_keeps_step0_kl_zero_and_learns():
    """--mixed-precision bf16: sampler, anchor and learner all run under the same autocast, so the
    KL at step 0 is still exactly 0, and the synthetic reward still rises."""
    c = cfg(mode="lora", baseline="value", max_steps=16, prompts_per_step=4, samples_per_prompt=4,
            micro_batch_size=16, max_new_tokens=8, beta=0.0, learning_rate=2e-2, mixed_precision="bf16")
    history = train_rl(c, build_models(c, tiny()), TokenCountReward(TARGET), PROMPTS, IdTokenizer())
    assert history[0]["kl"] == 0.0
    first = sum(r["reward_mean"] for r in history[:4]) / 4
    last = sum(r["reward_mean"] for r in history[-3:]) / 3
    assert last > first + 1.0, [round(r["reward_mean"], 2) for r in history]


# -- forward-only phases with the adapter folded ------------------------------------------------------
def _perturb_adapters(model: SharedBackbone) -> None:
    with torch.no_grad():
        for n, p in model.peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)


def test_folded_policy_matches_the_adapter_and_leaves_the_base_untouched():
    models = SharedBackbone(tiny(), LORA, with_value=True)
    _perturb_adapters(models)
    models.eval()
    before = {n: p.detach().clone() for n, p in models.base_parameters().items()}
    storage = {n: p.data_ptr() for n, p in models.base_parameters().items()}
    params = dict(models.base_parameters())  # the objects: inside the fold they hang under other names
    ids = torch.tensor([[5, 9, 11, 7, 8, 3]])
    with torch.no_grad():
        with models.policy() as policy:
            ref = policy(input_ids=ids).logits
        with models.sampler() as folded:
            got = folded(input_ids=ids).logits
            assert not any("lora_" in n for n, _ in folded.named_parameters())  # plain layers, no peft path
            assert all(torch.equal(p, before[n]) for n, p in params.items())  # shared weights never written
        with models.anchor() as anchor:
            plain = anchor(input_ids=ids).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ref, plain, atol=1e-3)  # the adapter matters, so the match above means something
    for n, p in models.base_parameters().items():
        assert torch.equal(p, before[n]) and p.data_ptr() == storage[n], n
    with pytest.raises(RuntimeError, match="boom"), models.sampler():
        raise RuntimeError("boom")
    assert all(torch.equal(p, before[n]) for n, p in models.base_parameters().items())
    assert all(p.requires_grad for g in models.parameter_groups().values() for p in g)
    assert not any(p.requires_grad for p in models.base_parameters().values())


def test_folded_under_autocast_holds_cast_weights_and_matches_the_adapter():
    """Under bf16 autocast every linear of the folded model holds bf16 weights already (a frozen
    base would otherwise be re-cast at every decoded token); the outputs still match peft's path."""
    models = SharedBackbone(tiny(), LORA, with_value=False)
    _perturb_adapters(models)
    models.eval()
    ids = torch.tensor([[5, 9, 11, 7, 8, 3]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with models.policy() as policy:
            ref = policy(input_ids=ids).logits.float()
        with models.sampler() as folded:
            shadows = [m for m in folded.modules() if type(m).__name__ == "_FrozenLinear"]
            assert shadows and all(m.weight.dtype == torch.bfloat16 for m in shadows)
            assert not any(type(m) is torch.nn.Linear for m in folded.modules())
            got = folded(input_ids=ids).logits.float()
    assert all(p.dtype == torch.float32 for p in models.peft.parameters())  # the model itself is untouched
    torch.testing.assert_close(got, ref, atol=0.1, rtol=0.05)


def test_folded_reward_adapter_scores_like_the_unfolded_one(tmp_path):
    sft = sft_model(tiny())
    folder = _reward_adapter(tmp_path, sft)
    scores = {}
    for fold in (True, False):
        c = cfg(mode="lora", reward_model=str(folder), reward_placement="shared", fold_adapters=fold)
        models = build_models(c, sft_model(tiny()))
        load_reward(c, models, torch.device("cpu"), torch.float32, policy_tokenizer=IdTokenizer())
        models.eval()
        ids = torch.tensor([[5, 9, 11, 7, 8, 3], [0, 0, 5, 6, 7, 2]])
        mask = (ids != 0).long()
        with torch.no_grad(), models.reward_model() as rm:
            scores[fold] = rm(ids, mask)
    torch.testing.assert_close(scores[True], scores[False], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_gradient_checkpointing_gives_the_same_gradients_and_saves_less(mode):
    """--gradient-checkpointing: same gradients, and far fewer activations kept for backward."""
    from perlhf.train.rl import _learning_mode

    grads, saved = {}, {}
    for ckpt in (False, True):
        c = cfg(mode=mode, baseline="value", gradient_checkpointing=ckpt)
        models = build_models(c, sft_model(tiny()))
        if mode == "lora":
            _perturb_adapters(models)
        models.eval()
        torch.manual_seed(0)
        with models.sampler() as policy:
            roll = sample(policy, IdTokenizer(), [p.ids for p in PROMPTS[:3]], max_new_tokens=6)
        logp_anchor = anchor_logprobs(models, roll, 1.0, micro_batch_size=3)
        saved[ckpt] = 0

        def pack(t, ckpt=ckpt):
            saved[ckpt] += t.numel()
            return t

        with _learning_mode(models, ckpt), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            learn_from_rollout(models, roll, torch.tensor([1.0, 0.0, 2.0]), logp_anchor, c)
        assert not models.training  # back to eval for the next sampling phase
        grads[ckpt] = {k: [p.grad.clone() for p in g if p.grad is not None]
                       for k, g in models.parameter_groups().items()}
    assert saved[True] < saved[False] / 3, saved
    for k in grads[False]:
        assert len(grads[False][k]) == len(grads[True][k]) > 0
        for a, b in zip(grads[False][k], grads[True][k], strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_train_rl_with_gradient_checkpointing_runs_and_keeps_step0_kl_zero(mode):
    c = cfg(mode=mode, baseline="value", gradient_checkpointing=True, max_steps=2)
    models = build_models(c, sft_model(tiny()))
    history = train_rl(c, models, TokenCountReward(TARGET), PROMPTS, IdTokenizer())
    assert len(history) == 2 and history[0]["kl"] == 0.0
    assert not models.training  # sampling after the learning phase runs in eval mode again
    assert all(m.p == 0.0 for m in models.modules() if isinstance(m, torch.nn.Dropout))


def _learning_setup(baseline: str, prompts: int):
    """A config (micro-batches of 2), perturbed LoRA models in eval mode, and a rollout of 2 samples for
    each of the first ``prompts`` prompts."""
    c = cfg(baseline=baseline, micro_batch_size=2)
    models = build_models(c, sft_model(tiny()))
    _perturb_adapters(models)
    models.eval()
    torch.manual_seed(0)
    with models.sampler() as policy:
        roll = sample(policy, IdTokenizer(), [p.ids for p in PROMPTS[:prompts] for _ in range(2)], max_new_tokens=6)
    return c, models, roll


@pytest.mark.parametrize("baseline", ["value", "rloo"])
def test_learner_backward_goes_through_the_accelerator_and_syncs_only_the_last_micro_batch(baseline):
    """Data parallelism the standard way: each micro-batch's forward is the Learner module (DDP under
    several processes), its backward ``accelerator.backward``, and every micro-batch but the last runs
    under ``accelerator.no_sync`` (DDP averages the accumulated gradients once). Same gradients as a
    plain backward."""
    from perlhf.train.rl import Learner

    c, models, roll = _learning_setup(baseline, prompts=3)
    rewards = torch.tensor([1.0, 0.0, 3.0, 2.5, -1.0, 0.5])
    logp_anchor = anchor_logprobs(models, roll, 1.0, micro_batch_size=2)

    def grads(**kw):
        models.zero_grad(set_to_none=True)
        learn_from_rollout(models, roll, rewards, logp_anchor, c, **kw)
        return [p.grad.clone() for g in models.parameter_groups().values() for p in g if p.grad is not None]

    events = []

    class Recorder:
        def backward(self, loss):
            events.append("backward")
            loss.backward()

        @contextlib.contextmanager
        def no_sync(self, module):
            assert isinstance(module, Learner)
            events.append("no_sync")
            yield

    plain = grads()
    learner = Learner(models)
    through = grads(learner=learner, accelerator=Recorder())
    assert events == ["no_sync", "backward", "no_sync", "backward", "backward"]  # 3 micro-batches of 2
    assert len(plain) == len(through) > 0
    for a, b in zip(plain, through, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("baseline", ["value", "mean", "rloo"])
def test_process_shards_with_global_normalisers_give_the_whole_batch_gradient(baseline):
    """Data parallelism's maths, in one process: two shards of a batch, each learning with the
    whole batch's token count (per process) and mean reward, average to the whole batch's gradient.
    Without them the value loss (a token mean) and the mean baseline would be each shard's own."""
    c, models, roll = _learning_setup(baseline, prompts=2)
    roll.response_mask[0, 2:] = 0.0  # uneven lengths: the shards' token counts differ
    rewards = torch.tensor([1.0, 0.0, 3.0, 2.5])
    logp_anchor = anchor_logprobs(models, roll, 1.0, micro_batch_size=2)

    def grads(rollout, r, anchor, **norm):
        models.zero_grad(set_to_none=True)
        learn_from_rollout(models, rollout, r, anchor, c, **norm)
        return [p.grad.clone() for g in models.parameter_groups().values() for p in g if p.grad is not None]

    whole = grads(roll, rewards, logp_anchor)
    halves = [slice(0, 2), slice(2, 4)]
    tokens = [float(roll.response_mask[h].sum()) for h in halves]
    assert tokens[0] != tokens[1]
    norm = {"num_tokens": sum(tokens) / 2, "batch_mean_reward": float(rewards.mean())}
    parts = [grads(roll.select(h), rewards[h], logp_anchor[h], **norm) for h in halves]
    for w, a, b in zip(whole, *parts, strict=True):
        torch.testing.assert_close((a + b) / 2, w, atol=1e-6, rtol=1e-4)
    if baseline != "rloo":  # the group baseline needs nothing global: the others must
        own = [grads(roll.select(h), rewards[h], logp_anchor[h]) for h in halves]
        assert any(not torch.allclose((a + b) / 2, w, atol=1e-6, rtol=1e-4) for w, a, b in zip(whole, *own, strict=True))


def test_text_reward_scores_a_conversation_the_assistant_opens(monkeypatch):
    """A prompt with no turn before the response (one Taskmaster Coffee training context) is an empty
    conversation, not a prompt without messages: the reward model scores it (an RL run used to stop there)."""
    from types import SimpleNamespace

    import perlhf.train.scoring as scoring
    from perlhf.train.rl_rewards import TextReward

    seen = []
    monkeypatch.setattr(scoring, "score_texts", lambda model, tok, items, *a, **k: seen.extend(items) or [0.5] * len(items))
    reward = TextReward(model_context=contextlib.nullcontext, tokenizer=None, max_prompt_tokens=16, max_response_tokens=8)
    prompts = [RLPrompt((1, 2), ()), RLPrompt((1, 2, 3), ({"role": "user", "content": "hi"},))]
    rollout = SimpleNamespace(response_texts=["Welcome!", "Hello."])
    assert reward(prompts, rollout).tolist() == [0.5, 0.5]
    assert seen == [([], "Welcome!"), ([{"role": "user", "content": "hi"}], "Hello.")]
    assert RLPrompt((5, 6)).messages is None  # token ids only: nothing for a text reward model to read
    with pytest.raises(UserError, match="chat messages"):
        reward([RLPrompt((5, 6))], SimpleNamespace(response_texts=["x"]))
