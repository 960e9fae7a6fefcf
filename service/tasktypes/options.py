"""Per-task-type job options: the selection metric, and hyperparameters that some types read.

A job's hyperparameters are validated per strategy (service.hyperparameters). Some of them
mean something for some task types only, and their defaults depend on the type:

    metric_for_best_model  every type: one of SELECTION_METRICS[task_type], the first by default
    doc_stride             token_classification and extractive_qa: sub-tokens shared by
                           consecutive windows of a long input
    max_question_tokens    extractive_qa: question tokens kept, special tokens excluded
    max_answer_tokens      extractive_qa: maximum tokens in a predicted answer
    threshold              multi_label: the probability at which a label is predicted

resolve_task_options fills in the type's defaults and rejects an option set for a type that
does not read it, so a mistake such as a threshold on a single-label task is reported at
submission instead of being ignored. The API stores the resolved copy, so the worker, which
resolves again, gets the same values.
"""

from typing import TypeVar

from pydantic import BaseModel

from service.tasktypes import qa
from service.tasktypes.multi_label import DEFAULT_THRESHOLD

# The metrics that can select the best epoch, per task type; the first one is the default.
SELECTION_METRICS: dict[str, tuple[str, ...]] = {
    "text_classification": ("accuracy", "macro_f1"),
    "sentence_pair": ("accuracy", "f1", "macro_f1"),
    "multi_label": ("micro_f1", "macro_f1", "subset_accuracy"),
    "regression": ("pearson", "spearman"),
    "token_classification": ("entity_f1", "entity_precision", "entity_recall"),
    "extractive_qa": ("f1", "exact_match"),
}

TASK_TYPES = tuple(SELECTION_METRICS)

# Options that only some task types read, and those types.
TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "doc_stride": ("token_classification", "extractive_qa"),
    "max_question_tokens": ("extractive_qa",),
    "max_answer_tokens": ("extractive_qa",),
    "threshold": ("multi_label",),
}

# Special tokens around one text ([CLS] and [SEP] for BERT, <s> and </s> for RoBERTa) and
# around a question-context pair (three for BERT; RoBERTa's four are counted by the trainer,
# which checks the windows again with the real tokenizer).
SINGLE_SPECIAL_TOKENS = 2
PAIR_SPECIAL_TOKENS = 3

Hyperparameters = TypeVar("Hyperparameters", bound=BaseModel)


