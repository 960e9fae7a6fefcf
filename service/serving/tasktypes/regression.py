"""Serving of regression: a text, or a {"text", "text_pair"} pair, in, one value out.

The head predicts the standardised target; the value is mapped back to the target's own
units with the training set's mean and standard deviation, stored in the delta's metadata
("target_mean" and "target_std" in `extra`). A task trained on pairs ("text_pair": "true" in
`extra`) takes pairs only, and a task trained on single texts takes single texts only.
"""

from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from service.serving.cache import LoadedAdapter
from service.serving.tasktypes.base import EncodedRow, ServingTaskType
from service.serving.tasktypes.inputs import encode_sequences, parse_fields, parse_text
from service.serving.tasktypes.sentence_pair import PAIR_EXAMPLE, PAIR_FIELDS


def trained_on_pairs(loaded: LoadedAdapter) -> bool:
    return loaded.extra.get("text_pair") == "true"


class Regression(ServingTaskType):
    name = "regression"

    def parse_input(self, item: Any) -> dict[str, str]:
        if isinstance(item, dict) and "text_pair" in item:
            return parse_fields(item, PAIR_FIELDS, PAIR_EXAMPLE)
        return {"text": parse_text(item)}

    def parse_input_for(self, loaded: LoadedAdapter, item: Any) -> dict[str, str]:
        parsed = self.parse_input(item)
        if trained_on_pairs(loaded) and "text_pair" not in parsed:
            raise ValueError(f"this task was trained on text pairs; send {PAIR_EXAMPLE}.")
        if not trained_on_pairs(loaded) and "text_pair" in parsed:
            raise ValueError('this task was trained on single texts; send a string or {"text"}.')
        return parsed

    def encode(
        self, tokenizer: PreTrainedTokenizerFast, rows: list[tuple[LoadedAdapter, Any]]
    ) -> tuple[list[EncodedRow], None]:
        texts = [item["text"] for _, item in rows]
        pairs = [item.get("text_pair") for _, item in rows]
        return encode_sequences(tokenizer, rows, texts, pairs), None

    def decode(
        self,
        rows: list[tuple[LoadedAdapter, Any]],
        encoded: list[EncodedRow],
        plan: None,
        outputs: list[torch.Tensor],
    ) -> list[dict]:
        predictions = []
        for (loaded, _), output in zip(rows, outputs, strict=True):
            mean = float(loaded.extra.get("target_mean", 0.0))
            std = float(loaded.extra.get("target_std", 1.0))
            predictions.append({"value": float(output.float()[0]) * std + mean})
        return predictions
