"""A stable fingerprint of a model's frozen base weights.

Used to refuse a LoRA adapter (reward, value, policy) trained on different base
weights than the backbone it is being attached to: the adapter would load
without error and mean nothing.

The fingerprint is a SHA-256 over, for every base tensor in name order, its
name, its shape and the float32 bytes of its values (a strided sample of at most
``max_elements`` values per tensor; all values for smaller tensors, or when
``max_elements`` is None). Names are normalised so that a plain model, the same
model wrapped by peft (``base_model.model.``, ``.base_layer``) and a reward
model's backbone give the same fingerprint; LoRA weights are excluded. Values
are hashed as float32, so the fingerprint describes values, not storage
(a bfloat16 copy upcast to float32 fingerprints the same as the original).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
import torch.nn as nn

DEFAULT_MAX_ELEMENTS = 1 << 20
_ADAPTER_MARKERS = ("lora_", "modules_to_save", "original_module", "lora_magnitude_vector")


def normalise_name(name: str) -> str | None:
    """The base-model name of a parameter, or None for adapter weights."""
    parts = name.split(".")
    if any(any(m in p for m in _ADAPTER_MARKERS) for p in parts):
        return None
    if name.startswith("base_model.model."):
        name = name[len("base_model.model."):]
    return name.replace(".base_layer.", ".")


def base_state_dict(model_or_state_dict: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base weights of a model (plain, peft-wrapped or a reward/value model) by normalised name."""
    obj = model_or_state_dict
    if isinstance(obj, nn.Module):
        if hasattr(obj, "backbone") and hasattr(obj, "head"):
            obj = obj.backbone
        if hasattr(obj, "module") and isinstance(obj.module, nn.Module):  # DDP wrapper
            obj = obj.module
            if hasattr(obj, "backbone") and hasattr(obj, "head"):
                obj = obj.backbone
        sd = obj.state_dict()
    else:
        sd = dict(obj)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        nk = normalise_name(k)
        if nk is not None and isinstance(v, torch.Tensor):
            out[nk] = v
    return out


def base_fingerprint(model_or_state_dict: nn.Module | Mapping[str, torch.Tensor],
                     max_elements: int | None = DEFAULT_MAX_ELEMENTS) -> str:
    """``"sha256:<hex>"`` of the base weights (see the module docstring)."""
    h = hashlib.sha256()
    sd = base_state_dict(model_or_state_dict)
    for name in sorted(sd):
        t = sd[name].detach()
        h.update(name.encode())
        h.update(repr(tuple(t.shape)).encode())
        flat = t.reshape(-1)
        if max_elements is not None and flat.numel() > max_elements:
            step = -(-flat.numel() // max_elements)
            flat = flat[::step]
        h.update(flat.to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
    return "sha256:" + h.hexdigest()
