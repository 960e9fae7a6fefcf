"""Trainer state and the callback hooks through which the worker reports progress."""

from dataclasses import dataclass, field


@dataclass
class TrainerState:
    """Where a run is. A step is one optimizer update."""

    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    num_epochs: int = 0
    loss: float | None = None
    learning_rate: float | None = None
    best_metric: float | None = None
    best_epoch: int | None = None
    eval_history: list[dict] = field(default_factory=list)


class TrainerCallback:
    """Hooks the loop calls; raising from a hook stops the run (cancellation uses this)."""

    def on_train_begin(self, state: TrainerState) -> None: ...

    def on_log(self, state: TrainerState) -> None:
        """Called every `log_every` steps with the mean loss since the last call."""

    def on_evaluate(self, state: TrainerState, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, state: TrainerState) -> None: ...
