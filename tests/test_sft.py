"""SFT: loss on response tokens only, a tiny model overfits, merge keeps the logits, resume."""

from __future__ import annotations

import json

import pytest
import torch

from perlhf.models.tiny import make_tiny_causal_lm
from perlhf.runs import RunDir
from perlhf.train.sft import (
    IGNORE_INDEX,
    SFTConfig,
    SFTExample,
    collate_sft,
    evaluate_sft,
    merge_to_plain,
    prepare_sft_model,
    sft_token_losses,
    train_sft,
)

VOCAB = 64
PAD = 0


def _examples() -> list[SFTExample]:
    return [
        SFTExample((5, 6, 7), (10, 11, 12, 2)),
        SFTExample((8, 9), (13, 14, 2)),
        SFTExample((15, 16, 17, 18), (19, 2)),
        SFTExample((20,), (21, 22, 23, 24, 2)),
    ]


def test_collate_labels_only_response_tokens():
    b = collate_sft(_examples()[:2], PAD)
    assert b["input_ids"].tolist() == [[5, 6, 7, 10, 11, 12, 2], [8, 9, 13, 14, 2, 0, 0]]
    assert b["attention_mask"].tolist() == [[1] * 7, [1, 1, 1, 1, 1, 0, 0]]
    I = IGNORE_INDEX  # noqa: E741
    assert b["labels"].tolist() == [[I, I, I, 10, 11, 12, 2], [I, I, 13, 14, 2, I, I]]


def test_loss_is_response_token_cross_entropy_only():
    model = make_tiny_causal_lm(VOCAB, seed=0)
    batch = collate_sft(_examples()[:2], PAD)
    s, n = sft_token_losses(model, batch)
    assert int(n) == 7
    logp = torch.log_softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1)
    manual = 0.0
    for row, (ids, labels) in enumerate(zip(batch["input_ids"], batch["labels"], strict=True)):
        for t in range(1, ids.shape[0]):
            if labels[t] != IGNORE_INDEX:
                manual -= float(logp[row, t - 1, labels[t]].detach())
    assert float(s) == pytest.approx(manual, rel=1e-5)
    # changing a prompt token's label-free position never enters the loss as a target:
    # the gradient w.r.t. logits at the last position (predicting nothing) is zero
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = out.logits.detach().requires_grad_(True)
    targets = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), targets.reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")
    loss.backward()
    g = logits.grad.abs().sum(-1)
    # positions predicting prompt tokens (0, 1 in row 0) get no gradient; row 0 position 2 predicts 10
    assert g[0, 0] == 0 and g[0, 1] == 0 and g[0, 2] > 0
    assert g[1, 5] == 0 and g[1, 6] == 0  # padding


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_tiny_model_overfits(mode, tmp_path):
    cfg = SFTConfig(mode=mode, learning_rate=3e-2 if mode == "lora" else 1e-2, lora_rank=8,
                    lora_targets="all-linear", batch_size=4, max_steps=40, warmup_steps=0,
                    log_every=10, eval_every=0, save_every=20)
    model = prepare_sft_model(make_tiny_causal_lm(VOCAB, seed=0), cfg)
    data = _examples()
    before = evaluate_sft(model, data, PAD, 4, torch.device("cpu"))["loss"]
    run = RunDir.prepare(tmp_path / "run")
    last = train_sft(cfg, model, data, pad_id=PAD, run=run, validation=data)
    after = last["validation"]["loss"]
    if mode == "full":
        assert after < 0.5, (before, after)  # memorised
    else:
        # a random tiny model's LM head (std 0.02) caps how confident LoRA on the linears can get
        assert after < 0.85 * before, (before, after)
    lines = [json.loads(x) for x in run.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in lines if r["split"] == "train"] == [10, 20, 30, 40]
    assert [p.name for p in run.list_checkpoints()] == ["step-00000020", "step-00000040"]


def test_merged_model_equals_adapter_logits():
    cfg = SFTConfig(mode="lora", learning_rate=3e-2, lora_targets="all-linear", batch_size=4, max_steps=5,
                    warmup_steps=0, eval_every=0, save_every=0)
    model = prepare_sft_model(make_tiny_causal_lm(VOCAB, seed=0), cfg)
    train_sft(cfg, model, _examples(), pad_id=PAD)
    batch = collate_sft(_examples(), PAD)
    model.eval()
    with torch.no_grad():
        adapter_logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        merged = merge_to_plain(model)
        assert not hasattr(merged, "peft_config")
        merged_logits = merged(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        base_logits = make_tiny_causal_lm(VOCAB, seed=0)(input_ids=batch["input_ids"],
                                                          attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(base_logits, adapter_logits, atol=1e-3)  # training did move the adapter


def test_resume_reaches_the_same_adapter(tmp_path):
    def cfg(steps):
        return SFTConfig(mode="lora", learning_rate=1e-2, lora_targets="all-linear", batch_size=2,
                         max_steps=steps, warmup_steps=2, eval_every=0, save_every=2, keep_checkpoints=5)

    data = _examples()
    full = prepare_sft_model(make_tiny_causal_lm(VOCAB, seed=0), cfg(4))
    train_sft(cfg(4), full, data, pad_id=PAD, run=RunDir.prepare(tmp_path / "a"))
    # interrupted after step 2, then resumed to 4
    part = prepare_sft_model(make_tiny_causal_lm(VOCAB, seed=0), cfg(2))
    train_sft(cfg(2), part, data, pad_id=PAD, run=RunDir.prepare(tmp_path / "b"))
    resumed = prepare_sft_model(make_tiny_causal_lm(VOCAB, seed=0), cfg(4))
    run = RunDir.prepare(tmp_path / "b", resume=True)
    train_sft(cfg(4), resumed, data, pad_id=PAD, run=run)
    a = {k: v for k, v in full.state_dict().items() if "lora_" in k}
    b = {k: v for k, v in resumed.state_dict().items() if "lora_" in k}
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_gradient_checkpointing_same_gradients_fewer_saved_activations(mode):
    grads, saved = {}, {}
    batch = collate_sft(_examples(), PAD)
    for ckpt in (False, True):
        c = SFTConfig(mode=mode, lora_targets="all-linear", lora_rank=4, gradient_checkpointing=ckpt)
        model = prepare_sft_model(make_tiny_causal_lm(VOCAB, seed=0), c)
        model.train()
        saved[ckpt] = 0

        def pack(t, ckpt=ckpt):
            saved[ckpt] += t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            losses, mask = sft_token_losses(model, batch)
            (losses.sum() / mask.sum()).backward()
        grads[ckpt] = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    assert saved[True] < saved[False] / 2, saved
    assert len(grads[True]) == len(grads[False]) > 0
    for a, b in zip(grads[False], grads[True], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
