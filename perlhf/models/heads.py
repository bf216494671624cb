"""Scalar heads, and the reward model: a transformer body plus a scalar head.

A reward model scores a whole sequence with the head read at its last
non-padding token; a value model (RL) reads the same head at every token
(:meth:`RewardModel.token_values`). Neither computes LM-head logits: the
forward pass calls the backbone's transformer body (``LlamaModel`` inside
``LlamaForCausalLM``; an encoder is its own body) and stops at the last hidden
states.

On disk a reward model is a folder::

    perlhf_reward.json        what it is: base model, mode, base-weights fingerprint, max lengths, task kind
    head.safetensors          the scalar head ("weight" [1, hidden], "bias" [1])
    head.json                 the head's exact shape and dtype, checked on load
    adapter_config.json       mode "lora": a standard peft adapter,
    adapter_model.safetensors     loadable with PeftModel.from_pretrained(base, folder)
    config.json, model.safetensors   mode "full" / "merged": the whole (causal LM) model
    tokenizer files

The head is a separate module rather than a peft ``modules_to_save`` entry: it
is saved beside the adapter in its own file with its shape, so it can neither be
dropped from a saved adapter nor silently rebuilt with the wrong shape.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from perlhf.errors import UserError
from perlhf.io import atomic_write_json
from perlhf.models.lora import save_adapter

log = logging.getLogger(__name__)

HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head.json"
REWARD_INFO = "perlhf_reward.json"
FORMAT = "perlhf-reward"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- head
class ScalarHead(nn.Module):
    """``Linear(hidden -> 1)``; kept in float32 whatever the backbone's dtype."""

    def __init__(self, hidden_size: int, bias: bool = True, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1, bias=bias, dtype=dtype)

    @property
    def hidden_size(self) -> int:
        return self.linear.in_features

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Normal(0, 1/sqrt(hidden+1)) weights, zero bias: scores start near 0 with some spread."""
        std = 1.0 / (self.hidden_size + 1) ** 0.5
        with torch.no_grad():
            w = torch.randn(self.linear.weight.shape, generator=generator, dtype=torch.float32) * std
            self.linear.weight.copy_(w)
            if self.linear.bias is not None:
                self.linear.bias.zero_()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)

    def shape_info(self) -> dict[str, Any]:
        return {
            "in_features": self.linear.in_features,
            "out_features": self.linear.out_features,
            "bias": self.linear.bias is not None,
            "dtype": str(self.linear.weight.dtype).removeprefix("torch."),
        }

    def save(self, folder: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.linear.state_dict().items()}
        save_file(tensors, str(folder / HEAD_WEIGHTS), metadata={"format": "perlhf-scalar-head"})
        atomic_write_json(folder / HEAD_CONFIG, self.shape_info())

    @classmethod
    def load(cls, folder: str | os.PathLike, expected_hidden_size: int | None = None) -> ScalarHead:
        """Rebuild the head with the exact saved shape; a mismatch is a clear error, never a silent re-init."""
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path, w_path = folder / HEAD_CONFIG, folder / HEAD_WEIGHTS
        if not cfg_path.is_file() or not w_path.is_file():
            raise UserError(f"{folder}: no scalar head ({HEAD_WEIGHTS} + {HEAD_CONFIG}); "
                            "is this a perlhf reward/value model folder?")
        info = json.loads(cfg_path.read_text())
        tensors = load_file(str(w_path))
        want_w = (int(info["out_features"]), int(info["in_features"]))
        got_w = tuple(tensors.get("weight", torch.empty(0)).shape)
        if got_w != want_w or (info.get("bias", True) and tuple(tensors.get("bias", torch.empty(0)).shape)
                               != (want_w[0],)):
            raise UserError(f"{w_path}: head weights {got_w} do not match {cfg_path} ({want_w}); the folder is corrupt")
        if want_w[0] != 1:
            raise UserError(f"{cfg_path}: expected a scalar head (out_features 1), got {want_w[0]}")
        if expected_hidden_size is not None and want_w[1] != expected_hidden_size:
            raise UserError(
                f"{cfg_path}: the head expects hidden size {want_w[1]} but the backbone has {expected_hidden_size}: "
                "this head was trained on a different model"
            )
        dtype = getattr(torch, str(info.get("dtype", "float32")))
        head = cls(want_w[1], bias=bool(info.get("bias", True)), dtype=dtype)
        head.linear.load_state_dict(tensors, strict=True)
        return head


# --------------------------------------------------------------------------- pure helpers
def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding token of each row; right or left padding alike.

    Rows with no real token give index 0."""
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.to(torch.long)).argmax(dim=-1)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions 0, 1, ... counted over real tokens only (so left padding does not shift them)."""
    return (attention_mask.to(torch.long).cumsum(-1) - 1).clamp(min=0)


def unwrap_peft(model: nn.Module) -> nn.Module:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def transformer_body(model: nn.Module) -> nn.Module:
    """The module that returns last hidden states: the decoder of a causal LM (no LM head),
    an encoder itself. LoRA layers injected by peft live inside it, so they are applied."""
    model = unwrap_peft(model)
    body = getattr(model, "base_model", None)
    return body if isinstance(body, nn.Module) else model


def hidden_size_of(model: nn.Module) -> int:
    cfg = getattr(unwrap_peft(model), "config", None)
    for key in ("hidden_size", "d_model", "n_embd", "dim"):
        if cfg is not None and getattr(cfg, key, None):
            return int(getattr(cfg, key))
    raise UserError(f"cannot tell the hidden size of {type(model).__name__}: its config has no hidden_size")


# --------------------------------------------------------------------------- model
class RewardModel(nn.Module):
    """A backbone (causal LM, encoder, or either wrapped by peft) plus a :class:`ScalarHead`."""

    def __init__(self, backbone: nn.Module, head: ScalarHead):
        super().__init__()
        self.backbone = backbone
        self.head = head
        body = transformer_body(backbone)
        params = inspect.signature(body.forward).parameters
        self._pass_positions = "position_ids" in params
        self._pass_use_cache = "use_cache" in params

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._pass_positions:
            kwargs["position_ids"] = position_ids_from_mask(attention_mask)
        if self._pass_use_cache:
            kwargs["use_cache"] = False
        out = transformer_body(self.backbone)(**kwargs)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Scores, shape [batch]: the head at each row's last non-padding token."""
        hidden = self.hidden_states(input_ids, attention_mask)
        last = last_token_index(attention_mask)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.head(picked)

    def token_values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The head at every position, shape [batch, seq] (a value model's V(s_t))."""
        return self.head(self.hidden_states(input_ids, attention_mask))

    @property
    def is_lora(self) -> bool:
        return hasattr(self.backbone, "peft_config")


# --------------------------------------------------------------------------- metadata
@dataclass
class RewardInfo:
    """The contents of ``perlhf_reward.json``."""

    base_model: str
    mode: str  # "lora" | "full" | "merged"
    base_fingerprint: str
    max_prompt_tokens: int
    max_response_tokens: int
    task_kind: str  # "pair" | "rating"
    task: str = ""
    hidden_size: int = 0
    backbone: str = "causal"  # "causal" | "encoder"
    lora: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    version: int = FORMAT_VERSION

    def save(self, folder: str | os.PathLike) -> None:
        atomic_write_json(Path(folder) / REWARD_INFO, asdict(self))

    @classmethod
    def load(cls, folder: str | os.PathLike, option: str = "--model-dir") -> RewardInfo:
        path = Path(folder) / REWARD_INFO
        if not Path(folder).is_dir():
            raise UserError(f"{option} {folder}: no such folder; pass the final/ folder of a `perlhf rm` run "
                            "or a `perlhf rm merge` output")
        if (Path(folder) / "best.json").is_file() and (Path(folder).parent / "final" / REWARD_INFO).is_file():
            raise UserError(f"{option} {folder}: best/ holds the run's best weights for its own use; "
                            f"{Path(folder).parent / 'final'} is written from those same weights: pass that")
        if not path.is_file():
            hint = (f"; {Path(folder) / 'final'} is" if (Path(folder) / "final" / REWARD_INFO).is_file()
                    else "; pass the final/ folder of a `perlhf rm` run or a `perlhf rm merge` output")
            raise UserError(f"{option} {folder}: not a perlhf reward model folder (no {REWARD_INFO}){hint}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        if data.get("format") != FORMAT:
            raise UserError(f"{path}: not a perlhf reward model description (format {data.get('format')!r})")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------- loading and saving
def load_backbone(name: str, *, kind: str = "causal", dtype: torch.dtype | str | None = None,
                  trust_remote_code: bool = False) -> nn.Module:
    """A causal LM (through :mod:`perlhf.models`: hub id, local folder or the offline default)
    or, for ``kind="encoder"``, a transformers ``AutoModel``."""
    if kind == "encoder":
        from transformers import AutoModel

        from perlhf.models.loading import reference_name, resolve_model

        path = _resolve_path(name)
        model = AutoModel.from_pretrained(path, dtype=_dtype(dtype), trust_remote_code=trust_remote_code)
        if not Path(name).is_dir():
            model.name_or_path = model.config._name_or_path = reference_name(resolve_model(name))
        return model
    from perlhf.models import load_causal_lm

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = _dtype(dtype)
    return load_causal_lm(name, **kwargs)


def _resolve_path(name: str) -> str:
    if Path(name).is_dir():
        return name
    from perlhf.models import resolve_model

    resolved = resolve_model(name)
    return str(getattr(resolved, "path", resolved))


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | str:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    return getattr(torch, dtype) if dtype != "auto" else "auto"


def is_causal_lm(name: str) -> bool:
    """Whether a model folder / name is a causal LM (else it is treated as an encoder)."""
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(_resolve_path(name))
    except Exception:  # noqa: BLE001 - unknown: let the causal-LM loader report it
        return True
    archs = getattr(cfg, "architectures", None) or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs):
        return True
    return not (getattr(cfg, "is_encoder_decoder", False) or any(a.endswith(("Model", "ForMaskedLM")) for a in archs))


def save_reward_model(model: RewardModel, folder: str | os.PathLike, info: RewardInfo,
                      tokenizer: Any | None = None) -> Path:
    """Write a reward model folder (atomically: complete or absent)."""
    from perlhf.io import atomic_directory

    folder = Path(folder)
    with atomic_directory(folder) as tmp:
        if model.is_lora:
            save_adapter(model.backbone, str(tmp))
        else:
            model.backbone.save_pretrained(str(tmp))
        model.head.save(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        info.hidden_size = model.head.hidden_size
        info.save(tmp)
    return folder


def load_reward_model(folder: str | os.PathLike, *, dtype: torch.dtype | str | None = None,
                      trust_remote_code: bool = False, base: nn.Module | None = None,
                      check_fingerprint: bool = True, option: str = "--model-dir") -> tuple[RewardModel, RewardInfo]:
    """Load a reward model folder for inference (eval mode, no gradients needed).

    For a LoRA folder the base model named in ``perlhf_reward.json`` is loaded (or
    ``base`` is used) and its fingerprint must match the one the adapter was trained on."""
    from peft import PeftModel

    info = RewardInfo.load(folder, option)
    folder = Path(folder)
    if info.mode == "lora":
        backbone = base if base is not None else load_backbone(
            info.base_model, kind=info.backbone, dtype=dtype, trust_remote_code=trust_remote_code)
        if check_fingerprint:
            check_base_fingerprint(backbone, info, folder)
        with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5; not ours to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            backbone = PeftModel.from_pretrained(backbone, str(folder), is_trainable=False)
    elif info.mode in ("full", "merged"):
        if info.backbone == "encoder":
            backbone = load_backbone(str(folder), kind="encoder", dtype=dtype, trust_remote_code=trust_remote_code)
        else:
            from transformers import AutoModelForCausalLM

            backbone = AutoModelForCausalLM.from_pretrained(str(folder), dtype=_dtype(dtype),
                                                            trust_remote_code=trust_remote_code)
    else:
        raise UserError(f"{folder / REWARD_INFO}: unknown mode {info.mode!r} (expected lora, full or merged)")
    head = ScalarHead.load(folder, expected_hidden_size=hidden_size_of(backbone))
    model = RewardModel(backbone, head)
    model.eval()
    return model, info


def check_base_fingerprint(backbone: nn.Module, info: RewardInfo, folder: str | os.PathLike) -> None:
    """Refuse to put an adapter on base weights other than those it was trained on."""
    from perlhf.models.fingerprint import base_fingerprint

    got = base_fingerprint(backbone)
    if info.base_fingerprint and got != info.base_fingerprint:
        raise UserError(
            f"{folder}: this adapter was trained on base weights {info.base_fingerprint[:19]}… "
            f"but the backbone given has {got[:19]}… ({info.base_model}); load the same base model "
            "the reward model was trained on, or use a merged reward model (`perlhf rm merge`)"
        )


def attach_reward_adapter(peft_model: nn.Module, folder: str | os.PathLike,
                          adapter_name: str = "reward") -> tuple[ScalarHead, RewardInfo]:
    """Load a LoRA reward model's adapter onto an existing peft model (one shared backbone).

    The backbone's base weights must be the ones the adapter was trained on (fingerprint
    check); the adapter is loaded frozen. Returns the reward head and the model's info; score
    with ``RewardModel(peft_model, head)`` after ``peft_model.set_adapter(adapter_name,
    inference_mode=True)`` (without ``inference_mode=True`` peft makes the adapter trainable),
    under ``torch.inference_mode()``."""
    info = RewardInfo.load(folder)
    if info.mode != "lora":
        raise UserError(f"{folder}: a {info.mode} reward model has no adapter to share a backbone with; "
                        "load it as a separate model (load_reward_model)")
    check_base_fingerprint(peft_model, info, folder)
    peft_model.load_adapter(str(folder), adapter_name=adapter_name, is_trainable=False)
    head = ScalarHead.load(folder, expected_hidden_size=hidden_size_of(peft_model))
    head.requires_grad_(False)
    return head, info


def load_tokenizer_for(folder: str | os.PathLike, info: RewardInfo):
    """The tokenizer saved in the folder, else the base model's."""
    folder = Path(folder)
    if (folder / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder))
    from perlhf.models import load_tokenizer

    return load_tokenizer(info.base_model)


def merge_reward_model(folder: str | os.PathLike, output: str | os.PathLike, *,
                       dtype: torch.dtype | str | None = None, trust_remote_code: bool = False) -> Path:
    """Fold a LoRA reward model's adapter into its base weights: a plain model folder
    (mode "merged") that scores like the adapter model but costs what a plain model costs."""
    model, info = load_reward_model(folder, dtype=dtype, trust_remote_code=trust_remote_code)
    if info.mode != "lora":
        raise UserError(f"{folder}: a {info.mode} reward model has no adapter to merge; use it as it is")
    try:
        tokenizer = load_tokenizer_for(folder, info)
    except UserError as exc:  # scoring will load the base model's tokenizer by name
        log.warning("merged model written without a tokenizer: %s", exc)
        tokenizer = None
    merged = model.backbone.merge_and_unload()
    merged_model = RewardModel(merged, model.head)
    from perlhf.models.fingerprint import base_fingerprint

    new_info = RewardInfo(**{**asdict(info), "mode": "merged", "base_fingerprint": base_fingerprint(merged),
                             "extra": {**info.extra, "merged_from": str(folder),
                                       "adapter_base_fingerprint": info.base_fingerprint}})
    return save_reward_model(merged_model, output, new_info, tokenizer)


def export_sequence_classifier(folder: str | os.PathLike, output: str | os.PathLike, *,
                               trust_remote_code: bool = False) -> dict[str, Any]:
    """Write a reward model as a standard ``AutoModelForSequenceClassification`` folder (num_labels 1,
    LoRA merged, the head as the ``score`` layer, the pad token in the config), which transformers,
    TRL or vLLM load with no perlhf installed. Returns what was written (``head_bias`` included).

    The standard class pools at the last token that is not ``pad_token_id`` and its ``score`` layer
    has no bias. A pairwise head's bias never moves from its initial 0 (it cancels in the loss), so
    those exports score exactly like perlhf. A rating head trained with a bias scores ``bias`` higher
    in perlhf than in the export (a constant shift: rankings, margins and AUC are the same); the
    bias is kept in the config as ``perlhf_score_bias``. Train with ``--head-bias false`` for an exact
    export of a rating model."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from perlhf.io import atomic_directory

    model, info = load_reward_model(folder, trust_remote_code=trust_remote_code)
    if info.backbone != "causal":
        raise UserError(f"--model-dir {folder}: an encoder reward model; the standard encoder classes pool the "
                        "first token through a pooler layer while perlhf reads the last token, so no standard "
                        "class would score it alike. Use `perlhf rm score` for it")
    backbone = model.backbone.merge_and_unload() if info.mode == "lora" else model.backbone
    tokenizer = load_tokenizer_for(folder, info)
    config = AutoConfig.for_model(**{**backbone.config.to_dict(), "num_labels": 1,
                                     "pad_token_id": int(tokenizer.pad_token_id)})
    config.architectures = None
    with torch.device("meta"):
        probe = AutoModelForSequenceClassification.from_config(config)
    classifier = [n for n, _ in probe.named_parameters() if not n.startswith(probe.base_model_prefix + ".")]
    del probe
    if [n.rsplit(".", 1)[-1] for n in classifier] != ["weight"]:
        raise UserError(f"--model-dir {folder}: the standard {config.model_type} sequence classifier has "
                        f"{classifier} on top of its body, not one bias-free linear layer; cannot export")
    seq = AutoModelForSequenceClassification.from_config(config, dtype=next(backbone.parameters()).dtype)
    missing, unexpected = seq.base_model.load_state_dict(transformer_body(backbone).state_dict(), strict=False)
    if missing or unexpected:
        raise UserError(f"--model-dir {folder}: the body does not fit the standard class (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]})")
    weight = dict(seq.named_parameters())[classifier[0]]
    with torch.no_grad():
        weight.copy_(model.head.linear.weight.to(weight.dtype))
    bias = float(model.head.linear.bias) if model.head.linear.bias is not None else 0.0
    seq.config.perlhf_score_bias = bias
    seq.config.perlhf_reward = {"base_model": info.base_model, "mode": info.mode, "task": info.task,
                                "task_kind": info.task_kind, "max_prompt_tokens": info.max_prompt_tokens,
                                "max_response_tokens": info.max_response_tokens}
    seq.config.architectures = [type(seq).__name__]
    with atomic_directory(output) as tmp:
        seq.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
    if bias:
        log.warning("the head's bias %.4g has no place in the standard class: its scores are perlhf's minus "
                    "that constant (kept as config.perlhf_score_bias); rankings and margins are unchanged", bias)
    return {"output": str(output), "class": type(seq).__name__, "head_bias": bias, "classifier": classifier[0]}
