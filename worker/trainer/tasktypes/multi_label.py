"""Multi-label classification: one sigmoid per label, binary cross-entropy, F1 at a threshold."""

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from service.tasktypes.encoding import encode_texts
from service.tasktypes.metrics import multi_label_scores
from service.tasktypes.multi_label import DEFAULT_THRESHOLD, encode_label_set
from worker.trainer.tasktypes.base import Features, TrainingTaskType, labels_outside


class MultiLabel(TrainingTaskType):
    name = "multi_label"

    @property
    def threshold(self) -> float:
        threshold = self.options.threshold
        return DEFAULT_THRESHOLD if threshold is None else threshold

    def featurize(self, tokenizer: PreTrainedTokenizerFast, examples: list[dict]) -> Features:
        token_ids, _ = encode_texts(
            tokenizer, [e["text"] for e in examples], max_length=self.options.max_length
        )
        targets = [encode_label_set(e["labels"], self.labels) for e in examples]
        return Features(
            token_ids=token_ids,
            token_type_ids=None,
            targets=torch.tensor(targets, dtype=torch.float32).reshape(-1, len(self.labels)),
            units=[1.0] * len(examples),
        )

    def loss_sum(
        self, outputs: torch.Tensor, targets: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        # The mean over labels of each row, summed over rows: a step's loss is then the
        # mean over all its (row, label) pairs, as with torch's BCEWithLogitsLoss.
        losses = F.binary_cross_entropy_with_logits(outputs.float(), targets, reduction="sum")
        return losses / len(self.labels)

    def compute_metrics(self, features: Features, outputs: list[torch.Tensor]) -> dict[str, float]:
        assert isinstance(features.targets, torch.Tensor)
        probabilities = [output.float().sigmoid().tolist() for output in outputs]
        return multi_label_scores(probabilities, features.targets.tolist(), self.threshold)

    def serving_input(self, example: dict) -> str | dict:
        return example["text"]

    def prediction_metrics(self, examples: list[dict], predictions: list[dict]) -> dict[str, float]:
        # Labels the model lacks are scored over too, with probability 0.
        labels = self.labels + self.unknown_labels(examples)
        probabilities = [[p["scores"].get(label, 0.0) for label in labels] for p in predictions]
        references = [encode_label_set(e["labels"], labels) for e in examples]
        return multi_label_scores(probabilities, references, self.threshold)

    def delta_extra(self) -> dict[str, str]:
        return {"threshold": repr(self.threshold)}

    def unknown_labels(self, examples: list[dict]) -> list[str]:
        return labels_outside({label for e in examples for label in e["labels"]}, self.labels)
