"""The rewards of ``perlhf rl``: what scores a rollout, and how ``--reward-model`` becomes one.

- :class:`TextReward`: a reward model scoring **text** (the response decoded and re-tokenized with the
  reward model's own tokenizer and chat template, as it was trained);
- :class:`EnsembleReward`: the members of a ``perlhf rm --ensemble`` folder, aggregated;
- :class:`TokenCountReward`: a synthetic reward for tests;
- :func:`load_reward`: a ``perlhf rm`` folder (LoRA adapters on the policy backbone when they share its
  base weights, else a separate frozen model), an ensemble, or any transformers sequence classifier;
  :func:`check_reward_model_arg`: its cheap checks, before the run folder exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from perlhf.errors import UserError
from perlhf.models.backbone import REWARD, SharedBackbone
from perlhf.train.generation import Rollout

if TYPE_CHECKING:
    from perlhf.train.rl import RLConfig, RLPrompt

log = logging.getLogger(__name__)


class RewardFunction(Protocol):
    """Scores ``(B,)`` for the rollout's responses to ``prompts`` (one prompt per row)."""

    def __call__(self, prompts: Sequence[RLPrompt], rollout: Rollout) -> torch.Tensor: ...


@dataclass
class TokenCountReward:
    """A synthetic reward: how many times ``token_id`` occurs in the response (for tests and demos)."""

    token_id: int

    def __call__(self, prompts: Sequence[RLPrompt], rollout: Rollout) -> torch.Tensor:
        hits = (rollout.response_ids == self.token_id).float() * rollout.response_mask
        return hits.sum(dim=-1)


@dataclass
class TextReward:
    """A reward model scoring text: the response is re-tokenized with the reward model's tokenizer.

    ``model_context`` yields the scoring model (a :class:`~perlhf.models.heads.RewardModel`);
    for a reward adapter on the shared backbone it activates the ``reward`` adapter.
    """

    model_context: Callable[[], Any]
    tokenizer: Any
    max_prompt_tokens: int
    max_response_tokens: int
    batch_size: int = 16
    placement: str = "separate"
    description: str = ""

    def __call__(self, prompts: Sequence[RLPrompt], rollout: Rollout) -> torch.Tensor:
        from perlhf.train.scoring import score_texts

        if any(p.messages is None for p in prompts):
            raise UserError("a reward model needs the prompts as chat messages (RLPrompt.messages)")
        items = [(list(p.messages or ()), text) for p, text in zip(prompts, rollout.response_texts, strict=True)]
        with torch.inference_mode(), self.model_context() as model:
            scores = score_texts(model, self.tokenizer, items, self.max_prompt_tokens, self.max_response_tokens,
                                 batch_size=self.batch_size)
        return torch.tensor(scores, dtype=torch.float32)


@dataclass
class EnsembleReward:
    """The members of a reward-model ensemble scoring every response, aggregated by ``how``
    (:func:`perlhf.models.ensemble.aggregate`). The members' scores of the last call are kept:
    :meth:`step_stats` reports their mean and their disagreement for the step's log."""

    members: list[TextReward]
    how: str = "mean"
    penalty: float = 1.0
    placement: str = "separate"
    description: str = ""
    last_member_scores: torch.Tensor | None = None

    def __call__(self, prompts: Sequence[RLPrompt], rollout: Rollout) -> torch.Tensor:
        from perlhf.models.ensemble import aggregate

        scores = torch.stack([member(prompts, rollout) for member in self.members])  # (K, B)
        self.last_member_scores = scores
        return aggregate(scores, self.how, self.penalty)

    def step_stats(self) -> dict[str, float]:
        """``reward_members_mean`` (the plain mean, comparable across aggregates), ``reward_disagreement``
        (the mean over responses of the members' standard deviation) and ``reward_members_min``."""
        from perlhf.models.ensemble import disagreement

        s = self.last_member_scores
        if s is None:
            return {}
        return {"reward_members_mean": float(s.mean()), "reward_disagreement": float(disagreement(s).mean()),
                "reward_members_min": float(s.min(dim=0).values.mean())}


