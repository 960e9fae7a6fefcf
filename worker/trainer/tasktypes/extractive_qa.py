"""Extractive QA: start and end logits per token, exact match and F1 by the SQuAD rules.

A context longer than one window is split into windows that share doc_stride tokens
(qa.encode_qa_windows). A window that holds the whole of the example's first answer is
labelled with the answer's first and last token; any other window, and every window of a
question without an answer, with the [CLS] position. The loss is the mean of the start and
end cross-entropies, over the window's real tokens only.

Evaluation runs every window, takes the best span over all windows of a question as serving
does (answer_prediction of the serving module), and scores it against every gold answer
with the official SQuAD v1.1 normalisation.
"""

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from service.serving.tasktypes.extractive_qa import answer_prediction
from service.tasktypes.metrics import squad_scores
from service.tasktypes.qa import (
    DEFAULT_MAX_ANSWER_TOKENS,
    DEFAULT_MAX_QUESTION_TOKENS,
    DEFAULT_STRIDE,
    QAWindow,
    answer_token_positions,
    encode_qa_windows,
)
from worker.trainer.tasktypes.base import Features, TrainingTaskType, random_split


@dataclass(frozen=True)
class QuestionWindows:
    """One question's windows, where they start among the encoded rows, and its gold answers."""

    first_row: int
    windows: list[QAWindow]
    context: str
    answers: list[str]


class ExtractiveQA(TrainingTaskType):
    name = "extractive_qa"
    token_level = True

    @property
    def num_outputs(self) -> int:
        return 2  # a start and an end logit per token

    @property
    def stride(self) -> int:
        return DEFAULT_STRIDE if self.options.doc_stride is None else self.options.doc_stride

    @property
    def max_question_tokens(self) -> int:
        tokens = self.options.max_question_tokens
        return DEFAULT_MAX_QUESTION_TOKENS if tokens is None else tokens

    @property
    def max_answer_tokens(self) -> int:
        tokens = self.options.max_answer_tokens
        return DEFAULT_MAX_ANSWER_TOKENS if tokens is None else tokens

    def featurize(self, tokenizer: PreTrainedTokenizerFast, examples: list[dict]) -> Features:
        windows = encode_qa_windows(
            tokenizer,
            [e["question"] for e in examples],
            [e["context"] for e in examples],
            max_length=self.options.max_length,
            stride=self.stride,
            max_question_tokens=self.max_question_tokens,
        )

        positions = []
        by_example: list[list[QAWindow]] = [[] for _ in examples]
        first_row = [0] * len(examples)
        for row, window in enumerate(windows):
            example = examples[window.example_index]
            if not by_example[window.example_index]:
                first_row[window.example_index] = row
            by_example[window.example_index].append(window)
            positions.append(self._answer_positions(window, example))

        plan = [
            QuestionWindows(
                first_row[index],
                by_example[index],
                example["context"],
                [answer["text"] for answer in example["answers"]],
            )
            for index, example in enumerate(examples)
        ]
        token_type_ids = [window.token_type_ids for window in windows]
        return Features(
            token_ids=[window.input_ids for window in windows],
            token_type_ids=token_type_ids if all(token_type_ids) else None,  # type: ignore[arg-type]
            targets=torch.tensor(positions, dtype=torch.long).reshape(-1, 2),
            units=[1.0] * len(windows),
            plan=plan,
        )

    @staticmethod
    def _answer_positions(window: QAWindow, example: dict) -> tuple[int, int]:
        if not example["answers"]:
            return window.cls_index, window.cls_index
        answer = example["answers"][0]  # SQuAD's training set has one answer per question
        start = answer["answer_start"]
        return answer_token_positions(window, start, start + len(answer["text"]))

    def loss_sum(
        self, outputs: torch.Tensor, targets: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        assert attention_mask is not None, "QA outputs are per token"
        # Padding is not a position the answer can be at, so it takes no probability.
        logits = outputs.float().masked_fill(~attention_mask.bool().unsqueeze(-1), -1e4)
        start_loss = F.cross_entropy(logits[..., 0], targets[:, 0], reduction="sum")
        end_loss = F.cross_entropy(logits[..., 1], targets[:, 1], reduction="sum")
        return (start_loss + end_loss) / 2

    def compute_metrics(self, features: Features, outputs: list[torch.Tensor]) -> dict[str, float]:
        predictions = []
        gold_answers = []
        for question in features.plan:
            rows = outputs[question.first_row : question.first_row + len(question.windows)]
            prediction = answer_prediction(
                question.windows, rows, question.context, self.max_answer_tokens
            )
            predictions.append(prediction["answer"])
            gold_answers.append(question.answers)
        return squad_scores(predictions, gold_answers)

    def serving_input(self, example: dict) -> str | dict:
        return {"question": example["question"], "context": example["context"]}

    def prediction_metrics(self, examples: list[dict], predictions: list[dict]) -> dict[str, float]:
        gold = [[answer["text"] for answer in e["answers"]] for e in examples]
        return squad_scores([p["answer"] for p in predictions], gold)

    def delta_extra(self) -> dict[str, str]:
        return {
            "doc_stride": str(self.stride),
            "max_question_tokens": str(self.max_question_tokens),
            "max_answer_tokens": str(self.max_answer_tokens),
        }

    def split(
        self, examples: list[dict], fraction: float, seed: int
    ) -> tuple[list[int], list[int]]:
        """Hold out whole articles, so that no paragraph is on both sides.

        Without two distinct titles, whole contexts are held out instead, and without two
        distinct contexts, questions at random.
        """
        titles = [e.get("title") or "" for e in examples]
        contexts = [e["context"] for e in examples]
        for groups in (titles, contexts):
            if len(set(groups)) >= 2:
                return group_split(groups, fraction, seed)
        return random_split(len(examples), fraction, seed)


def group_split(groups: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Return sorted (train, held-out) indexes, holding out whole groups of rows.

    Groups are taken in a seeded random order until about `fraction` of the rows are held
    out. With two or more groups, at least one group lands on each side.
    """
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    names = sorted(members)
    random.Random(seed).shuffle(names)

    wanted = round(len(groups) * fraction)
    held: list[int] = []
    for name in names[:-1]:  # the last group always stays on the training side
        if held and len(held) >= wanted:
            break
        held.extend(members[name])
    held_set = set(held)
    train = [index for index in range(len(groups)) if index not in held_set]
    return train, sorted(held)