class TaskOptionError(ValueError):
    """Raised when a job option does not fit the task type; `field` names the option."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def resolve_task_options(
    task_type: str, hyperparameters: Hyperparameters, labels: list[str]
) -> Hyperparameters:
    """Return a copy of `hyperparameters` with the task type's defaults filled in.

    Args:
        task_type: one of TASK_TYPES.
        hyperparameters: validated hyperparameters of any strategy, with the fields named in
            TASK_OPTIONS and metric_for_best_model (None where the user set nothing).
        labels: the training dataset's labels; sentence_pair's "f1" needs exactly two.

    Raises:
        TaskOptionError: the task type is not trainable, an option is set that the task type
            does not read, or the values do not fit together (such as a stride that leaves no
            room for a window to advance).
    """
    if task_type not in SELECTION_METRICS:
        raise TaskOptionError(
            f"task type {task_type!r} cannot be trained (yet); trainable types: "
            f"{', '.join(TASK_TYPES)}",
            field="task_type",
        )
    _reject_unread_options(task_type, hyperparameters)

    update: dict[str, object] = {
        "metric_for_best_model": _resolve_metric(task_type, hyperparameters, labels)
    }
    if task_type == "extractive_qa":
        update.update(_resolve_qa(hyperparameters))
    elif task_type == "token_classification":
        update.update(_resolve_token_classification(hyperparameters))
    elif task_type == "multi_label":
        threshold = getattr(hyperparameters, "threshold", None)
        update["threshold"] = DEFAULT_THRESHOLD if threshold is None else threshold
    return hyperparameters.model_copy(update=update)


def _reject_unread_options(task_type: str, hyperparameters: BaseModel) -> None:
    for option, readers in TASK_OPTIONS.items():
        if getattr(hyperparameters, option, None) is None or task_type in readers:
            continue
        raise TaskOptionError(
            f"{option} is read only by {' and '.join(readers)} tasks, not by {task_type}; "
            "remove it",
            field=option,
        )


def _resolve_metric(task_type: str, hyperparameters: BaseModel, labels: list[str]) -> str:
    allowed = SELECTION_METRICS[task_type]
    metric = getattr(hyperparameters, "metric_for_best_model", None) or allowed[0]
    if metric not in allowed:
        raise TaskOptionError(
            f"metric_for_best_model {metric!r} cannot select the best epoch of {task_type} "
            f"tasks; choose one of {', '.join(allowed)}",
            field="metric_for_best_model",
        )
    if task_type == "sentence_pair" and metric == "f1" and len(labels) != 2:
        raise TaskOptionError(
            f"metric_for_best_model 'f1' needs exactly two labels, but the dataset has "
            f"{len(labels)}; choose accuracy or macro_f1",
            field="metric_for_best_model",
        )
    return metric


def _resolve_qa(hyperparameters: BaseModel) -> dict[str, object]:
    # 128 tokens hold little of a paragraph, so QA gets the usual SQuAD length unless the
    # user chose one.
    max_length = hyperparameters.max_length
    if "max_length" not in hyperparameters.model_fields_set:
        max_length = qa.DEFAULT_MAX_LENGTH

    question_tokens = getattr(hyperparameters, "max_question_tokens", None)
    if question_tokens is None:
        question_tokens = min(qa.DEFAULT_MAX_QUESTION_TOKENS, max_length // 2)
    room = max_length - question_tokens - PAIR_SPECIAL_TOKENS
    if room < 2:
        raise TaskOptionError(
            f"max_question_tokens {question_tokens} leaves {max(room, 0)} context tokens per "
            f"window of max_length {max_length}; lower max_question_tokens or raise max_length",
            field="max_question_tokens",
        )

    stride = getattr(hyperparameters, "doc_stride", None)
    if stride is None:
        stride = min(qa.DEFAULT_STRIDE, room // 2)
    if stride >= room:
        raise TaskOptionError(
            f"doc_stride {stride} must be below the {room} context tokens that fit in a window "
            f"(max_length {max_length} minus max_question_tokens {question_tokens} and "
            f"{PAIR_SPECIAL_TOKENS} special tokens); lower doc_stride",
            field="doc_stride",
        )

    answer_tokens = getattr(hyperparameters, "max_answer_tokens", None)
    # The start and end logits are read off single token states, which dropout on the head's
    # input only makes noisier; BERT's own QA head has none either.
    head_dropout = hyperparameters.head_dropout
    if "head_dropout" not in hyperparameters.model_fields_set:
        head_dropout = 0.0
    return {
        "head_dropout": head_dropout,
        "max_length": max_length,
        "max_question_tokens": question_tokens,
        "doc_stride": stride,
        "max_answer_tokens": qa.DEFAULT_MAX_ANSWER_TOKENS
        if answer_tokens is None
        else answer_tokens,
    }


def _resolve_token_classification(hyperparameters: BaseModel) -> dict[str, object]:
    max_length = hyperparameters.max_length
    room = max_length - SINGLE_SPECIAL_TOKENS
    stride = getattr(hyperparameters, "doc_stride", None)
    if stride is None:
        stride = max_length // 4
    if stride >= room:
        raise TaskOptionError(
            f"doc_stride {stride} must be below the {room} sub-tokens that fit in a window of "
            f"max_length {max_length}; lower doc_stride",
            field="doc_stride",
        )
    return {"doc_stride": stride}
