"""Multi-label classification: label sets as indicator vectors, and the decision rule.

A multi-label model scores every label independently with a sigmoid. A label is predicted
when its probability is at least the threshold, so a text may get no label at all.
"""

from collections.abc import Sequence

DEFAULT_THRESHOLD = 0.5


def encode_label_set(example_labels: Sequence[str], labels: Sequence[str]) -> list[float]:
    """Return the target vector of one example: 1.0 for each of its labels, else 0.0.

    Raises:
        ValueError: an example label is not in `labels`.
    """
    index = {label: position for position, label in enumerate(labels)}
    vector = [0.0] * len(labels)
    for label in example_labels:
        if label not in index:
            raise ValueError(f"label {label!r} is not one of the task's labels")
        vector[index[label]] = 1.0
    return vector


def select_labels(
    probabilities: Sequence[float], threshold: float = DEFAULT_THRESHOLD
) -> list[int]:
    """Return the indexes of the labels whose probability is at least the threshold."""
    return [index for index, probability in enumerate(probabilities) if probability >= threshold]