def check_reward_model_arg(name: str | None) -> None:
    """The cheap checks of ``--reward-model``, run before the run folder exists: given, and, where it
    is meant as a local folder, one that exists and holds a reward model (not a policy or an RL run)."""
    from perlhf.models.ensemble import ENSEMBLE_INFO
    from perlhf.models.heads import REWARD_INFO
    from perlhf.models.loading import looks_like_local_path

    if not name:
        raise UserError("--reward-model is required: the final/ folder of a `perlhf rm` run (or a merge of it)")
    path = Path(name)
    if not path.exists():
        if looks_like_local_path(name):
            raise UserError(f"--reward-model {name}: no such folder; pass the final/ folder of a `perlhf rm` run")
        return  # a hub id: a sequence-classification reward model, checked when loaded
    if not path.is_dir():
        raise UserError(f"--reward-model {name}: is a file; pass the final/ folder of a `perlhf rm` run")
    if (path / REWARD_INFO).is_file() or (path / ENSEMBLE_INFO).is_file():
        return
    if (path / "final" / REWARD_INFO).is_file() or (path / "final" / ENSEMBLE_INFO).is_file():
        raise UserError(f"--reward-model {name}: this is a `perlhf rm` run folder; pass its final/ folder "
                        f"({path / 'final'})")
    if (path / "perlhf_rl.json").is_file() or (path / "policy").is_dir() or (path / "final" / "policy").is_dir():
        raise UserError(f"--reward-model {name}: this is an RL output (a policy), not a reward model; pass the "
                        "final/ folder of a `perlhf rm` run")
    if (path / "perlhf_sft.json").is_file() or (path / "adapter").is_dir():
        raise UserError(f"--reward-model {name}: this is an SFT model, not a reward model; pass the final/ folder "
                        "of a `perlhf rm` run")
    if not (path / "config.json").is_file():
        raise UserError(f"--reward-model {name}: not a reward model folder (no {REWARD_INFO} and no config.json); "
                        "pass the final/ folder of a `perlhf rm` run")


def load_reward(cfg: RLConfig, backbone: SharedBackbone | None, device: torch.device, dtype: torch.dtype,
                policy_tokenizer: Any | None = None):
    """The reward function for ``--reward-model`` (see the module docstring for placement).

    The reward model's tokenizer is the one saved in its folder, else its base model's; a
    reward adapter sharing the policy backbone (same base weights) falls back to the policy's.
    """
    from perlhf.models.ensemble import is_ensemble
    from perlhf.models.heads import REWARD_INFO, RewardInfo, ScalarHead, load_reward_model

    name = cfg.reward_model
    if not name:
        raise UserError("--reward-model is required: the final/ folder of a `perlhf rm` run (or a merge of it)")
    path = Path(name)
    if path.is_dir() and is_ensemble(path):
        return _ensemble_reward(cfg, path, backbone, device, dtype, policy_tokenizer)
    if cfg.ensemble_reward != "mean":
        raise UserError(f"--ensemble-reward {cfg.ensemble_reward} needs a reward-model ensemble; --reward-model "
                        f"{name} is one model. Train one with `perlhf rm --ensemble K` and pass its final/ folder")
    if path.is_dir() and (path / REWARD_INFO).is_file():
        info = RewardInfo.load(path, "--reward-model")
        shares = info.mode == "lora" and _shares_backbone(cfg, backbone, info, f"--reward-model {name}: its adapter")
        kw = _reward_scoring(cfg, shares, path, info, policy_tokenizer)
        if info.mode == "lora" and backbone is not None and cfg.reward_placement != "separate":
            if shares:
                backbone.attach_reward(path, ScalarHead.load(path, expected_hidden_size=backbone.value_head.hidden_size
                                                             if backbone.value_head is not None else None))
                backbone.reward_heads.to(device)
                backbone.peft.to(device)
                log.info("reward adapter %s shares the policy backbone (fingerprints match)", path)
                return TextReward(backbone.reward_model, placement="shared", description=str(path), **kw)
            log.warning("reward adapter %s was trained on other base weights (%s) than the policy backbone: "
                        "loading it as a separate model", path, info.base_model)
        model, info = load_reward_model(path, dtype=dtype, option="--reward-model",
                                        trust_remote_code=cfg.trust_remote_code)
        if info.mode == "lora":
            model.backbone = model.backbone.merge_and_unload()
        model.requires_grad_(False).eval().to(device)
        return TextReward(_fixed(model), placement="separate", description=str(path), **kw)
    if path.is_dir() and (path / "perlhf_sft.json").is_file():
        raise UserError(f"--reward-model {name}: this is an SFT model, not a reward model; pass the final/ folder "
                        "of a `perlhf rm` run")
    return _sequence_classifier_reward(name, device, dtype, cfg)


def _shares_backbone(cfg: RLConfig, backbone: SharedBackbone | None, info: Any, what: str) -> bool:
    """Whether LoRA reward adapters (``info``: a RewardInfo or EnsembleInfo) go on the policy backbone:
    LoRA RL, --reward-placement not separate, and the same base weights (fingerprints). ``shared`` on other
    weights is refused."""
    if backbone is None or cfg.reward_placement == "separate":
        return False
    shares = info.base_fingerprint == backbone.anchor_fingerprint
    if cfg.reward_placement == "shared" and not shares:
        raise UserError(
            f"{what} was trained on base weights {info.base_fingerprint[:19]}… ({info.base_model}) but the policy "
            f"backbone has {backbone.anchor_fingerprint[:19]}…; it cannot share the backbone. Train the reward "
            "model with --model <the SFT merged model>, or pass --reward-placement separate (loads its own base, "
            "merged)")
    return shares


