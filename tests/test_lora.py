"""LoRA target resolution and option checks on tiny models built in code."""

import pytest
import torch.nn as nn

from perlhf.errors import UserError
from perlhf.models.lora import LoraOptions, apply_lora, resolve_lora_targets
from perlhf.models.tiny import make_tiny_causal_lm


@pytest.fixture(scope="module")
def llama():
    return make_tiny_causal_lm(64, seed=0, hidden_size=32, num_layers=2, intermediate_size=64)


def test_attention_preset_is_qkvo(llama):
    assert resolve_lora_targets(llama, "attention") == ["k_proj", "o_proj", "q_proj", "v_proj"]


def test_all_linear_excludes_lm_head(llama):
    got = resolve_lora_targets(llama, "all-linear")
    assert got == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert "lm_head" not in got


def test_explicit_list(llama):
    assert resolve_lora_targets(llama, "q_proj,v_proj") == ["q_proj", "v_proj"]
    with pytest.raises(UserError, match="no linear module named nope.*q_proj"):
        resolve_lora_targets(llama, "q_proj,nope")


def test_gpt2_attention_keeps_mlp_out():
    from transformers import GPT2Config, GPT2LMHeadModel

    m = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    got = resolve_lora_targets(m, "attention")
    # c_proj exists in both attn and mlp: only the attention ones, so full names are returned.
    assert got == ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj"]


def test_model_without_targets_lists_linear_names():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 4)
            self.fc2 = nn.Linear(4, 1)

    with pytest.raises(UserError, match=r"none of these modules; its linear modules are: fc1, fc2"):
        resolve_lora_targets(Net(), "attention")


@pytest.mark.parametrize("rank", [0, -3])
def test_rank_must_be_positive(llama, rank):
    with pytest.raises(UserError, match="--lora-rank"):
        apply_lora(llama, LoraOptions(rank=rank))


def test_bad_dropout_and_alpha():
    with pytest.raises(UserError, match="--lora-dropout"):
        LoraOptions(dropout=1.5).validate()
    with pytest.raises(UserError, match="--lora-alpha"):
        LoraOptions(alpha=0).validate()


def test_apply_lora_freezes_base():
    model = make_tiny_causal_lm(64, seed=1, hidden_size=32, num_layers=2, intermediate_size=64)
    peft_model = apply_lora(model, LoraOptions(rank=2))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert peft_model.peft_config["default"].lora_alpha == 4.0


def test_adapters_save_without_asking_the_hub(tmp_path, monkeypatch):
    """peft's default save asks the hub for the base's config when the base is a hub name (a wait, or a
    warning, offline); perlhf's save does not, and still writes a standard adapter that loads back."""
    import peft.utils.save_and_load as peft_save
    import torch
    from peft import PeftModel

    from perlhf.models.lora import save_adapter

    asked = []
    monkeypatch.setattr(peft_save, "check_file_exists_on_hf_hub", lambda *a, **k: asked.append(a) or None)
    model = apply_lora(make_tiny_causal_lm(64, seed=0, hidden_size=32, num_layers=2, intermediate_size=64),
                       LoraOptions(rank=2, targets="all-linear"))
    model.peft_config["default"].base_model_name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model.save_pretrained(str(tmp_path / "peft-default"))
    assert asked  # the check that the test watches is the one peft makes
    asked.clear()
    save_adapter(model, str(tmp_path / "ours"))
    assert not asked
    assert (tmp_path / "ours" / "adapter_model.safetensors").is_file()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    save_adapter(model, str(tmp_path / "ours"))
    again = PeftModel.from_pretrained(make_tiny_causal_lm(64, seed=0, hidden_size=32, num_layers=2,
                                                          intermediate_size=64), str(tmp_path / "ours"))
    ids = torch.arange(8).unsqueeze(0)
    model.eval(), again.eval()
    assert torch.allclose(again(ids).logits, model(ids).logits)
