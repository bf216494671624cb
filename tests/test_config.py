"""Config dataclasses: defaults < YAML file < command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from perlhf.config import add_dataclass_arguments, config_to_dict, option, resolve_config
from perlhf.errors import UserError


@dataclass
class DemoConfig:
    model: str = option("smollm2-135m", "model name or path")
    lora_rank: int = option(8, "LoRA rank")
    learning_rate: float | None = option(None, "learning rate; None picks the mode's default")
    mode: str = option("lora", "parameterisation", choices=["lora", "full"])
    gradient_checkpointing: bool = option(False, "recompute activations")
    ranks: list[int] = option([1, 4], "ranks to sweep")

    def validate(self) -> None:
        if self.lora_rank <= 0:
            raise UserError(f"--lora-rank must be > 0, got {self.lora_rank}")


def _parse(argv):
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, DemoConfig)
    return p.parse_args(argv)


def test_defaults():
    cfg = resolve_config(DemoConfig, _parse([]))
    assert cfg == DemoConfig()


def test_yaml_then_cli_override(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lora-rank: 4\nlearning_rate: 3e-4\nmode: full\ngradient_checkpointing: true\nranks: [2, 3]\n")
    cfg = resolve_config(DemoConfig, _parse(["--config", str(y), "--lora-rank", "16"]))
    assert cfg.lora_rank == 16  # CLI wins
    assert cfg.learning_rate == pytest.approx(3e-4)  # YAML string "3e-4" coerced to float
    assert cfg.mode == "full"
    assert cfg.gradient_checkpointing is True
    assert cfg.ranks == [2, 3]


def test_cli_types():
    cfg = resolve_config(DemoConfig, _parse(["--gradient-checkpointing", "--ranks", "1,8", "--learning-rate", "none"]))
    assert cfg.gradient_checkpointing is True
    assert cfg.ranks == [1, 8]
    assert cfg.learning_rate is None


def test_unknown_yaml_key_names_file(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lora_rnak: 4\n")
    with pytest.raises(UserError, match=r"c\.yaml: unknown option 'lora_rnak'"):
        resolve_config(DemoConfig, _parse(["--config", str(y)]))


def test_bad_yaml_names_line(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lora_rank: 4\nmode: [unclosed\n")
    with pytest.raises(UserError, match=r"c\.yaml, line \d+"):
        resolve_config(DemoConfig, _parse(["--config", str(y)]))


def test_wrong_type_in_yaml(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lora_rank: eight\n")
    with pytest.raises(UserError, match="lora_rank' must be int"):
        resolve_config(DemoConfig, _parse(["--config", str(y)]))


def test_validate_runs():
    with pytest.raises(UserError, match="--lora-rank must be > 0"):
        resolve_config(DemoConfig, _parse(["--lora-rank", "0"]))


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        resolve_config(DemoConfig, _parse(["--config", str(tmp_path / "nope.yaml")]))


def test_help_documents_every_field(capsys):
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, DemoConfig)
    help_text = p.format_help()
    for flag in ["--model", "--lora-rank", "--learning-rate", "--mode", "--gradient-checkpointing", "--ranks", "--config"]:
        assert flag in help_text
    assert "LoRA rank" in help_text


def test_config_to_dict_roundtrip():
    d = config_to_dict(DemoConfig())
    assert d["model"] == "smollm2-135m" and d["ranks"] == [1, 4]
