"""The networks of RL: one frozen backbone with adapters (LoRA mode) or separate copies (full mode).

LoRA mode (:class:`SharedBackbone`) keeps **one** frozen base in memory — the
merged SFT model — and puts everything else on it (DESIGN.md):

* ``policy``: a trainable LoRA adapter (the base LM head reads it out);
* ``value``: a trainable LoRA adapter plus a :class:`~perlhf.models.heads.ScalarHead`
  read at every position (``V(s_t)``);
* anchor: the same backbone with **all adapters disabled**. Because SFT was
  merged into the base weights, that *is* the SFT model — never the pre-SFT
  base — and it costs no memory;
* ``reward`` (optional): a reward model's LoRA adapter and head, when it was
  trained on these very base weights (checked by fingerprint), frozen.

Forward-only phases (sampling, reward scoring, the anchor) run with their
adapter *folded*: each LoRA layer is shadowed by a plain linear holding a
scratch ``W + s·B·A`` (cast to the autocast dtype under autocast), and the
shared weights are never written (:meth:`SharedBackbone.folded`), so they cost
what the plain model costs. Learning always runs through peft's adapter path.

peft's ``set_adapter`` marks the active adapter trainable and every other one
frozen; :meth:`SharedBackbone.use` re-applies the intended flags after each
switch (policy and value trainable, reward and base frozen), so switching
adapters never changes what the optimizer trains.

Full mode (:class:`SeparateModels`) is the honest baseline: separate policy,
value and anchor models (three copies of the SFT model, as full-tuning RLHF
stacks run it). Both classes expose the same methods, so :mod:`perlhf.train.rl`
runs one loop and one set of loss functions for both.

On disk (checkpoints and the final output)::

    policy/            LoRA: a standard PEFT adapter folder; full: a plain model folder
    value/             LoRA: PEFT adapter + head.safetensors/head.json; full: model + head
    perlhf_rl.json     mode, adapters, the anchor's base fingerprint
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from perlhf.errors import UserError
from perlhf.io import atomic_write_json
from perlhf.models.heads import RewardModel, ScalarHead, hidden_size_of
from perlhf.models.lora import LoraOptions, lora_config, save_adapter

log = logging.getLogger(__name__)

POLICY = "policy"
VALUE = "value"
REWARD = "reward"
RL_INFO = "perlhf_rl.json"


def zero_value_head(hidden_size: int) -> ScalarHead:
    """A value head that starts at ``V = 0`` everywhere."""
    head = ScalarHead(hidden_size)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
    return head


def value_positions(values: torch.Tensor, prompt_len: int, num_response: int) -> torch.Tensor:
    """``V(s_t)`` for each response token ``t``: the value read at the position just before it."""
    return values[:, prompt_len - 1 : prompt_len - 1 + num_response]


class SharedBackbone(nn.Module):
    """One frozen base model with ``policy``/``value`` (and optionally ``reward``) LoRA adapters."""

    mode = "lora"

    def __init__(self, base: nn.Module, lora: LoraOptions, *, with_value: bool = True, seed: int = 0,
                 fold_adapters: bool = True):
        super().__init__()
        from peft import get_peft_model

        from perlhf.models.fingerprint import base_fingerprint

        if hasattr(base, "peft_config"):
            raise UserError("the RL backbone must be a plain model (merge the SFT adapter first: perlhf sft --merge)")
        for p in base.parameters():
            p.requires_grad_(False)
        self.anchor_fingerprint = base_fingerprint(base)
        self.lora = lora
        self.fold_adapters = fold_adapters
        cfg = lora_config(base, lora)  # resolved on the plain model, before peft injects its layers
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.peft = get_peft_model(base, cfg, adapter_name=POLICY)
            self.with_value = with_value
            if with_value:
                self.peft.add_adapter(VALUE, copy.deepcopy(cfg))
        self.value_head = zero_value_head(hidden_size_of(base)) if with_value else None
        self.reward_heads = nn.ModuleDict()  # the frozen reward adapters' heads (an ensemble: several)
        self._adapters = [POLICY] + ([VALUE] if with_value else [])
        self.use(POLICY)

    # -- adapters ----------------------------------------------------------------------------
    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        key = f".{name}."
        return [p for n, p in self.peft.named_parameters() if "lora_" in n and key in n]

    def use(self, name: str) -> None:
        """Make adapter ``name`` the active one; trainable flags stay as intended."""
        self.peft.set_adapter(name)
        for a in self._adapters:
            for p in self.adapter_parameters(a):
                p.requires_grad_(True)
        for reward in self.reward_heads:
            for p in self.adapter_parameters(reward):
                p.requires_grad_(False)

    @contextlib.contextmanager
    def policy(self) -> Iterator[nn.Module]:
        """The policy (a causal LM): the backbone with the ``policy`` adapter."""
        self.use(POLICY)
        yield self.peft

    @contextlib.contextmanager
    def sampler(self) -> Iterator[nn.Module]:
        """The policy for forward-only use (sampling): the ``policy`` adapter folded into the weights."""
        with self.folded(POLICY) as model:
            yield model

    @contextlib.contextmanager
    def anchor(self) -> Iterator[nn.Module]:
        """The anchor: the backbone with every adapter disabled, i.e. the merged SFT model."""
        with self.folded(None) as model:
            yield model

    @contextlib.contextmanager
    def folded(self, name: str | None) -> Iterator[nn.Module]:
        """The backbone as a plain model computing ``W + s·B·A`` of adapter ``name`` (``None``: ``W``),
        for forward-only phases (sampling, reward scoring, the anchor).

        peft's path costs two extra small matmuls per adapted projection and token, plus a Python
        wrapper per layer; in a decode loop that is a large share of the sampling time, most of all
        on a GPU, where the loop is launch-bound. peft's ``merge_adapter`` would add the delta into
        the shared base in place and subtract it afterwards, which drifts the frozen base (and so
        the anchor) by rounding every step. Here each LoRA layer is *shadowed* in its parent by a
        plain linear holding ``W + delta`` (a scratch tensor); the shared weights are never written.

        Under autocast the shadows hold their weights already in the autocast dtype, and every other
        linear (MLP, LM head) is shadowed by a cast copy too: autocast caches its casts only for
        weights that require grad, so a frozen base would otherwise be cast again at every decoded
        token, which full fine-tuning's trainable weights are not. Costs one scratch copy of the
        shadowed weights while open. Falls back to peft's path (``set_adapter`` /
        ``disable_adapter``) when folding is off or a layer cannot be folded (DoRA, embeddings,
        quantized or merged layers).
        """
        slots = _lora_slots(self.peft)
        if not self.fold_adapters or not slots or not all(_foldable(m) for _, _, m in slots):
            with contextlib.ExitStack() as stack:
                if name is None:
                    stack.enter_context(self.peft.disable_adapter())
                else:
                    self.use(name)
                try:
                    yield self.peft
                finally:
                    self.use(POLICY)
            return
        device_type = slots[0][2].get_base_layer().weight.device.type
        cast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        shadowed: list[tuple[nn.Module, str, nn.Module]] = []
        try:
            with torch.no_grad(), torch.autocast(device_type, enabled=False):
                for parent, attr, layer in slots:
                    base = layer.get_base_layer()
                    weight = base.weight
                    if name is not None and name in layer.lora_A:
                        weight = weight + layer.get_delta_weight(name).to(weight.dtype)
                    shadowed.append((parent, attr, layer))
                    setattr(parent, attr, _FrozenLinear(weight, base.bias, cast))
                if cast is not None:
                    for parent, attr, linear in _plain_linear_slots(self.peft):
                        shadowed.append((parent, attr, linear))
                        setattr(parent, attr, _FrozenLinear(linear.weight, linear.bias, cast))
            yield self.peft
        finally:
            for parent, attr, module in reversed(shadowed):
                setattr(parent, attr, module)
            self.use(POLICY)

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``V`` at every position, ``(B, L)``, through the ``value`` adapter and head."""
        if self.value_head is None:
            raise RuntimeError("this backbone has no value adapter (baseline is not 'value')")
        self.use(VALUE)
        try:
            return RewardModel(self.peft, self.value_head).token_values(input_ids, attention_mask)
        finally:
            self.use(POLICY)

    # -- the reward adapter ------------------------------------------------------------------
    @property
    def reward_head(self) -> ScalarHead | None:
        return self.reward_heads[REWARD] if REWARD in self.reward_heads else None  # a ModuleDict has no .get

    def attach_reward(self, folder: str | Path, head: ScalarHead, name: str = REWARD) -> None:
        """Load a reward model's LoRA adapter (frozen) and its head onto this backbone as adapter
        ``name`` (an ensemble's members: one name each)."""
        if name in self._adapters or name in self.reward_heads:
            raise ValueError(f"adapter name {name!r} is taken")
        self.peft.load_adapter(str(folder), adapter_name=name, is_trainable=False)
        self.reward_heads[name] = head.requires_grad_(False)
        self.use(POLICY)

    @contextlib.contextmanager
    def reward_model(self, name: str = REWARD) -> Iterator[RewardModel]:
        """Reward model ``name`` (forward only): its adapter folded into the weights, and its head."""
        if name not in self.reward_heads:
            raise RuntimeError(f"no reward adapter {name!r} attached")
        with self.folded(name) as model:
            yield RewardModel(model, self.reward_heads[name])

    # -- training ----------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {POLICY: self.adapter_parameters(POLICY)}
        if self.value_head is not None:
            groups[VALUE] = self.adapter_parameters(VALUE) + list(self.value_head.parameters())
        return groups

    def base_parameters(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.peft.named_parameters() if "lora_" not in n}

    # -- saving ------------------------------------------------------------------------------
    def save(self, folder: str | Path, *, tokenizer: Any | None = None) -> None:
        folder = Path(folder)
        save_adapter(self.peft, str(folder), selected_adapters=[POLICY])
        # peft writes a non-default adapter under a sub-folder of its name
        _flatten_adapter_dir(folder, POLICY)
        if self.value_head is not None:
            save_adapter(self.peft, str(folder), selected_adapters=[VALUE])
            _flatten_adapter_dir(folder, VALUE)
            self.value_head.save(folder / VALUE)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder / POLICY))
        atomic_write_json(folder / RL_INFO, {"mode": self.mode, "adapters": self._adapters,
                                              "anchor_fingerprint": self.anchor_fingerprint})

    def load(self, folder: str | Path) -> None:
        """Load the policy (and value) adapter weights and the value head saved by :meth:`save`."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        folder = Path(folder)
        _check_rl_info(folder, self.mode, self.anchor_fingerprint)
        for name in self._adapters:
            path = folder / name / "adapter_model.safetensors"
            if not path.is_file():
                raise UserError(f"{folder}: no {name} adapter ({path.name} missing); is this an RL checkpoint?")
            set_peft_model_state_dict(self.peft, load_file(str(path)), adapter_name=name)
        if self.value_head is not None:
            head = ScalarHead.load(folder / VALUE, expected_hidden_size=self.value_head.hidden_size)
            self.value_head.load_state_dict(head.state_dict())
        self.use(POLICY)

    def merged_policy(self) -> nn.Module:
        """A plain model: the SFT base with the policy adapter merged (a copy; the backbone is untouched)."""
        merged = copy.deepcopy(self.peft)
        for name in list(merged.peft_config):
            if name != POLICY:
                merged.delete_adapter(name)
        merged.set_adapter(POLICY)
        return merged.merge_and_unload()


def _flatten_adapter_dir(folder: Path, name: str) -> None:
    """peft saves adapter ``name`` (not ``default``) into ``folder/name``: keep it there; check it exists."""
    if not (folder / name / "adapter_model.safetensors").is_file():
        raise RuntimeError(f"peft did not write the {name} adapter into {folder / name}")


def _check_rl_info(folder: Path, mode: str, fingerprint: str | None) -> None:
    path = folder / RL_INFO
    if not path.is_file():
        raise UserError(f"{folder}: not a perlhf RL checkpoint ({RL_INFO} missing)")
    info = json.loads(path.read_text())
    if info.get("mode") != mode:
        raise UserError(f"{folder}: an RL checkpoint of mode {info.get('mode')!r}, but this run uses --mode {mode}")
    if fingerprint and info.get("anchor_fingerprint") and info["anchor_fingerprint"] != fingerprint:
        raise UserError(f"{folder}: these adapters were trained on another backbone "
                        f"({info['anchor_fingerprint'][:19]}…, this one {fingerprint[:19]}…); pass the same --policy")


class SeparateModels(nn.Module):
    """Full fine-tuning: separate policy, value (causal LM body + head) and frozen anchor models."""

    mode = "full"

    def __init__(self, policy: nn.Module, anchor: nn.Module, value_body: nn.Module | None):
        super().__init__()
        from perlhf.models.fingerprint import base_fingerprint

        self.anchor_fingerprint = base_fingerprint(anchor)
        self.policy_model = policy
        self.anchor_model = anchor
        for p in policy.parameters():
            p.requires_grad_(True)
        for p in anchor.parameters():
            p.requires_grad_(False)
        self.with_value = value_body is not None
        self.value_model: RewardModel | None = None
        if value_body is not None:
            self.value_model = RewardModel(value_body, zero_value_head(hidden_size_of(value_body)))
            for p in self.value_model.parameters():
                p.requires_grad_(True)
            _freeze_output_head(value_body)

    @classmethod
    def from_model(cls, sft_model: nn.Module, *, with_value: bool = True) -> SeparateModels:
        """Three independent copies of the SFT model (policy, anchor, value body)."""
        return cls(copy.deepcopy(sft_model), copy.deepcopy(sft_model),
                   copy.deepcopy(sft_model) if with_value else None)

    @contextlib.contextmanager
    def policy(self) -> Iterator[nn.Module]:
        yield self.policy_model

    @contextlib.contextmanager
    def sampler(self) -> Iterator[nn.Module]:
        yield self.policy_model

    @contextlib.contextmanager
    def anchor(self) -> Iterator[nn.Module]:
        yield self.anchor_model

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.value_model is None:
            raise RuntimeError("no value model (baseline is not 'value')")
        return self.value_model.token_values(input_ids, attention_mask)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {POLICY: [p for p in self.policy_model.parameters() if p.requires_grad]}
        if self.value_model is not None:
            groups[VALUE] = [p for p in self.value_model.parameters() if p.requires_grad]
        return groups

    def save(self, folder: str | Path, *, tokenizer: Any | None = None) -> None:
        folder = Path(folder)
        self.policy_model.save_pretrained(str(folder / POLICY), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder / POLICY))
        if self.value_model is not None:
            from safetensors.torch import save_model

            (folder / VALUE).mkdir(parents=True, exist_ok=True)
            save_model(self.value_model.backbone, str(folder / VALUE / "model.safetensors"))
            self.value_model.head.save(folder / VALUE)
        atomic_write_json(folder / RL_INFO, {"mode": self.mode, "anchor_fingerprint": self.anchor_fingerprint})

    def load(self, folder: str | Path) -> None:
        from safetensors.torch import load_file, load_model

        folder = Path(folder)
        _check_rl_info(folder, self.mode, self.anchor_fingerprint)
        state = load_file(str(folder / POLICY / "model.safetensors"))
        missing, unexpected = self.policy_model.load_state_dict(state, strict=False)
        tied = set(getattr(self.policy_model, "_tied_weights_keys", None) or [])
        if unexpected or [m for m in missing if m not in tied and not m.endswith("lm_head.weight")]:
            raise UserError(f"{folder / POLICY}: weights do not fit the policy model "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        if self.value_model is not None:
            load_model(self.value_model.backbone, str(folder / VALUE / "model.safetensors"))
            head = ScalarHead.load(folder / VALUE, expected_hidden_size=self.value_model.head.hidden_size)
            self.value_model.head.load_state_dict(head.state_dict())

    def merged_policy(self) -> nn.Module:
        return self.policy_model


def _lora_slots(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """``(parent, attribute, layer)`` of every peft LoRA layer (outermost only)."""
    from peft.tuners.lora import LoraLayer

    slots = []
    for parent in model.modules():
        if isinstance(parent, LoraLayer):
            continue  # its base layer lives inside it
        for attr, child in parent.named_children():
            if isinstance(child, LoraLayer):
                slots.append((parent, attr, child))
    return slots


def _foldable(layer: nn.Module) -> bool:
    """A plain LoRA linear (no DoRA, not merged, not quantized) whose delta ``get_delta_weight`` gives exactly."""
    from peft.tuners.lora import Linear

    return (type(layer) is Linear and not any(getattr(layer, "use_dora", {}).values())
            and not layer.merged and type(layer.get_base_layer()) is nn.Linear)


def _plain_linear_slots(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """``(parent, attribute, layer)`` of every plain ``nn.Linear`` (not quantized subclasses)."""
    return [(parent, attr, child) for parent in model.modules() for attr, child in parent.named_children()
            if type(child) is nn.Linear]


class _FrozenLinear(nn.Module):
    """A forward-only linear over given tensors (held as plain attributes, not parameters)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype | None = None):
        super().__init__()
        self.weight = weight.detach() if dtype is None else weight.detach().to(dtype)
        self.bias = None if bias is None else (bias.detach() if dtype is None else bias.detach().to(dtype))
        self.in_features, self.out_features = self.weight.shape[1], self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


def _freeze_output_head(model: nn.Module) -> None:
    """The value model never uses the LM head; freeze it unless it is tied to the input embeddings."""
    get_out = getattr(model, "get_output_embeddings", None)
    get_in = getattr(model, "get_input_embeddings", None)
    out = get_out() if callable(get_out) else None
    inp = get_in() if callable(get_in) else None
    if out is not None and (inp is None or out.weight is not inp.weight):
        out.weight.requires_grad_(False)
