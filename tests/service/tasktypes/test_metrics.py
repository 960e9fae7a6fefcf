"""Entity-level F1 (against seqeval), SQuAD scores, multi-label F1 and correlations."""

import math
import random

import pytest

from service.tasktypes.metrics import (
    average_ranks,
    entity_scores,
    entity_scores_by_type,
    multi_label_scores,
    normalise_answer,
    pearson,
    regression_scores,
    spearman,
    squad_exact_match,
    squad_f1,
    squad_scores,
)

TAGS = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def random_sentences(generator: random.Random, count: int) -> list[list[str]]:
    # Includes malformed sequences: "I-" after "O" or after another type.
    return [[generator.choice(TAGS) for _ in range(generator.randint(1, 12))] for _ in range(count)]


def mutate(generator: random.Random, sentences: list[list[str]]) -> list[list[str]]:
    return [
        [generator.choice(TAGS) if generator.random() < 0.3 else tag for tag in sentence]
        for sentence in sentences
    ]


# Token classification


def test_entity_scores_hand_checked():
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predictions = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]

    scores = entity_scores(references, predictions)

    # 2 of 4 predicted entities are right, and 2 of 3 reference entities were found.
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_entity_boundaries_must_match_exactly():
    scores = entity_scores([["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-PER", "O"]])

    assert scores == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_entity_scores_by_type_support():
    scores = entity_scores_by_type(
        [["B-PER", "O", "B-LOC"], ["B-PER"]], [["B-PER", "O", "O"], ["B-MISC"]]
    )

    assert list(scores) == ["LOC", "MISC", "PER"]
    assert scores["PER"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2.0,
    }
    assert scores["LOC"]["recall"] == 0.0
    assert scores["MISC"]["support"] == 0.0


def test_entity_scores_length_mismatch_rejected():
    with pytest.raises(ValueError, match="sentence 0 has 2 reference tags but 1 predicted"):
        entity_scores([["O", "O"]], [["O"]])


def test_entity_scores_agree_with_seqeval():
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    generator = random.Random(2024)

    for _ in range(200):
        references = random_sentences(generator, generator.randint(1, 8))
        predictions = mutate(generator, references)

        scores = entity_scores(references, predictions)

        # zero_division=0 is the value of seqeval's default ("warn"), without the warning.
        options = {"zero_division": 0}
        expected_precision = seqeval_metrics.precision_score(references, predictions, **options)
        assert scores["precision"] == expected_precision
        assert scores["recall"] == seqeval_metrics.recall_score(references, predictions, **options)
        assert scores["f1"] == seqeval_metrics.f1_score(references, predictions, **options)


def test_entity_scores_by_type_agree_with_seqeval():
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    generator = random.Random(99)

    for _ in range(50):
        references = random_sentences(generator, 10)
        predictions = mutate(generator, references)

        ours = entity_scores_by_type(references, predictions)
        report = seqeval_metrics.classification_report(
            references, predictions, output_dict=True, zero_division=0
        )

        for entity_type, scores in ours.items():
            expected = report[entity_type]
            assert scores["precision"] == expected["precision"]
            assert scores["recall"] == expected["recall"]
            assert scores["f1"] == expected["f1-score"]
            assert scores["support"] == expected["support"]


# Extractive QA


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Denver Broncos", "denver broncos"),
        ("  a  cat, an owl; the END.  ", "cat owl end"),
        ("Another theory", "another theory"),
        ("1,000 (approx.)", "1000 approx"),
        ("Café «déjà»", "café «déjà»"),  # only ASCII punctuation is removed
    ],
)
def test_squad_normalisation(text, expected):
    assert normalise_answer(text) == expected


def test_squad_exact_match_any_gold():
    assert squad_exact_match("Denver Broncos!", ["the Denver Broncos"]) == 1.0
    assert squad_exact_match("Broncos", ["Denver Broncos", "broncos"]) == 1.0
    assert squad_exact_match("Denver", ["Denver Broncos"]) == 0.0


def test_squad_f1_token_overlap():
    # prediction {denver, broncos, won}, gold {denver, broncos}: P = 2/3, R = 1.
    assert squad_f1("Denver Broncos won", ["the Denver Broncos"]) == pytest.approx(0.8)
    # The best gold counts: "Santa Clara" against the second one is exact.
    assert (
        squad_f1("Santa Clara", ["Levi's Stadium", "Santa Clara, California", "Santa Clara"]) == 1.0
    )
    assert squad_f1("nothing shared", ["Denver"]) == 0.0
    # Repeated tokens count only as often as they occur in both.
    assert squad_f1("the the cat cat cat", ["cat"]) == pytest.approx(0.5)


