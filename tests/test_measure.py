"""Peak memory windows, phase timers, step-time medians and parameter counts (no timing assertions)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
import torch

from perlhf.measure import (
    PeakMemory,
    PhaseTimer,
    count_parameters,
    format_bytes,
    format_count,
    median_step_time,
    process_peak_rss_bytes,
)

MIB = 2**20


# ------------------------------------------------------------------------------------ PeakMemory
def _run_fresh(code: str) -> None:
    """Run ``code`` in a fresh interpreter: inside a long pytest run the allocator can hand back
    pages that are already resident, so a new block need not raise RSS at all (seen twice in CI)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_cpu_peak_sees_an_allocation_and_later_windows_are_independent():
    _run_fresh("""
        import torch
        from perlhf.measure import PeakMemory
        MIB = 2**20
        with PeakMemory("cpu") as first:
            block = torch.ones(192 * MIB // 4, dtype=torch.float32)  # ones() writes every page
            first.sample()
            del block
        assert first.kind == "cpu_rss_sampled"
        assert first.delta_bytes >= 150 * MIB, first.delta_bytes
        # ru_maxrss would still report the old peak; a fresh window must not.
        with PeakMemory("cpu") as second:
            small = torch.ones(4 * MIB // 4, dtype=torch.float32)
            second.sample()
            del small
        assert second.delta_bytes < first.delta_bytes - 100 * MIB, (second.delta_bytes, first.delta_bytes)
        # the lifetime peak (ru_maxrss) cannot go down; the kernel's count differs from psutil's by a few pages
        assert second.process_peak_rss_bytes >= first.peak_bytes - 16 * MIB
        d = second.as_dict()
        assert d["kind"] == "cpu_rss_sampled" and d["peak_bytes"] == second.peak_bytes
    """)


def test_cpu_sampling_thread_catches_a_peak_without_explicit_samples():
    _run_fresh("""
        import time, torch
        from perlhf.measure import PeakMemory
        MIB = 2**20
        with PeakMemory("cpu", sample_interval_s=0.001) as mem:
            block = torch.ones(128 * MIB // 4, dtype=torch.float32)
            seen = mem.num_samples
            for _ in range(10_000):  # wait until the thread has sampled at least twice more, bounded
                if mem.num_samples >= seen + 2:
                    break
                time.sleep(0.001)
            del block
        assert mem.num_samples >= seen + 2, (mem.num_samples, seen)
        assert mem.delta_bytes >= 100 * MIB, mem.delta_bytes
    """)


def test_peak_memory_window_misuse():
    mem = PeakMemory("cpu")
    with pytest.raises(RuntimeError, match="not started"):
        mem.stop()
    mem.start()
    with pytest.raises(RuntimeError, match="already started"):
        mem.start()
    mem.stop()
    with pytest.raises(ValueError):
        PeakMemory("cpu", sample_interval_s=0)


def test_process_peak_rss_is_in_bytes():
    assert process_peak_rss_bytes() > 10 * MIB  # a Python process with torch is far above 10 MiB


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_memory():
    with PeakMemory("cuda") as mem:
        x = torch.ones(64 * MIB // 4, device="cuda")
        del x
    assert mem.kind == "cuda_max_allocated" and mem.delta_bytes >= 64 * MIB
    with PeakMemory("cuda") as again:
        pass
    assert again.delta_bytes < 64 * MIB


# ------------------------------------------------------------------------------------ PhaseTimer
def fake_clock(step: float = 1.0):
    """A clock that advances by ``step`` seconds each time it is read."""
    counter = itertools.count()
    return lambda: next(counter) * step


def test_phase_timer_totals_and_per_step():
    timer = PhaseTimer(device="cpu", clock=fake_clock())
    for _ in range(3):
        with timer.step():
            with timer.phase("sampling"):
                pass
            with timer.phase("update"):
                pass
            with timer.phase("update"):  # entered twice in a step: summed
                pass
    with timer.phase("eval"):  # outside any step
        pass
    # each phase reads the clock twice -> 1 s; a step spans its own 2 reads + 3 inner phases * 2 -> 7 s
    assert timer.num_steps == 3
    assert timer.totals() == {"sampling": 3.0, "update": 6.0, "step": 21.0, "eval": 1.0}
    assert timer.counts() == {"sampling": 3, "update": 6, "step": 3, "eval": 1}
    assert timer.per_step() == [{"sampling": 1.0, "update": 2.0, "step": 7.0}] * 3
    assert timer.step_times() == [7.0, 7.0, 7.0]
    assert timer.step_times("update") == [2.0, 2.0, 2.0]
    assert timer.step_times("eval") == [0.0, 0.0, 0.0]
    assert timer.names() == ["sampling", "update", "step", "eval"]
    summary = timer.summary(warmup=1)
    assert summary["update"] == {"total_s": 6.0, "count": 6, "median_step_s": 2.0}


def test_phase_is_recorded_when_the_block_raises():
    timer = PhaseTimer(device="cpu", clock=fake_clock())
    with pytest.raises(KeyError), timer.phase("boom"):
        raise KeyError("x")
    assert timer.totals() == {"boom": 1.0}


def test_steps_cannot_nest_and_names_must_be_non_empty():
    timer = PhaseTimer(device="cpu")
    with pytest.raises(RuntimeError, match="nested"), timer.step(), timer.step():
        pass
    with pytest.raises(ValueError), timer.phase(""):
        pass


# ------------------------------------------------------------------------------------ helpers
def test_median_step_time_drops_warmup():
    assert median_step_time([100.0, 1.0, 3.0, 2.0], warmup=1) == 2.0
    assert median_step_time([5.0, 1.0], warmup=0) == 3.0
    with pytest.raises(ValueError, match="warmup"):
        median_step_time([1.0, 2.0], warmup=2)
    with pytest.raises(ValueError):
        median_step_time([1.0], warmup=-1)


def test_count_parameters_counts_tied_weights_once_and_respects_requires_grad():
    from perlhf.models.tiny import make_tiny_causal_lm

    tied = make_tiny_causal_lm(50, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=32)
    untied = make_tiny_causal_lm(50, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                                 intermediate_size=32, tie_word_embeddings=False)
    t_trainable, t_total = count_parameters(tied)
    u_trainable, u_total = count_parameters(untied)
    assert t_trainable == t_total and u_total - t_total == 50 * 16
    for p in untied.model.parameters():
        p.requires_grad_(False)
    trainable, total = count_parameters(untied)
    assert total == u_total and trainable == 50 * 16  # only the untied lm_head is left trainable


def test_formatting():
    assert format_count(134_515_008) == "134.5M"
    assert format_count(2_500) == "2.5K"
    assert format_count(7) == "7"
    assert format_count(1_700_000_000) == "1.7B"
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 2**30) == "3.0 GiB"
