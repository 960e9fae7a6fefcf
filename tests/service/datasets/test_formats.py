"""Format resolution, decoding, CSV/TSV/JSONL reading, header detection and column mapping."""

import pytest

from service.datasets import DatasetError, parse_dataset


def parse(content: str | bytes, filename: str = "train.csv", **options):
    data = content.encode("utf-8") if isinstance(content, str) else content
    return parse_dataset(data, filename=filename, task_type="text_classification", **options)


def texts_and_labels(report) -> list[tuple[str, str]]:
    return [(example["text"], example["label"]) for example in report.examples]


# Format resolution


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("train.csv", "csv"),
        ("TRAIN.CSV", "csv"),
        ("train.tsv", "tsv"),
        ("train.tab", "tsv"),
        ("train.jsonl", "jsonl"),
        ("train.ndjson", "jsonl"),
    ],
)
def test_format_guessed_from_extension(filename, expected):
    content = {
        "csv": "text,label\ngood,1\nbad,0\n",
        "tsv": "text\tlabel\ngood\t1\nbad\t0\n",
        "jsonl": '{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n',
    }[expected]

    report = parse(content, filename=filename)

    assert report.format == expected
    assert texts_and_labels(report) == [("good", "1"), ("bad", "0")]


def test_format_argument_overrides_extension():
    report = parse("text\tlabel\ngood\t1\nbad\t0\n", filename="train.csv", format="tsv")

    assert report.format == "tsv"
    assert texts_and_labels(report) == [("good", "1"), ("bad", "0")]


def test_format_unknown_extension_rejected():
    with pytest.raises(DatasetError, match=r"Pass format=csv\|tsv\|jsonl") as caught:
        parse("text,label\ngood,1\n", filename="train.txt")

    assert caught.value.line is None
    assert caught.value.field == "format"


def test_format_unsupported_value_rejected():
    with pytest.raises(DatasetError, match="format 'xlsx' is not supported") as caught:
        parse("text,label\ngood,1\n", format="xlsx")

    assert caught.value.field == "format"


# Decoding


def test_decoding_strips_byte_order_mark():
    report = parse(b"\xef\xbb\xbftext,label\ngood,1\nbad,0\n")

    assert texts_and_labels(report) == [("good", "1"), ("bad", "0")]


def test_decoding_invalid_utf8_names_line():
    latin1 = "text,label\ngood,1\nclichés,0\n".encode("latin-1")

    with pytest.raises(DatasetError, match="not valid UTF-8: byte 0xe9") as caught:
        parse(latin1)

    assert caught.value.line == 3
    assert caught.value.field is None


def test_decoding_invalid_utf8_after_crlf_lines():
    with pytest.raises(DatasetError, match="not valid UTF-8") as caught:
        parse(b"text,label\r\ngood,1\r\nbad,0\r\n\xff,1\r\n")

    assert caught.value.line == 4


# CSV and TSV reading


def test_csv_quoted_commas_and_newlines():
    content = 'text,label\n"good, really",1\n"two\nlines",0\nlast,1\n'

    report = parse(content)

    assert texts_and_labels(report) == [("good, really", "1"), ("two\nlines", "0"), ("last", "1")]


def test_csv_multiline_row_line_numbers():
    content = 'text,label\n"two\nlines",0\nok,1\n,1\n'

    with pytest.raises(DatasetError, match="the text is empty") as caught:
        parse(content)

    assert caught.value.line == 5


def test_csv_unclosed_quote_names_starting_line():
    content = 'text,label\ngood,1\n"never closed,0\nbad,1\n'

    with pytest.raises(DatasetError, match="invalid CSV in the row that starts") as caught:
        parse(content)

    assert caught.value.line == 3


def test_tsv_keeps_unbalanced_quotes():
    content = 'text\tlabel\n"the witness said\t1\na lone " quote\t0\n'

    report = parse(content, filename="train.tsv")

    assert texts_and_labels(report) == [('"the witness said', "1"), ('a lone " quote', "0")]


