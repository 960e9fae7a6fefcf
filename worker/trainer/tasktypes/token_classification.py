"""Token classification (NER): one tag per word, entity-level precision, recall and F1.

A word's tag is the label of its first sub-token; every other position gets IGNORE_INDEX,
which the loss skips, so each word counts once and a step's loss is the mean over its
labelled sub-tokens. A sentence longer than max_length is split into overlapping windows of
whole words (alignment.encode_windows) and never cut, and a word inside the overlap is
labelled in every window that holds it. Evaluation decodes exactly as serving does
(predict_word_tags of the serving module) and scores entities by the CoNLL rules.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from service.serving.tasktypes.token_classification import predict_word_tags
from service.tasktypes.alignment import IGNORE_INDEX, WindowEncoding, align_labels, encode_windows
from service.tasktypes.metrics import entity_scores
from service.tasktypes.tags import OUTSIDE
from worker.trainer.tasktypes.base import Features, TrainingTaskType, labels_outside


@dataclass(frozen=True)
class SentenceWindows:
    """One example's windows and where they start among the encoded rows."""

    first_row: int
    windows: list[WindowEncoding]
    tags: list[str]  # the example's gold tag per word


class TokenClassification(TrainingTaskType):
    name = "token_classification"
    token_level = True

    @property
    def stride(self) -> int:
        stride = self.options.doc_stride
        return self.options.max_length // 4 if stride is None else stride

    def featurize(self, tokenizer: PreTrainedTokenizerFast, examples: list[dict]) -> Features:
        unknown = self.unknown_labels(examples)
        if unknown:
            raise ValueError(f"tags {unknown[:5]} are not among the task's tags {self.labels}")
        tag_index = {tag: index for index, tag in enumerate(self.labels)}
        token_ids: list[list[int]] = []
        targets: list[list[int]] = []
        units: list[float] = []
        plan: list[SentenceWindows] = []

        for example in examples:
            tag_ids = [tag_index[tag] for tag in example["tags"]]
            windows = encode_windows(
                tokenizer, example["tokens"], max_length=self.options.max_length, stride=self.stride
            )
            plan.append(SentenceWindows(len(token_ids), windows, example["tags"]))
            for window in windows:
                labels = align_labels(window.word_ids, tag_ids)
                token_ids.append(window.input_ids)
                targets.append(labels)
                units.append(float(sum(label != IGNORE_INDEX for label in labels)))
        return Features(token_ids, None, targets, units, plan)

    def loss_sum(
        self, outputs: torch.Tensor, targets: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        return F.cross_entropy(
            outputs.float().flatten(0, 1),
            targets.flatten(),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )

    def compute_metrics(self, features: Features, outputs: list[torch.Tensor]) -> dict[str, float]:
        references = []
        predictions = []
        for sentence in features.plan:
            rows = outputs[sentence.first_row : sentence.first_row + len(sentence.windows)]
            words = predict_word_tags(sentence.windows, rows, len(sentence.tags))
            predictions.append([OUTSIDE if w is None else self.labels[w[0]] for w in words])
            references.append(sentence.tags)
        scores = entity_scores(references, predictions)
        return {f"entity_{name}": value for name, value in scores.items()}

    def serving_input(self, example: dict) -> str | dict:
        return {"tokens": example["tokens"]}

    def prediction_metrics(self, examples: list[dict], predictions: list[dict]) -> dict[str, float]:
        scores = entity_scores([e["tags"] for e in examples], [p["tags"] for p in predictions])
        return {f"entity_{name}": value for name, value in scores.items()}

    def delta_extra(self) -> dict[str, str]:
        return {"doc_stride": str(self.stride)}

    def unknown_labels(self, examples: list[dict]) -> list[str]:
        return labels_outside({tag for e in examples for tag in e["tags"]}, self.labels)
