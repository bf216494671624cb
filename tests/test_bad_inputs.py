"""The bad-input catalogue: every command, given a bad file, option or folder, exits with status 2 and
one message that names the culprit, prints no traceback, and leaves no new file behind.

Each case runs ``perlhf`` in-process on a tiny random Llama (the ``tiny_env`` fixture) from a fresh
working folder; the folders the case names are made by its ``setup``. "No new files" compares the
working folder's contents before and after the command.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from perlhf.cli import main

TINY_RM = ["--task", "jsonl", "--max-prompt-tokens", "32", "--max-response-tokens", "16", "--batch-size", "8",
           "--max-steps", "2", "--eval-every", "2", "--progress", "false", "--report-to", "none"]


def _rm(env: Path, *extra: str) -> list[str]:
    return ["rm", "train", "--model", str(env / "tiny"), "--path", str(env / "pairs.jsonl"), *TINY_RM, *extra]


def _rl(env: Path, rm_run: Path, *extra: str) -> list[str]:
    return ["rl", "--policy", str(env / "tiny"), "--reward-model", str(rm_run / "final"), "--task", "jsonl",
            "--path", str(env / "pairs.jsonl"), "--max-steps", "2", "--prompts-per-step", "2",
            "--samples-per-prompt", "2", "--max-new-tokens", "4", "--max-prompt-tokens", "32",
            "--sample-every", "0", "--save-every", "1", *extra]


def _sft(env: Path, *extra: str) -> list[str]:
    return ["sft", "--model", str(env / "tiny"), "--task", "imdb-sentiment-dialogues", "--max-steps", "2",
            "--batch-size", "2", "--max-train-examples", "8", "--max-eval-examples", "4", "--eval-every", "0",
            "--max-prompt-tokens", "32", "--max-response-tokens", "16", "--save-every", "1", *extra]


@pytest.fixture(scope="module")
def runs(tiny_env, tmp_path_factory) -> dict[str, Path]:
    """Finished tiny runs to resume, score and point at: an rm run, an rl run, an sft run."""
    root = tmp_path_factory.mktemp("runs")
    out = {"rm": root / "rm", "rl": root / "rl", "sft": root / "sft"}
    assert main(_rm(tiny_env, "--output-dir", str(out["rm"]))) == 0
    assert main(_rl(tiny_env, out["rm"], "--output-dir", str(out["rl"]))) == 0
    assert main(_sft(tiny_env, "--output-dir", str(out["sft"]))) == 0
    return out


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _user_folder(cwd: Path) -> Path:
    """A folder of the user's own files (not a run)."""
    folder = cwd / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    return folder


def _bad_yaml(cwd: Path) -> Path:
    path = cwd / "bad.yaml"
    path.write_text("gradient_checkpointing: maybe\n")
    return path


def _bad_jsonl(cwd: Path) -> Path:
    path = cwd / "bad.jsonl"
    path.write_text('{"prompt": "hi", "chosen": "a", "rejected": "b"}\n{"prompt": \n')
    return path