def test_tsv_crlf_line_endings():
    report = parse("text\tlabel\r\ngood\t1\r\nbad\t0\r\n", filename="train.tsv")

    assert texts_and_labels(report) == [("good", "1"), ("bad", "0")]


def test_csv_blank_lines_skipped():
    content = "\ntext,label\n\ngood,1\n   \n,\nbad,0\n\n"

    report = parse(content)

    assert texts_and_labels(report) == [("good", "1"), ("bad", "0")]


def test_csv_blank_lines_keep_line_numbers():
    content = "text,label\n\ngood,1\n\n\nbad,\n"

    with pytest.raises(DatasetError, match="the label is empty") as caught:
        parse(content)

    assert caught.value.line == 6
    assert caught.value.field == "label"


def test_csv_extra_field_names_line():
    content = "text,label\ngood,1\nbad, not good,0\n"

    with pytest.raises(
        DatasetError, match="expected 2 fields, as in line 1, but found 3"
    ) as caught:
        parse(content)

    assert caught.value.line == 3
    assert caught.value.field is None


def test_tsv_missing_field_names_line():
    content = "sentence\tlabel\ngood\t1\nbad\t0\nno label here\n"

    with pytest.raises(
        DatasetError, match="expected 2 fields, as in line 1, but found 1"
    ) as caught:
        parse(content, filename="train.tsv")

    assert caught.value.line == 4


def test_csv_single_column_rejected():
    with pytest.raises(DatasetError, match=r"the row has 1 field\(s\).*pass format=tsv") as caught:
        parse("text\tlabel\ngood\t1\n", filename="train.csv")

    assert caught.value.line == 1


# Header detection and column mapping


def test_header_known_names_detected():
    report = parse("Sentence,Label\ngood,1\nbad,0\n")

    assert texts_and_labels(report) == [("good", "1"), ("bad", "0")]


def test_header_known_names_any_order():
    report = parse("id,category,review\n1,pos,good\n2,neg,bad\n")

    assert texts_and_labels(report) == [("good", "pos"), ("bad", "neg")]


def test_header_mapped_by_name():
    content = "id,body,stars\n1,good,5\n2,bad,1\n"

    report = parse(content, text_column="body", label_column="stars")

    assert texts_and_labels(report) == [("good", "5"), ("bad", "1")]


def test_header_partial_mapping_uses_known_name():
    report = parse("sentence,stars\ngood,5\nbad,1\n", label_column="stars")

    assert texts_and_labels(report) == [("good", "5"), ("bad", "1")]


def test_header_mapped_name_missing_lists_header():
    content = "text,label\ngood,1\nbad,0\n"

    with pytest.raises(DatasetError, match="column 'review' was not found") as caught:
        parse(content, text_column="review")

    assert "the header contains the columns 'text', 'label'" in str(caught.value)
    assert caught.value.line == 1
    assert caught.value.field == "review"


def test_header_without_label_column_rejected():
    with pytest.raises(DatasetError, match="the header has no label column") as caught:
        parse("text,rating\ngood,5\nbad,1\n", text_column="text")

    assert "'text', 'rating'" in str(caught.value)
    assert caught.value.line == 1


def test_headerless_mapped_name_missing():
    with pytest.raises(DatasetError, match="the first row is not a header") as caught:
        parse("good,1\nbad,0\n", text_column="review", label_column="label")

    assert caught.value.line == 1
    assert caught.value.field == "review"


def test_headerless_index_mapping():
    content = "1\tgreat film\n0\tdull film\n0\tdull plot\n"

    report = parse(content, filename="train.tsv", text_column="1", label_column="0")

    assert texts_and_labels(report) == [("great film", "1"), ("dull film", "0"), ("dull plot", "0")]


def test_headerless_single_index_takes_other_column():
    report = parse("great film,pos\ndull film,neg\n", text_column="0")

    assert texts_and_labels(report) == [("great film", "pos"), ("dull film", "neg")]


def test_headerless_index_out_of_range():
    with pytest.raises(DatasetError, match="column index 2 is out of range") as caught:
        parse("great film,pos\ndull film,neg\n", text_column="0", label_column="2")

    assert caught.value.field == "2"


