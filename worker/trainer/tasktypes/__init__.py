"""Task types of the trainer: how examples become rows, the loss, and the eval metrics.

Each task type is a TrainingTaskType subclass registered in TRAINING_TASK_TYPES under the
task-type name that datasets carry. The loop builds one per job with build_task_type.
"""

from service.modeling.delta import Delta
from worker.trainer.tasktypes.base import Features, TaskOptions, TrainingTaskType, concat_features
from worker.trainer.tasktypes.classification import SentencePair, TextClassification
from worker.trainer.tasktypes.extractive_qa import ExtractiveQA
from worker.trainer.tasktypes.multi_label import MultiLabel
from worker.trainer.tasktypes.regression import Regression
from worker.trainer.tasktypes.token_classification import TokenClassification

TRAINING_TASK_TYPES: dict[str, type[TrainingTaskType]] = {
    cls.name: cls
    for cls in (
        TextClassification,
        SentencePair,
        MultiLabel,
        Regression,
        TokenClassification,
        ExtractiveQA,
    )
}


def build_task_type(name: str, labels: list[str], options: TaskOptions) -> TrainingTaskType:
    """Return the trainer's logic for task type `name` with the job's labels and options."""
    cls = TRAINING_TASK_TYPES.get(name)
    if cls is None:
        raise ValueError(
            f"Task type {name!r} cannot be trained (yet); supported: {list(TRAINING_TASK_TYPES)}."
        )
    return cls(labels, options)


def build_task_type_of_delta(delta: Delta) -> TrainingTaskType:
    """Return the task type that trained `delta`, with the settings stored in it.

    Only what scoring served predictions needs is restored (labels, max length and the
    multi-label threshold), not regression's target scaling, which serving applies itself.
    """
    threshold = delta.extra.get("threshold")
    options = TaskOptions(
        max_length=delta.max_length,
        threshold=float(threshold) if threshold is not None else None,
    )
    return build_task_type(delta.task_type, delta.labels, options)


__all__ = [
    "TRAINING_TASK_TYPES",
    "Features",
    "TaskOptions",
    "TrainingTaskType",
    "build_task_type",
    "build_task_type_of_delta",
    "concat_features",
]
