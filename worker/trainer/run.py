"""The state of one training run: its rows, its batches, and what `fit` builds and tracks."""

from dataclasses import dataclass, field

import torch
from torch import nn

from worker.trainer.batches import PaddedBatch
from worker.trainer.model import TaskModel
from worker.trainer.tasktypes import Features


@dataclass
class TrainingRows:
    """Encoder rows to train on: the job's own rows, then the replayed rows of `init_from`."""

    features: Features
    num_train: int
    num_replay: int

    @property
    def lengths(self) -> list[int]:
        return self.features.lengths


@dataclass
class FeatureBatch:
    """A batch of the linear probe: row indexes into the cached pooled features."""

    rows: list[int]
    index: torch.Tensor  # [B] on the device
    targets: torch.Tensor  # on the device, as Features.batch_targets
    units: float  # the sum of the rows' loss units


@dataclass
class Run:
    """What one `fit` call builds before its first step, and its progress."""

    model: TaskModel
    rows: TrainingRows
    pad_id: int
    eval_features: Features
    eval_batches: list[PaddedBatch]
    encoder_parameters: dict[str, nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    trainable: list[nn.Parameter]
    steps_per_epoch: int
    # Cached pooled features `[rows, hidden]` of the linear probe; None for other strategies
    # and for token-level task types, whose head reads every token.
    cached: torch.Tensor | None = None
    eval_cached: torch.Tensor | None = None
    processed_rows: int = 0
    best_snapshot: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    stale_epochs: int = 0
