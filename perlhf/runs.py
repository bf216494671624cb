"""Run directories, metrics, checkpoints and resume — shared by every training stage.

A run directory holds::

    config.yaml          the resolved config of the run
    metrics.jsonl        one JSON object per logged step (``{"step": .., "split": .., ...}``)
    checkpoints/step-00000040/   complete checkpoints only (written atomically)
    summary.json         the final summary (written last)

Checkpoints are written into a temporary folder and renamed, so ``kill -9`` at
any point leaves the last complete checkpoint. ``--resume`` loads it and
continues with the same data order: batches come from a permutation seeded by
(seed, epoch) and each step seeds torch with (seed, step), so a resumed run
repeats exactly what the uninterrupted run would have done.
A checkpoint is never written when any tracked value is NaN or infinite.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from perlhf.errors import UserError
from perlhf.faults import crash_point
from perlhf.io import atomic_directory, atomic_write_json, atomic_write_text, clean_json, dumps_json

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"


class NonFiniteError(UserError):
    """A loss, reward or gradient became NaN or infinite; the run stops without checkpointing."""


def check_finite(step: int, **values: float) -> None:
    """Raise :class:`NonFiniteError` naming the step and the value if any value is NaN or infinite."""
    bad = {k: v for k, v in values.items() if v is not None and not math.isfinite(float(v))}
    if bad:
        names = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise NonFiniteError(
            f"non-finite value at step {step}: {names}. Stopped without writing a checkpoint; "
            "the last good checkpoint (if any) is intact. Lower the learning rate or check the data, "
            "then rerun with --resume."
        )


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def step_seed(seed: int, step: int) -> int:
    """The seed used for everything random inside one optimizer step (dropout, sampling)."""
    return (seed * 1_000_003 + step * 7919) % (2**31 - 1)


def episode_seed(seed: int, step: int, episode: int) -> int:
    """The sampling seed of one RL episode: the step's seed and the episode's index in the global
    batch (prompt position x samples per prompt + sample), whichever process samples it."""
    return (step_seed(seed, step) * 1_000_033 + episode * 104_729 + 1) % (2**62)


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The order in which examples are visited in ``epoch`` (deterministic, process-independent)."""
    rng = random.Random(seed * 10_007 + epoch)
    order = list(range(n))
    rng.shuffle(order)
    return order


