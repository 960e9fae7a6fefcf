"""Validation, normalisation and statistics of the regression task type."""

import pytest

from service.datasets import DatasetError, parse_dataset


def parse(content: str, filename: str = "scores.csv", **options):
    return parse_dataset(
        content.encode("utf-8"), filename=filename, task_type="regression", **options
    )


def test_targets_read_as_floats_with_stats():
    report = parse("text,score\ngreat,4.5\nbad,-1\nfine, 2e0 \n")

    assert report.task_type == "regression"
    assert report.examples == [
        {"text": "great", "target": 4.5},
        {"text": "bad", "target": -1.0},
        {"text": "fine", "target": 2.0},
    ]
    assert report.labels == []
    assert report.label_counts == {}
    assert report.stats["min"] == -1.0
    assert report.stats["max"] == 4.5
    assert report.stats["mean"] == pytest.approx(5.5 / 3)
    assert report.stats["std"] == pytest.approx(2.2484562, rel=1e-6)


def test_pairs_when_text_pair_column_given():
    content = "sentence1\tsentence2\tsimilarity\nA man sings.\tA man is singing.\t4.8\na\tb\t0.2\n"

    report = parse(
        content,
        filename="sts.tsv",
        text_column="sentence1",
        text_pair_column="sentence2",
        label_column="similarity",
    )

    assert report.examples[0] == {
        "text": "A man sings.",
        "text_pair": "A man is singing.",
        "target": 4.8,
    }


def test_jsonl_numbers_and_numeric_strings():
    content = '{"text": "a", "target": 3}\n{"text": "b", "target": "0.25"}\n'

    report = parse(content, filename="scores.jsonl")

    assert [example["target"] for example in report.examples] == [3.0, 0.25]


def test_headerless_target_is_numeric_column():
    report = parse("0.5,some text\n1.5,other text\n")

    assert report.examples == [
        {"text": "some text", "target": 0.5},
        {"text": "other text", "target": 1.5},
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "the target 'abc' is not a number"),
        ("3,5", "is not a number. Write it as a decimal number with a dot"),
        ("nan", "the target 'nan' is not a number"),
        ("inf", "the target 'inf' is not a number"),
        ("1e999", "the target is inf, but it must be a finite number"),
        ("", "the target is empty"),
    ],
)
def test_invalid_target_names_line_and_field(value, message):
    content = f'text,score\ngood,1\nbad,"{value}"\n'

    with pytest.raises(DatasetError, match=message) as caught:
        parse(content)

    assert caught.value.line == 3
    assert caught.value.field == "score"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("NaN", "the target is nan, but it must be a finite number"),
        ("-Infinity", "the target is -inf, but it must be a finite number"),
        ("true", "the target must be a number, but found a JSON boolean"),
        ("null", "the target is null"),
        ("[1]", "the target must be a number, but found a JSON array"),
    ],
)
def test_invalid_jsonl_target_rejected(value, message):
    content = '{"text": "a", "target": 1}\n' + f'{{"text": "b", "target": {value}}}\n'

    with pytest.raises(DatasetError, match=message) as caught:
        parse(content, filename="scores.jsonl")

    assert caught.value.line == 2
    assert caught.value.field == "target"


def test_constant_target_rejected():
    with pytest.raises(DatasetError, match="every target is 2, but regression needs") as caught:
        parse("text,score\na,2\nb,2.0\n")

    assert caught.value.field == "score"


def test_text_pair_column_for_single_text_file_rejected():
    with pytest.raises(
        DatasetError, match=r"each row needs 3 \(text, text_pair, target\)"
    ) as caught:
        parse("text,score\na,1\nb,2\n", text_pair_column="other")

    assert caught.value.line == 1


def test_text_pair_column_not_in_header_rejected():
    with pytest.raises(DatasetError, match="column 'other' was not found") as caught:
        parse("text,extra,score\na,x,1\nb,y,2\n", text_pair_column="other")

    assert caught.value.line == 1
    assert caught.value.field == "other"
