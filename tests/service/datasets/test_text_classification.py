"""Validation, normalisation and warnings of the text_classification task type."""

import logging

import pytest

from service.datasets import DatasetError, UnsupportedTaskType, parse_dataset


def parse(content: str, filename: str = "train.csv", **options):
    return parse_dataset(
        content.encode("utf-8"), filename=filename, task_type="text_classification", **options
    )


def count_words_plus_special(texts: list[str]) -> list[int]:
    # Stands in for a tokenizer: one token per word plus [CLS] and [SEP].
    return [len(text.split()) + 2 for text in texts]


# Report contents


def test_report_fields_for_valid_file():
    report = parse("text,label\ngood film,pos\nbad film,neg\nfine film,pos\n")

    assert report.task_type == "text_classification"
    assert report.format == "csv"
    assert report.examples == [
        {"text": "good film", "label": "pos"},
        {"text": "bad film", "label": "neg"},
        {"text": "fine film", "label": "pos"},
    ]
    assert report.labels == ["neg", "pos"]
    assert report.label_counts == {"neg": 1, "pos": 2}
    assert report.warnings == []
    assert report.num_rows == 3


def test_text_stripped_but_otherwise_kept():
    report = parse('text,label\n"  two  spaces,  Case ",1\n\tx ,0\n')

    assert [example["text"] for example in report.examples] == ["two  spaces,  Case", "x"]


def test_label_stripped():
    report = parse("text,label\ngood, pos \nbad,neg\n")

    assert report.labels == ["neg", "pos"]


def test_labels_sorted_numerically():
    content = "text,label\n" + "".join(
        f"t{label},{label}\n" for label in ["10", "2", "1", "-1", "1.5"]
    )

    report = parse(content)

    assert report.labels == ["-1", "1", "1.5", "2", "10"]
    assert list(report.label_counts) == report.labels


def test_labels_numbers_before_names():
    report = parse("text,label\na,b\nc,10\nd,A\ne,9\n")

    assert report.labels == ["9", "10", "A", "b"]


# Rejections


def test_unknown_task_type_rejected():
    with pytest.raises(UnsupportedTaskType, match="task type 'ner' is not supported") as caught:
        parse_dataset(b"text,label\na,1\n", filename="train.csv", task_type="ner")

    assert "text_classification" in str(caught.value)
    assert caught.value.field == "task_type"
    assert caught.value.line is None


def test_empty_text_names_line_and_field():
    with pytest.raises(DatasetError, match="the text is empty") as caught:
        parse("sentence\tlabel\ngood\t1\n   \t0\n", filename="train.tsv")

    assert caught.value.line == 3
    assert caught.value.field == "sentence"
    assert str(caught.value).startswith("train.tsv, line 3, field 'sentence': ")


def test_empty_label_names_line_and_field():
    with pytest.raises(DatasetError, match="the label is empty") as caught:
        parse("text,label\ngood,1\nbad,0\nmeh,\n")

    assert caught.value.line == 4
    assert caught.value.field == "label"


def test_empty_label_headerless_names_index():
    with pytest.raises(DatasetError, match="the label is empty") as caught:
        parse("good,1\nbad, \n", text_column="0", label_column="1")

    assert caught.value.line == 2
    assert caught.value.field == "1"


def test_jsonl_null_label_rejected():
    content = '{"text": "good", "label": 1}\n{"text": "bad", "label": null}\n'

    with pytest.raises(DatasetError, match="the label is null") as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 2
    assert caught.value.field == "label"


def test_jsonl_empty_string_label_rejected():
    content = '{"text": "good", "label": 1}\n{"text": "bad", "label": "  "}\n'

    with pytest.raises(DatasetError, match="the label is empty") as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 2
    assert caught.value.field == "label"


@pytest.mark.parametrize(
    ("label_json", "type_name"),
    [("1.5", "number"), ('["a", "b"]', "array"), ('{"name": "a"}', "object")],
)
def test_jsonl_label_wrong_type_rejected(label_json, type_name):
    content = '{"text": "good", "label": 1}\n' + f'{{"text": "bad", "label": {label_json}}}\n'

    with pytest.raises(DatasetError, match=f"but found a JSON {type_name}") as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 2
    assert caught.value.field == "label"


def test_jsonl_text_not_string_rejected():
    content = '{"text": "good", "label": 1}\n{"text": 42, "label": 0}\n'

    with pytest.raises(
        DatasetError, match="the text must be a JSON string, but found a JSON number"
    ) as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 2
    assert caught.value.field == "text"


def test_jsonl_empty_text_rejected():
    content = '{"text": "good", "label": 1}\n{"text": " \\t ", "label": 0}\n'

    with pytest.raises(DatasetError, match="the text is empty") as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 2
    assert caught.value.field == "text"


def test_jsonl_lone_surrogate_rejected():
    content = '{"text": "good", "label": 1}\n{"text": "bad \\ud800", "label": 0}\n'

    with pytest.raises(DatasetError, match="unpaired surrogate") as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 2
    assert caught.value.field == "text"


def test_single_label_rejected():
    with pytest.raises(DatasetError, match=r"found only 1 distinct label \('pos'\)") as caught:
        parse("review,class\ngood,pos\nfine,pos\n")

    assert caught.value.line is None
    assert caught.value.field == "class"