def batches_from(order: Sequence[int], batch_size: int, *, drop_last: bool = True) -> list[list[int]]:
    out = [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    if drop_last and out and len(out[-1]) < batch_size:
        out.pop()
    return out


@dataclass
class RunDir:
    """A training run's output folder."""

    path: Path
    resumed_from: Path | None = None

    @classmethod
    def prepare(cls, path: str | os.PathLike, *, overwrite: bool = False, resume: bool = False,
                option: str = "--output-dir") -> RunDir:
        path = Path(path)
        exists = cls.check(path, overwrite=overwrite, resume=resume, option=option)
        if resume:
            run = cls(path)
            run.resumed_from = run.latest_checkpoint()
            if run.resumed_from is None:
                log.warning("--resume: no complete checkpoint in %s; starting from the beginning", path)
            return run
        if exists and overwrite:
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @staticmethod
    def check(path: Path, *, overwrite: bool = False, resume: bool = False, option: str = "--output-dir") -> bool:
        """The checks of :meth:`prepare`, changing nothing; returns whether ``path`` holds anything."""
        if overwrite and resume:
            raise UserError("--overwrite and --resume exclude each other: choose one")
        exists = path.exists() and (path.is_file() or any(path.iterdir()))
        if exists and path.is_file():
            raise UserError(f"{option} {path}: is a file, not a directory")
        if resume and not exists:
            raise UserError(f"--resume: {path} does not exist or is empty; start the run without --resume")
        if exists and not (overwrite or resume):
            raise UserError(
                f"{option} {path} already exists and is not empty: pass --overwrite to replace it "
                "or --resume to continue it"
            )
        return exists

    # -- files -----------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def save_config(self, cfg: dict[str, Any]) -> None:
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(clean_json(cfg), sort_keys=False))

    def write_summary(self, summary: dict[str, Any], name: str = "summary.json") -> Path:
        out = self.path / name
        atomic_write_json(out, summary)
        return out

    # -- metrics ---------------------------------------------------------------
    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line (flushed, so a crash keeps every logged line)."""
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(dumps_json(record, indent=None) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        return self.read_jsonl(self.metrics_path)

    @staticmethod
    def read_jsonl(path: Path) -> list[dict[str, Any]]:
        """The records of a run log; a torn last line (after kill -9) ends the list."""
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return out

    def truncate_metrics_after(self, step: int, *extra_logs: str) -> None:
        """On resume: drop the lines of metrics.jsonl (and of each named log in the run folder, e.g.
        samples.jsonl) written after the checkpoint's step: they will be written again."""
        for path in (self.metrics_path, *(self.path / name for name in extra_logs)):
            if path.exists():
                kept = [r for r in self.read_jsonl(path) if int(r.get("step", 0)) <= step]
                atomic_write_text(path, "".join(dumps_json(r, indent=None) + "\n" for r in kept))

    # -- checkpoints -----------------------------------------------------------
    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"{CHECKPOINT_PREFIX}{step:08d}"

    def list_checkpoints(self) -> list[Path]:
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir()
                 if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / "trainer_state.json").is_file()]
        return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))

    def latest_checkpoint(self) -> Path | None:
        ckpts = self.list_checkpoints()
        return ckpts[-1] if ckpts else None

    @contextlib.contextmanager
    def checkpoint_writer(self, step: int) -> Iterator[Path]:
        """Context manager yielding a temp folder that becomes ``checkpoints/step-N`` on success."""
        with atomic_directory(self.checkpoint_path(step)) as tmp:
            yield tmp
            crash_point("checkpoint", step)

    def prune_checkpoints(self, keep: int, protect: Iterable[Path] = ()) -> None:
        protect = {Path(p).resolve() for p in protect}
        ckpts = self.list_checkpoints()
        for p in ckpts[: max(0, len(ckpts) - keep)]:
            if p.resolve() not in protect:
                shutil.rmtree(p, ignore_errors=True)


REPORT_TO = ["tensorboard", "wandb", "none"]


