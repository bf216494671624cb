"""Models: resolving ``--model`` names, loading tokenizers and causal LMs, the offline default.

Importing this package is cheap (no torch/transformers); the loaders import them when called.
"""

from __future__ import annotations

from perlhf.models.loading import (
    DTYPE_CHOICES,
    MODEL_OPTION_HELP,
    ResolvedModel,
    load_causal_lm,
    load_config,
    load_tokenizer,
    resolve_model,
    torch_dtype,
)
from perlhf.models.offline import DEFAULT_MODEL, OFFLINE_MODELS, OfflineModel, cache_root

__all__ = [
    "DEFAULT_MODEL",
    "DTYPE_CHOICES",
    "MODEL_OPTION_HELP",
    "OFFLINE_MODELS",
    "OfflineModel",
    "ResolvedModel",
    "cache_root",
    "load_causal_lm",
    "load_config",
    "load_tokenizer",
    "resolve_model",
    "torch_dtype",
]
