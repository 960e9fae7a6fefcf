"""Evaluation metrics shared by the trainer and the benchmarks."""

from collections.abc import Sequence


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Return the share of positions where prediction and reference agree."""
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions for {len(references)} references.")
    if not references:
        return 0.0
    return sum(p == r for p, r in zip(predictions, references, strict=True)) / len(references)


def macro_f1(predictions: Sequence[int], references: Sequence[int], num_labels: int) -> float:
    """Return the unweighted mean of per-class F1 over classes seen in either sequence."""
    scores = []
    for label in range(num_labels):
        true_positive = sum(
            p == label and r == label for p, r in zip(predictions, references, strict=True)
        )
        predicted = sum(p == label for p in predictions)
        actual = sum(r == label for r in references)
        if predicted == 0 and actual == 0:
            continue
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        total = precision + recall
        scores.append(2 * precision * recall / total if total else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def classification_metrics(
    predictions: Sequence[int], references: Sequence[int], num_labels: int
) -> dict[str, float]:
    return {
        "accuracy": accuracy(predictions, references),
        "macro_f1": macro_f1(predictions, references, num_labels),
    }
