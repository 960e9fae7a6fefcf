"""Padded batches on the training device, built once per set of rows."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from worker.trainer.data import pad_batch


@dataclass
class PaddedBatch:
    """Rows of a batch and their padded tensors on the device."""

    rows: list[int]
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    targets: torch.Tensor  # [B]


def make_batch(
    rows: list[int],
    token_ids: Sequence[Sequence[int]],
    targets: torch.Tensor,
    pad_id: int,
    device: torch.device,
) -> PaddedBatch:
    """Pad `rows` of `token_ids` and move them to `device` without waiting for the copy.

    On CUDA the host tensors are pinned, so the copy overlaps the work already queued.
    """
    input_ids, attention_mask = pad_batch([token_ids[i] for i in rows], pad_id)
    row_targets = targets[rows]
    if device.type == "cuda":
        input_ids, attention_mask = input_ids.pin_memory(), attention_mask.pin_memory()
        row_targets = row_targets.pin_memory()
    return PaddedBatch(
        rows,
        input_ids.to(device, non_blocking=True),
        attention_mask.to(device, non_blocking=True),
        row_targets.to(device, non_blocking=True),
    )
