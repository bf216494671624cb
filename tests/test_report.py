"""Report tables and plots from mode results."""

from __future__ import annotations

import json

import pytest

from perlhf.report import ModeResult, relative_to_full, render_markdown, write_report


def _results():
    return [
        ModeResult("full", "rm", quality={"test_accuracy": 0.70}, peak_memory_bytes=1000 * 2**20, step_time_s=2.0,
                   trainable_params=100, total_params=100, curve=[(1, 0.7), (2, 0.6)]),
        ModeResult("lora:r8", "rm", rank=8, quality={"test_accuracy": 0.71}, peak_memory_bytes=400 * 2**20,
                   step_time_s=1.0, trainable_params=5, total_params=105, curve=[(1, 0.7), (2, 0.5)]),
        ModeResult("lora:r1", "rm", rank=1, quality={"test_accuracy": 0.69}, peak_memory_bytes=380 * 2**20,
                   step_time_s=0.8),
        ModeResult("lora:r4", "rm", rank=4, status="failed", error="out of memory"),
    ]


def test_relative_to_full():
    rel = relative_to_full(_results())
    assert rel["lora:r8"]["memory_pct_of_full"] == pytest.approx(40.0)
    assert rel["lora:r8"]["speedup_over_full"] == pytest.approx(2.0)
    assert rel["full"]["speedup_over_full"] == pytest.approx(1.0)
    assert rel["lora:r4"]["memory_pct_of_full"] is None


def test_relative_without_full_is_none():
    rel = relative_to_full(_results()[1:])
    assert rel["lora:r8"] == {"memory_pct_of_full": None, "speedup_over_full": None}


def test_markdown_has_tables_and_failure():
    md = render_markdown("rm", _results(), {"command": "perlhf compare --stage rm", "task": "hh-harmless"})
    assert "| lora:r8 | ok | 0.710 |" in md
    assert "2.00x" in md and "| 40 |" in md
    assert "LoRA rank sweep" in md
    assert "`lora:r4`: failed: out of memory" in md
    assert "perlhf compare --stage rm" in md


def test_write_report_files(tmp_path):
    rl = [ModeResult("full", "rl", quality={"reward": 0.1}, peak_memory_bytes=3e9, step_time_s=5.0,
                     phases_s={"sampling": 3.0, "learning": 2.0}),
          ModeResult("lora:r8", "rl", rank=8, quality={"reward": 0.2}, peak_memory_bytes=1e9, step_time_s=4.0,
                     phases_s={"sampling": 3.0, "learning": 1.0})]
    paths = write_report(tmp_path, "rl", rl, {"command": "x"})
    assert (tmp_path / "report.md").read_text().count("Step time by phase") == 1
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["relative_to_full"]["lora:r8"]["memory_pct_of_full"] == pytest.approx(100 / 3)
    assert paths["peak_memory"].read_bytes()[:4] == b"\x89PNG"
    assert paths["step_time"].exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
