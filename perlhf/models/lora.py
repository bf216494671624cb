"""LoRA presets: which modules get adapters, and the peft configuration.

``--lora-targets`` takes a preset or an explicit list:

- ``attention`` (the paper's choice): the attention projections, i.e. every
  linear layer inside an attention block (``q_proj``, ``k_proj``, ``v_proj``,
  ``o_proj`` on Llama-style models; ``query``/``key``/``value``/``dense`` on
  BERT; ``c_attn``/``c_proj`` on GPT-2);
- ``all-linear``: every linear layer except the output (LM) head;
- a comma-separated list of module names (``q_proj,v_proj``).

Targets are resolved against the actual model, so a model without any of them
is refused with the names of the linear modules it does have. LoRA itself comes
from peft; the scalar head of a reward or value model is a separate module
(see :mod:`perlhf.models.heads`), trained beside the adapter and saved next to
it, so it is never lost in peft's ``modules_to_save`` machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from perlhf.errors import UserError

TARGET_PRESETS = ("attention", "all-linear")


def _is_linear(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    try:  # GPT-2 style "Conv1D" is a transposed linear layer; peft supports it.
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return False
    return isinstance(module, Conv1D)


def linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every linear layer of ``model`` by qualified name, without the output (LM) head."""
    out_emb = None
    get_out = getattr(model, "get_output_embeddings", None)
    if callable(get_out):
        try:
            out_emb = get_out()
        except (AttributeError, NotImplementedError):
            out_emb = None
    return {n: m for n, m in model.named_modules() if n and _is_linear(m) and m is not out_emb}


def _in_attention(name: str) -> bool:
    parents = name.split(".")[:-1]
    return any("attn" in p.lower() or "attention" in p.lower() for p in parents)


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _compact(selected: list[str], all_linear: dict[str, nn.Module]) -> list[str]:
    """Leaf names (``q_proj``) when they select exactly ``selected``, else the full names."""
    leaves = sorted({_leaf(n) for n in selected})
    matched = {n for n in all_linear if _leaf(n) in leaves}
    return leaves if matched == set(selected) else sorted(selected)


def _names_summary(names: list[str]) -> str:
    leaves = sorted({_leaf(n) for n in names})
    return ", ".join(leaves) if leaves else "(none)"


def resolve_lora_targets(model: nn.Module, targets: str) -> list[str]:
    """Module names for peft's ``target_modules`` that exist in ``model``.

    Raises :class:`UserError` naming the linear modules the model has when the
    preset or list selects none of them."""
    linear = linear_modules(model)
    spec = targets.strip()
    if spec == "attention":
        selected = [n for n in linear if _in_attention(n)]
    elif spec == "all-linear":
        selected = list(linear)
    else:
        wanted = [t.strip() for t in spec.split(",") if t.strip()]
        if not wanted:
            raise UserError(f"--lora-targets {targets!r}: give 'attention', 'all-linear' or module names")
        missing = [w for w in wanted if not any(n == w or n.endswith("." + w) for n in linear)]
        if missing:
            raise UserError(
                f"--lora-targets: the model has no linear module named {', '.join(missing)}; "
                f"its linear modules are: {_names_summary(list(linear))}"
            )
        selected = [n for n in linear if any(n == w or n.endswith("." + w) for w in wanted)]
    if not selected:
        raise UserError(
            f"--lora-targets {spec}: the model ({type(model).__name__}) has none of these modules; "
            f"its linear modules are: {_names_summary(list(linear))}. "
            "Pass --lora-targets all-linear or a comma-separated list of these names."
        )
    return _compact(selected, linear)


@dataclass(frozen=True)
class LoraOptions:
    rank: int = 8
    alpha: float | None = None  # None: 2 * rank
    dropout: float = 0.0
    targets: str = "attention"

    def validate(self) -> None:
        if self.rank <= 0:
            raise UserError(f"--lora-rank must be a positive integer, got {self.rank}")
        if self.alpha is not None and self.alpha <= 0:
            raise UserError(f"--lora-alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"--lora-dropout must be in [0, 1), got {self.dropout}")

    @property
    def resolved_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank


def lora_config(model: nn.Module, opts: LoraOptions):
    """A peft ``LoraConfig`` whose targets were checked against ``model``."""
    from peft import LoraConfig

    opts.validate()
    return LoraConfig(
        r=opts.rank,
        lora_alpha=opts.resolved_alpha,
        lora_dropout=opts.dropout,
        target_modules=resolve_lora_targets(model, opts.targets),
        bias="none",
    )


def apply_lora(model: nn.Module, opts: LoraOptions, adapter_name: str = "default"):
    """Wrap ``model`` in a peft model with a fresh LoRA adapter; the base weights are frozen."""
    import warnings

    from peft import get_peft_model

    config = lora_config(model, opts)
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config, adapter_name=adapter_name)


def save_adapter(model: nn.Module, folder: str, **kwargs) -> None:
    """``model.save_pretrained`` of a peft model, in safetensors, without peft's network lookup.

    With ``save_embedding_layers="auto"``, peft asks the Hugging Face hub for the base model's config
    on every save whose base is a hub name, to see whether the vocabulary grew. perlhf never resizes
    the embeddings, so unless an adapter targets the embeddings or the LM head (saved then, as peft
    would), they are not saved and the hub is not asked: offline or firewalled machines do not wait
    on it."""
    from peft.utils.constants import EMBEDDING_LAYER_NAMES

    targets = {str(t) for cfg in model.peft_config.values() for t in (cfg.target_modules or [])}
    embedding = any(name in t for t in targets for name in EMBEDDING_LAYER_NAMES)
    model.save_pretrained(folder, safe_serialization=True, save_embedding_layers="auto" if embedding else False,
                          **kwargs)
