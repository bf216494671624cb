"""``perlhf eval``: the RL policy against the SFT policy, judged by something other than the training reward.

Both policies answer the same held-out prompts (the task's test split) with the same
sampling settings and seed. Then:

* **reward-model judge** (offline): an independent reward model — ideally trained on a
  split disjoint from the training reward model's — scores both answers; the RL answer
  *wins* when its score beats the SFT answer's by more than ``--tie-margin``, *loses* when
  it trails by more, else it is a *tie*;
* **LM judge** (optional, ``--judge-lm``): a causal LM is asked which answer is better,
  in **both orders** (PAPER.md): a win only when the RL answer is preferred in both
  orders, a loss only when the SFT answer is, a split decision is a tie. The preference
  in one order is read from the judge's next-token log-probs of ``A`` versus ``B``;
* beside them: the **training** reward of both policies' answers, the KL of the RL policy
  to the SFT policy on the RL policy's own answers, response lengths and empty answers;
* for Taskmaster: the share of answers that are API calls, and of those the share that
  parse (:func:`perlhf.data.taskmaster.parse_api_call`) and name an API seen in the data.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from perlhf.errors import UserError

log = logging.getLogger(__name__)


# -- pure scoring ---------------------------------------------------------------------------------------
def win_tie_loss(scores_a: Sequence[float], scores_b: Sequence[float], tie_margin: float = 0.0) -> dict[str, float]:
    """Rates of ``a`` beating / tying / losing to ``b`` (a tie when ``|a - b| <= tie_margin``)."""
    if len(scores_a) != len(scores_b):
        raise ValueError(f"{len(scores_a)} scores against {len(scores_b)}")
    n = len(scores_a)
    if n == 0:
        return {"win": 0.0, "tie": 0.0, "loss": 0.0, "n": 0}
    win = sum(1 for a, b in zip(scores_a, scores_b, strict=True) if a - b > tie_margin)
    loss = sum(1 for a, b in zip(scores_a, scores_b, strict=True) if b - a > tie_margin)
    return {"win": win / n, "tie": (n - win - loss) / n, "loss": loss / n, "n": n}


def eval_subset(prompts: Sequence[Any], n: int, seed: int) -> list[Any]:
    """The held-out prompts that ``perlhf eval --num-prompts n --seed seed`` judges: a fixed random subset
    in their original order (all of them when there are no more than ``n``). One seed draws one permutation,
    so a larger ``n`` keeps every prompt of a smaller one."""
    if n >= len(prompts):
        return list(prompts)
    g = torch.Generator().manual_seed(seed)
    return [prompts[i] for i in sorted(torch.randperm(len(prompts), generator=g)[:n].tolist())]


def win_rate(rates: dict[str, float]) -> tuple[float, float]:
    """Win rate with ties counted half, and its standard error over the ``n`` judged prompts
    (``sqrt(var / n)`` of the per-prompt score 1 / 0.5 / 0)."""
    n = rates["n"]
    w = rates["win"] + 0.5 * rates["tie"]
    second = rates["win"] + 0.25 * rates["tie"]  # E[score^2]
    return w, ((second - w * w) / n) ** 0.5 if n else float("nan")


def seeds_win_rate(runs: Sequence[tuple[Sequence[float], Sequence[float]]], tie_margin: float = 0.0) -> tuple[float, float]:
    """Win rate (ties half) of several RL runs against the SFT policy on the *same* prompts, one ``(rl scores,
    sft scores)`` pair per run, prompts in the same order, and its standard error clustered by prompt:
    each prompt's score (1 / 0.5 / 0) is averaged over the runs first, the SE is that mean's ``sqrt(var / n)``
    over the ``n`` prompts. The runs share the prompts (and usually the SFT answers), so treating their
    ``runs * n`` verdicts as independent would understate the error; one run gives :func:`win_rate`'s figures."""
    if not runs:
        raise ValueError("no runs")
    n = len(runs[0][0])
    if any(len(rl) != n or len(sft) != n for rl, sft in runs):
        raise ValueError(f"runs judged different numbers of prompts: {[(len(r), len(s)) for r, s in runs]}")
    if n == 0:
        return float("nan"), float("nan")

    def score(d: float) -> float:
        return 1.0 if d > tie_margin else 0.0 if -d > tie_margin else 0.5

    per_prompt = [sum(score(rl[i] - sft[i]) for rl, sft in runs) / len(runs) for i in range(n)]
    w = sum(per_prompt) / n
    var = sum((x - w) ** 2 for x in per_prompt) / n
    return w, (var / n) ** 0.5


