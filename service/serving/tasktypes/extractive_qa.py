"""Serving of extractive QA: {"question", "context"} in, the best answer span out.

A context longer than one window is split into overlapping windows (qa.encode_qa_windows),
with the max_length, stride and question length the adapter was trained with. The head gives
a start and an end logit per token, every window proposes its best span of at most
max_answer_tokens tokens, and the most probable span over all windows is the answer. Its
text is cut from the context by character offsets, so answer == context[start:end].

NOTE: a question is always given the best span, as in SQuAD v1.1. A model trained on
questions without an answer learns to point at [CLS], but that is not yet returned as "no
answer".
"""

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from service.serving.cache import LoadedAdapter
from service.serving.tasktypes.base import EncodedRow, ServingTaskType
from service.serving.tasktypes.inputs import group_rows, parse_fields
from service.tasktypes.qa import (
    DEFAULT_MAX_ANSWER_TOKENS,
    DEFAULT_MAX_QUESTION_TOKENS,
    DEFAULT_STRIDE,
    QAWindow,
    best_answer,
    encode_qa_windows,
)

QA_FIELDS = ("question", "context")
QA_EXAMPLE = '{"question": "...", "context": "..."}'


@dataclass(frozen=True)
class QAOptions:
    """The window and answer settings an adapter was trained with."""

    max_length: int
    stride: int
    max_question_tokens: int
    max_answer_tokens: int

    @classmethod
    def of(cls, loaded: LoadedAdapter) -> "QAOptions":
        extra = loaded.extra
        return cls(
            max_length=loaded.max_length,
            stride=int(extra.get("doc_stride", DEFAULT_STRIDE)),
            max_question_tokens=int(extra.get("max_question_tokens", DEFAULT_MAX_QUESTION_TOKENS)),
            max_answer_tokens=int(extra.get("max_answer_tokens", DEFAULT_MAX_ANSWER_TOKENS)),
        )


def answer_prediction(
    windows: list[QAWindow], outputs: list[torch.Tensor], context: str, max_answer_tokens: int
) -> dict[str, Any]:
    """Return {answer, start, end, score} from the windows of one question and their outputs.

    Args:
        windows: the question's windows.
        outputs: per window, the head output `[num_tokens, 2]`: start and end logits.
        context: the context the windows were encoded from.
        max_answer_tokens: maximum tokens in the answer.
    """
    start_logits = [output[:, 0].float().tolist() for output in outputs]
    end_logits = [output[:, 1].float().tolist() for output in outputs]
    span = best_answer(windows, start_logits, end_logits, context, max_answer_tokens)
    if span is None:
        # Only a context that tokenises to nothing gets here; the empty span keeps
        # answer == context[start:end].
        return {"answer": "", "start": 0, "end": 0, "score": 0.0}
    return {"answer": span.text, "start": span.start, "end": span.end, "score": span.score}


class ExtractiveQA(ServingTaskType):
    name = "extractive_qa"
    token_level = True

    def parse_input(self, item: Any) -> dict[str, str]:
        return parse_fields(item, QA_FIELDS, QA_EXAMPLE)

    def encode(
        self, tokenizer: PreTrainedTokenizerFast, rows: list[tuple[LoadedAdapter, Any]]
    ) -> tuple[list[EncodedRow], list[list[tuple[int, QAWindow]]]]:
        """Return the windows of every row, and per row its (encoded index, window) pairs."""
        plan: list[list[tuple[int, QAWindow]]] = [[] for _ in rows]
        encoded: list[EncodedRow] = []
        for options, indexes in group_rows(rows, lambda loaded, _: QAOptions.of(loaded)).items():
            windows = encode_qa_windows(
                tokenizer,
                [rows[i][1]["question"] for i in indexes],
                [rows[i][1]["context"] for i in indexes],
                max_length=options.max_length,
                stride=options.stride,
                max_question_tokens=options.max_question_tokens,
            )
            for window in windows:
                row = indexes[window.example_index]
                plan[row].append((len(encoded), window))
                encoded.append(EncodedRow(row, window.input_ids, window.token_type_ids))
        return encoded, plan

    def decode(
        self,
        rows: list[tuple[LoadedAdapter, Any]],
        encoded: list[EncodedRow],
        plan: list[list[tuple[int, QAWindow]]],
        outputs: list[torch.Tensor],
    ) -> list[dict]:
        predictions = []
        for (loaded, item), windows in zip(rows, plan, strict=True):
            predictions.append(
                answer_prediction(
                    [window for _, window in windows],
                    [outputs[index] for index, _ in windows],
                    item["context"],
                    QAOptions.of(loaded).max_answer_tokens,
                )
            )
        return predictions
