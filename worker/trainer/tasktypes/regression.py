"""Regression: one real value per text or pair, mean squared error, Pearson and Spearman.

The head learns the standardised target (t - mean) / std, with the mean and standard
deviation of the training set, so the loss and the learning rates do not depend on the
target's units. Metrics and predictions are in the target's own units.
"""

import math

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from service.tasktypes.encoding import encode_texts
from service.tasktypes.metrics import regression_scores
from worker.trainer.tasktypes.base import Features, TrainingTaskType


class Regression(TrainingTaskType):
    name = "regression"

    def __init__(self, labels, options) -> None:
        super().__init__(labels, options)
        self.mean = 0.0
        self.std = 1.0
        self.pairs = False

    @property
    def num_outputs(self) -> int:
        return 1

    def fit(self, train_examples: list[dict]) -> None:
        targets = [float(e["target"]) for e in train_examples]
        self.mean = sum(targets) / len(targets) if targets else 0.0
        variance = sum((t - self.mean) ** 2 for t in targets) / len(targets) if targets else 0.0
        # A constant target has nothing to scale; keep the values as they are.
        self.std = math.sqrt(variance) or 1.0
        self.pairs = bool(train_examples) and "text_pair" in train_examples[0]

    def featurize(self, tokenizer: PreTrainedTokenizerFast, examples: list[dict]) -> Features:
        if any(("text_pair" in e) != self.pairs for e in examples):
            expected = "text pairs" if self.pairs else "single texts"
            raise ValueError(
                f"the training dataset has {expected}, so every eval example needs the same; "
                "upload both with or both without text_pair_column"
            )
        pairs = [e["text_pair"] for e in examples] if self.pairs else None
        token_ids, token_type_ids = encode_texts(
            tokenizer, [e["text"] for e in examples], pairs, max_length=self.options.max_length
        )
        standardised = [(float(e["target"]) - self.mean) / self.std for e in examples]
        return Features(
            token_ids=token_ids,
            token_type_ids=token_type_ids,
            targets=torch.tensor(standardised, dtype=torch.float32),
            units=[1.0] * len(examples),
            plan=[float(e["target"]) for e in examples],
        )

    def loss_sum(
        self, outputs: torch.Tensor, targets: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        return F.mse_loss(outputs.float().squeeze(-1), targets, reduction="sum")

    def compute_metrics(self, features: Features, outputs: list[torch.Tensor]) -> dict[str, float]:
        predictions = [float(output[0]) * self.std + self.mean for output in outputs]
        return regression_scores(predictions, features.plan)

    def serving_input(self, example: dict) -> str | dict:
        if "text_pair" in example:
            return {"text": example["text"], "text_pair": example["text_pair"]}
        return example["text"]

    def prediction_metrics(self, examples: list[dict], predictions: list[dict]) -> dict[str, float]:
        return regression_scores(
            [p["value"] for p in predictions], [float(e["target"]) for e in examples]
        )

    def delta_extra(self) -> dict[str, str]:
        return {
            "target_mean": repr(self.mean),
            "target_std": repr(self.std),
            "text_pair": "true" if self.pairs else "false",
        }