def test_headerless_same_column_twice_rejected():
    with pytest.raises(DatasetError, match="text_column and label_column both refer to column 0"):
        parse("great film,pos\ndull film,neg\n", text_column="0", label_column="0")


def test_index_mapping_skips_known_header():
    report = parse("sentence,label\ngood,1\nbad,0\n", text_column="0", label_column="1")

    assert texts_and_labels(report) == [("good", "1"), ("bad", "0")]


@pytest.mark.parametrize(
    "content",
    [
        "great film,pos\ndull film,neg\nfine,pos\nawful,neg\n",
        "pos,great film\nneg,dull film\npos,fine\nneg,awful\n",
    ],
)
def test_headerless_guesses_label_column(content):
    report = parse(content)

    assert texts_and_labels(report) == [
        ("great film", "pos"),
        ("dull film", "neg"),
        ("fine", "pos"),
        ("awful", "neg"),
    ]


def test_headerless_guess_ties_on_length():
    # Both columns have 2 distinct values, so the shorter one is taken as the label.
    report = parse("a long positive review,1\na long negative review,0\n")

    assert texts_and_labels(report) == [
        ("a long positive review", "1"),
        ("a long negative review", "0"),
    ]


def test_headerless_ambiguous_columns_rejected():
    content = "alpha,one\nbeta,two\ngamma,three\ndelta,four\n"

    with pytest.raises(
        DatasetError, match="the text and label columns could not be identified"
    ) as caught:
        parse(content)

    assert "text_column and label_column" in str(caught.value)
    assert caught.value.line is None


def test_headerless_three_columns_need_mapping():
    with pytest.raises(DatasetError, match="could not be identified among its 3 columns"):
        parse("1,good,pos\n2,bad,neg\n")


def test_mapping_blank_string_means_unset():
    report = parse("text,label\ngood,1\nbad,0\n", text_column="", label_column="  ")

    assert texts_and_labels(report) == [("good", "1"), ("bad", "0")]


# JSON Lines


def test_jsonl_default_keys_and_label_types():
    content = (
        '{"text": " good ", "label": "pos", "id": 7}\n'
        "\n"
        '{"text": "bad", "label": 0}\n'
        '{"text": "meh", "label": true}\n'
    )

    report = parse(content, filename="train.jsonl")

    assert texts_and_labels(report) == [("good", "pos"), ("bad", "0"), ("meh", "true")]


def test_jsonl_mapped_keys():
    content = '{"review": "good", "stars": 5}\n{"review": "bad", "stars": 1}\n'

    report = parse(content, filename="train.jsonl", text_column="review", label_column="stars")

    assert texts_and_labels(report) == [("good", "5"), ("bad", "1")]


def test_jsonl_invalid_json_names_line():
    content = '{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0\n'

    with pytest.raises(DatasetError, match="invalid JSON at column") as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 3
    assert caught.value.field is None


def test_jsonl_array_line_rejected():
    content = '{"text": "good", "label": 1}\n["bad", 0]\n'

    with pytest.raises(DatasetError, match="expected a JSON object, found a JSON array") as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 2


def test_jsonl_missing_key_names_field():
    content = '{"text": "good", "label": 1}\n{"text": "bad", "lable": 0}\n'

    with pytest.raises(DatasetError, match="the key 'label' is missing") as caught:
        parse(content, filename="train.jsonl")

    assert "'text', 'lable'" in str(caught.value)
    assert caught.value.line == 2
    assert caught.value.field == "label"


def test_jsonl_missing_mapped_key_names_field():
    content = '{"text": "good", "label": 1}\n'

    with pytest.raises(DatasetError, match="the key 'review' is missing") as caught:
        parse(content, filename="train.jsonl", text_column="review")

    assert caught.value.line == 1
    assert caught.value.field == "review"


def test_jsonl_line_separator_inside_string():
    # U+2028 is legal inside a JSON string and must not split the line.
    content = '{"text": "one\u2028two", "label": 1}\n{"text": "three", "label": 0}\n'

    report = parse(content, filename="train.jsonl")

    assert texts_and_labels(report) == [("one\u2028two", "1"), ("three", "0")]
