"""The interface between the training loop and one task type.

The loop is the same for every task type: encoder rows in length-grouped batches, the model's
outputs, a loss, an evaluation after every epoch. A task type supplies the parts that differ:

    featurize        examples -> Features: token ids, segment ids, targets, loss units
    loss_sum         model outputs of a batch -> the summed loss of its rows
    compute_metrics  the outputs of every eval row -> the task type's metrics
    delta_extra      settings that serving needs, stored in the delta's metadata
    split            the held-out eval rows when the job has no eval dataset
    serving_input, prediction_metrics
                     an example as a predict input, and the metrics of served predictions,
                     so a stored version can be scored the way clients see it

Pooled task types get outputs `[B, num_outputs]` from the head on the pooled row; token-level
ones (`token_level = True`) get `[B, T, num_outputs]` from the head on every token.
"""

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from transformers import PreTrainedTokenizerFast

from service.tasktypes.alignment import IGNORE_INDEX
from service.tasktypes.options import SELECTION_METRICS


@dataclass(frozen=True)
class TaskOptions:
    """The hyperparameters that decide how a task type encodes and decodes its examples.

    Attributes:
        max_length: maximum tokens per encoder row, special tokens included.
        doc_stride: sub-tokens shared by consecutive windows (token_classification and
            extractive_qa).
        max_question_tokens: question tokens kept (extractive_qa).
        max_answer_tokens: maximum tokens in a predicted answer (extractive_qa).
        threshold: probability at which a label is predicted (multi_label).
    """

    max_length: int
    doc_stride: int | None = None
    max_question_tokens: int | None = None
    max_answer_tokens: int | None = None
    threshold: float | None = None

    @classmethod
    def from_hyperparameters(cls, hyperparameters: Any) -> "TaskOptions":
        """Read the options from resolved hyperparameters (see service.tasktypes.options)."""
        return cls(
            max_length=hyperparameters.max_length,
            doc_stride=getattr(hyperparameters, "doc_stride", None),
            max_question_tokens=getattr(hyperparameters, "max_question_tokens", None),
            max_answer_tokens=getattr(hyperparameters, "max_answer_tokens", None),
            threshold=getattr(hyperparameters, "threshold", None),
        )


@dataclass
class Features:
    """The encoder rows of a set of examples, and what the loss and the evaluation read.

    An example gives one row, or several where a long input is split into windows.

    Attributes:
        token_ids: per row, token ids with special tokens, without padding.
        token_type_ids: per row, segment ids, or None when every row is a single text.
        targets: per row, what the loss compares the outputs with: a tensor with one entry
            per row (`[N]` class ids or values, `[N, C]` indicators, `[N, 2]` positions), or
            per row a list with one label id per token, IGNORE_INDEX where none applies.
        units: per row, its share of the loss's denominator: 1.0 for a row, or the number of
            labelled tokens, so that a step's loss is a mean over rows or over tokens.
        plan: what compute_metrics needs to map rows back to their examples.
    """

    token_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    targets: torch.Tensor | list[list[int]]
    units: list[float]
    plan: Any = None

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.token_ids]

    def batch_targets(self, rows: Sequence[int], width: int) -> torch.Tensor:
        """Return the targets of `rows`; per-token targets are padded to `width` positions."""
        if isinstance(self.targets, torch.Tensor):
            return self.targets[list(rows)]
        padded = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for position, row in enumerate(rows):
            labels = self.targets[row]
            padded[position, : len(labels)] = torch.tensor(labels, dtype=torch.long)
        return padded

    def batch_token_type_ids(self, rows: Sequence[int], width: int) -> torch.Tensor | None:
        """Return the segment ids of `rows` padded with 0 to `width`, or None without any."""
        if self.token_type_ids is None:
            return None
        padded = torch.zeros((len(rows), width), dtype=torch.long)
        for position, row in enumerate(rows):
            types = self.token_type_ids[row]
            padded[position, : len(types)] = torch.tensor(types, dtype=torch.long)
        return padded


