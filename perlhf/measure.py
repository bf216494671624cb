"""Peak memory, phase timers and parameter counts, on CPU and CUDA.

What :class:`PeakMemory` reports:

- **CUDA** (``kind == "cuda_max_allocated"``): ``torch.cuda.max_memory_allocated``
  between entering and leaving the window, after ``torch.cuda.reset_peak_memory_stats``;
  that is memory held by tensors through PyTorch's caching allocator (not the CUDA
  context, not allocator slack; ``max_memory_reserved`` is kept as ``reserved_bytes``).
  Because the reset is global per device, windows must not be nested on CUDA.
- **CPU** (``kind == "cpu_rss_sampled"``): the largest resident set size (RSS) of the
  process seen inside the window, sampled by a background thread every
  ``sample_interval_s`` (plus at entry, at exit and whenever :meth:`PeakMemory.sample`
  is called). ``resource.getrusage().ru_maxrss`` cannot be reset, so it only gives the
  lifetime peak of the process; it is kept for reference as ``process_peak_rss_bytes``
  but it is *not* the reported peak. Spikes shorter than the sampling interval can be
  missed; call :meth:`PeakMemory.sample` at points known to be at a peak.

``baseline_bytes`` is the reading at entry, so ``delta_bytes`` is what the window added.

:class:`PhaseTimer` times named phases (``with timer.phase("sampling"):``) and groups
them into steps (``with timer.step():``); on CUDA it synchronises the device at each
boundary so that asynchronous kernels are charged to the phase that launched them.
Timings belong in benchmarks, never in test assertions.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch

__all__ = [
    "PeakMemory",
    "PhaseRecord",
    "PhaseTimer",
    "count_parameters",
    "format_bytes",
    "format_count",
    "median_step_time",
]


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def process_peak_rss_bytes() -> int:
    """Lifetime peak RSS of this process (``ru_maxrss``; cannot be reset)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes; Linux: KiB


