"""Evaluation metrics of the task types other than single-label classification.

Every score is a fraction in [0, 1] (correlations in [-1, 1]), like service.metrics, and not
a percentage as the SQuAD and CoNLL scripts print. A ratio whose denominator is 0 is 0.0.

- Token classification: entity-level micro precision, recall and F1 by the CoNLL rules, which
  give the same numbers as seqeval's default mode (version 1.2).
- Extractive QA: exact match and F1 of the official SQuAD v1.1 evaluation script.
- Multi-label: micro- and macro-F1 at a probability threshold.
- Regression: Pearson and Spearman correlation.
"""

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

from service.tasktypes.multi_label import DEFAULT_THRESHOLD
from service.tasktypes.tags import extract_entities

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


# Token classification


def entity_scores(
    references: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Return entity-level micro "precision", "recall" and "f1" over sentences of BIO tags.

    An entity counts as correct only when its type, first token and last token all match.
    Tags are decoded by tags.extract_entities, where an "I-" that continues no entity starts
    one, as in conlleval and seqeval's default mode.
    """
    reference_entities, predicted_entities = _entity_sets(references, predictions)
    return _precision_recall_f1(
        len(reference_entities & predicted_entities),
        len(predicted_entities),
        len(reference_entities),
    )


def entity_scores_by_type(
    references: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]
) -> dict[str, dict[str, float]]:
    """Return "precision", "recall", "f1" and "support" per entity type, types sorted.

    "support" is the number of reference entities of the type. A type that occurs only in
    the predictions is listed with support 0.
    """
    reference_entities, predicted_entities = _entity_sets(references, predictions)
    types = sorted({entity[1] for entity in reference_entities | predicted_entities})

    scores = {}
    for entity_type in types:
        reference = {entity for entity in reference_entities if entity[1] == entity_type}
        predicted = {entity for entity in predicted_entities if entity[1] == entity_type}
        scores[entity_type] = {
            **_precision_recall_f1(len(reference & predicted), len(predicted), len(reference)),
            "support": float(len(reference)),
        }
    return scores


# Extractive QA


def normalise_answer(text: str) -> str:
    """Normalise an answer as the SQuAD v1.1 script does.

    Lower-case, remove ASCII punctuation, replace the words "a", "an" and "the" with a
    space, and collapse whitespace runs to one space.
    """
    text = text.lower()
    text = "".join(char for char in text if char not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
    """Return 1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    A question with no gold answer scores 1.0 only for a prediction that normalises to "".
    """
    if not gold_answers:
        return float(normalise_answer(prediction) == "")
    return max(
        float(normalise_answer(prediction) == normalise_answer(gold)) for gold in gold_answers
    )


def squad_f1(prediction: str, gold_answers: Sequence[str]) -> float:
    """Return the best token-overlap F1 of the prediction against any gold answer.

    A question with no gold answer scores 1.0 only for a prediction that normalises to "".
    """
    if not gold_answers:
        return float(normalise_answer(prediction) == "")
    return max(_token_f1(prediction, gold) for gold in gold_answers)


def squad_scores(
    predictions: Sequence[str], gold_answers: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Return the mean "exact_match" and "f1" over questions, as fractions."""
    _check_lengths(predictions, gold_answers)
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    count = len(predictions)
    pairs = list(zip(predictions, gold_answers, strict=True))
    return {
        "exact_match": sum(squad_exact_match(p, golds) for p, golds in pairs) / count,
        "f1": sum(squad_f1(p, golds) for p, golds in pairs) / count,
    }


# Multi-label classification


def multi_label_scores(
    probabilities: Sequence[Sequence[float]],
    references: Sequence[Sequence[float]],
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, float]:
    """Return "micro_f1", "macro_f1" and "subset_accuracy" at a probability threshold.

    A label is predicted when its probability is at least the threshold. Macro-F1 is the mean
    over the labels that occur in the references or the predictions, like service.metrics'
    macro_f1. Subset accuracy is the share of examples whose predicted label set is exactly
    right.

    Args:
        probabilities: per example, one probability per label.
        references: per example, one indicator per label (1 for a gold label, else 0).
        threshold: the decision threshold, in [0, 1].
    """
    _check_lengths(probabilities, references)
    if not references:
        return {"micro_f1": 0.0, "macro_f1": 0.0, "subset_accuracy": 0.0}
    num_labels = len(references[0])

    true_positives = [0] * num_labels
    predicted = [0] * num_labels
    actual = [0] * num_labels
    exact = 0
    for scores, gold in zip(probabilities, references, strict=True):
        if len(scores) != num_labels or len(gold) != num_labels:
            raise ValueError(f"every example needs {num_labels} probabilities and indicators")
        predicted_set = {index for index, score in enumerate(scores) if score >= threshold}
        gold_set = {index for index, value in enumerate(gold) if value}
        exact += predicted_set == gold_set
        for index in predicted_set:
            predicted[index] += 1
        for index in gold_set:
            actual[index] += 1
        for index in predicted_set & gold_set:
            true_positives[index] += 1

    per_label = [
        _precision_recall_f1(true_positives[index], predicted[index], actual[index])["f1"]
        for index in range(num_labels)
        if predicted[index] or actual[index]
    ]
    micro = _precision_recall_f1(sum(true_positives), sum(predicted), sum(actual))
    return {
        "micro_f1": micro["f1"],
        "macro_f1": sum(per_label) / len(per_label) if per_label else 0.0,
        "subset_accuracy": exact / len(references),
    }


# Regression


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Return the Pearson correlation, or 0.0 when either sequence is constant or too short.

    scipy.stats.pearsonr returns NaN for a constant input. 0.0 is returned instead, so that
    a model that predicts one value everywhere ranks below any model that correlates.
    """
    _check_lengths(x, y)
    if len(x) < 2:
        return 0.0
    mean_x = sum(x) / len(x)
    mean_y = sum(y) / len(y)
    dx = [value - mean_x for value in x]
    dy = [value - mean_y for value in y]
    norm = math.sqrt(sum(d * d for d in dx) * sum(d * d for d in dy))
    if norm == 0.0:
        return 0.0
    correlation = sum(a * b for a, b in zip(dx, dy, strict=True)) / norm
    return max(-1.0, min(1.0, correlation))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Return the Spearman rank correlation: Pearson on ranks, ties given their average rank."""
    _check_lengths(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def average_ranks(values: Sequence[float]) -> list[float]:
    """Return 1-based ranks, each group of equal values getting the mean of its ranks."""
    order = sorted(range(len(values)), key=lambda index: values[index])
    ranks = [0.0] * len(values)
    group_start = 0
    while group_start < len(order):
        group_end = group_start + 1
        while group_end < len(order) and values[order[group_end]] == values[order[group_start]]:
            group_end += 1
        rank = (group_start + 1 + group_end) / 2  # mean of ranks group_start+1 .. group_end
        for position in range(group_start, group_end):
            ranks[order[position]] = rank
        group_start = group_end
    return ranks


def regression_scores(predictions: Sequence[float], targets: Sequence[float]) -> dict[str, float]:
    """Return "pearson", "spearman" and "mse" (mean squared error, in squared target units)."""
    _check_lengths(predictions, targets)
    errors = [(p - t) ** 2 for p, t in zip(predictions, targets, strict=True)]
    return {
        "pearson": pearson(predictions, targets),
        "spearman": spearman(predictions, targets),
        "mse": sum(errors) / len(errors) if errors else 0.0,
    }


def _entity_sets(
    references: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]
) -> tuple[set[tuple[int, str, int, int]], set[tuple[int, str, int, int]]]:
    """Return (sentence index, type, start, end) of every reference and predicted entity."""
    _check_lengths(predictions, references)
    reference_entities = set()
    predicted_entities = set()
    for sentence, (gold, predicted) in enumerate(zip(references, predictions, strict=True)):
        if len(gold) != len(predicted):
            raise ValueError(
                f"sentence {sentence} has {len(gold)} reference tags but {len(predicted)} "
                "predicted tags"
            )
        for entity in extract_entities(gold):
            reference_entities.add((sentence, entity.type, entity.start, entity.end))
        for entity in extract_entities(predicted):
            predicted_entities.add((sentence, entity.type, entity.start, entity.end))
    return reference_entities, predicted_entities


def _precision_recall_f1(true_positives: int, predicted: int, actual: int) -> dict[str, float]:
    # The same arithmetic as seqeval, so that the floats agree exactly: F1 from precision
    # and recall rather than from the counts.
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / actual if actual else 0.0
    denominator = precision + recall
    f1 = 2 * precision * recall / denominator if denominator else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _token_f1(prediction: str, gold: str) -> float:
    prediction_tokens = normalise_answer(prediction).split()
    gold_tokens = normalise_answer(gold).split()
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _check_lengths(first: Sequence[object], second: Sequence[object]) -> None:
    if len(first) != len(second):
        raise ValueError(f"got {len(first)} predictions for {len(second)} references")
