"""What every task type shares: registration, format inference, arguments, errors, overlap."""

import pickle

import pytest

from service.datasets import (
    TASK_ARGUMENTS,
    TASK_FORMATS,
    TASK_PARSERS,
    DatasetError,
    find_overlap,
    overlap_key,
    parse_dataset,
)

TASK_TYPES = [
    "text_classification",
    "sentence_pair",
    "multi_label",
    "regression",
    "token_classification",
    "extractive_qa",
]


def test_every_task_type_registered():
    assert list(TASK_PARSERS) == TASK_TYPES
    assert list(TASK_FORMATS) == TASK_TYPES
    assert list(TASK_ARGUMENTS) == TASK_TYPES


@pytest.mark.parametrize(
    ("task_type", "filename", "content", "expected"),
    [
        ("token_classification", "train.txt", "John B-PER\n", "conll"),
        ("token_classification", "train.conll", "John B-PER\n", "conll"),
        ("token_classification", "train.jsonl", '{"tokens": ["a"], "tags": ["B-X"]}\n', "jsonl"),
        (
            "extractive_qa",
            "dev.json",
            '{"data": [{"paragraphs": [{"context": "a b", '
            '"qas": [{"question": "q", "answers": [{"text": "b", "answer_start": 2}]}]}]}]}',
            "squad",
        ),
        ("multi_label", "train.tsv", "text\tlabels\na\tx\n", "tsv"),
        ("regression", "train.csv", "text,target\na,1\nb,2\n", "csv"),
    ],
)
def test_format_inferred_per_task_type(task_type, filename, content, expected):
    report = parse_dataset(content.encode("utf-8"), filename=filename, task_type=task_type)

    assert report.format == expected


@pytest.mark.parametrize(
    ("task_type", "filename", "hint"),
    [
        ("text_classification", "train.txt", "Pass format=csv|tsv|jsonl"),
        ("text_classification", "dev.json", "Pass format=csv|tsv|jsonl"),
        ("token_classification", "train.csv", "Pass format=conll|jsonl"),
        ("extractive_qa", "dev.tsv", "Pass format=squad|jsonl"),
    ],
)
def test_format_not_inferred_for_other_task_types(task_type, filename, hint):
    with pytest.raises(DatasetError, match=hint.replace("|", r"\|")) as caught:
        parse_dataset(b"x", filename=filename, task_type=task_type)

    assert caught.value.field == "format"
    assert f"for task type {task_type!r}" in str(caught.value)


def test_format_of_other_task_type_rejected():
    with pytest.raises(
        DatasetError, match="format 'conll' is not supported for task type 'text_classification'"
    ) as caught:
        parse_dataset(b"a B-X\n", filename="x.txt", task_type="text_classification", format="conll")

    assert caught.value.field == "format"


@pytest.mark.parametrize(
    ("task_type", "argument", "readers"),
    [
        ("text_classification", "text_pair_column", "sentence_pair, regression"),
        ("token_classification", "label_delimiter", "multi_label"),
        ("extractive_qa", "label_column", "text_classification, sentence_pair"),
    ],
)
def test_argument_of_other_task_type_rejected(task_type, argument, readers):
    with pytest.raises(DatasetError, match=f"{argument} is not used by task type") as caught:
        parse_dataset(
            b"text,label\na,1\n", filename="a.csv", task_type=task_type, **{argument: "x"}
        )

    assert caught.value.field == argument
    assert readers in str(caught.value)


def test_blank_arguments_ignored():
    report = parse_dataset(
        b"text,label\na,1\nb,0\n",
        filename="a.csv",
        task_type="text_classification",
        text_pair_column="",
        label_delimiter="  ",
    )

    assert report.num_rows == 2
    assert report.stats == {}


def test_error_with_record_survives_pickling():
    error = DatasetError(
        "the question is empty.",
        filename="dev.json",
        field="question",
        record="article 3, paragraph 2, question id 'q7'",
    )

    restored = pickle.loads(pickle.dumps(error))

    assert str(restored) == (
        "dev.json, article 3, paragraph 2, question id 'q7', field 'question': "
        "the question is empty."
    )
    assert restored.record == error.record
    assert restored.line is None


def test_overlap_key_per_task_type():
    assert overlap_key({"text": " A  b ", "label": "1"}) == "a b"
    assert overlap_key({"text": "A", "text_pair": "B", "label": "1"}) == "a\tb"
    assert overlap_key({"tokens": ["EU", "Rejects"], "tags": ["B-ORG", "O"]}) == "eu rejects"
    assert overlap_key({"question": "Q?", "context": "C.", "answers": []}) == "q?\tc."


def test_overlap_counts_pairs_not_first_texts():
    train = [{"text": "a", "text_pair": "b", "label": "1"}]
    eval_examples = [
        {"text": "A", "text_pair": "B ", "label": "0"},
        {"text": "a", "text_pair": "c", "label": "1"},
    ]

    assert find_overlap(train, eval_examples) == 1
