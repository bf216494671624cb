"""Dependencies flow one way: base -> data -> models -> algorithms -> stage recipes -> eval -> apps.
A module may import its own layer or a lower one, never a higher one, and a stage recipe never
imports another recipe (what two recipes share belongs in a lower layer). Function-level imports count."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "perlhf"

LAYERS = [
    ("base", ["perlhf.errors", "perlhf.io", "perlhf.config", "perlhf.faults", "perlhf.precision",
              "perlhf.measure", "perlhf.runs", "perlhf.report"]),
    ("data", ["perlhf.data"]),
    ("models", ["perlhf.models"]),
    ("algorithms", ["perlhf.train", "perlhf.train.losses", "perlhf.train.rl_losses", "perlhf.train.generation",
                    "perlhf.train.batching", "perlhf.train.options", "perlhf.train.optim", "perlhf.train.metrics", "perlhf.train.scoring"]),
    ("recipes", ["perlhf.train.reward", "perlhf.train.reward_ensemble", "perlhf.train.sft", "perlhf.train.rl",
                 "perlhf.train.rl_rewards"]),
    ("eval", ["perlhf.eval", "perlhf.eval.judge"]),
    ("apps", ["perlhf", "perlhf.api", "perlhf.cli", "perlhf.__main__", "perlhf.compare", "perlhf.compare_cli", "perlhf.demo",
              "perlhf.demo_cli", "perlhf.data.cli", "perlhf.models.cli", "perlhf.eval.cli", "perlhf.train.rm_cli",
              "perlhf.train.sft_cli", "perlhf.train.rl_cli"]),
]
RECIPES = set(dict(LAYERS)["recipes"])
# the stage each recipe module belongs to: modules of one stage (rm: one model or an ensemble) may share code
STAGE_OF = {"perlhf.train.reward": "rm", "perlhf.train.reward_ensemble": "rm", "perlhf.train.sft": "sft",
            "perlhf.train.rl": "rl", "perlhf.train.rl_rewards": "rl"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of a module: an exact entry first, else the package entry it lies in (data.*, models.*)."""
    for i, (_, names) in enumerate(LAYERS):
        if module in names:
            return i
    for i, (_, names) in enumerate(LAYERS):
        if any(module.startswith(n + ".") for n in names if n not in ("perlhf", "perlhf.train", "perlhf.eval")):
            return i
    raise AssertionError(f"{module}: not in any layer of tests/test_layering.py; add it")


def imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("perlhf"):
            if node.module == "perlhf":
                out.update(f"perlhf.{a.name}" for a in node.names if a.name != "__version__")
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("perlhf"))
    return out


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(_module(path))


def test_no_module_imports_a_higher_layer_or_another_recipe():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = _module(path)
        for dep in sorted(imports_of(path)):
            if layer_of(dep) > layer_of(mod):
                bad.append(f"{mod} ({LAYERS[layer_of(mod)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})")
            elif mod in RECIPES and dep in RECIPES and STAGE_OF[dep] != STAGE_OF[mod]:
                bad.append(f"recipe {mod} imports recipe {dep}")
    assert not bad, "\n".join(bad)


def test_the_check_catches_a_backward_import(tmp_path):
    assert layer_of("perlhf.data.tasks") < layer_of("perlhf.train.reward") < layer_of("perlhf.eval.judge")
    (tmp_path / "m.py").write_text("def f():\n    from perlhf.train.reward import RewardConfig\n")
    assert imports_of(tmp_path / "m.py") == {"perlhf.train.reward"}
