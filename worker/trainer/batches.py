"""Padded batches on the training device, built from a task type's features."""

from dataclasses import dataclass

import torch

from worker.trainer.data import pad_batch
from worker.trainer.tasktypes import Features


@dataclass
class PaddedBatch:
    """Rows of a batch and their padded tensors on the device."""

    rows: list[int]
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    token_type_ids: torch.Tensor | None  # [B, T], None when every row is a single text
    targets: torch.Tensor  # [B], [B, C] or [B, T]: Features.batch_targets
    units: float  # the sum of the rows' loss units


def make_batch(
    rows: list[int], features: Features, pad_id: int, device: torch.device
) -> PaddedBatch:
    """Pad `rows` of `features` and move them to `device` without waiting for the copy.

    On CUDA the host tensors are pinned, so the copy overlaps the work already queued.
    """
    input_ids, attention_mask = pad_batch([features.token_ids[i] for i in rows], pad_id)
    width = input_ids.shape[1]
    tensors = [input_ids, attention_mask, features.batch_targets(rows, width)]
    token_type_ids = features.batch_token_type_ids(rows, width)
    if device.type == "cuda":
        tensors = [t.pin_memory() for t in tensors]
        token_type_ids = token_type_ids.pin_memory() if token_type_ids is not None else None
    input_ids, attention_mask, targets = (t.to(device, non_blocking=True) for t in tensors)
    if token_type_ids is not None:
        token_type_ids = token_type_ids.to(device, non_blocking=True)
    units = float(sum(features.units[i] for i in rows))
    return PaddedBatch(rows, input_ids, attention_mask, token_type_ids, targets, units)
