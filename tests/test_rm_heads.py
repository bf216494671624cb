"""Scalar head, reward model wrapper, save/reload, merge and base fingerprints (tiny random models)."""

import json

import pytest
import torch

from perlhf.errors import UserError
from perlhf.models.fingerprint import base_fingerprint
from perlhf.models.heads import (
    RewardInfo,
    RewardModel,
    ScalarHead,
    last_token_index,
    load_reward_model,
    merge_reward_model,
    save_reward_model,
)
from perlhf.models.lora import LoraOptions, apply_lora
from perlhf.models.tiny import make_tiny_causal_lm

VOCAB = 64


def _tiny(seed=0):
    return make_tiny_causal_lm(VOCAB, seed=seed, hidden_size=32, num_layers=2, intermediate_size=64)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-base")
    _tiny().save_pretrained(folder)
    return folder


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (3, 7), generator=g)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    return ids, mask


def _lora_rm(base_dir, seed=0):
    from perlhf.models.heads import load_backbone

    backbone = apply_lora(load_backbone(str(base_dir)), LoraOptions(rank=2))
    head = ScalarHead(32)
    head.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():  # a trained-looking adapter: B is zero at init
        g = torch.Generator().manual_seed(seed + 1)
        for n, p in backbone.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return RewardModel(backbone, head).eval()


def _info(base_dir, model, mode="lora"):
    return RewardInfo(base_model=str(base_dir), mode=mode, base_fingerprint=base_fingerprint(model),
                      max_prompt_tokens=16, max_response_tokens=8, task_kind="pair")


def test_last_token_index_right_and_left_padding():
    right = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 0, 3]
    assert last_token_index(left).tolist() == [3, 3, 3]


def test_head_save_reload_exact(tmp_path):
    head = ScalarHead(32)
    head.reset_parameters(torch.Generator().manual_seed(3))
    head.save(tmp_path)
    again = ScalarHead.load(tmp_path, expected_hidden_size=32)
    assert torch.equal(head.linear.weight, again.linear.weight) and torch.equal(head.linear.bias, again.linear.bias)
    assert json.loads((tmp_path / "head.json").read_text())["in_features"] == 32