# name -> (argv builder (env, runs, cwd) -> argv, text the message must contain)
CASES = {
    # options
    "rm-prefix-option": (lambda e, r, c: _rm(e, "--learning-rat", "1e-3", "--output-dir", "o"), "--learning-rat"),
    "rm-negative-lr": (lambda e, r, c: _rm(e, "--learning-rate", "-1e-3", "--output-dir", "o"), "--learning-rate"),
    "rm-infinite-lr": (lambda e, r, c: _rm(e, "--learning-rate", "inf", "--output-dir", "o"), "--learning-rate"),
    "rm-bad-targets": (lambda e, r, c: _rm(e, "--lora-targets", "nonsense", "--output-dir", "o"), "nonsense"),
    "rm-batch-too-big": (lambda e, r, c: _rm(e, "--batch-size", "4096", "--output-dir", "o"), "--batch-size"),
    "rm-lora-rank-0": (lambda e, r, c: _rm(e, "--lora-rank", "0", "--output-dir", "o"), "rank"),
    "rm-bad-mode": (lambda e, r, c: _rm(e, "--mode", "half", "--output-dir", "o"), "--mode"),
    "rm-fp16-on-cpu": (lambda e, r, c: _rm(e, "--mixed-precision", "fp16", "--output-dir", "o"), "fp16"),
    "rm-bad-yaml-value": (lambda e, r, c: _rm(e, "--config", str(_bad_yaml(c)), "--output-dir", "o"),
                          "gradient_checkpointing"),
    "rm-missing-config": (lambda e, r, c: _rm(e, "--config", "nope.yaml", "--output-dir", "o"), "nope.yaml"),
    # files and models
    "rm-missing-data": (lambda e, r, c: ["rm", "train", "--model", str(e / "tiny"), "--task", "jsonl", "--path",
                                         "nope.jsonl", "--output-dir", "o"], "nope.jsonl"),
    "rm-torn-data": (lambda e, r, c: ["rm", "train", "--model", str(e / "tiny"), "--task", "jsonl", "--path",
                                      str(_bad_jsonl(c)), "--output-dir", "o"], "line 2"),
    "rm-missing-local-model": (lambda e, r, c: ["rm", "train", "--model", "runs/nope", "--task", "jsonl", "--path",
                                                str(e / "pairs.jsonl"), "--output-dir", "o"], "runs/nope"),
    "rm-model-without-tokenizer": (lambda e, r, c: _rm(e, "--output-dir", "o")[:3] + [str(_no_tokenizer(e, c))]
                                   + _rm(e, "--output-dir", "o")[4:], "tokenizer"),
    # folders
    "rm-output-is-file": (lambda e, r, c: _rm(e, "--output-dir", str(c / "mine" / "notes.txt")), "notes.txt"),
    "rm-output-under-file": (lambda e, r, c: _rm(e, "--output-dir", str(c / "mine" / "notes.txt" / "run")),
                             "notes.txt"),
    "rm-resume-not-a-run": (lambda e, r, c: _rm(e, "--resume", "--output-dir", str(c / "mine")), "not a perlhf run"),
    "rm-resume-missing": (lambda e, r, c: _rm(e, "--resume", "--output-dir", "nothing-here"), "nothing-here"),
    "rm-resume-changed-lr": (lambda e, r, c: _rm(e, "--resume", "--learning-rate", "0.5", "--output-dir",
                                                 str(r["rm"])), "--learning-rate"),
    "rm-overwrite-and-resume": (lambda e, r, c: _rm(e, "--resume", "--overwrite", "--output-dir", "o"), "--resume"),
    "rm-output-exists": (lambda e, r, c: _rm(e, "--output-dir", str(c / "mine")), "--overwrite"),
    # rm score / merge
    "score-output-is-folder": (lambda e, r, c: ["rm", "score", "--model-dir", str(r["rm"] / "final"), "--input",
                                                str(e / "pairs.jsonl"), "--output", str(c / "mine")], "mine"),
    "score-not-a-reward-model": (lambda e, r, c: ["rm", "score", "--model-dir", str(e / "tiny"), "--input",
                                                  str(e / "pairs.jsonl"), "--output", "s.jsonl"], "tiny"),
    "score-missing-input": (lambda e, r, c: ["rm", "score", "--model-dir", str(r["rm"] / "final"), "--input",
                                             "nope.jsonl", "--output", "s.jsonl"], "nope.jsonl"),
    "score-best-folder": (lambda e, r, c: ["rm", "score", "--model-dir", str(r["rm"] / "best"), "--input",
                                           str(e / "pairs.jsonl"), "--output", "s.jsonl"], "final"),
    "merge-output-exists": (lambda e, r, c: ["rm", "merge", "--model-dir", str(r["rm"] / "final"), "--output",
                                             str(c / "mine")], "--overwrite"),
    "export-not-a-reward-model": (lambda e, r, c: ["rm", "export", "--model-dir", str(e / "tiny"), "--output",
                                                   "exported"], "tiny"),
    # rl
    "rl-no-reward-model": (lambda e, r, c: [a for a in _rl(e, r["rm"], "--output-dir", "o")
                                            if a != str(r["rm"] / "final") and a != "--reward-model"],
                           "--reward-model"),
    "rl-missing-reward-model": (lambda e, r, c: _rl(e, c / "runs" / "nope", "--output-dir", "o"), "nope"),
    "rl-wrong-kind-reward-model": (lambda e, r, c: _rl(e, r["rl"], "--output-dir", "o"), "reward"),
    "rl-missing-policy": (lambda e, r, c: ["rl", "--policy", "runs/nope", *_rl(e, r["rm"], "--output-dir", "o")[3:]],
                          "runs/nope"),
    "rl-lora-rank-0": (lambda e, r, c: _rl(e, r["rm"], "--lora-rank", "0", "--output-dir", "o"), "rank"),
    "rl-bad-targets": (lambda e, r, c: _rl(e, r["rm"], "--lora-targets", "nonsense", "--output-dir", "o"), "nonsense"),
    "rl-batch-too-big": (lambda e, r, c: _rl(e, r["rm"], "--prompts-per-step", "4096", "--output-dir", "o"),
                         "--prompts-per-step"),
    "rl-resume-changed-beta": (lambda e, r, c: _rl(e, r["rm"], "--resume", "--beta", "0.5", "--output-dir",
                                                   str(r["rl"])), "--beta"),
    "rl-resume-not-a-run": (lambda e, r, c: _rl(e, r["rm"], "--resume", "--output-dir", str(c / "mine")),
                            "not a perlhf run"),
    # sft
    "sft-lora-rank-0": (lambda e, r, c: _sft(e, "--lora-rank", "0", "--output-dir", "o"), "rank"),
    "sft-bad-targets": (lambda e, r, c: _sft(e, "--lora-targets", "nonsense", "--output-dir", "o"), "nonsense"),
    "sft-batch-too-big": (lambda e, r, c: _sft(e, "--batch-size", "4096", "--output-dir", "o"), "--batch-size"),
    "sft-prompt-task": (lambda e, r, c: _sft(e, "--output-dir", "o")[:4] + ["rotten-tomatoes"]
                        + _sft(e, "--output-dir", "o")[5:], "dialogue"),
    "sft-resume-changed-lr": (lambda e, r, c: _sft(e, "--resume", "--learning-rate", "0.5", "--output-dir",
                                                   str(r["sft"])), "--learning-rate"),
    "sft-resume-not-a-run": (lambda e, r, c: _sft(e, "--resume", "--output-dir", str(c / "mine")), "not a perlhf run"),
    # eval
    "eval-missing-judge": (lambda e, r, c: ["eval", "--sft", str(e / "tiny"), "--rl", str(r["rl"]), "--reward-model",
                                            str(r["rm"] / "final"), "--judge-rm", "runs/nope", "--task", "jsonl",
                                            "--path", str(e / "pairs.jsonl"), "--num-prompts", "2"], "runs/nope"),
    # compare, demo, data
    "compare-bad-modes": (lambda e, r, c: ["compare", "--modes", "full,lora:rx", "--report-dir", "rep"], "lora:rx"),
    "demo-lora-rank-0": (lambda e, r, c: ["demo", "--lora-rank", "0", "--report-dir", "rep"], "--lora-rank"),
    "demo-report-dir-exists": (lambda e, r, c: ["demo", "--report-dir", str(c / "mine")], "mine"),
    "data-unknown-task": (lambda e, r, c: ["data", "stats", "no-such-task"], "no-such-task"),
}