def concat_features(first: Features, second: Features) -> Features:
    """Return the rows of `first` then those of `second` (the plans are dropped).

    The loop uses it to append the replayed rows of an earlier version to a job's own rows;
    neither set is evaluated through the result.
    """
    if len(second) == 0:
        return first
    if isinstance(first.targets, torch.Tensor):
        assert isinstance(second.targets, torch.Tensor)
        targets: torch.Tensor | list[list[int]] = torch.cat([first.targets, second.targets])
    else:
        assert isinstance(second.targets, list)
        targets = first.targets + second.targets
    token_type_ids = None
    if first.token_type_ids is not None or second.token_type_ids is not None:
        token_type_ids = _types_or_zeros(first) + _types_or_zeros(second)
    return Features(
        token_ids=first.token_ids + second.token_ids,
        token_type_ids=token_type_ids,
        targets=targets,
        units=first.units + second.units,
    )


def _types_or_zeros(features: Features) -> list[list[int]]:
    if features.token_type_ids is not None:
        return features.token_type_ids
    return [[0] * len(ids) for ids in features.token_ids]


class TrainingTaskType(ABC):
    """What the training loop needs to know about one task type.

    Args:
        labels: the training dataset's labels; the head's output i is labels[i] for the
            types that classify.
        options: encoding and decoding settings.
    """

    name: ClassVar[str]
    token_level: ClassVar[bool] = False

    def __init__(self, labels: list[str], options: TaskOptions) -> None:
        self.labels = list(labels)
        self.options = options

    @property
    def num_outputs(self) -> int:
        """The head's outputs: one per label unless the task type says otherwise."""
        return len(self.labels)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics that can select the best epoch, the default one first."""
        return SELECTION_METRICS[self.name]

    def fit(self, train_examples: list[dict]) -> None:  # noqa: B027 (an optional hook)
        """Learn what encoding needs from the training examples; most task types need nothing."""

    @abstractmethod
    def featurize(self, tokenizer: PreTrainedTokenizerFast, examples: list[dict]) -> Features:
        """Return the encoder rows, targets and loss units of `examples`."""

    @abstractmethod
    def loss_sum(
        self, outputs: torch.Tensor, targets: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Return the loss of a batch, summed over its units (rows or labelled tokens).

        Args:
            outputs: the model's outputs, `[B, C]` or `[B, T, C]`.
            targets: Features.batch_targets of the batch's rows, on the outputs' device.
            attention_mask: `[B, T]`, 1 on real tokens and 0 on padding; None for the
                linear probe's cached pooled features, which have no tokens.
        """

    @abstractmethod
    def compute_metrics(self, features: Features, outputs: list[torch.Tensor]) -> dict[str, float]:
        """Return the metrics of the eval rows' outputs.

        Args:
            features: what featurize returned for the eval examples.
            outputs: per row, its output on the CPU in fp32: `[C]`, or `[num_tokens, C]`
                for the row's own tokens (padding removed).
        """

    def delta_extra(self) -> dict[str, str]:
        """Return the settings that serving reads from the delta's metadata."""
        return {}

    def split(
        self, examples: list[dict], fraction: float, seed: int
    ) -> tuple[list[int], list[int]]:
        """Return sorted (train, eval) example indexes with about `fraction` held out.

        The default is a seeded random split that keeps at least one example on each side
        when there are two or more.
        """
        return random_split(len(examples), fraction, seed)

    @abstractmethod
    def serving_input(self, example: dict) -> str | dict:
        """Return the predict input of an example, as a client would send it."""

    @abstractmethod
    def prediction_metrics(self, examples: list[dict], predictions: list[dict]) -> dict[str, float]:
        """Return the metrics of served predictions, one per example, by compute_metrics' names.

        Labels of the examples that the model lacks count as misses.
        """

    def unknown_labels(self, examples: list[dict]) -> list[str]:
        """Return the labels (or tags) of `examples` that are not the task's, sorted.

        Examples with such labels cannot be trained or scored on. Task types without labels
        have none.
        """
        return []


def random_split(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Return sorted (train, held-out) indexes of `count` rows, about `fraction` held out."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    held = round(count * fraction)
    if count >= 2:
        held = min(max(held, 1), count - 1)
    else:
        held = 0
    return sorted(order[held:]), sorted(order[:held])


def labels_outside(found: set[str], known: Sequence[str]) -> list[str]:
    """Return the labels in `found` that are not in `known`, sorted."""
    return sorted(found - set(known))
