"""Serving of sentence-pair classification: {"text", "text_pair"} in, a label and scores out."""

from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from service.serving.cache import LoadedAdapter
from service.serving.tasktypes.base import EncodedRow, ServingTaskType
from service.serving.tasktypes.inputs import encode_sequences, parse_fields
from service.serving.tasktypes.text_classification import TextClassification

PAIR_FIELDS = ("text", "text_pair")
PAIR_EXAMPLE = '{"text": "...", "text_pair": "..."}'


class SentencePair(ServingTaskType):
    name = "sentence_pair"

    def parse_input(self, item: Any) -> dict[str, str]:
        return parse_fields(item, PAIR_FIELDS, PAIR_EXAMPLE)

    def encode(
        self, tokenizer: PreTrainedTokenizerFast, rows: list[tuple[LoadedAdapter, Any]]
    ) -> tuple[list[EncodedRow], None]:
        texts = [item["text"] for _, item in rows]
        pairs: list[str | None] = [item["text_pair"] for _, item in rows]
        return encode_sequences(tokenizer, rows, texts, pairs), None

    def decode(
        self,
        rows: list[tuple[LoadedAdapter, Any]],
        encoded: list[EncodedRow],
        plan: None,
        outputs: list[torch.Tensor],
    ) -> list[dict]:
        # One encoder row per input and a softmax over the labels, as for single texts.
        return TextClassification().decode(rows, encoded, plan, outputs)