def test_squad_no_gold_answer_needs_empty_prediction():
    assert squad_exact_match("", []) == 1.0
    assert squad_f1("The.", []) == 1.0
    assert squad_f1("Denver", []) == 0.0


def test_squad_scores_mean_over_questions():
    scores = squad_scores(
        ["Denver Broncos", "Denver Broncos won", "Paris"],
        [["Denver Broncos"], ["the Denver Broncos"], ["London"]],
    )

    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((1.0 + 0.8 + 0.0) / 3)
    assert squad_scores([], []) == {"exact_match": 0.0, "f1": 0.0}


# Multi-label


def test_multi_label_scores_at_threshold():
    probabilities = [[0.9, 0.2, 0.6], [0.1, 0.7, 0.5], [0.4, 0.4, 0.1]]
    references = [[1, 0, 0], [0, 1, 1], [0, 0, 0]]

    scores = multi_label_scores(probabilities, references)

    # Predicted {0, 2}, {1, 2}, {}: label 0 TP 1; label 1 TP 1; label 2 TP 1, FP 1.
    assert scores["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 0))
    assert scores["macro_f1"] == pytest.approx((1.0 + 1.0 + 2 / 3) / 3)
    assert scores["subset_accuracy"] == pytest.approx(2 / 3)


def test_multi_label_threshold_changes_predictions():
    probabilities = [[0.9, 0.2, 0.6], [0.1, 0.7, 0.5], [0.4, 0.4, 0.1]]
    references = [[1, 0, 0], [0, 1, 1], [0, 0, 0]]

    strict = multi_label_scores(probabilities, references, threshold=0.65)
    loose = multi_label_scores(probabilities, references, threshold=0.3)

    # 0.65: predicted {0}, {1}, {}, so TP 2 and FN 1. 0.3: {0, 2}, {1, 2}, {0, 1}, so TP 3, FP 3.
    assert strict["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))
    assert strict["subset_accuracy"] == pytest.approx(2 / 3)
    assert loose["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 3 + 0))
    assert loose["subset_accuracy"] == pytest.approx(1 / 3)


def test_multi_label_macro_skips_absent_labels():
    scores = multi_label_scores([[0.9, 0.1]], [[1, 0]])

    assert scores["macro_f1"] == 1.0


def test_multi_label_wrong_width_rejected():
    with pytest.raises(ValueError, match="every example needs 2"):
        multi_label_scores([[0.9, 0.1], [0.5]], [[1, 0], [0, 1]])


# Regression


def test_average_ranks_ties():
    assert average_ranks([10.0, 20.0, 20.0, 5.0, 20.0]) == [2.0, 4.0, 4.0, 1.0, 4.0]
    assert average_ranks([]) == []


def test_correlations_hand_checked():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # Ranks x = 1, 2.5, 2.5, 4 and y = 1, 3, 2, 4: covariance 4.5 over sqrt(4.5 * 5).
    assert spearman([1, 2, 2, 3], [10, 30, 20, 40]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    # Monotone but not linear: Spearman 1, Pearson below 1.
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [1, 8, 27, 64]) < 0.99


def test_correlations_constant_input_zero():
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0
    assert spearman([1, 2, 3], [5, 5, 5]) == 0.0
    assert pearson([1], [2]) == 0.0


def test_correlations_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    generator = random.Random(11)

    for _ in range(50):
        size = generator.randint(3, 40)
        # Rounded values, so that ties are common.
        x = [round(generator.gauss(0, 1), 1) for _ in range(size)]
        y = [round(value + generator.gauss(0, 1), 1) for value in x]
        if len(set(x)) < 2 or len(set(y)) < 2:
            continue

        assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_regression_scores_include_mse():
    scores = regression_scores([1.0, 2.0, 4.0], [1.0, 3.0, 3.0])

    assert scores["mse"] == pytest.approx(2 / 3)
    assert scores["pearson"] == pytest.approx(pearson([1.0, 2.0, 4.0], [1.0, 3.0, 3.0]))
    assert set(scores) == {"pearson", "spearman", "mse"}
