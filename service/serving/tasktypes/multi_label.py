"""Serving of multi-label classification: a text in, every label over the threshold out.

Each label gets its own sigmoid probability. The threshold is the one the task was trained
and evaluated with, stored in the delta's metadata ("threshold" in `extra`).
"""

from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from service.serving.cache import LoadedAdapter
from service.serving.tasktypes.base import EncodedRow, ServingTaskType
from service.serving.tasktypes.inputs import encode_sequences, parse_text
from service.tasktypes.multi_label import DEFAULT_THRESHOLD, select_labels


def adapter_threshold(loaded: LoadedAdapter) -> float:
    """Return the decision threshold stored with the adapter, or the default one."""
    return float(loaded.extra.get("threshold", DEFAULT_THRESHOLD))


class MultiLabel(ServingTaskType):
    name = "multi_label"

    def parse_input(self, item: Any) -> str:
        return parse_text(item)

    def encode(
        self, tokenizer: PreTrainedTokenizerFast, rows: list[tuple[LoadedAdapter, Any]]
    ) -> tuple[list[EncodedRow], None]:
        texts = [text for _, text in rows]
        return encode_sequences(tokenizer, rows, texts, [None] * len(rows)), None

    def decode(
        self,
        rows: list[tuple[LoadedAdapter, Any]],
        encoded: list[EncodedRow],
        plan: None,
        outputs: list[torch.Tensor],
    ) -> list[dict]:
        predictions = []
        for (loaded, _), logits in zip(rows, outputs, strict=True):
            probabilities = logits.float().sigmoid().tolist()
            selected = select_labels(probabilities, adapter_threshold(loaded))
            predictions.append(
                {
                    "labels": [loaded.labels[index] for index in selected],
                    "scores": dict(zip(loaded.labels, probabilities, strict=True)),
                }
            )
        return predictions
