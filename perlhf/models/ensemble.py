"""Ensembles of LoRA reward models on one frozen backbone.

K reward adapters trained on the same base weights cost little more than one: the backbone is
in memory once, each member adds an adapter (a few MB) and a scalar head. Their mean is a
better-calibrated score than any single member, and their *disagreement* (the standard
deviation across members) is large exactly where a policy has found inputs that one reward
model over-rates: an RL reward of ``mean - k * std`` or ``min`` penalises those.

On disk an ensemble is a folder::

    perlhf_ensemble.json   what it is: the members, base model and fingerprint, max lengths, task kind
    member-0/ ...          K standard reward model folders (``perlhf_reward.json``, a peft adapter,
    member-K-1/                ``head.safetensors``), each loadable on its own

The maths (:func:`aggregate`, :func:`disagreement`, :func:`member_train_records`) are small pure
functions; :class:`EnsembleRewardModel` scores with the members on one peft model, either one
pass per member (:meth:`~EnsembleRewardModel.member_scores` ``how="loop"``) or all members in one
batched pass with peft's per-sample adapter selection (``how="batched"``).
"""

from __future__ import annotations

import json
import random
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from perlhf.errors import UserError
from perlhf.io import atomic_write_json
from perlhf.models.heads import (
    REWARD_INFO,
    RewardInfo,
    RewardModel,
    ScalarHead,
    hidden_size_of,
    last_token_index,
)

ENSEMBLE_INFO = "perlhf_ensemble.json"
FORMAT = "perlhf-reward-ensemble"
FORMAT_VERSION = 1
AGGREGATES = ("mean", "mean-minus-std", "min")
ENSEMBLE_DATA = ("bootstrap", "shards", "all")


def member_name(k: int) -> str:
    return f"member-{k}"


# --------------------------------------------------------------------------- the maths
def disagreement(scores: torch.Tensor) -> torch.Tensor:
    """The members' spread per item: the standard deviation over dim 0 of ``scores`` ``(K, B)``
    (population, so one member has spread 0)."""
    if scores.dim() != 2:
        raise ValueError(f"member scores must be (members, items), got shape {tuple(scores.shape)}")
    return scores.std(dim=0, unbiased=False)


def aggregate(scores: torch.Tensor, how: str = "mean", penalty: float = 1.0) -> torch.Tensor:
    """One score per item from the members' scores ``(K, B)``: ``mean``; ``mean-minus-std``:
    mean - penalty * std (population std over members); ``min``: the most pessimistic member."""
    if scores.dim() != 2:
        raise ValueError(f"member scores must be (members, items), got shape {tuple(scores.shape)}")
    if how == "mean":
        return scores.mean(dim=0)
    if how == "mean-minus-std":
        return scores.mean(dim=0) - penalty * disagreement(scores)
    if how == "min":
        return scores.min(dim=0).values
    raise ValueError(f"unknown ensemble aggregate {how!r}; choose one of {', '.join(AGGREGATES)}")


def member_train_records(records: Sequence[Any], how: str, member: int, members: int, seed: int) -> list[Any]:
    """The training records of ensemble member ``member`` (0-based) of ``members``.

    ``bootstrap``: a resample with replacement of ``len(records)`` records, seeded by (seed, member),
    in the original order; ``shards``: the disjoint shard ``member + 1`` of ``members`` by
    conversation (``record.group``: members never share a conversation); ``all``: every record
    (members then differ only by seed: head initialisation and data order)."""
    if not 0 <= member < members:
        raise ValueError(f"member {member} out of range for {members} members")
    if how == "all":
        return list(records)
    if how == "bootstrap":
        rng = random.Random(f"perlhf-bootstrap:{seed}:{member}")
        picks = sorted(rng.randrange(len(records)) for _ in range(len(records)))
        return [records[i] for i in picks]
    if how == "shards":
        from perlhf.data.splits import shard_records

        return shard_records(records, member + 1, members)
    raise ValueError(f"unknown --ensemble-data {how!r}; choose one of {', '.join(ENSEMBLE_DATA)}")


