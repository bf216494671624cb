"""Fault injection for the test suite's kill-and-resume checks.

``PERLHF_FAULT=<point>:<step>`` makes the process kill itself with SIGKILL (no cleanup, no flush, as
``kill -9`` or the OOM killer would) when it reaches ``point`` at optimizer step ``step``. Points:

- ``step``: in the middle of an optimizer step (gradients computed, weights not yet updated);
- ``checkpoint``: inside a checkpoint write, every file written but the folder not yet renamed;
- ``final``: inside the final save (``step`` is the run's last step).

``PERLHF_FAULT=slow:<seconds>`` instead makes every optimizer step sleep that long (at the ``step``
point), so that a test can interrupt a run that is surely still going, whatever the CPU's speed.

Unset (the normal case) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import time


def crash_point(point: str, step: int) -> None:
    spec = os.environ.get("PERLHF_FAULT")
    if not spec:
        return
    if spec == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
    elif point == "step" and spec.startswith("slow:"):
        time.sleep(float(spec.removeprefix("slow:")))