def _reward_scoring(cfg: RLConfig, shares: bool, folder: Path, info: Any, policy_tokenizer: Any | None) -> dict:
    """The :class:`TextReward` scoring options of a reward model folder: its tokenizer (its own, else its base
    model's; a model sharing the policy backbone without one of its own uses the policy's) and budgets."""
    from perlhf.models.heads import load_tokenizer_for

    if shares and policy_tokenizer is not None and not (folder / "tokenizer_config.json").is_file():
        tokenizer = policy_tokenizer
    else:
        tokenizer = load_tokenizer_for(folder, info)
    return dict(tokenizer=tokenizer, max_prompt_tokens=info.max_prompt_tokens,
                max_response_tokens=info.max_response_tokens, batch_size=cfg.micro_batch_size)


def _ensemble_reward(cfg: RLConfig, path: Path, backbone: SharedBackbone | None, device: torch.device,
                     dtype: torch.dtype, policy_tokenizer: Any | None) -> EnsembleReward:
    """An ensemble's members as one reward: on the policy backbone (LoRA mode, same base weights:
    K frozen adapters ``reward-k``, each scored folded) or on one separately loaded base."""
    import functools

    from perlhf.models.ensemble import EnsembleInfo, load_ensemble
    from perlhf.models.heads import ScalarHead

    info, infos = EnsembleInfo.load(path, "--reward-model")
    shares = _shares_backbone(cfg, backbone, info, f"--reward-model {path}: the ensemble")
    kw = _reward_scoring(cfg, shares, path / info.members[0], infos[0], policy_tokenizer)
    kw.update(max_prompt_tokens=info.max_prompt_tokens, max_response_tokens=info.max_response_tokens)
    if shares:
        members = []
        for k, name in enumerate(info.members):
            adapter = f"{REWARD}-{k}"
            backbone.attach_reward(path / name, ScalarHead.load(path / name), name=adapter)
            members.append(TextReward(functools.partial(backbone.reward_model, adapter), placement="shared",
                                      description=str(path / name), **kw))
        backbone.reward_heads.to(device)
        backbone.peft.to(device)
        log.info("reward ensemble %s: %d members share the policy backbone (fingerprints match)", path, info.size)
    else:
        if backbone is not None:
            log.warning("reward ensemble %s was trained on other base weights (%s) than the policy backbone: "
                        "loading it on its own base", path, info.base_model)
        model, _ = load_ensemble(path, dtype=dtype, option="--reward-model", trust_remote_code=cfg.trust_remote_code)
        model.to(device)
        members = [TextReward(_ensemble_member(model, k), placement="separate", description=str(path / name), **kw)
                   for k, name in enumerate(info.members)]
    return EnsembleReward(members, how=cfg.ensemble_reward, penalty=cfg.ensemble_penalty,
                          placement="shared" if shares else "separate", description=str(path))


class _ensemble_member:
    """A context factory yielding member ``k`` of a separately loaded ensemble as a RewardModel."""

    def __init__(self, ensemble: Any, k: int):
        self.ensemble, self.k = ensemble, k

    def __call__(self):
        import contextlib

        from perlhf.models.heads import RewardModel

        self.ensemble.backbone.set_adapter(self.ensemble.names[self.k])
        return contextlib.nullcontext(RewardModel(self.ensemble.backbone, self.ensemble.heads[self.k]))


class _fixed:
    """A context factory yielding one fixed model."""

    def __init__(self, model: Any):
        self.model = model

    def __call__(self):
        import contextlib

        return contextlib.nullcontext(self.model)


class SequenceClassifierScorer(torch.nn.Module):
    """A transformers sequence-classification model as a scorer: the logit of ``label``
    (a single-logit model: that logit; two or more: ``logit[label] - logsumexp(others)``)."""

    def __init__(self, model: torch.nn.Module, label: int = -1):
        super().__init__()
        self.model = model
        self.label = label

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        if logits.shape[-1] == 1:
            return logits[:, 0]
        return torch.log_softmax(logits, dim=-1)[:, self.label]


def _sequence_classifier_reward(name: str, device, dtype, cfg: RLConfig) -> TextReward:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    remote = {"trust_remote_code": True} if cfg.trust_remote_code else {}
    try:
        config = AutoConfig.from_pretrained(name, **remote)
    except (OSError, ValueError) as exc:
        raise UserError(f"--reward-model {name}: not a perlhf reward model folder (no perlhf_reward.json) and not "
                        f"a loadable transformers model ({str(exc).splitlines()[0]})") from None
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise UserError(f"--reward-model {name}: a {', '.join(archs) or 'model'} is not a reward model; pass a "
                        "`perlhf rm` output folder or a sequence-classification model")
    model = AutoModelForSequenceClassification.from_pretrained(name, dtype=dtype, use_safetensors=True, **remote)
    tokenizer = AutoTokenizer.from_pretrained(name, **remote)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.requires_grad_(False).eval().to(device)
    limit = int(getattr(tokenizer, "model_max_length", 512) or 512)
    limit = min(limit, 512)
    return TextReward(_fixed(SequenceClassifierScorer(model)), tokenizer=tokenizer,
                      max_prompt_tokens=max(16, limit - cfg.max_new_tokens - 8),
                      max_response_tokens=cfg.max_new_tokens + 8, batch_size=cfg.micro_batch_size,
                      placement="separate", description=name)