# --------------------------------------------------------------------------- metadata
@dataclass
class EnsembleInfo:
    """The contents of ``perlhf_ensemble.json``."""

    members: list[str]
    base_model: str
    base_fingerprint: str
    task_kind: str
    max_prompt_tokens: int
    max_response_tokens: int
    task: str = ""
    backbone: str = "causal"
    data: str = "bootstrap"
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    version: int = FORMAT_VERSION

    @property
    def size(self) -> int:
        return len(self.members)

    def save(self, folder: str | Path) -> None:
        atomic_write_json(Path(folder) / ENSEMBLE_INFO, asdict(self))

    @classmethod
    def from_members(cls, infos: Sequence[RewardInfo], names: Sequence[str], where: str, **extra: Any) -> EnsembleInfo:
        """The ensemble of these members; refuses members that cannot be one ensemble."""
        if not infos:
            raise UserError(f"{where}: an ensemble needs at least one member")
        first = infos[0]
        for name, info in zip(names, infos, strict=True):
            if info.mode != "lora":
                raise UserError(f"{where}: member {name} is a {info.mode} reward model; ensemble members share "
                                "one backbone, so each must be a LoRA reward model (perlhf rm --mode lora)")
            if info.base_fingerprint != first.base_fingerprint:
                raise UserError(f"{where}: member {name} was trained on base weights {info.base_fingerprint[:19]}… "
                                f"but {names[0]} on {first.base_fingerprint[:19]}…; members must share the base "
                                "model (train them with the same --model)")
            if info.task_kind != first.task_kind:
                raise UserError(f"{where}: member {name} is a {info.task_kind} model but {names[0]} a "
                                f"{first.task_kind} model; do not mix pairwise and rating reward models")
            if (info.max_prompt_tokens, info.max_response_tokens) != (first.max_prompt_tokens,
                                                                     first.max_response_tokens):
                raise UserError(f"{where}: member {name} has token budgets {info.max_prompt_tokens}/"
                                f"{info.max_response_tokens} but {names[0]} {first.max_prompt_tokens}/"
                                f"{first.max_response_tokens}; train every member with the same "
                                "--max-prompt-tokens and --max-response-tokens")
        return cls(members=list(names), base_model=first.base_model, base_fingerprint=first.base_fingerprint,
                   task_kind=first.task_kind, max_prompt_tokens=first.max_prompt_tokens,
                   max_response_tokens=first.max_response_tokens, task=first.task, backbone=first.backbone, **extra)

    @classmethod
    def load(cls, folder: str | Path, option: str = "--model-dir") -> tuple[EnsembleInfo, list[RewardInfo]]:
        """The ensemble's description and its members' (each checked: present, LoRA, same base and kind)."""
        folder = Path(folder)
        path = folder / ENSEMBLE_INFO
        if not path.is_file():
            raise UserError(f"{option} {folder}: not a reward-model ensemble (no {ENSEMBLE_INFO})")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{path}: not a perlhf ensemble description (format {data.get('format')!r})")
        known = set(cls.__dataclass_fields__)
        info = cls(**{k: v for k, v in data.items() if k in known})
        if not info.members:
            raise UserError(f"{path}: lists no members")
        infos = []
        for name in info.members:
            member = folder / name
            if not (member / REWARD_INFO).is_file():
                raise UserError(f"{option} {folder}: member {name} is missing ({member} holds no {REWARD_INFO}); "
                                "the ensemble folder is incomplete: retrain it or restore the member folder")
            infos.append(RewardInfo.load(member, option))
        check = cls.from_members(infos, info.members, f"{option} {folder}")
        if check.base_fingerprint != info.base_fingerprint:
            raise UserError(f"{path}: its base fingerprint differs from its members'; the folder was edited: "
                            "retrain the ensemble")
        return info, infos


def is_ensemble(folder: str | Path) -> bool:
    return (Path(folder) / ENSEMBLE_INFO).is_file()


