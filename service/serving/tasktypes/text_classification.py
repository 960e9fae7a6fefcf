"""Serving of text classification: one text in, a label and the score of every label out."""

from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from service.serving.cache import LoadedAdapter
from service.serving.tasktypes.base import EncodedRow, ServingTaskType


class TextClassification(ServingTaskType):
    name = "text_classification"

    def parse_input(self, item: Any) -> str:
        if isinstance(item, dict) and set(item) == {"text"}:
            item = item["text"]
        if not isinstance(item, str) or not item.strip():
            raise ValueError('each input must be a non-empty string (or {"text": ...}).')
        return item

    def encode(
        self, tokenizer: PreTrainedTokenizerFast, rows: list[tuple[LoadedAdapter, Any]]
    ) -> tuple[list[EncodedRow], None]:
        max_length = max(loaded.max_length for loaded, _ in rows)
        token_ids = tokenizer([text for _, text in rows], truncation=True, max_length=max_length)[
            "input_ids"
        ]
        encoded = []
        for index, ((loaded, _), ids) in enumerate(zip(rows, token_ids, strict=True)):
            if len(ids) > loaded.max_length:
                # Rows trained with a shorter max length keep their own cut, [SEP] included.
                ids = ids[: loaded.max_length - 1] + ids[-1:]
            encoded.append(EncodedRow(index, ids))
        return encoded, None

    def decode(
        self,
        rows: list[tuple[LoadedAdapter, Any]],
        encoded: list[EncodedRow],
        plan: None,
        outputs: list[torch.Tensor],
    ) -> list[dict]:
        predictions = []
        for (loaded, _), logits in zip(rows, outputs, strict=True):
            scores = logits.float().softmax(dim=-1).tolist()
            best = max(range(len(scores)), key=scores.__getitem__)
            predictions.append(
                {
                    "label": loaded.labels[best],
                    "scores": dict(zip(loaded.labels, scores, strict=True)),
                }
            )
        return predictions
