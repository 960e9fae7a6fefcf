"""The state of one training run: its rows, its batches, and what `fit` builds and tracks."""

from dataclasses import dataclass, field

import torch
from torch import nn

from worker.trainer.batches import PaddedBatch
from worker.trainer.model import TaskModel


@dataclass
class TrainingRows:
    """Tokenised training rows: the job's own rows, then the replayed rows of `init_from`."""

    token_ids: list[list[int]]
    targets: torch.Tensor  # [rows]
    num_train: int
    num_replay: int

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.token_ids]


@dataclass
class FeatureBatch:
    """A batch of the linear probe: row indexes into the cached features."""

    rows: list[int]
    index: torch.Tensor  # [B] on the device
    targets: torch.Tensor  # [B] on the device


@dataclass
class Run:
    """What one `fit` call builds before its first step, and its progress."""

    model: TaskModel
    rows: TrainingRows
    pad_id: int
    eval_batches: list[PaddedBatch]
    eval_targets: torch.Tensor  # [eval rows]
    encoder_parameters: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    trainable: list[nn.Parameter]
    steps_per_epoch: int
    # Cached pooled features `[rows, hidden]` of the linear probe; None for other strategies.
    features: torch.Tensor | None = None
    eval_features: torch.Tensor | None = None
    processed_rows: int = 0
    best_snapshot: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    stale_epochs: int = 0