class Reporter:
    """Metrics of a run: metrics.jsonl always; TensorBoard or W&B too when asked (``--report-to``) and
    installed. Only the process that writes the run folder reports (``enabled``)."""

    def __init__(self, run: RunDir | None, report_to: str, config: dict[str, Any], enabled: bool = True):
        self.run, self.enabled, self.tb, self.wandb = run, enabled and run is not None, None, None
        if not self.enabled or report_to == "none":
            return
        if report_to == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed; logging to metrics.jsonl only")
                return
            self.tb = SummaryWriter(str(run.path / "tensorboard"))
        elif report_to == "wandb":
            try:
                import wandb
            except ImportError:
                raise UserError("--report-to wandb: wandb is not installed (pip install wandb), "
                                "or use --report-to tensorboard|none") from None
            self.wandb = wandb.init(project="perlhf", name=run.path.name, config=config)
        else:
            raise UserError(f"--report-to {report_to!r}: choose one of {', '.join(REPORT_TO)}")

    def log(self, step: int, split: str, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        values = {k: v for k, v in values.items() if k not in ("step", "split")}
        self.run.log_metrics({"step": step, "split": split, **values})
        numeric = {k: v for k, v in values.items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
        if self.tb is not None:
            for k, v in numeric.items():
                self.tb.add_scalar(f"{split}/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"{split}/{k}": v for k, v in numeric.items()}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def progress_bar(enabled: bool, total: int, initial: int, desc: str):
    """A tqdm bar of optimizer steps (i/N, rate and ETA), or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def save_trainer_state(folder: Path, state: dict[str, Any]) -> None:
    """``trainer_state.json`` is written last: its presence marks a checkpoint complete."""
    atomic_write_json(folder / "trainer_state.json", state)


def load_trainer_state(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "trainer_state.json").read_text())


def save_optimizer(folder: Path, optimizer: Any, scheduler: Any | None = None) -> None:
    import torch

    state = {"optimizer": optimizer.state_dict()}
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    torch.save(state, folder / "optimizer.pt")


def load_optimizer(folder: Path, optimizer: Any, scheduler: Any | None = None) -> None:
    import torch

    # weights_only=True: tensors, numbers and containers only, never arbitrary pickled objects.
    state = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])


def check_batch_fits(n_examples: int, batch_size: int) -> None:
    """Refuse a batch larger than the training data (no step could be formed)."""
    if n_examples < batch_size:
        raise UserError(
            f"only {n_examples} training examples for a batch of {batch_size}: lower --batch-size "
            "or use more data"
        )


def steps_over_epochs(epoch_batches: Callable[[int], Sequence[list[int]]], max_steps: int,
                      start_step: int = 0) -> Iterator[tuple[int, int, list[int]]]:
    """The one step schedule of every stage: ``(step, epoch, batch)`` for steps ``start_step+1 .. max_steps``
    (1-based), walking ``epoch_batches(0)``, ``epoch_batches(1)``... until ``max_steps``.

    ``epoch_batches(epoch)`` must depend only on the epoch (and fixed data and seed), so resuming at
    ``start_step`` yields exactly the batches the uninterrupted run would have seen. An epoch with no
    batch ends the schedule.
    """
    step, epoch = 0, 0
    while step < max_steps:
        batches = epoch_batches(epoch)
        if not batches:
            return
        for batch in batches:
            step += 1
            if step > max_steps:
                return
            if step > start_step:
                yield step, epoch, batch
        epoch += 1


def iterate_steps(n_examples: int, batch_size: int, seed: int, max_steps: int,
                  start_step: int = 0) -> Iterator[tuple[int, int, list[int]]]:
    """:func:`steps_over_epochs` over seeded random batches (a fresh permutation each epoch, the last
    incomplete batch dropped). Refuses at once a batch larger than the data."""
    check_batch_fits(n_examples, batch_size)
    return steps_over_epochs(lambda epoch: batches_from(epoch_permutation(n_examples, seed, epoch), batch_size),
                             max_steps, start_step)


# Options that may change between a run and its --resume without changing what is computed.
RESUMABLE_CHANGES = frozenset({"max_steps", "resume", "overwrite", "report_to", "progress", "output_dir",
                               "eval_untrained", "log_every", "save_every", "keep_checkpoints",
                               "num_processes", "learning_rate_used"})


def changed_options(saved: dict[str, Any], now: dict[str, Any],
                    resumable: Iterable[str] = RESUMABLE_CHANGES) -> list[str]:
    """The options of ``now`` that differ from the ``saved`` config and may not change on resume. Pure."""
    allowed = set(resumable)
    return [k for k, v in now.items() if k not in allowed and k in saved and saved[k] != clean_json(v)]


def check_resume_options(path: Path, now: dict[str, Any]) -> None:
    """Refuse ``--resume`` when an option that changes the computation differs from the run's config.yaml."""
    saved = yaml.safe_load((path / "config.yaml").read_text()) or {}
    changed = changed_options(saved, now)
    if changed:
        diffs = ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} -> {now[k]!r}" for k in changed)
        raise UserError(f"--resume {path}: options differ from the original run ({diffs}); "
                        "resume with the same options (only --max-steps may grow) or start a new run")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary folders and files that an interrupted write left (``.NAME.*.tmp``, and the
    ``.NAME.old-PID`` of an interrupted swap) in a run folder and its checkpoints/; returns them."""
    removed = []
    for folder in (path, path / "checkpoints"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") and (p.name.endswith(".tmp") or ".old-" in p.name):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted write in %s", len(removed), path)
    return removed


_created_here: list[Path] = []


def prepare_run(accelerator: Any, output_dir: str | os.PathLike, *, overwrite: bool = False,
                resume: bool = False, config: dict[str, Any] | None = None) -> RunDir:
    """The run directory of a stage that may run under ``torchrun``: every process checks the options
    (so a refusal stops them all), only the main process deletes or creates the folder, the others
    wait and then open it. With ``config`` (the stage's options), ``--resume`` refuses changed options
    and the config is written to config.yaml. A folder created here that still holds nothing but its
    config when the stage fails is removed again (:func:`discard_unstarted_runs`)."""
    path = Path(output_dir)
    RunDir.check(path, overwrite=overwrite, resume=resume)
    if resume:
        if not (path / "config.yaml").is_file():
            raise UserError(f"--resume {path}: not a perlhf run folder (no config.yaml); give the --output-dir "
                            "of an earlier run, or start a new run in an empty folder")
        if config is not None:
            check_resume_options(path, config)
    accelerator.wait_for_everyone()  # every process has checked before the main one changes anything
    run = None
    if accelerator.is_main_process:
        fresh = not path.exists() or overwrite or not any(path.iterdir())
        run = RunDir.prepare(path, overwrite=overwrite, resume=resume)
        remove_stale_temporaries(path)
        if fresh and not resume:
            _created_here.append(path)
        if config is not None:
            run.save_config(config)
    accelerator.wait_for_everyone()
    if run is None:
        run = RunDir(path)
        run.resumed_from = run.latest_checkpoint() if resume else None
    return run


def _only_config(path: Path) -> bool:
    """Whether ``path`` holds nothing but config.yaml and empty folders."""
    for p in path.rglob("*"):
        if p.is_file() and p != path / "config.yaml":
            return False
    return True


def discard_unstarted_runs() -> list[Path]:
    """Remove the run folders this process created that hold nothing but config.yaml (a stage that
    failed on an option or input found after its folder was made), so the corrected rerun is not refused."""
    removed = []
    while _created_here:
        path = _created_here.pop()
        if path.is_dir() and _only_config(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def stage_entry(fn):
    """Decorate a stage's entry point: on any error, :func:`discard_unstarted_runs`; on success, forget
    the folders it created (they are runs now)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except BaseException:
            discard_unstarted_runs()
            raise
        _created_here.clear()
        return out

    return wrapper


def make_accelerator(cpu: bool | None = None, mixed_precision: str = "auto"):
    """An accelerate ``Accelerator``; under ``torchrun`` it is data-parallel (gloo on CPU).

    ``cpu=None`` means "CPU when there is no CUDA device": accelerate only sets up
    multi-process CPU training (MULTI_CPU) when asked for the CPU explicitly; without it,
    each torchrun process would silently train alone. ``mixed_precision`` may be ``auto``
    (:mod:`perlhf.precision`); the choice and its reason are kept as ``accelerator.precision``.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from perlhf import precision

    if cpu is None:
        cpu = not torch.cuda.is_available()
    chosen = precision.resolve(mixed_precision, "cpu" if cpu else "cuda")
    if cpu:
        precision.warn_if_oversubscribed()
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision", chosen.mode) != chosen.mode:
        # Another stage in this process chose another precision: accelerate keeps one process-wide
        # state and would refuse; reset the precision part (the distributed setup is kept).
        AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(cpu=bool(cpu), mixed_precision=chosen.mode)
    accelerator.precision = chosen
    return accelerator


def precision_summary(accelerator: Any) -> dict[str, str]:
    """The summary fields that say which autocast a run used and why."""
    chosen = getattr(accelerator, "precision", None)
    if chosen is None:
        return {"mixed_precision": str(accelerator.mixed_precision)}
    return {"mixed_precision": chosen.mode, "mixed_precision_reason": chosen.reason}
