"""Single-label classification of a text (text_classification) or of a pair (sentence_pair).

The head maps the pooled row to one logit per label and the loss is cross-entropy. Metrics
are accuracy and macro-F1, and for a pair task with two labels also "f1", the F1 of the
second label in the dataset's label order, which is "1" for 0/1 labels as in GLUE's MRPC.
"""

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from service.metrics import classification_metrics
from service.tasktypes.encoding import encode_texts
from worker.trainer.data import stratified_split
from worker.trainer.tasktypes.base import Features, TrainingTaskType, labels_outside


class TextClassification(TrainingTaskType):
    name = "text_classification"
    # The example key of the second text, for pair task types.
    pair_key: str | None = None

    def featurize(self, tokenizer: PreTrainedTokenizerFast, examples: list[dict]) -> Features:
        label_index = {label: index for index, label in enumerate(self.labels)}
        pairs = [e[self.pair_key] for e in examples] if self.pair_key else None
        token_ids, token_type_ids = encode_texts(
            tokenizer, [e["text"] for e in examples], pairs, max_length=self.options.max_length
        )
        return Features(
            token_ids=token_ids,
            token_type_ids=token_type_ids,
            targets=torch.tensor([label_index[e["label"]] for e in examples], dtype=torch.long),
            units=[1.0] * len(examples),
        )

    def loss_sum(
        self, outputs: torch.Tensor, targets: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets, reduction="sum")

    def compute_metrics(self, features: Features, outputs: list[torch.Tensor]) -> dict[str, float]:
        assert isinstance(features.targets, torch.Tensor)
        predictions = [int(output.argmax()) for output in outputs]
        references = features.targets.tolist()
        metrics = classification_metrics(predictions, references, len(self.labels))
        if self.pair_key and len(self.labels) == 2:
            metrics["f1"] = positive_f1(predictions, references, positive=1)
        return metrics

    def serving_input(self, example: dict) -> str | dict:
        if self.pair_key:
            return {"text": example["text"], "text_pair": example[self.pair_key]}
        return example["text"]

    def prediction_metrics(self, examples: list[dict], predictions: list[dict]) -> dict[str, float]:
        index = {label: position for position, label in enumerate(self.labels)}
        predicted = [index[p["label"]] for p in predictions]
        references = [index.get(e["label"], -1) for e in examples]
        metrics = classification_metrics(predicted, references, len(self.labels))
        if self.pair_key and len(self.labels) == 2:
            metrics["f1"] = positive_f1(predicted, references, positive=1)
        return metrics

    def split(
        self, examples: list[dict], fraction: float, seed: int
    ) -> tuple[list[int], list[int]]:
        """Hold out `fraction` of each label, so that no label disappears from either side."""
        return stratified_split([e["label"] for e in examples], fraction, seed)

    def unknown_labels(self, examples: list[dict]) -> list[str]:
        return labels_outside({e["label"] for e in examples}, self.labels)


class SentencePair(TextClassification):
    name = "sentence_pair"
    pair_key = "text_pair"


def positive_f1(predictions: list[int], references: list[int], positive: int) -> float:
    """Return the F1 of class `positive`: the usual binary F1 when it is the positive class."""
    true_positives = sum(p == r == positive for p, r in zip(predictions, references, strict=True))
    predicted = sum(p == positive for p in predictions)
    actual = sum(r == positive for r in references)
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / actual if actual else 0.0
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0