# What an earlier eval's SFT answers depend on: reusing them (``--sft-answers-from``) needs all of these equal.
SFT_ANSWER_KEYS = ("task", "path", "split", "sft", "prompts", "max_prompt_tokens", "max_new_tokens", "temperature", "seed",
                   "batch_size", "dtype")  # the batch size too: each generation batch is seeded by its start


def reused_sft_answers(report_file: str | Path, expected: dict[str, Any], ids: Sequence[str]) -> tuple[list[str], str]:
    """The SFT answers of an earlier ``perlhf eval`` (its JSON report and the ``--samples-out`` file it names),
    in the order of ``ids``, and that file's path; a :class:`UserError` naming the file and what differs when
    the earlier run answered other prompts or sampled with other options."""
    where = f"--sft-answers-from {report_file}"
    try:
        earlier = json.loads(Path(report_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{where}: cannot read it as a `perlhf eval` JSON report ({exc})") from None
    if not isinstance(earlier, dict):
        raise UserError(f"{where}: not a `perlhf eval` JSON report")
    differ = [f"{k} {earlier.get(k)!r} there, {expected[k]!r} here" for k in SFT_ANSWER_KEYS
              if earlier.get(k) != expected[k]]
    if differ:
        raise UserError(f"{where}: its SFT answers came from other settings ({'; '.join(differ)}); "
                        "run this eval with the same options, or without --sft-answers-from")
    samples = earlier.get("samples_out")
    if not samples:
        raise UserError(f"{where}: that eval ran without --samples-out, so its answers were not kept")
    kept: list[tuple[str, str]] = []
    try:
        with open(samples, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                try:
                    rec = json.loads(line)
                    kept.append((str(rec["id"]), str(rec["sft"])))
                except (ValueError, KeyError, TypeError):
                    raise UserError(f"{samples} line {n}: not an answer record of `perlhf eval --samples-out` "
                                    f"(named by {where})") from None
    except OSError as exc:
        raise UserError(f"{where}: its answers file {samples} cannot be read ({exc.strerror}); "
                        "was it moved or deleted?") from None
    if [i for i, _ in kept] != [str(i) for i in ids]:
        raise UserError(f"{samples} (named by {where}): holds answers to other prompts than this eval's "
                        f"{len(ids)} ({len(kept)} answers there); was it overwritten by another eval?")
    return [a for _, a in kept], str(samples)


def _shards_overlap(a: str | None, b: str | None) -> bool:
    if not a or not b or a == "all" or b == "all":
        return True
    (i, k), (j, m) = (tuple(int(x) for x in s.split("/")) for s in (a, b))
    return k != m or i == j  # different shard counts: not provably disjoint


def judge_independence(training: dict[str, Any] | None, judge: dict[str, Any]) -> dict[str, Any]:
    """What a judge reward model shares with the training reward model, and whether it is strong
    enough to give a verdict. Both are ``perlhf_reward.json`` contents.

    - ``shares_backbone``: same base-weights fingerprint;
    - ``shares_data``: same task and training shards that are not provably disjoint;
    - ``too_weak``: its own test AUC (or accuracy) within 2 standard errors of chance (0.5), or unknown.
    """
    test = (judge.get("extra") or {}).get("test") or {}
    metric = "auc" if test.get("auc") is not None else "accuracy"
    value, n = test.get(metric), test.get("n")
    se = test.get("auc_se") if metric == "auc" else None
    if value is not None and se is None and n:
        se = (value * (1 - value) / n) ** 0.5
    too_weak = value is None or se is None or value - 0.5 <= 2 * se
    out = {"metric": metric, "test": value, "test_se": se, "too_weak": too_weak,
           "shares_backbone": None, "shares_data": None}
    if training is not None:
        out["shares_backbone"] = training.get("base_fingerprint") == judge.get("base_fingerprint")
        out["shares_data"] = (training.get("task") == judge.get("task") and _shards_overlap(
            (training.get("extra") or {}).get("train_shard"), (judge.get("extra") or {}).get("train_shard")))
    return out


def both_orders_verdict(a_first_prefers_a: bool, b_first_prefers_a: bool) -> str:
    """``win`` if ``a`` is preferred in both orders, ``loss`` if ``b`` is in both, else ``tie``."""
    if a_first_prefers_a and b_first_prefers_a:
        return "win"
    if not a_first_prefers_a and not b_first_prefers_a:
        return "loss"
    return "tie"


def verdict_rates(verdicts: Sequence[str]) -> dict[str, float]:
    n = len(verdicts)
    return {k: (sum(v == k for v in verdicts) / n if n else 0.0) for k in ("win", "tie", "loss")} | {"n": n}


def api_call_stats(responses: Iterable[str], known_apis: set[str]) -> dict[str, float | int]:
    """How many answers are API calls, parse, and name a known API."""
    from perlhf.data.taskmaster import is_api_call, parse_api_call

    responses = list(responses)
    calls = [r for r in responses if is_api_call(r)]
    parsed = [parse_api_call(r) for r in calls]
    ok = [p for p in parsed if p is not None]
    known = [p for p in ok if p[0] in known_apis]
    return {
        "responses": len(responses),
        "api_calls": len(calls),
        "api_call_share": len(calls) / len(responses) if responses else 0.0,
        "parse_rate": len(ok) / len(calls) if calls else None,
        "known_api_rate": len(known) / len(calls) if calls else None,
    }


def known_api_names(records: Iterable[Any]) -> set[str]:
    """Every API name called by an assistant turn in the records (dialogues, ratings or prompts)."""
    from perlhf.data.taskmaster import parse_api_call

    names: set[str] = set()

    def scan(text: str) -> None:
        p = parse_api_call(text)
        if p is not None:
            names.add(p[0])

    for rec in records:
        msgs = getattr(rec, "messages", None) or getattr(rec, "prompt", ()) or ()
        for m in msgs:
            if m.get("role") == "assistant":
                scan(m.get("content", ""))
        for attr in ("response", "chosen", "rejected"):
            if isinstance(getattr(rec, attr, None), str):
                scan(getattr(rec, attr))
    return names


# -- generating answers --------------------------------------------------------------------------------------
@torch.no_grad()
def generate_answers(model: torch.nn.Module, tokenizer, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                     temperature: float, batch_size: int, seed: int, eos_token_ids: Sequence[int] | None = None):
    """Sampled answers (text) and the rollouts they came from, batch by batch, seeded."""
    from perlhf.train.generation import sample

    texts: list[str] = []
    rollouts = []
    for i in range(0, len(prompt_ids), batch_size):
        torch.manual_seed(seed + i)
        roll = sample(model, tokenizer, prompt_ids[i : i + batch_size], max_new_tokens=max_new_tokens,
                      temperature=temperature, eos_token_ids=eos_token_ids)
        texts.extend(roll.response_texts)
        rollouts.append(roll)
    return texts, rollouts


@torch.no_grad()
def kl_to_reference(policy: torch.nn.Module, reference: torch.nn.Module, rollouts: Sequence[Any],
                    temperature: float) -> float:
    """Mean over answers of ``sum_t log pi(a_t) - log pi_ref(a_t)`` on the policy's own samples (k1)."""
    from perlhf.train.generation import sequence_logprobs
    from perlhf.train.rl_losses import sequence_kl

    kls = []
    for roll in rollouts:
        a = sequence_logprobs(policy, roll.input_ids, roll.attention_mask, roll.response_mask, temperature)
        b = sequence_logprobs(reference, roll.input_ids, roll.attention_mask, roll.response_mask, temperature)
        kls.append(sequence_kl(a, b, roll.response_mask))
    return float(torch.cat(kls).mean()) if kls else 0.0


# -- the LM judge ------------------------------------------------------------------------------------------
JUDGE_TEMPLATE = (
    "You are comparing two replies of an assistant in the conversation below.\n\n"
    "Conversation:\n{context}\n\nReply A:\n{a}\n\nReply B:\n{b}\n\n"
    "Which reply is more helpful, correct and appropriate as the assistant's next turn? "
    "Answer with a single letter: A or B."
)


def _context_text(messages: Sequence[dict[str, str]], max_chars: int = 2000) -> str:
    text = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return text[-max_chars:]


@dataclass
class LMJudge:
    """A causal LM asked "A or B?"; its preference is ``log p(A) > log p(B)`` for the next token."""

    model: torch.nn.Module
    tokenizer: Any

    def _letter_ids(self) -> tuple[int, int]:
        ids = []
        for letter in ("A", "B"):
            toks = self.tokenizer(letter, add_special_tokens=False)["input_ids"]
            if len(toks) != 1:
                raise UserError(f"--judge-lm: its tokenizer splits {letter!r} into {len(toks)} tokens")
            ids.append(toks[0])
        return ids[0], ids[1]

    @torch.no_grad()
    def prefers_first(self, messages: Sequence[dict[str, str]], first: str, second: str) -> bool:
        from perlhf.data.render import format_prompt, tokenize_text

        question = JUDGE_TEMPLATE.format(context=_context_text(messages), a=first or "(empty)",
                                         b=second or "(empty)")
        ids = tokenize_text(self.tokenizer, format_prompt(self.tokenizer, [{"role": "user", "content": question}]))
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float()
        a, b = self._letter_ids()
        return bool(logits[a] > logits[b])

    def verdicts(self, contexts: Sequence[Sequence[dict[str, str]]], answers_a: Sequence[str],
                 answers_b: Sequence[str]) -> list[str]:
        out = []
        for ctx, a, b in zip(contexts, answers_a, answers_b, strict=True):
            out.append(both_orders_verdict(self.prefers_first(ctx, a, b), not self.prefers_first(ctx, b, a)))
        return out


# -- loading the two policies -----------------------------------------------------------------------------
def load_rl_policy(rl_dir: str | Path, sft_dir: str, dtype: torch.dtype) -> torch.nn.Module:
    """The RL policy from a ``perlhf rl`` output: its final/ folder (or the run folder)."""
    import json

    from perlhf.models import load_causal_lm
    from perlhf.models.backbone import POLICY, RL_INFO

    path = Path(rl_dir)
    if (path / "final" / RL_INFO).is_file():
        path = path / "final"
    if not (path / RL_INFO).is_file():
        raise UserError(f"--rl {rl_dir}: not a `perlhf rl` output (no {RL_INFO} in it or in its final/)")
    info = json.loads((path / RL_INFO).read_text())
    if info.get("mode") == "full":
        return load_causal_lm(str(path / POLICY), dtype=dtype)
    from peft import PeftModel

    from perlhf.models.fingerprint import base_fingerprint

    base = load_causal_lm(sft_dir, dtype=dtype)
    fp = base_fingerprint(base)
    if info.get("anchor_fingerprint") and info["anchor_fingerprint"] != fp:
        raise UserError(f"--sft {sft_dir}: not the model this RL policy was trained from (base fingerprints "
                        f"differ); pass the --policy folder given to `perlhf rl`")
    return PeftModel.from_pretrained(base, str(path / POLICY)).merge_and_unload().eval()


_SANITIZE = re.compile(r"\s+")


def run_eval(cfg: Any) -> dict[str, Any]:
    """``perlhf eval``: see the module docstring. Writes ``cfg.output`` (JSON) and returns the report."""
    from perlhf.data import load_task, prompts_of
    from perlhf.io import atomic_write_json, atomic_write_text, dumps_json
    from perlhf.models import load_causal_lm, load_tokenizer, torch_dtype
    from perlhf.models.ensemble import EnsembleInfo, is_ensemble
    from perlhf.models.heads import RewardInfo
    from perlhf.train.rl import encode_rl_prompts, policy_eos_ids

    for folder, option in ((cfg.judge_rm, "--judge-rm"), (cfg.reward_model, "--reward-model")):
        if folder:  # one reward model or an ensemble (`perlhf rm --ensemble K`), checked before minutes of generation
            (EnsembleInfo if is_ensemble(folder) else RewardInfo).load(folder, option)
    if getattr(cfg, "output", None) and Path(cfg.output).is_dir():
        raise UserError(f"--output {cfg.output}: is a folder; give a file name for the JSON report")
    dtype = torch_dtype(cfg.dtype)
    tokenizer = load_tokenizer(cfg.sft, padding_side="left")
    task = load_task(cfg.task, data_dir=cfg.data_dir, path=cfg.path)
    raw = prompts_of(task, cfg.split)
    if not raw:
        raise UserError(f"--task {cfg.task}: no prompts in split {cfg.split!r}")
    raw = eval_subset(raw, cfg.num_prompts, cfg.seed)
    prompts = encode_rl_prompts(tokenizer, raw, cfg.max_prompt_tokens)
    ids = [p.ids for p in prompts]
    eos = policy_eos_ids(tokenizer)
    gen = dict(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, batch_size=cfg.batch_size,
               seed=cfg.seed, eos_token_ids=eos)
    report: dict[str, Any] = {
        "task": cfg.task, "path": cfg.path, "split": cfg.split, "prompts": len(ids), "sft": cfg.sft, "rl": cfg.rl,
        "temperature": cfg.temperature, "max_new_tokens": cfg.max_new_tokens,
        "max_prompt_tokens": cfg.max_prompt_tokens, "seed": cfg.seed, "batch_size": cfg.batch_size, "dtype": cfg.dtype,
    }
    reused = None
    if cfg.sft_answers_from:  # checked before any model is loaded
        reused = reused_sft_answers(cfg.sft_answers_from, report, [p.id for p in prompts])
    sft = load_causal_lm(cfg.sft, dtype=dtype)
    rl = load_rl_policy(cfg.rl, cfg.sft, dtype)
    if reused:
        sft_answers, report["sft_answers_from"] = reused
        log.info("SFT answers from %s; generating %d answers with the RL policy", reused[1], len(ids))
    else:
        log.info("generating %d answers with each policy", len(ids))
        sft_answers, _ = generate_answers(sft, tokenizer, ids, **gen)
    rl_answers, rl_rollouts = generate_answers(rl, tokenizer, ids, **gen)
    report.update({
        "kl_rl_to_sft": kl_to_reference(rl, sft, rl_rollouts, cfg.temperature),
        "response_chars": {"sft": _mean_len(sft_answers), "rl": _mean_len(rl_answers)},
        "empty_answers": {"sft": sum(not a.strip() for a in sft_answers), "rl": sum(not a.strip() for a in rl_answers)},
    })
    contexts = [list(p.messages or ()) for p in prompts]
    scores: dict[str, list[float]] = {}  # per answer, for --samples-out

    def rm_scores(folder: str, option: str) -> list[list[float]]:
        """[RL scores, SFT scores]; an ensemble scores the members' mean."""
        return score_answers(folder, option, contexts, [rl_answers, sft_answers], dtype, cfg.batch_size)

    if cfg.judge_rm:
        a, b = rm_scores(cfg.judge_rm, "--judge-rm")
        scores.update(judge_rl=a, judge_sft=b)
        rates = win_tie_loss(a, b, cfg.tie_margin)
        rate, se = win_rate(rates)
        checks = judge_independence(_reward_info(cfg.reward_model), _reward_info(cfg.judge_rm))
        report["judge_rm"] = {"folder": cfg.judge_rm, "mean_rl": _mean(a), "mean_sft": _mean(b),
                              "tie_margin": cfg.tie_margin, **rates, "win_rate": rate, "win_rate_se": se,
                              "judge": checks, "verdict": _verdict(checks, rate, se)}
        for flag, what in (("shares_backbone", "backbone weights"), ("shares_data", "training data")):
            if checks[flag]:
                log.warning("the judge %s shares its %s with the training reward model: its verdict is not "
                            "independent", cfg.judge_rm, what)
        if checks["too_weak"]:
            log.warning("the judge %s is too weak to judge (test %s %s): no verdict", cfg.judge_rm,
                        checks["metric"], checks["test"])
    if cfg.reward_model:
        a, b = rm_scores(cfg.reward_model, "--reward-model")
        scores.update(reward_rl=a, reward_sft=b)
        report["training_reward"] = {"folder": cfg.reward_model, "mean_rl": _mean(a), "mean_sft": _mean(b),
                                     "gain": _mean(a) - _mean(b), **win_tie_loss(a, b, cfg.tie_margin)}
    if cfg.judge_lm:
        judge_tok = load_tokenizer(cfg.judge_lm)
        judge = LMJudge(load_causal_lm(cfg.judge_lm, dtype=dtype), judge_tok)
        report["judge_lm"] = {"model": cfg.judge_lm, "rule": "win only if preferred in both orders",
                              **verdict_rates(judge.verdicts(contexts, rl_answers, sft_answers))}
    if cfg.task.startswith("taskmaster"):
        known = known_api_names(task.split("train"))
        report["api_calls"] = {"known_apis": len(known), "rl": api_call_stats(rl_answers, known),
                               "sft": api_call_stats(sft_answers, known)}
    if cfg.samples_out:
        report["samples_out"] = str(Path(cfg.samples_out).resolve())
        atomic_write_text(cfg.samples_out, "".join(
            dumps_json({"id": p.id, "context": _SANITIZE.sub(" ", _context_text(p.messages or (), 800)), "rl": a, "sft": b,
                        **{k: v[i] for k, v in scores.items()}}, indent=None) + "\n"
            for i, (p, a, b) in enumerate(zip(prompts, rl_answers, sft_answers, strict=True))))
    atomic_write_json(cfg.output, report)
    return report


def score_answers(folder: str, option: str, contexts: Sequence[Sequence[Any]], answer_sets: Sequence[Sequence[str]],
                  dtype: torch.dtype, batch_size: int = 16) -> list[list[float]]:
    """Scores of each set of answers to ``contexts`` (chat messages) by the reward model (or ensemble: the
    members' mean) in ``folder``, loaded once; ``option`` names the folder's option in errors."""
    from perlhf.models.ensemble import is_ensemble, load_ensemble
    from perlhf.models.heads import RewardInfo, load_reward_model, load_tokenizer_for
    from perlhf.train.scoring import score_texts

    if is_ensemble(folder):
        model, info = load_ensemble(folder, dtype=dtype, option=option)
        first = Path(folder) / info.members[0]
        tok = load_tokenizer_for(first, RewardInfo.load(first, option))
    else:
        model, info = load_reward_model(folder, dtype=dtype, option=option)
        tok = load_tokenizer_for(folder, info)
    kw = dict(max_prompt_tokens=info.max_prompt_tokens, max_response_tokens=info.max_response_tokens,
              batch_size=batch_size)
    return score_answer_sets(lambda items: score_texts(model, tok, items, **kw), contexts, answer_sets)


def score_answer_sets(score: Callable[[list[tuple[Any, str]]], list[float]], contexts: Sequence[Any],
                      answer_sets: Sequence[Sequence[str]]) -> list[list[float]]:
    """Each set of answers to ``contexts`` scored by one call of ``score`` over the distinct (context, answer)
    pairs: an answer two sets share for a context is scored once, so identical answers tie exactly (scored
    apart, in batches padded otherwise, float rounding can split them by 1e-7 and turn a tie into a win)."""
    index: dict[tuple[int, str], int] = {}
    items: list[tuple[Any, str]] = []
    rows = []
    for answers in answer_sets:
        row = []
        for i, (context, answer) in enumerate(zip(contexts, answers, strict=True)):
            if (i, answer) not in index:
                index[i, answer] = len(items)
                items.append((context, answer))
            row.append(index[i, answer])
        rows.append(row)
    scores = score(items) if items else []
    return [[scores[j] for j in row] for row in rows]


def _reward_info(folder: str | None) -> dict[str, Any] | None:
    """A reward model's ``perlhf_reward.json`` (an ensemble's ``perlhf_ensemble.json``: the same base
    fingerprint, task, ``extra.train_shard`` and ``extra.test`` fields) as a dict."""
    if not folder:
        return None
    from perlhf.models.ensemble import ENSEMBLE_INFO
    from perlhf.models.heads import REWARD_INFO

    for name in (ENSEMBLE_INFO, REWARD_INFO):
        path = Path(folder) / name
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _verdict(checks: dict[str, Any], rate: float, se: float) -> str:
    """``better`` / ``worse`` when the win rate is 2 standard errors from 50%, else ``level``;
    ``none`` from a judge too weak to judge."""
    if checks["too_weak"]:
        return "none (judge too weak)"
    return "better" if rate - 0.5 > 2 * se else "worse" if 0.5 - rate > 2 * se else "level"


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _mean_len(xs: Sequence[str]) -> float:
    return sum(len(x) for x in xs) / len(xs) if xs else 0.0
