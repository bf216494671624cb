"""--mixed-precision auto: bf16 only where the hardware multiplies it natively."""

from __future__ import annotations

import logging

import pytest

from perlhf import precision
from perlhf.errors import UserError


@pytest.mark.parametrize(("requested", "device", "native", "mode"), [
    ("auto", "cpu", True, "bf16"),
    ("auto", "cpu", False, "no"),
    ("auto", "cuda", True, "bf16"),
    ("auto", "cuda", False, "no"),
    ("no", "cpu", True, "no"),
    ("bf16", "cpu", False, "bf16"),  # as asked, with a warning (below)
    ("bf16", "cpu", True, "bf16"),
    ("fp16", "cuda", False, "fp16"),
])
def test_choose(requested, device, native, mode):
    chosen = precision.choose(requested, device=device, native_bf16=native)
    assert chosen.mode == mode
    assert chosen.requested == requested


def test_choose_says_why_bf16_is_slow_on_a_cpu_without_it():
    chosen = precision.choose("bf16", device="cpu", native_bf16=False)
    assert "170x" in chosen.reason and "AVX512_BF16" in chosen.reason
    assert precision.choose("bf16", device="cpu", native_bf16=True).reason == "as asked"


@pytest.mark.parametrize("requested", ["fp16", "fp8"])
def test_choose_refuses_what_the_cpu_cannot_do(requested):
    with pytest.raises(UserError, match="--mixed-precision"):
        precision.choose(requested, device="cpu", native_bf16=True)


def test_cpu_flags_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert "avx512_bf16" in precision.cpu_flags(info)
    assert precision.cpu_flags(tmp_path / "missing") is None


@pytest.mark.parametrize(("env", "native"), [("0", False), ("1", True)])
def test_native_bf16_override(monkeypatch, env, native):
    monkeypatch.setenv("PERLHF_NATIVE_BF16", env)
    assert precision.native_bf16("cpu") is native


def test_resolve_warns_once_about_emulated_bf16(monkeypatch, caplog):
    monkeypatch.setenv("PERLHF_NATIVE_BF16", "0")
    monkeypatch.setattr(precision, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="perlhf.precision"):
        assert precision.resolve("bf16", "cpu").mode == "bf16"
        assert precision.resolve("bf16", "cpu").mode == "bf16"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "auto" in warnings[0].getMessage()


def test_accelerator_records_the_choice(monkeypatch):
    from perlhf.runs import make_accelerator, precision_summary

    monkeypatch.setenv("PERLHF_NATIVE_BF16", "0")
    acc = make_accelerator(cpu=True, mixed_precision="auto")
    assert acc.mixed_precision == "no"
    assert precision_summary(acc) == {"mixed_precision": "no",
                                      "mixed_precision_reason": "auto: no native bf16 on this cpu, so fp32"}


@pytest.mark.parametrize(("load", "cores", "threads", "expected"), [
    (0.1, 2, 2, False),   # an idle machine
    (1.9, 2, 2, True),    # another job already busy on a 2-core machine
    (1.9, 2, 1, False),   # one thread never spin-waits on a peer
    (1.5, 16, 16, True),
    (0.5, 16, 8, False),
])
def test_oversubscribed(load, cores, threads, expected):
    assert precision.oversubscribed(load, cores, threads) is expected


def test_every_stage_defaults_to_auto_and_the_demo_to_fp32():
    from perlhf.demo import DemoConfig
    from perlhf.train.reward import RewardConfig
    from perlhf.train.rl import RLConfig
    from perlhf.train.sft import SFTConfig

    for cls, default in ((RewardConfig, "auto"), (SFTConfig, "auto"), (RLConfig, "auto"), (DemoConfig, "no")):
        field = cls.__dataclass_fields__["mixed_precision"]
        assert field.default == default, cls.__name__
        assert field.metadata["choices"] == precision.CHOICES


@pytest.mark.parametrize(("extra", "mode", "level"), [
    ((), "no", logging.INFO),                              # the default on a CPU without native bf16
    (("--mixed-precision", "bf16"), "bf16", logging.WARNING),  # explicit bf16 there: run as asked, warned
])
def test_rm_on_a_cpu_without_native_bf16(extra, mode, level, tiny_env, tmp_path, monkeypatch, caplog):
    """Issue 13, done when: `perlhf rm` with default options runs in fp32 and says so (log and
    summary); with explicit bf16 it warns once, naming the measured cost."""
    import json

    from perlhf.cli import main

    monkeypatch.setenv("PERLHF_NATIVE_BF16", "0")
    monkeypatch.setattr(precision, "_warned", set())
    out = tmp_path / "run"
    argv = ["rm", "train", "--model", str(tiny_env / "tiny"), "--task", "jsonl", "--path",
            str(tiny_env / "pairs.jsonl"), "--batch-size", "8", "--max-steps", "1", "--eval-every", "1",
            "--max-prompt-tokens", "32", "--max-response-tokens", "16", "--progress", "false", "--report-to", "none",
            "--output-dir", str(out), *extra]
    with caplog.at_level(logging.INFO, logger="perlhf.precision"):
        assert main(argv) == 0
    # The busy-CPU warning (same logger) depends on the machine's load, not on precision: leave it out.
    said = [r for r in caplog.records if r.name == "perlhf.precision" and "OMP_NUM_THREADS" not in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == level
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mixed_precision"] == mode
    if mode == "no":
        assert "fp32" in said[0].getMessage() and "fp32" in summary["mixed_precision_reason"]
    else:
        assert "170x" in said[0].getMessage() and "AVX512_BF16" in said[0].getMessage()
        assert "emulated" in summary["mixed_precision_reason"]
