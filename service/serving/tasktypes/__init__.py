"""Per-task-type serving: turning inputs into encoder rows and head outputs into predictions.

Each task type registers one `ServingTaskType` in `SERVING_TASK_TYPES`. The engine groups a
batch's rows by task type, asks each type to encode its rows (several encoder rows per input
when a long text is split into windows), runs all encoder rows of all types in shared passes,
and hands each type back the head outputs of its encoder rows to decode.
"""

from service.serving.tasktypes.base import EncodedRow, ServingTaskType
from service.serving.tasktypes.extractive_qa import ExtractiveQA
from service.serving.tasktypes.multi_label import MultiLabel
from service.serving.tasktypes.regression import Regression
from service.serving.tasktypes.sentence_pair import SentencePair
from service.serving.tasktypes.text_classification import TextClassification
from service.serving.tasktypes.token_classification import TokenClassification

SERVING_TASK_TYPES: dict[str, ServingTaskType] = {
    task_type.name: task_type
    for task_type in (
        TextClassification(),
        SentencePair(),
        MultiLabel(),
        Regression(),
        TokenClassification(),
        ExtractiveQA(),
    )
}


def get_serving_task_type(name: str) -> ServingTaskType:
    """Return the serving logic of task type `name`."""
    try:
        return SERVING_TASK_TYPES[name]
    except KeyError:
        raise ValueError(
            f"Task type {name!r} cannot be served (yet); supported: {sorted(SERVING_TASK_TYPES)}."
        ) from None


__all__ = ["SERVING_TASK_TYPES", "EncodedRow", "ServingTaskType", "get_serving_task_type"]