class PeakMemory:
    """Peak memory inside a ``with`` block (see the module docstring for what is measured).

    >>> with PeakMemory() as mem:          # doctest: +SKIP
    ...     run_step()
    >>> mem.peak_bytes, mem.delta_bytes    # doctest: +SKIP
    """

    def __init__(self, device: str | torch.device | None = None, *, sample_interval_s: float = 0.005):
        if sample_interval_s <= 0:
            raise ValueError(f"sample_interval_s must be positive, got {sample_interval_s}")
        self.device = _resolve_device(device)
        self.sample_interval_s = sample_interval_s
        self.kind = "cuda_max_allocated" if self.device.type == "cuda" else "cpu_rss_sampled"
        self.baseline_bytes = 0
        self.peak_bytes = 0
        self.reserved_bytes: int | None = None
        self.process_peak_rss_bytes = 0
        self.num_samples = 0
        self._process = psutil.Process()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active = False

    # -- CPU sampling ------------------------------------------------------------------------
    def sample(self) -> int:
        """Record the current usage now and return it (RSS on CPU, allocated bytes on CUDA)."""
        if self.kind == "cuda_max_allocated":
            now = int(torch.cuda.memory_allocated(self.device))
        else:
            now = int(self._process.memory_info().rss)
        with self._lock:
            self.num_samples += 1
            if now > self.peak_bytes:
                self.peak_bytes = now
        return now

    def _sampler(self) -> None:
        while not self._stop.wait(self.sample_interval_s):
            self.sample()

    # -- window ------------------------------------------------------------------------------
    def start(self) -> PeakMemory:
        if self._active:
            raise RuntimeError("PeakMemory window already started")
        self._active = True
        self.num_samples = 0
        self.reserved_bytes = None
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = int(torch.cuda.memory_allocated(self.device))
            self.peak_bytes = self.baseline_bytes
        else:
            self.baseline_bytes = int(self._process.memory_info().rss)
            self.peak_bytes = self.baseline_bytes
            self._stop.clear()
            self._thread = threading.Thread(target=self._sampler, name="perlhf-peak-rss", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> PeakMemory:
        if not self._active:
            raise RuntimeError("PeakMemory window was not started")
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = max(self.peak_bytes, int(torch.cuda.max_memory_allocated(self.device)))
            self.reserved_bytes = int(torch.cuda.max_memory_reserved(self.device))
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            self.sample()
        self.process_peak_rss_bytes = process_peak_rss_bytes()
        self._active = False
        return self

    def __enter__(self) -> PeakMemory:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def delta_bytes(self) -> int:
        """Peak minus the reading at entry."""
        return self.peak_bytes - self.baseline_bytes

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (bytes), naming what was measured."""
        return {
            "kind": self.kind,
            "device": str(self.device),
            "peak_bytes": self.peak_bytes,
            "baseline_bytes": self.baseline_bytes,
            "delta_bytes": self.delta_bytes,
            "reserved_bytes": self.reserved_bytes,
            "process_peak_rss_bytes": self.process_peak_rss_bytes,
            "num_samples": self.num_samples,
        }


@dataclass(frozen=True)
class PhaseRecord:
    """One timed phase: its name, the step it belonged to (None outside steps), seconds."""

    name: str
    step: int | None
    seconds: float


@dataclass
class PhaseTimer:
    """Named phase timings, grouped into steps.

    >>> timer = PhaseTimer()                       # doctest: +SKIP
    >>> for _ in range(steps):                     # doctest: +SKIP
    ...     with timer.step():                     # records "step" (the whole step)
    ...         with timer.phase("sampling"): ...
    ...         with timer.phase("update"): ...
    >>> median_step_time(timer.step_times("sampling"), warmup=1)  # doctest: +SKIP

    A phase entered twice within one step counts once per step with the summed time.
    ``clock`` is injectable for tests. On CUDA devices every boundary synchronises.
    """

    device: str | torch.device | None = None
    clock: Callable[[], float] = time.perf_counter
    step_phase_name: str = "step"
    records: list[PhaseRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._device = _resolve_device(self.device)
        self._step: int | None = None
        self._num_steps = 0

    def _sync(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block under ``name`` (in the current step, if any)."""
        if not name:
            raise ValueError("phase name must be non-empty")
        self._sync()
        start = self.clock()
        try:
            yield
        finally:
            self._sync()
            self.records.append(PhaseRecord(name, self._step, self.clock() - start))

    @contextlib.contextmanager
    def step(self) -> Iterator[int]:
        """Open the next step (yields its index); its whole duration is recorded as ``"step"``."""
        if self._step is not None:
            raise RuntimeError("PhaseTimer steps cannot be nested")
        index = self._num_steps
        self._step = index
        try:
            with self.phase(self.step_phase_name):
                yield index
        finally:
            self._step = None
            self._num_steps += 1

    @property
    def num_steps(self) -> int:
        return self._num_steps

    def names(self) -> list[str]:
        """Phase names in order of first appearance."""
        return list(dict.fromkeys(r.name for r in self.records))

    def totals(self) -> dict[str, float]:
        """Total seconds per phase name (phases outside steps included)."""
        out: dict[str, float] = defaultdict(float)
        for r in self.records:
            out[r.name] += r.seconds
        return dict(out)

    def counts(self) -> dict[str, int]:
        """How many times each phase was entered."""
        out: dict[str, int] = defaultdict(int)
        for r in self.records:
            out[r.name] += 1
        return dict(out)

    def per_step(self) -> list[dict[str, float]]:
        """One dict per step: phase name -> seconds spent in it during that step."""
        rows: list[dict[str, float]] = [{} for _ in range(self._num_steps)]
        for r in self.records:
            if r.step is not None and r.step < len(rows):
                rows[r.step][r.name] = rows[r.step].get(r.name, 0.0) + r.seconds
        return rows

    def step_times(self, name: str | None = None) -> list[float]:
        """Seconds per step spent in ``name`` (default: the whole step); 0.0 where absent."""
        key = name or self.step_phase_name
        return [row.get(key, 0.0) for row in self.per_step()]

    def summary(self, warmup: int = 0) -> dict[str, dict[str, float]]:
        """Per phase: total seconds, count, and median per-step seconds after ``warmup`` steps."""
        out: dict[str, dict[str, float]] = {}
        totals, counts = self.totals(), self.counts()
        for name in self.names():
            entry: dict[str, float] = {"total_s": totals[name], "count": counts[name]}
            times = self.step_times(name)
            if len(times) > warmup:
                entry["median_step_s"] = median_step_time(times, warmup=warmup)
            out[name] = entry
        return out


def median_step_time(times: Sequence[float], warmup: int = 1) -> float:
    """Median of ``times`` after dropping the first ``warmup`` entries (compilation, caches)."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    kept = list(times)[warmup:]
    if not kept:
        raise ValueError(f"need more than warmup={warmup} step times, got {len(times)}")
    return float(statistics.median(kept))


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts; shared (tied) tensors count once."""
    trainable = total = 0
    for p in model.parameters():  # parameters() skips duplicates of the same tensor
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def format_count(n: int) -> str:
    """``134515008 -> "134.5M"``, ``2500 -> "2.5K"``, ``7 -> "7"``."""
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def format_bytes(n: int) -> str:
    """``512 -> "512 B"``, ``1536 -> "1.5 KiB"`` (binary units up to TiB)."""
    if abs(n) < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"