def write_ensemble(folder: str | Path, member_folders: Sequence[str | Path], **extra: Any) -> EnsembleInfo:
    """Copy K reward model folders into one ensemble folder (atomically: complete or absent)."""
    from perlhf.io import atomic_directory

    names = [member_name(k) for k in range(len(member_folders))]
    infos = [RewardInfo.load(f, "member") for f in member_folders]
    info = EnsembleInfo.from_members(infos, names, str(folder), **extra)
    with atomic_directory(Path(folder)) as tmp:
        for name, src in zip(names, member_folders, strict=True):
            shutil.copytree(src, tmp / name)
        info.save(tmp)
    return info


# --------------------------------------------------------------------------- the model
class EnsembleRewardModel(nn.Module):
    """K reward adapters (named ``names``) on one peft model, each with its own head.

    ``forward`` returns the aggregated score (``aggregate``/``penalty``), so it scores anywhere a
    :class:`~perlhf.models.heads.RewardModel` does; :meth:`member_scores` returns all of them."""

    def __init__(self, peft_model: nn.Module, heads: Sequence[ScalarHead], names: Sequence[str], *,
                 how: str = "loop", aggregate: str = "mean", penalty: float = 1.0):
        super().__init__()
        if len(heads) != len(names) or not names:
            raise ValueError("one head per member name, at least one member")
        if how not in ("loop", "batched"):
            raise ValueError(f"how must be loop or batched, got {how!r}")
        self.backbone = peft_model
        self.heads = nn.ModuleList(heads)
        self.names = list(names)
        self.how = how
        self.aggregate = aggregate
        self.penalty = penalty
        self._body = RewardModel(peft_model, heads[0])  # the shared forward to the last hidden states

    @property
    def size(self) -> int:
        return len(self.names)

    def member_scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      how: str | None = None) -> torch.Tensor:
        """Scores of every member, ``(K, B)``. ``loop``: one forward per member (``set_adapter``);
        ``batched``: the batch repeated K times in one forward, peft picking each row's adapter."""
        how = how or self.how
        last = last_token_index(attention_mask)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        if how == "loop":
            out = []
            for name, head in zip(self.names, self.heads, strict=True):
                self.backbone.set_adapter(name)
                out.append(head(self._body.hidden_states(input_ids, attention_mask)[rows, last]))
            return torch.stack(out)
        k, b = self.size, input_ids.shape[0]
        adapter_names = [name for name in self.names for _ in range(b)]
        with self.backbone._enable_peft_forward_hooks(adapter_names=adapter_names):
            hidden = self._body.hidden_states(input_ids.repeat(k, 1), attention_mask.repeat(k, 1))
        picked = hidden[torch.arange(k * b, device=hidden.device), last.repeat(k)].view(k, b, -1)
        return torch.stack([head(picked[i]) for i, head in enumerate(self.heads)])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return aggregate(self.member_scores(input_ids, attention_mask), self.aggregate, self.penalty)


def load_ensemble(folder: str | Path, *, base: nn.Module | None = None, dtype: torch.dtype | str | None = None,
                  trust_remote_code: bool = False, check_fingerprint: bool = True, option: str = "--model-dir",
                  how: str = "loop") -> tuple[EnsembleRewardModel, EnsembleInfo]:
    """Load an ensemble folder for inference: its base model once (or ``base``), every member's
    adapter on it (frozen) and every head."""
    from peft import PeftModel

    from perlhf.models.heads import check_base_fingerprint, load_backbone

    info, infos = EnsembleInfo.load(folder, option)
    folder = Path(folder)
    backbone = base if base is not None else load_backbone(info.base_model, kind=info.backbone, dtype=dtype,
                                                           trust_remote_code=trust_remote_code)
    if check_fingerprint:
        check_base_fingerprint(backbone, infos[0], folder / info.members[0])
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5; not ours to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = PeftModel.from_pretrained(backbone, str(folder / info.members[0]),
                                               adapter_name=info.members[0], is_trainable=False)
        for name in info.members[1:]:
            peft_model.load_adapter(str(folder / name), adapter_name=name, is_trainable=False)
    heads = [ScalarHead.load(folder / name, expected_hidden_size=hidden_size_of(backbone)) for name in info.members]
    model = EnsembleRewardModel(peft_model, heads, info.members, how=how)
    model.requires_grad_(False).eval()
    return model, info
