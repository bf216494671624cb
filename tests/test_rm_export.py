"""`perlhf rm export`: a reward model as a standard AutoModelForSequenceClassification folder that
scores like perlhf, checked in a process that never imports perlhf."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from perlhf.cli import main
from perlhf.models.heads import load_reward_model

SCORER = r"""
import json, sys
import torch
from transformers import AutoModelForSequenceClassification
folder, ids_path = sys.argv[1], sys.argv[2]
seqs = json.load(open(ids_path))
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
pad = model.config.pad_token_id
width = max(len(s) for s in seqs)
ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=mask).logits
assert logits.shape == (len(seqs), 1), logits.shape
assert not any(m.startswith("perlhf") for m in sys.modules), "imported perlhf"
print(json.dumps({"scores": logits[:, 0].tolist(), "bias": model.config.perlhf_score_bias}))
"""


def _train(env, out, task_file, *extra):
    argv = ["rm", "train", "--model", str(env / "tiny"), "--task", "jsonl", "--path", str(env / task_file),
            "--batch-size", "8", "--max-steps", "3", "--eval-every", "3", "--learning-rate", "1e-2",
            "--max-prompt-tokens", "32", "--max-response-tokens", "16", "--progress", "false",
            "--report-to", "none", "--output-dir", str(out), *extra]
    assert main(argv) == 0
    return out / "final"


@pytest.mark.parametrize(("task_file", "extra", "exact"), [
    ("pairs.jsonl", ("--mode", "lora"), True),           # a pairwise head's bias stays 0
    ("ratings.jsonl", ("--mode", "full", "--head-bias", "false"), True),
    ("ratings.jsonl", ("--mode", "lora"), False),        # a learned bias: a constant shift, recorded
])
def test_export_scores_like_perlhf_without_perlhf(task_file, extra, exact, tiny_env, tmp_path):
    final = _train(tiny_env, tmp_path / "run", task_file, *extra)
    assert main(["rm", "export", "--model-dir", str(final), "--output", str(tmp_path / "export")]) == 0
    model, _ = load_reward_model(final)
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(3, 400, (n,), generator=g).tolist() for n in (5, 9, 14)]
    pad = json.loads((tmp_path / "export" / "config.json").read_text())["pad_token_id"]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    with torch.no_grad():
        ours = model(ids, mask).tolist()
    (tmp_path / "ids.json").write_text(json.dumps(seqs))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", SCORER, str(tmp_path / "export"), str(tmp_path / "ids.json")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    bias = theirs["bias"]
    assert (bias == 0.0) is exact
    for a, b in zip(ours, theirs["scores"], strict=True):
        assert abs(a - (b + bias)) < 1e-4


def test_export_refuses_an_existing_output(tiny_env, tmp_path, capsys):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "x").write_text("mine")
    final = _train(tiny_env, tmp_path / "run", "pairs.jsonl")
    assert main(["rm", "export", "--model-dir", str(final), "--output", str(tmp_path / "export")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "export" / "x").read_text() == "mine"