def test_file_without_rows_rejected():
    for content in ["", "\n\n  \n"]:
        with pytest.raises(DatasetError, match="the file contains no rows") as caught:
            parse(content)

        assert caught.value.line is None
        assert caught.value.field is None


def test_jsonl_without_rows_rejected():
    with pytest.raises(DatasetError, match="the file contains no rows"):
        parse("\n\n", filename="train.jsonl")


def test_header_only_rejected():
    with pytest.raises(DatasetError, match="contains a header but no data rows") as caught:
        parse("text,label\n\n")

    assert caught.value.line is None


def test_error_after_valid_rows_stops_parse():
    # The whole file is validated, so a bad last row rejects everything before it.
    content = "text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(500)) + "last,\n"

    with pytest.raises(DatasetError, match="the label is empty") as caught:
        parse(content)

    assert caught.value.line == 502


def test_rejection_logged_without_raw_text(caplog):
    caplog.set_level(logging.INFO, logger="service.datasets")

    with pytest.raises(DatasetError):
        parse("text,label\nsecret customer complaint,\n", filename="upload.csv")

    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["Rejected dataset file 'upload.csv': line 2, field 'label'"]
    assert caplog.records[0].levelno == logging.INFO
    assert "secret" not in caplog.text


def test_max_length_must_be_positive():
    with pytest.raises(ValueError, match="max_length must be a positive number"):
        parse("text,label\na,1\nb,0\n", max_length=0)


# Warnings


def test_duplicate_texts_counted():
    content = "text,label\nGood  film,1\ngood film,1\nbad,0\ngood film ,1\n"

    report = parse(content)

    assert report.warnings == [
        "2 of 4 rows (50.0%) repeat the text of an earlier row "
        "(compared ignoring case and repeated whitespace)."
    ]


def test_conflicting_labels_show_line_numbers():
    rows = [
        "alpha,1",
        "alpha,0",
        "beta,1",
        "beta,1",
        "beta,0",
        "gamma,0",
        "gamma,1",
        "delta,0",
        "delta,1",
    ]
    content = "text,label\n" + "\n".join(rows) + "\n"

    report = parse(content)

    conflict = [warning for warning in report.warnings if "conflicting labels" in warning]
    assert conflict == [
        "4 duplicated texts have conflicting labels, for example at lines 3, 6 and 8. "
        "The model cannot learn both labels, so fix or remove these rows."
    ]
    for text in ["alpha", "beta", "gamma", "delta"]:
        assert all(text not in warning for warning in report.warnings)


def test_imbalance_smallest_class_warned():
    content = "text,label\n" + "".join(f"pos {i},pos\n" for i in range(20)) + "neg 0,neg\n"

    report = parse(content)

    assert report.warnings == [
        "The labels are strongly imbalanced: 'pos' has 20 rows (95.2%) but 'neg' has only 1 "
        "(4.8%). Consider adding examples of the smaller classes."
    ]


def test_imbalance_many_classes_names_extremes():
    counts = {"a": 30, "b": 10, "c": 2}
    content = "text,label\n" + "".join(
        f"{label} {i},{label}\n" for label, count in counts.items() for i in range(count)
    )

    report = parse(content)

    assert len(report.warnings) == 1
    assert "'a' has 30 rows (71.4%) but 'c' has only 2 (4.8%)" in report.warnings[0]


def test_imbalance_mild_not_warned():
    content = "text,label\n" + "".join(f"pos {i},pos\n" for i in range(9)) + "neg 0,neg\n"

    report = parse(content)

    assert report.warnings == []


def test_long_texts_share_warned():
    rows = ["one two three,1", "one two three four five six,0", "short,1", "four words are here,0"]
    content = "text,label\n" + "\n".join(rows) + "\n"

    report = parse(content, count_tokens=count_words_plus_special, max_length=5)

    assert report.warnings == [
        "2 of 4 texts (50.0%) are longer than max_length (5 tokens, special tokens included), "
        "so only their first 5 tokens can be used."
    ]


def test_long_texts_none_no_warning():
    report = parse("text,label\na b,1\nc d,0\n", count_tokens=count_words_plus_special)

    assert report.warnings == []


def test_count_tokens_receives_stripped_texts():
    received: list[list[str]] = []

    def count_tokens(texts: list[str]) -> list[int]:
        received.append(texts)
        return [1] * len(texts)

    parse("text,label\n good ,1\nbad ,0\n", count_tokens=count_tokens)

    assert received == [["good", "bad"]]


def test_count_tokens_wrong_length_raises():
    with pytest.raises(ValueError, match="count_tokens returned 1 counts for 2 texts"):
        parse("text,label\na,1\nb,0\n", count_tokens=lambda texts: [1])


def test_unrecognised_header_read_as_data_warned():
    rows = "".join(f"comment {i},{i % 2}\n" for i in range(6))

    report = parse("comment,stars\n" + rows)

    assert report.num_rows == 7
    assert report.examples[0] == {"text": "comment", "label": "stars"}
    assert report.warnings == [
        "Line 1 was read as data, but its label occurs in no other row. If that line is a "
        "header, pass text_column and label_column with its column names."
    ]
