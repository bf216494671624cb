"""``perlhf rm --ensemble K``: K LoRA reward models on one frozen backbone, in one run.

Reads top to bottom as the stage it is:

1. load and split the task once: every member is validated and tested on the same examples;
   member k trains on its own records (``--ensemble-data``: a bootstrap resample, a disjoint
   shard by conversation, or all of them) with seed ``--seed + k``; shards too small for a
   batch are refused before anything is written;
2. load the backbone once; each member is an ordinary ``perlhf rm`` run in ``members/member-k/``
   (metrics, checkpoints, its own final/) on that backbone, whose adapter layers are removed
   again after it, so the next member starts from the same frozen base;
3. write ``final/``: the K member folders (standard peft adapters + heads) and
   ``perlhf_ensemble.json`` (:mod:`perlhf.models.ensemble`);
4. score validation and test with every member on one backbone: each member's metrics, the
   ensemble's (mean of the members' scores; also min and mean - std), and the best single
   member by validation, tested; ``summary.json``.

``--resume`` keeps the finished members and continues an unfinished one from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from perlhf.config import config_to_dict
from perlhf.errors import UserError
from perlhf.models.ensemble import AGGREGATES, aggregate, member_name, member_train_records
from perlhf.runs import RunDir, stage_entry
from perlhf.train.metrics import length_baselines, margin_over_baseline

log = logging.getLogger(__name__)


def member_splits(cfg: Any, kind: str, splits: dict[str, list[Any]]) -> list[list[Any]]:
    """Every member's training records; refuses members with too few examples (or one label only)."""
    k_total = cfg.ensemble
    out = []
    for k in range(k_total):
        records = member_train_records(splits["train"], cfg.ensemble_data, k, k_total, cfg.seed)
        if len(records) < cfg.batch_size:
            raise UserError(
                f"--ensemble {k_total} --ensemble-data {cfg.ensemble_data}: member {k} would train on "
                f"{len(records)} examples, fewer than --batch-size {cfg.batch_size} (of {len(splits['train'])} "
                "training examples); use fewer members, --ensemble-data bootstrap, or more data")
        if kind == "rating" and len({r.label for r in records}) < 2:
            raise UserError(f"--ensemble {k_total} --ensemble-data {cfg.ensemble_data}: member {k}'s training "
                            "records hold one label only; use fewer members or --ensemble-data bootstrap")
        out.append(records)
    return out


@torch.inference_mode()
def member_scores_of_split(model: Any, data: Any, pad_id: int, batch_size: int, accelerator: Any) -> torch.Tensor:
    """``(K, N)`` scores of a split by every member (pairs: chosen scores then rejected, as
    :func:`perlhf.train.reward.score_split`), one pass per member through the shared backbone."""
    from perlhf.models.heads import RewardModel
    from perlhf.train.reward import score_split

    rows = []
    with accelerator.autocast():
        for name, head in zip(model.names, model.heads, strict=True):
            model.backbone.set_adapter(name)
            rows.append(score_split(RewardModel(model.backbone, head), data, pad_id, batch_size, accelerator.device,
                                    accelerator.process_index, accelerator.num_processes))
    return torch.tensor(rows, dtype=torch.float64)


def ensemble_metrics(kind: str, scores: dict[str, torch.Tensor], labels: dict[str, list[int] | None],
                     metric: str) -> dict[str, Any]:
    """Each member's and each aggregate's metrics on validation and test (``scores[split]``: ``(K, N)``),
    and the best single member chosen on validation."""
    from perlhf.train.metrics import reward_metrics

    k_total = next(iter(scores.values())).shape[0]
    members = [{split: reward_metrics(kind, s[k].tolist(), labels[split]) for split, s in scores.items()}
               for k in range(k_total)]
    aggregates = {how: {split: reward_metrics(kind, aggregate(s, how).tolist(), labels[split])
                        for split, s in scores.items()} for how in AGGREGATES}
    best = max(range(k_total), key=lambda k: members[k]["validation"][metric])
    return {"members": members, "aggregates": aggregates, "best_member": best}


