"""Task types of the trainer: how examples become rows, the loss, and the eval metrics.

Each task type is a TrainingTaskType subclass registered in TRAINING_TASK_TYPES under the
task-type name that datasets carry. The loop builds one per job with build_task_type.
"""

from worker.trainer.tasktypes.base import Features, TaskOptions, TrainingTaskType
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


__all__ = [
    "TRAINING_TASK_TYPES",
    "Features",
    "TaskOptions",
    "TrainingTaskType",
    "build_task_type",
]
