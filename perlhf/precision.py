"""Mixed precision that follows the hardware.

bf16 autocast pays only where the hardware multiplies bf16 natively: CUDA devices that support it,
and x86 CPUs with AVX512_BF16 or AMX. Elsewhere it is emulated and slow: on an AMD EPYC with AVX2
only, a 1024x1024 bf16 matmul ran at 0.9 GFLOP/s against 156 GFLOP/s in fp32, and a reward-model
step of 16 x 72 tokens took 184-204 s against 3.9 s in fp32 (issue 13). ``--mixed-precision auto``
(every stage's default) therefore picks bf16 only where it is native, and an explicit ``bf16`` where
it is not is run as asked, with one warning naming that cost.

``PERLHF_NATIVE_BF16=0`` (or ``1``) overrides the detection (the test suite sets 0, so that it runs
the same fp32 arithmetic on every machine).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from perlhf.errors import UserError

log = logging.getLogger(__name__)

CHOICES = ["auto", "no", "bf16", "fp16"]
NATIVE_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
SLOW_BF16_NOTE = ("bf16 is emulated on this CPU (no AVX512_BF16 or AMX): on an AVX2-only CPU a bf16 matmul "
                  "ran about 170x slower than fp32 and a reward-model step about 50x slower")


@dataclass(frozen=True)
class Precision:
    """The autocast mode a run uses and why (written into summaries)."""

    mode: str     # "no", "bf16" or "fp16": what accelerate is given
    requested: str
    reason: str


def choose(requested: str, *, device: str, native_bf16: bool) -> Precision:
    """The autocast mode for ``requested`` (``auto``/``no``/``bf16``/``fp16``) on ``device``
    (``"cpu"`` or ``"cuda"``), given whether that device multiplies bf16 natively. Pure."""
    if requested not in CHOICES:
        raise UserError(f"--mixed-precision {requested!r}: expected one of {', '.join(CHOICES)}")
    if requested == "fp16" and device != "cuda":
        raise UserError("--mixed-precision fp16 needs a CUDA device; on CPU use --mixed-precision auto "
                        "(bf16 where the CPU has AVX512_BF16 or AMX, else fp32)")
    if requested == "auto":
        if native_bf16:
            return Precision("bf16", requested, f"auto: the {device} multiplies bf16 natively")
        return Precision("no", requested, f"auto: no native bf16 on this {device}, so fp32")
    if requested == "bf16" and not native_bf16:
        why = SLOW_BF16_NOTE if device == "cpu" else "this CUDA device does not support bf16"
        return Precision("bf16", requested, f"bf16 as asked, though {why}")
    return Precision(requested, requested, "as asked")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where it cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            return set(line.split(":", 1)[1].split())
    return None


def native_bf16(device: str) -> bool:
    """Whether ``device`` multiplies bf16 natively (``PERLHF_NATIVE_BF16`` overrides)."""
    forced = os.environ.get("PERLHF_NATIVE_BF16", "").strip().lower()
    if forced in ("0", "false", "no"):
        return False
    if forced in ("1", "true", "yes"):
        return True
    import torch

    if device == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    flags = cpu_flags()
    if flags is None:  # not Linux: trust oneDNN's own answer
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return any(f in flags for f in NATIVE_CPU_FLAGS)


_warned: set[str] = set()


def resolve(requested: str, device: str) -> Precision:
    """:func:`choose` on this machine; logs the choice, and warns once per process about slow bf16."""
    chosen = choose(requested, device=device, native_bf16=native_bf16(device))
    if chosen.mode == "bf16" and requested == "bf16" and chosen.reason != "as asked":
        if chosen.reason not in _warned:
            _warned.add(chosen.reason)
            log.warning("--mixed-precision %s. Use --mixed-precision auto (or no) for fp32.", chosen.reason)
    else:
        log.info("mixed precision: %s (%s)", chosen.mode, chosen.reason)
    return chosen


def oversubscribed(load: float, cores: int, threads: int) -> bool:
    """Whether ``threads`` OpenMP threads would share ``cores`` with other busy work (a 1-minute load
    average already at the core count): OpenMP threads then spin-wait on descheduled peers and a step
    ran 2-10x slower on the 2-core development machine. Pure."""
    return threads > 1 and load + threads > cores + 0.5 and load >= 1.0


def warn_if_oversubscribed() -> None:
    """Log once when other jobs already keep the CPU busy and torch would add several threads."""
    if "oversubscribed" in _warned or os.environ.get("OMP_NUM_THREADS"):
        return
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    import torch

    cores, threads = os.cpu_count() or 1, torch.get_num_threads()
    if oversubscribed(load, cores, threads):
        _warned.add("oversubscribed")
        log.warning("the CPU is already busy (load %.1f on %d cores) and torch will use %d threads: OpenMP threads "
                    "spin-wait on each other and steps can run 2-10x slower; set OMP_NUM_THREADS=1 for jobs that "
                    "share the machine", load, cores, threads)
