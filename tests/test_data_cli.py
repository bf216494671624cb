"""``perlhf data list | stats | show``: figures on the real data, examples as the model sees them, errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from perlhf.cli import build_parser, main

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.delenv("PERLHF_DATA_DIR", raising=False)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_every_data_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    data = sub.choices["data"]
    actions = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("list", "stats", "show"):
        for action in actions.choices[name]._actions:
            assert action.help, f"perlhf data {name}: {action.dest} has no help"


def test_list(capsys):
    rc, out, _ = _run(capsys, "data", "list")
    assert rc == 0
    for task in ("taskmaster-coffee", "taskmaster-ticketing", "taskmaster-coffee-dialogues", "hh-harmless",
                 "shp", "tldr", "jsonl", "imdb", "rotten-tomatoes"):
        assert task in out


@pytest.mark.parametrize("task, figures", [
    ("taskmaster-coffee", ["3,228", "86.0%"]),
    ("taskmaster-ticketing", ["3,667", "15.6%"]),
    ("hh-harmless", ["1,156"]),
])
def test_stats_real_figures(capsys, shared_data_dir, task, figures):
    rc, out, _ = _run(capsys, "data", "stats", task, "--data-dir", str(shared_data_dir), "--model", "none")
    assert rc == 0
    total = next(line for line in out.splitlines() if line.startswith("total"))
    for f in figures:
        assert f in total, out


def test_stats_with_tokenizer_and_json(capsys, smol_tokenizer):
    rc, out, _ = _run(capsys, "data", "stats", "jsonl", "--path", str(FIXTURES / "user_pairs.jsonl"),
                      "--max-prompt-tokens", "40")
    assert rc == 0
    assert "p50/p90/p99/max" in out and "prompts > 40 tokens" in out
    rc, out, _ = _run(capsys, "data", "stats", "jsonl", "--path", str(FIXTURES / "user_pairs.jsonl"), "--json")
    stats = json.loads(out)
    total = stats["splits"][-1]
    assert total["split"] == "total" and total["records"] == 3 and total["pairs"] == 3
    assert set(total["prompt_tokens"]) == {"p50", "p90", "p99", "max"}
    assert total["response_tokens"]["max"] >= 2  # text + <|im_end|>


def test_show_prints_what_the_model_sees(capsys, smol_tokenizer):
    rc, out, _ = _run(capsys, "data", "show", "jsonl", "--path", str(FIXTURES / "user_ratings.jsonl"),
                      "-n", "1", "--split", "validation")
    assert rc == 0
    assert "<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n" in out
    assert "You're welcome.<|im_end|>" in out and "label 1 (thumbs-up)" in out


def test_show_truncates_and_shows_pairs(capsys, smol_tokenizer):
    rc, out, _ = _run(capsys, "data", "show", "hh-harmless", "--path", str(FIXTURES / "hh_sample.jsonl"),
                      "-n", "3", "--split", "train", "--max-prompt-tokens", "45", "--split-fractions", "1,0,0")
    assert rc == 0
    assert out.count("----- chosen:") == 3 and out.count("----- rejected:") == 3
    assert "(oldest turns truncated)" in out and "<|im_start|>user\nSay something rude." not in out
    # a budget below the template's own tokens is a clear error
    rc, _, err = _run(capsys, "data", "show", "hh-harmless", "--path", str(FIXTURES / "hh_sample.jsonl"),
                      "--max-prompt-tokens", "10", "--split-fractions", "1,0,0")
    assert rc == 2 and "too small" in err


def test_show_dialogue(capsys, smol_tokenizer, tmp_path):
    (tmp_path / "data_00.json").write_text((FIXTURES / "taskmaster_dialogue_sample.json").read_text())
    rc, out, _ = _run(capsys, "data", "show", "taskmaster-coffee-dialogues", "--path", str(tmp_path),
                      "--split", "train", "--split-fractions", "1,0,0")
    assert rc == 0
    assert 'API_CALL get_menu_items {"query":"latte"}<|im_end|>' in out
    assert "assistant turns are targets" in out


def test_unknown_task_lists_known_ones(capsys):
    rc, _, err = _run(capsys, "data", "stats", "taskmaster-cofee", "--model", "none")
    assert rc == 2
    assert "unknown task 'taskmaster-cofee'" in err and "taskmaster-coffee" in err and "Traceback" not in err


def test_malformed_file_exits_2_with_location(capsys, tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "a"}\n')
    rc, _, err = _run(capsys, "data", "stats", "jsonl", "--path", str(p), "--model", "none")
    assert rc == 2
    assert f"{p}, line 2: missing field 'rejected'" in err and "Traceback" not in err


def test_bad_split_fractions(capsys):
    rc, _, err = _run(capsys, "data", "stats", "jsonl", "--path", str(FIXTURES / "user_pairs.jsonl"),
                      "--model", "none", "--split-fractions", "0.5,0.5")
    assert rc == 2 and "split fractions" in err


@pytest.mark.parametrize("argv", [["--help"], ["data", "list"]])
def test_help_and_data_commands_do_not_import_torch(argv):
    """Only the named command's module is imported: `perlhf --help` must not pay for torch."""
    code = ("import sys\nfrom perlhf.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "NO-TORCH"
    assert "rm" in out or argv != ["--help"]


def test_every_command_is_listed_and_runs_its_own_parser():
    from perlhf.cli import COMMANDS, build_parser

    parser = build_parser(["rl", "--help"])
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == [name for name, _, _ in COMMANDS]
    assert any(a.dest == "beta" for a in sub.choices["rl"]._actions)  # the real rl parser
    assert not any(a.dest == "beta" for a in sub.choices["sft"]._actions)  # a placeholder