@stage_entry
def train_ensemble(cfg: Any, *, task: Any | None = None, backbone: torch.nn.Module | None = None,
                   tokenizer: Any | None = None) -> dict[str, Any]:
    """Run the ensemble stage (``cfg.ensemble`` > 1); returns the summary (also ``summary.json``)."""
    from perlhf.data import load_task
    from perlhf.data.tasks import TaskData
    from perlhf.measure import PeakMemory
    from perlhf.models import load_tokenizer
    from perlhf.models.ensemble import ENSEMBLE_INFO, EnsembleInfo, load_ensemble, write_ensemble
    from perlhf.models.heads import is_causal_lm, load_backbone
    from perlhf.runs import make_accelerator, precision_summary, prepare_run
    from perlhf.train.metrics import selection_metric
    from perlhf.train.reward import encode_split, load_splits, train_reward_model

    k_total = cfg.ensemble
    out = Path(cfg.output_dir)
    RunDir.check(out, overwrite=cfg.overwrite, resume=cfg.resume)
    if backbone is not None and tokenizer is None:
        raise UserError("a backbone model given in Python needs its tokenizer too (tokenizer=...)")

    # 1. Data, split once; every member's training records (checked before anything is written).
    task = task if task is not None else load_task(cfg.task, data_dir=cfg.data_dir, path=cfg.path)
    kind, splits = load_splits(cfg, task)
    records = member_splits(cfg, kind, splits)
    accelerator = make_accelerator(mixed_precision=cfg.mixed_precision)
    main = accelerator.is_main_process
    run = prepare_run(accelerator, out, overwrite=cfg.overwrite, resume=cfg.resume,
                      config={**config_to_dict(cfg), "learning_rate_used": cfg.lr,
                              "num_processes": accelerator.num_processes})

    # 2. One backbone; the members one after the other on it.
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(cfg.model, cfg.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if backbone is None:
        backbone = load_backbone(cfg.model, kind="causal" if is_causal_lm(cfg.model) else "encoder",
                                 dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)
    summaries = []
    for k in range(k_total):
        folder = run.path / "members" / member_name(k)
        done = folder / "summary.json"
        if done.is_file() and (folder / "final").is_dir():
            log.info("ensemble member %d of %d: already trained (%s)", k + 1, k_total, folder)
            summaries.append(json.loads(done.read_text()))
            continue
        resume = (folder / "config.yaml").is_file()
        log.info("ensemble member %d of %d: %d training examples (%s), seed %d%s", k + 1, k_total, len(records[k]),
                 cfg.ensemble_data, cfg.seed + k, ", resuming" if resume else "")
        member_task = TaskData(name=task.name, kind=kind, splits={"train": records[k],
                                                                  "validation": splits["validation"],
                                                                  "test": splits["test"]})
        member_cfg = dataclasses.replace(
            cfg, ensemble=1, seed=cfg.seed + k, output_dir=str(folder), train_shard="all",
            max_train_examples=None, max_eval_examples=None, eval_untrained=cfg.eval_untrained and k == 0,
            overwrite=not resume and folder.exists(), resume=resume)
        summaries.append(train_reward_model(
            member_cfg, task=member_task, backbone=backbone, tokenizer=tokenizer,
            info_extra={"train_shard": cfg.train_shard, "ensemble_member": k, "ensemble_size": k_total,
                        "ensemble_data": cfg.ensemble_data}))

    # 3. final/: the K members and the ensemble's description.
    final = run.path / "final"
    if main and not (final / ENSEMBLE_INFO).is_file():
        write_ensemble(final, [run.path / "members" / member_name(k) / "final" for k in range(k_total)],
                       data=cfg.ensemble_data, extra={"seeds": [cfg.seed + k for k in range(k_total)],
                                                      "train_shard": cfg.train_shard})
    accelerator.wait_for_everyone()

    # 4. Every member and the ensemble on validation and test, on the one backbone.
    memory = PeakMemory(accelerator.device).start()
    model, info = load_ensemble(final, base=backbone)
    model.to(accelerator.device)
    pad_id = int(tokenizer.pad_token_id)
    scores, labels = {}, {}
    for split in ("validation", "test"):
        data = encode_split(split, kind, splits[split], tokenizer, cfg)
        scores[split] = member_scores_of_split(model, data, pad_id, cfg.eval_batch_size, accelerator)
        labels[split] = data.labels
    memory.stop()
    metric = selection_metric(kind)
    found = ensemble_metrics(kind, scores, labels, metric)
    model.backbone.unload()  # the backbone back without adapter layers (the caller's, when given)
    summary = ensemble_summary(cfg, kind, splits, summaries, found, metric, precision_summary(accelerator),
                               memory, str(final))
    if main:
        # the ensemble's own test figures beside it (as a single model's perlhf_reward.json has them), so
        # that `perlhf eval --judge-rm <ensemble>` reports the judge's accuracy and refuses a weak one
        ens_info, _ = EnsembleInfo.load(final)
        if ens_info.extra.get("test") != summary["test"]:
            ens_info.extra["test"] = summary["test"]
            ens_info.save(final)
        run.write_summary(summary)
    accelerator.wait_for_everyone()
    log.info("ensemble of %d: test %s %.4f (best single member %d: %.4f)", k_total, metric,
             summary["test"][metric], found["best_member"], summary["best_single_member"]["test"][metric])
    return {**summary, "is_main_process": main}


def ensemble_summary(cfg: Any, kind: str, splits: dict, summaries: list[dict], found: dict, metric: str,
                     precision: dict, memory: Any, final_dir: str) -> dict[str, Any]:
    """The ensemble run's summary.json: the shape of a single rm run's (the ensemble mean as its
    test figures, so reports and ``compare`` read either), plus each member and the aggregates."""
    best = found["best_member"]
    mean = found["aggregates"]["mean"]
    costs = [s["cost"] for s in summaries]
    trainable = sum(s["params"]["trainable"] for s in summaries)
    total = summaries[0]["params"]["total"] - summaries[0]["params"]["trainable"] + trainable
    seconds = [c["median_step_s"] * c["timed_steps"] for c in costs if c.get("median_step_s")]
    length = length_baselines(kind, splits["train"], splits["test"])
    return {
        "stage": "rm",
        "task": cfg.task,
        "kind": kind,
        "model": cfg.model,
        "mode": cfg.mode,
        "lora_rank": cfg.lora_rank,
        "ensemble": cfg.ensemble,
        "ensemble_data": cfg.ensemble_data,
        "learning_rate": cfg.lr,
        "steps": cfg.max_steps,
        "batch_size": cfg.batch_size,
        **precision,
        "num_processes": summaries[0].get("num_processes", 1),
        "examples": {"train_per_member": [s["examples"]["train"] for s in summaries],
                     "validation": len(splits["validation"]), "test": len(splits["test"])},
        "selection_metric": metric,
        "best_step": None,
        "validation_best": mean["validation"][metric],
        "validation": mean["validation"],
        "test": mean["test"],
        "aggregates": found["aggregates"],
        "members": [{"seed": cfg.seed + k, "train_examples": s["examples"]["train"], "best_step": s["best_step"],
                     "validation": m["validation"], "test": m["test"]}
                    for k, (s, m) in enumerate(zip(summaries, found["members"], strict=True))],
        "best_single_member": {"member": best, **found["members"][best]},
        "untrained": summaries[0].get("untrained"),
        "majority_baseline": mean["test"].get("majority_baseline", 0.5),
        "length_baselines": length,
        "length_margin_se": margin_over_baseline(mean["test"], length),
        "params": {"trainable": trainable, "total": total, "trainable_pct": 100.0 * trainable / total},
        "cost": {  # one ensemble step: one optimizer step of every member
            "median_step_s": sum(c["median_step_s"] for c in costs) if len(seconds) == len(costs) else None,
            "member_median_step_s": [c.get("median_step_s") for c in costs],
            "train_s": sum(seconds),
            "timed_steps": sum(c["timed_steps"] for c in costs),
            "examples_per_s": None, "real_tokens_per_s": None, "padded_tokens_per_s": None,
            "padding_fraction": None,
            "peak_memory_bytes": max([c["peak_memory_bytes"] or 0 for c in costs] + [memory.peak_bytes or 0]),
            "peak_memory_kind": memory.kind,
            "eval_peak_memory_bytes": memory.peak_bytes,
        },
        "base_fingerprint": summaries[0]["base_fingerprint"],
        "final_dir": final_dir,
    }
