"""Side-by-side reports: tables (Markdown + JSON) and plots (PNG) of modes compared.

Input is one :class:`ModeResult` per mode (``full``, ``lora:r8``, ...) of one
stage; output follows the PERL paper's Table 1 (memory as % of full, speed-up
over full) and Tables 2-3 (the rank sweep). Pure presentation: no training here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from perlhf.io import atomic_write_json, atomic_write_text, write_with


@dataclass
class ModeResult:
    """What one mode of one stage produced."""

    mode: str
    stage: str
    status: str = "ok"  # ok | failed | interrupted
    error: str | None = None
    rank: int | None = None  # LoRA rank, None for full fine-tuning
    ensemble: int | None = None  # rm: K LoRA members (lora:rNxK); None for one model
    quality: dict[str, float] = field(default_factory=dict)  # e.g. test_accuracy, test_auc
    baselines: dict[str, float] = field(default_factory=dict)  # e.g. untrained, majority
    peak_memory_bytes: float | None = None
    step_time_s: float | None = None  # median seconds per optimizer step after warm-up
    phases_s: dict[str, float] = field(default_factory=dict)  # RL: median seconds per phase per step
    trainable_params: int | None = None
    total_params: int | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, training metric)
    curve_name: str = "loss"
    command: str = ""
    run_dir: str = ""


def relative_to_full(results: list[ModeResult]) -> dict[str, dict[str, float | None]]:
    """Per mode: peak memory as % of full, and speed-up (full step time / mode step time)."""
    full = next((r for r in results if r.mode == "full" and r.status == "ok"), None)
    out: dict[str, dict[str, float | None]] = {}
    for r in results:
        mem = speed = None
        if full and r.status == "ok":
            if full.peak_memory_bytes and r.peak_memory_bytes is not None:
                mem = 100.0 * r.peak_memory_bytes / full.peak_memory_bytes
            if full.step_time_s and r.step_time_s:
                speed = full.step_time_s / r.step_time_s
        out[r.mode] = {"memory_pct_of_full": mem, "speedup_over_full": speed}
    return out


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def _mib(b: float | None) -> str:
    return "–" if b is None else f"{b / 2**20:,.0f}"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _quality_keys(results: list[ModeResult]) -> list[str]:
    keys: list[str] = []
    for r in results:
        for k in r.quality:
            if k not in keys:
                keys.append(k)
    return keys


def render_markdown(stage: str, results: list[ModeResult], meta: dict[str, Any]) -> str:
    rel = relative_to_full(results)
    qkeys = _quality_keys(results)
    parts = [f"# perlhf compare — stage `{stage}`", ""]
    if meta.get("task"):
        parts.append(f"Task `{meta['task']}`, model `{meta.get('model', '?')}`, {meta.get('size', '')}".rstrip(", "))
        parts.append("")
    headers = ["mode", "status", *qkeys, "trainable params", "peak memory (MiB)", "memory % of full",
               "step time (s)", "speed-up over full"]
    rows = []
    for r in results:
        rows.append([
            r.mode, r.status if r.status == "ok" else f"**{r.status}**",
            *[_fmt(r.quality.get(k)) for k in qkeys],
            _fmt(r.trainable_params, ","), _mib(r.peak_memory_bytes),
            _fmt(rel[r.mode]["memory_pct_of_full"], ".0f"), _fmt(r.step_time_s, ".2f"),
            _fmt(rel[r.mode]["speedup_over_full"], ".2f") + ("x" if rel[r.mode]["speedup_over_full"] else ""),
        ])
    parts += ["## Quality and cost per mode (paper Table 1)", "", markdown_table(headers, rows), ""]
    baselines = {k: v for r in results for k, v in r.baselines.items()}
    if baselines:
        parts += ["Baselines: " + ", ".join(f"{k} {_fmt(v)}" for k, v in baselines.items()), ""]
    ranked = sorted((r for r in results if r.rank is not None and not r.ensemble and r.status == "ok"),
                    key=lambda r: r.rank)
    if len(ranked) > 1:
        rows = [[str(r.rank), *[_fmt(r.quality.get(k)) for k in qkeys],
                 _fmt(rel[r.mode]["memory_pct_of_full"], ".0f"), _fmt(rel[r.mode]["speedup_over_full"], ".2f")]
                for r in ranked]
        parts += ["## LoRA rank sweep (paper Tables 2-3)", "",
                  markdown_table(["rank", *qkeys, "memory % of full", "speed-up over full"], rows), ""]
    phase_names: list[str] = []
    for r in results:
        phase_names += [p for p in r.phases_s if p not in phase_names]
    if phase_names:
        rows = [[r.mode, *[_fmt(r.phases_s.get(p), ".2f") for p in phase_names], _fmt(r.step_time_s, ".2f")]
                for r in results if r.status == "ok"]
        parts += ["## Step time by phase (seconds per step)", "",
                  markdown_table(["mode", *phase_names, "total"], rows), ""]
    failed = [r for r in results if r.status != "ok"]
    if failed:
        parts += ["## Modes that did not finish", ""]
        parts += [f"- `{r.mode}`: {r.status}: {r.error or 'no error recorded'}" for r in failed]
        parts.append("")
    parts += ["## How this was produced", ""]
    if meta.get("command"):
        parts += ["```", meta["command"], "```", ""]
    cmds = [r.command for r in results if r.command]
    if cmds:
        parts += ["Per-mode commands (each mode ran in a fresh process, so peak memory is per mode):", "", "```",
                  *cmds, "```", ""]
    if meta.get("versions"):
        parts.append("Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    if meta.get("machine"):
        parts.append(f"Machine: {meta['machine']}")
    if meta.get("mixed_precision"):
        parts.append(f"Mixed precision: {meta['mixed_precision']}")
    parts.append("")
    return "\n".join(parts)


def _save_fig(fig: Any, path: Path) -> None:
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))


def plot_results(out_dir: Path, stage: str, results: list[ModeResult]) -> list[Path]:
    """Write the PNG plots; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.status == "ok"]
    written: list[Path] = []
    if not ok:
        return written
    modes = [r.mode for r in ok]
    colors = ["#444444" if r.mode == "full" else "#1f77b4" for r in ok]

    if any(r.peak_memory_bytes for r in ok):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        vals = [(r.peak_memory_bytes or 0) / 2**20 for r in ok]
        bars = ax.bar(modes, vals, color=colors)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in vals], fontsize=8)
        ax.set_ylabel("peak memory (MiB)")
        ax.set_xlabel("mode")
        ax.set_title(f"{stage}: peak memory per mode")
        p = out_dir / "peak_memory.png"
        _save_fig(fig, p)
        plt.close(fig)
        written.append(p)

    if any(r.step_time_s for r in ok):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        phase_names: list[str] = []
        for r in ok:
            phase_names += [k for k in r.phases_s if k not in phase_names]
        if phase_names:
            bottom = [0.0] * len(ok)
            for name in phase_names:
                vals = [r.phases_s.get(name, 0.0) for r in ok]
                ax.bar(modes, vals, bottom=bottom, label=name)
                bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
            ax.legend(title="phase", fontsize=8)
        else:
            bars = ax.bar(modes, [r.step_time_s or 0 for r in ok], color=colors)
            ax.bar_label(bars, labels=[f"{r.step_time_s or 0:.2f}" for r in ok], fontsize=8)
        ax.set_ylabel("seconds per step (median)")
        ax.set_xlabel("mode")
        ax.set_title(f"{stage}: step time per mode")
        p = out_dir / "step_time.png"
        _save_fig(fig, p)
        plt.close(fig)
        written.append(p)

    ranked = sorted((r for r in ok if r.rank is not None and not r.ensemble), key=lambda r: r.rank)
    qkeys = _quality_keys(ok)
    if ranked and qkeys:
        key = qkeys[0]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r.rank for r in ranked], [r.quality.get(key, math.nan) for r in ranked], "o-", label="LoRA")
        full = next((r for r in ok if r.mode == "full"), None)
        if full and key in full.quality:
            ax.axhline(full.quality[key], color="#444444", linestyle="--", label="full fine-tuning")
        ax.set_xscale("log", base=2)
        ax.set_xticks([r.rank for r in ranked], [str(r.rank) for r in ranked])
        ax.set_xlabel("LoRA rank")
        ax.set_ylabel(key.replace("_", " "))
        ax.set_title(f"{stage}: quality against LoRA rank")
        ax.legend(fontsize=8)
        p = out_dir / "quality_vs_rank.png"
        _save_fig(fig, p)
        plt.close(fig)
        written.append(p)

    if any(r.curve for r in ok):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for r in ok:
            if r.curve:
                xs, ys = zip(*r.curve, strict=True)
                ax.plot(xs, ys, marker="o" if len(xs) <= 20 else None, markersize=3, label=r.mode,
                        color="#444444" if r.mode == "full" else None)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ok[0].curve_name)
        ax.set_title(f"{stage}: learning curves")
        ax.legend(fontsize=8)
        p = out_dir / "learning_curves.png"
        _save_fig(fig, p)
        plt.close(fig)
        written.append(p)
    return written


def write_report(out_dir: str | Path, stage: str, results: list[ModeResult], meta: dict[str, Any]) -> dict[str, Path]:
    """Write report.md, report.json and the plots into ``out_dir`` (each file atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot_results(out_dir, stage, results)
    md = render_markdown(stage, results, meta)
    if plots:
        md += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
    atomic_write_text(out_dir / "report.md", md)
    atomic_write_json(out_dir / "report.json", {
        "stage": stage, "meta": meta, "relative_to_full": relative_to_full(results),
        "modes": [asdict(r) for r in results],
    })
    return {"markdown": out_dir / "report.md", "json": out_dir / "report.json", **{p.stem: p for p in plots}}