def _no_tokenizer(env: Path, cwd: Path) -> Path:
    folder = cwd / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (env / "tiny" / name).is_file():
            shutil.copy(env / "tiny" / name, folder / name)
    return folder


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_clear_message_and_leaves_nothing(name, tiny_env, runs, tmp_path, monkeypatch, capsys):
    build, culprit = CASES[name]
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    _user_folder(cwd)
    (cwd / "runs").mkdir()
    argv = [str(a) for a in build(tiny_env, runs, cwd)]
    run_files = {k: _files(v) for k, v in runs.items()}
    run_configs = {k: (v / "config.yaml").read_text() for k, v in runs.items()}
    before = _files(cwd)
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, f"{name}: exit status {rc}\n{err}"
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert culprit in errors[0], errors[0]
    assert _files(cwd) == before, f"{name} left {_files(cwd) - before}"
    assert {k: _files(v) for k, v in runs.items()} == run_files, "a refused command changed a run folder"
    assert {k: (v / "config.yaml").read_text() for k, v in runs.items()} == run_configs, "config.yaml rewritten"
    # a local path is never reported as a hub connection problem, a missing tokenizer never as sentencepiece
    assert "huggingface.co" not in err and "sentencepiece" not in err, err


def test_read_only_output_folder(tiny_env, tmp_path, monkeypatch, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders: run as a normal user")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc = main(_rm(tiny_env, "--output-dir", str(ro / "run")))
    finally:
        ro.chmod(0o700)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and str(ro) in err


@pytest.mark.parametrize("err", ["EACCES", "EROFS", "ENOSPC"])
def test_unwritable_output_is_one_message(err, tiny_env, tmp_path, monkeypatch, capsys):
    """A read-only or full disk when the run folder is made: one message naming the folder (root
    ignores permissions, so the OS error is injected)."""
    import errno as errno_mod

    from perlhf.runs import RunDir

    code = getattr(errno_mod, err)

    def refuse(path, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(RunDir, "prepare", classmethod(lambda cls, path, **kw: refuse(path)))
    out = tmp_path / "out"
    assert main(_rm(tiny_env, "--output-dir", str(out))) == 2
    err_text = capsys.readouterr().err
    assert "Traceback" not in err_text and str(out) in err_text
    assert len([line for line in err_text.splitlines() if "error:" in line]) == 1


def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` behave like a read-only mount even for root (which the suite runs as): every
    mkdir, file creation and open-for-writing under it fails with EROFS, as the kernel would answer."""
    import builtins
    import errno as errno_mod
    import io

    prefix = str(folder.resolve())
    real_mkdir, real_os_open, real_open = os.mkdir, os.open, builtins.open

    def under(path) -> bool:
        try:
            return os.path.abspath(os.fsdecode(os.fspath(path))).startswith(prefix)
        except TypeError:  # a file descriptor
            return False

    def refuse(path):
        return OSError(errno_mod.EROFS, os.strerror(errno_mod.EROFS), os.fsdecode(os.fspath(path)))

    def mkdir(path, *args, **kwargs):
        if under(path):
            raise refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and under(file) and any(c in mode for c in "wax+"):
            raise refuse(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)


@pytest.mark.parametrize("command", ["rm", "rl", "score", "merge"])
def test_read_only_folder_is_one_message_for_every_writer(command, tiny_env, runs, tmp_path, monkeypatch, capsys):
    """Audit item 5: a read-only output folder for rm, rl, rm score and rm merge is exit 2 and one
    message naming the folder and the fix, never a traceback."""
    ro = tmp_path / "ro"
    ro.mkdir()
    argv = {
        "rm": lambda: _rm(tiny_env, "--output-dir", str(ro / "run")),
        "rl": lambda: _rl(tiny_env, runs["rm"], "--output-dir", str(ro / "run")),
        "score": lambda: ["rm", "score", "--model-dir", str(runs["rm"] / "final"), "--input",
                          str(tiny_env / "pairs.jsonl"), "--output", str(ro / "scores.jsonl")],
        "merge": lambda: ["rm", "merge", "--model-dir", str(runs["rm"] / "final"), "--output", str(ro / "merged")],
    }[command]()
    _read_only(monkeypatch, ro)
    rc = main(argv)
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(ro) in errors[0] and "read-only" in errors[0], err
    assert list(ro.iterdir()) == []