def test_head_shape_mismatch_is_an_error(tmp_path):
    ScalarHead(32).save(tmp_path)
    with pytest.raises(UserError, match="hidden size 32 but the backbone has 48"):
        ScalarHead.load(tmp_path, expected_hidden_size=48)
    info = json.loads((tmp_path / "head.json").read_text())
    info["in_features"] = 16
    (tmp_path / "head.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match="do not match"):
        ScalarHead.load(tmp_path)
    with pytest.raises(UserError, match="no scalar head"):
        ScalarHead.load(tmp_path / "missing")


def test_reward_model_skips_lm_head_and_ignores_padding_side(base_dir):
    model = _lora_rm(base_dir)
    lm_head = model.backbone.get_base_model().lm_head
    lm_head.register_forward_hook(lambda *a: (_ for _ in ()).throw(AssertionError("LM head was called")))
    ids, mask = _batch()
    with torch.no_grad():
        right = model(ids, mask)
        # the same sequences, left padded
        lengths = mask.sum(1)
        ids_l = torch.zeros_like(ids)
        mask_l = torch.zeros_like(mask)
        for r, n in enumerate(lengths.tolist()):
            ids_l[r, ids.shape[1] - n:] = ids[r, :n]
            mask_l[r, ids.shape[1] - n:] = 1
        left = model(ids_l, mask_l)
        single = torch.stack([model(ids[r:r + 1, :n], mask[r:r + 1, :n])[0] for r, n in enumerate(lengths.tolist())])
    assert right.shape == (3,)
    torch.testing.assert_close(right, left, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(right, single, atol=1e-5, rtol=1e-5)


def test_lora_reward_model_reload_gives_identical_scores(base_dir, tmp_path):
    model = _lora_rm(base_dir)
    save_reward_model(model, tmp_path / "rm", _info(base_dir, model))
    for name in ("adapter_config.json", "adapter_model.safetensors", "head.safetensors", "perlhf_reward.json"):
        assert (tmp_path / "rm" / name).is_file()
    again, info = load_reward_model(tmp_path / "rm")
    ids, mask = _batch()
    with torch.no_grad():
        assert torch.equal(model(ids, mask), again(ids, mask))
    assert info.mode == "lora" and info.hidden_size == 32
    # The adapter folder is a standard peft adapter.
    from peft import PeftModel

    from perlhf.models.heads import load_backbone

    plain = PeftModel.from_pretrained(load_backbone(str(base_dir)), str(tmp_path / "rm"))
    for n, p in plain.named_parameters():
        if "lora_B" in n:
            assert p.abs().sum() > 0


def test_merge_matches_unmerged(base_dir, tmp_path):
    model = _lora_rm(base_dir)
    save_reward_model(model, tmp_path / "rm", _info(base_dir, model))
    merge_reward_model(tmp_path / "rm", tmp_path / "merged")
    merged, info = load_reward_model(tmp_path / "merged")
    assert info.mode == "merged" and not merged.is_lora
    ids, mask = _batch()
    with torch.no_grad():
        torch.testing.assert_close(merged(ids, mask), model(ids, mask), atol=1e-4, rtol=0)
        assert not torch.allclose(merged(ids, mask), RewardModel(_tiny(), model.head)(ids, mask))
    with pytest.raises(UserError, match="no adapter to merge"):
        merge_reward_model(tmp_path / "merged", tmp_path / "again")


def test_full_reward_model_roundtrip(tmp_path, base_dir):
    backbone = _tiny(seed=5)
    head = ScalarHead(32)
    head.reset_parameters(torch.Generator().manual_seed(1))
    model = RewardModel(backbone, head).eval()
    save_reward_model(model, tmp_path / "full", _info(base_dir, model, mode="full"))
    again, _ = load_reward_model(tmp_path / "full")
    ids, mask = _batch()
    with torch.no_grad():
        assert torch.equal(model(ids, mask), again(ids, mask))


def test_fingerprint_is_stable_across_wrappers_and_sees_changes(base_dir):
    a, b = _tiny(), _tiny()
    fp = base_fingerprint(a)
    assert fp.startswith("sha256:") and fp == base_fingerprint(b) == base_fingerprint(b.state_dict())
    wrapped = _lora_rm(base_dir)  # peft names, lora weights non-zero: same base
    assert base_fingerprint(wrapped) == fp
    assert base_fingerprint(_tiny(seed=1)) != fp
    with torch.no_grad():
        b.model.layers[0].mlp.down_proj.weight[0, 0] += 1e-3
    assert base_fingerprint(b) != fp
    assert base_fingerprint(b, max_elements=None) != fp


def test_adapter_on_other_base_weights_is_refused(base_dir, tmp_path):
    model = _lora_rm(base_dir)
    info = _info(base_dir, model)
    info.base_fingerprint = base_fingerprint(_tiny(seed=9))
    save_reward_model(model, tmp_path / "rm", info)
    with pytest.raises(UserError, match="trained on base weights"):
        load_reward_model(tmp_path / "rm")


def test_not_a_reward_model_folder(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        load_reward_model(tmp_path / "nope")
    with pytest.raises(UserError, match="not a perlhf reward model folder"):
        load_reward_model(tmp_path)


def test_encoder_backbone_with_lora(tmp_path):
    """An encoder (BERT) is its own body: scores at the last real token, attention preset, reload."""
    from transformers import BertConfig, BertModel

    from perlhf.models.lora import resolve_lora_targets

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=32)).eval()
    bert.save_pretrained(tmp_path / "bert")
    assert resolve_lora_targets(bert, "attention") == sorted(
        ["encoder.layer.0.attention.output.dense", "encoder.layer.0.attention.self.key",
         "encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.value"])
    from perlhf.models.heads import is_causal_lm, load_backbone

    assert not is_causal_lm(str(tmp_path / "bert"))
    backbone = apply_lora(load_backbone(str(tmp_path / "bert"), kind="encoder"), LoraOptions(rank=2))
    head = ScalarHead(32)
    head.reset_parameters(torch.Generator().manual_seed(0))
    model = RewardModel(backbone, head).eval()
    info = RewardInfo(base_model=str(tmp_path / "bert"), mode="lora", base_fingerprint=base_fingerprint(model),
                      max_prompt_tokens=8, max_response_tokens=8, task_kind="rating", backbone="encoder")
    save_reward_model(model, tmp_path / "rm", info)
    again, _ = load_reward_model(tmp_path / "rm")
    ids, mask = _batch()
    with torch.no_grad():
        assert torch.equal(model(ids, mask), again(ids, mask))


def test_attach_reward_adapter_to_shared_backbone(base_dir, tmp_path):
    from perlhf.models.heads import attach_reward_adapter, load_backbone

    rm = _lora_rm(base_dir)
    save_reward_model(rm, tmp_path / "rm", _info(base_dir, rm))
    shared = apply_lora(load_backbone(str(base_dir)), LoraOptions(rank=2), adapter_name="value")
    head, info = attach_reward_adapter(shared, tmp_path / "rm")
    assert set(shared.peft_config) == {"value", "reward"}
    shared.set_adapter("reward", inference_mode=True)
    assert not any(p.requires_grad for n, p in shared.named_parameters() if ".reward." in n)
    ids, mask = _batch()
    with torch.no_grad():
        assert torch.equal(RewardModel(shared, head)(ids, mask), rm(ids, mask))
    other = apply_lora(_tiny(seed=4), LoraOptions(rank=2), adapter_name="value")
    with pytest.raises(UserError, match="trained on base weights"):
        attach_reward_adapter(other, tmp_path / "rm")
