"""The option groups (perlhf/train/options.py): every training stage spells, defaults visibly and checks
its shared options the same way, whether they come from the command line, a YAML file or Python."""

from __future__ import annotations

import argparse
import dataclasses
import typing

import pytest

from perlhf.config import add_dataclass_arguments, option_heading
from perlhf.errors import UserError
from perlhf.train.optim import adamw_with_warmup, warmup_factor
from perlhf.train.options import (
    DataOptions,
    LoraGroup,
    ModelOptions,
    OptimizerOptions,
    RunOptions,
    TrainingOptions,
)
from perlhf.train.reward import RewardConfig
from perlhf.train.rl import RLConfig
from perlhf.train.sft import SFTConfig

STAGES = {"rm": RewardConfig, "sft": SFTConfig, "rl": RLConfig}
SHARED = [DataOptions, ModelOptions, LoraGroup, OptimizerOptions, RunOptions]


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_has_every_shared_option_with_one_type_and_choices(stage):
    cls = STAGES[stage]
    assert issubclass(cls, TrainingOptions)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for group in SHARED:
        group_hints = typing.get_type_hints(group)
        for f in dataclasses.fields(group):
            assert f.name in fields, f"{stage} lacks --{f.name}"
            assert hints[f.name] == group_hints[f.name], f"{stage} --{f.name}: {hints[f.name]} != {group_hints[f.name]}"
            assert fields[f.name].metadata.get("choices") == f.metadata.get("choices"), f.name
            assert option_heading(cls, f.name) == group.GROUP, f.name  # a redeclared default keeps its group


def test_each_stage_keeps_its_own_defaults():
    """The defaults a stage overrides (its learning rates, warm-up, checkpoint cadence, output folder)."""
    assert SFTConfig().warmup_steps == 10 and RewardConfig().warmup_steps == 0 and RLConfig().warmup_steps == 0
    assert (RewardConfig().lr, SFTConfig().lr, RLConfig().lr) == (1e-3, 1e-4, 1e-3)
    assert (RewardConfig(mode="full").lr, SFTConfig(mode="full").lr, RLConfig(mode="full").lr) == (5e-5, 1e-5, 3e-5)
    assert [c().save_every for c in STAGES.values()] == [0, 50, 25]
    assert [c().output_dir for c in STAGES.values()] == ["runs/rm", "runs/sft", "runs/rl"]
    assert [c().max_steps for c in STAGES.values()] == [200, 200, 100]
    assert (RewardConfig().max_eval_examples, SFTConfig().max_eval_examples) == (None, 256)


BAD = [({"mode": "qlora"}, "--mode 'qlora'"), ({"dtype": "fp32"}, "--dtype 'fp32'"),
       ({"report_to": "mlflow"}, "--report-to 'mlflow'"), ({"lora_rank": 0}, "--lora-rank"),
       ({"lora_alpha": -1.0}, "--lora-alpha"), ({"keep_checkpoints": 0}, "--keep-checkpoints"),
       ({"save_every": -1}, "--save-every"), ({"warmup_steps": -1}, "--warmup-steps"),
       ({"max_grad_norm": -0.5}, "--max-grad-norm"), ({"weight_decay": -0.1}, "--weight-decay"),
       ({"learning_rate": 0.0}, "--learning-rate"), ({"max_steps": 0}, "--max-steps")]


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize(("bad", "named"), BAD, ids=[next(iter(b)) for b, _ in BAD])
def test_a_bad_shared_option_is_refused_the_same_way_by_every_stage(stage, bad, named):
    """Checked in validate(), so a YAML file or a Python call (which skip argparse) is refused too."""
    with pytest.raises(UserError, match=named.replace("(", r"\(")):
        STAGES[stage](**bad).validate()


def test_the_api_refuses_a_bad_choice_before_writing(tmp_path):
    import perlhf

    with pytest.raises(UserError, match="--mode 'qlora'"):
        perlhf.train_sft(output_dir=tmp_path / "sft", mode="qlora")
    assert not (tmp_path / "sft").exists()


@pytest.mark.parametrize("stage", list(STAGES))
def test_help_shows_each_group_under_its_heading(stage):
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, STAGES[stage])
    titles = [g.title for g in parser._action_groups]
    wanted = [f"Options of perlhf {'rm train' if stage == 'rm' else stage}"] + \
        [f"{g.GROUP} options" for g in SHARED] + (["batches options"] if stage != "rl" else [])
    for w in wanted:
        assert any(t.startswith(w + " (") for t in titles), (w, titles)
    lora = next(g for g in parser._action_groups if g.title.startswith("LoRA options"))
    assert {"--mode", "--lora-rank", "--lora-alpha", "--lora-targets"} <= {a.option_strings[0] for a in lora._group_actions}


def test_warmup_factor():
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0 and warmup_factor(10, 1) == 1.0


def test_adamw_with_warmup_scales_every_group_and_keeps_no_function_in_its_state():
    import torch

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt, sched = adamw_with_warmup([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}], lr=1.0,
                                   weight_decay=0.0, warmup_steps=2)
    seen = []
    for _ in range(3):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen == [pytest.approx([0.5, 0.05]), pytest.approx([1.0, 0.1]), pytest.approx([1.0, 0.1])]
    assert sched.state_dict()["lr_lambdas"] == [None, None]  # a plain function: nothing of it is pickled
