"""Length-bucketed batching and padding for sequence-scoring stages.

Deterministic by construction: the batches of a step depend only on the
example lengths, the batch size, the seed and the step, never on the number
of processes, so a resumed run and a data-parallel run see the same batches.

Bucketing: each epoch's seeded permutation is cut into windows of
``window_batches`` batches; inside a window examples are sorted by length and
cut into batches, and the batches are shuffled (seeded) so that the run does
not go from short to long. Each batch is then split into micro-batches of
neighbouring lengths (gradient accumulation x processes), each padded only to
its own longest sequence.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from perlhf.errors import UserError
from perlhf.runs import check_batch_fits, epoch_permutation, steps_over_epochs


def bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                     window_batches: int = 32) -> list[list[int]]:
    """One epoch of batches (full batches only) grouped by similar length."""
    order = epoch_permutation(len(lengths), seed, epoch)
    window = max(1, window_batches) * batch_size
    rng = random.Random(seed * 7_919 + epoch * 104_729 + 1)
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: (lengths[i], i))
        group = [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        group = [b for b in group if len(b) == batch_size]
        rng.shuffle(group)
        batches.extend(group)
    return batches


def step_schedule(lengths: Sequence[int], batch_size: int, seed: int, max_steps: int,
                  start_step: int = 0, window_batches: int = 32) -> Iterator[tuple[int, int, list[int]]]:
    """:func:`perlhf.runs.steps_over_epochs` over length-bucketed batches (:func:`bucketed_batches`).
    Refuses at once a batch larger than the data."""
    check_batch_fits(len(lengths), batch_size)
    return steps_over_epochs(lambda epoch: bucketed_batches(lengths, batch_size, seed, epoch, window_batches),
                             max_steps, start_step)


def split_micro_batches(batch: Sequence[int], lengths: Sequence[int], n_micro: int) -> list[list[int]]:
    """Cut a batch into ``n_micro`` equal micro-batches of neighbouring lengths."""
    if len(batch) % n_micro:
        raise UserError(f"--batch-size {len(batch)} must be divisible by --grad-accum x processes = {n_micro}")
    ordered = sorted(batch, key=lambda i: (lengths[i], i))
    size = len(batch) // n_micro
    return [ordered[k * size:(k + 1) * size] for k in range(n_micro)]


def split_by_tokens(items: Sequence[int], lengths: Sequence[int], rows_per_item: int,
                    max_tokens: int | None) -> list[list[int]]:
    """Cut ``items`` (in the given order) into consecutive chunks whose padded size,
    ``rows_per_item x len(chunk) x widest length``, stays within ``max_tokens``.

    A single item wider than the cap is a chunk of its own. ``None``: one chunk. Given items
    sorted by length (as micro-batches are), each chunk holds similar lengths.
    """
    if max_tokens is None:
        return [list(items)]
    chunks: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in items:
        w = max(width, lengths[i])
        if current and rows_per_item * (len(current) + 1) * w > max_tokens:
            chunks.append(current)
            current, w = [], lengths[i]
        current.append(i)
        width = w
    if current:
        chunks.append(current)
    return chunks


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """All examples, sorted by length, in batches (the last one may be short)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass
class Batch:
    input_ids: torch.Tensor       # [n, T]
    attention_mask: torch.Tensor  # [n, T]
    labels: torch.Tensor | None   # ratings: [n] float; pairs: None (first half chosen, second rejected)
    real_tokens: int
    padded_tokens: int

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device),
                     None if self.labels is None else self.labels.to(device), self.real_tokens, self.padded_tokens)


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` padded to the longest sequence."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        if not s:
            continue
        t = torch.as_tensor(list(s), dtype=torch.long)
        if side == "right":
            ids[r, :len(s)] = t
            mask[r, :len(s)] = 1
        else:
            ids[r, width - len(s):] = t
            mask[r, width - len(s):] = 1
    return ids, mask


def collate(seqs: Sequence[Sequence[int]], pad_id: int, labels: Sequence[float] | None = None) -> Batch:
    ids, mask = pad_sequences(seqs, pad_id)
    lab = None if labels is None else torch.tensor(list(labels), dtype=torch.float32)
    return Batch(ids, mask, lab, real_tokens=int(mask.sum()), padded_tokens=int(mask.numel()))
