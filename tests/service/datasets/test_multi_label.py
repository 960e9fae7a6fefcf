"""Validation, normalisation and warnings of the multi_label task type."""

import pytest

from service.datasets import DatasetError, parse_dataset


def parse(content: str, filename: str = "topics.csv", **options):
    return parse_dataset(
        content.encode("utf-8"), filename=filename, task_type="multi_label", **options
    )


def frequent_rows(labels: str, count: int = 5) -> str:
    return "".join(f"filler {labels} {i},{labels}\n" for i in range(count))


def test_delimited_labels_split_and_sorted():
    content = "text,labels\nvote count, politics | sports|politics \nrain,\n" + frequent_rows(
        "sports|politics"
    )

    report = parse(content)

    assert report.examples[0] == {"text": "vote count", "labels": ["politics", "sports"]}
    assert report.examples[1] == {"text": "rain", "labels": []}
    assert report.labels == ["politics", "sports"]
    assert report.label_counts == {"politics": 6, "sports": 6}


def test_label_delimiter_option():
    content = "text\ttags\na\tx;y\nb\ty\n"

    report = parse(content, filename="topics.tsv", label_delimiter=";")

    assert report.examples == [{"text": "a", "labels": ["x", "y"]}, {"text": "b", "labels": ["y"]}]


def test_jsonl_label_lists():
    content = (
        '{"text": "a", "labels": ["x", 3, true, "x"]}\n'
        '{"text": "b", "labels": []}\n'
        '{"text": "c", "labels": "y|x"}\n'
    )

    report = parse(content, filename="topics.jsonl")

    assert report.labels == ["3", "true", "x", "y"]
    assert report.examples[0]["labels"] == ["3", "true", "x"]
    assert report.examples[1]["labels"] == []
    assert report.examples[2]["labels"] == ["x", "y"]
    assert report.label_counts == {"3": 1, "true": 1, "x": 2, "y": 1}


def test_rare_labels_and_unlabelled_rows_warned():
    content = "text,labels\nno topic,\nrare one,a|b\nrare two,b\n" + frequent_rows("c")

    report = parse(content)

    assert report.warnings == [
        "1 of 8 rows (12.5%) have no label. They are kept, and teach the model that none of "
        "the labels applies.",
        "2 of 3 labels occur in fewer than 5 rows: 'a' (1), 'b' (2). The model can hardly "
        "learn a label from so few examples, so add examples or remove these labels.",
    ]


def test_jsonl_null_labels_rejected():
    content = '{"text": "a", "labels": ["x"]}\n{"text": "b", "labels": null}\n'

    with pytest.raises(DatasetError, match=r"the labels are null. Use \[\]") as caught:
        parse(content, filename="topics.jsonl")

    assert caught.value.line == 2
    assert caught.value.field == "labels"


def test_jsonl_label_item_invalid_names_index():
    content = '{"text": "a", "labels": ["x", " "]}\n'

    with pytest.raises(DatasetError, match="the label is empty") as caught:
        parse(content, filename="topics.jsonl")

    assert caught.value.line == 1
    assert caught.value.field == "labels[1]"


def test_jsonl_labels_wrong_type_rejected():
    with pytest.raises(DatasetError, match="must be a JSON array or a string") as caught:
        parse('{"text": "a", "labels": {"x": 1}}\n', filename="topics.jsonl")

    assert caught.value.field == "labels"


def test_no_label_anywhere_rejected():
    with pytest.raises(DatasetError, match="no row has a label") as caught:
        parse("text,labels\na,\nb, | \n")

    assert caught.value.line is None
    assert caught.value.field == "labels"


def test_blank_label_delimiter_uses_default():
    report = parse("text,labels\na,x|y\n", label_delimiter="")

    assert report.examples[0]["labels"] == ["x", "y"]


def test_empty_text_names_line_and_field():
    with pytest.raises(DatasetError, match="the text is empty") as caught:
        parse("text,labels\na,x\n  ,y\n")

    assert caught.value.line == 3
    assert caught.value.field == "text"
