"""Validation, normalisation and warnings of the sentence_pair task type."""

import pytest

from service.datasets import DatasetError, parse_dataset


def parse(content: str, filename: str = "pairs.csv", **options):
    return parse_dataset(
        content.encode("utf-8"), filename=filename, task_type="sentence_pair", **options
    )


def count_words_plus_special(texts: list[str]) -> list[int]:
    return [len(text.split()) + 2 for text in texts]


def test_pairs_read_by_known_header():
    report = parse("sentence1,sentence2,label\n A cat. ,A feline.,1\nA dog.,A car.,0\n")

    assert report.task_type == "sentence_pair"
    assert report.examples == [
        {"text": "A cat.", "text_pair": "A feline.", "label": "1"},
        {"text": "A dog.", "text_pair": "A car.", "label": "0"},
    ]
    assert report.labels == ["0", "1"]
    assert report.label_counts == {"0": 1, "1": 1}
    assert report.warnings == []


def test_pairs_mapped_by_column_arguments():
    content = "id\tfirst\tsecond\tgold\n7\tx y\tx z\tsame\n8\ta\tb\tdifferent\n"

    report = parse(
        content,
        filename="pairs.tsv",
        text_column="first",
        text_pair_column="second",
        label_column="gold",
    )

    assert report.examples[0] == {"text": "x y", "text_pair": "x z", "label": "same"}


def test_pairs_from_jsonl():
    content = (
        '{"text": "a", "text_pair": "b", "label": true}\n'
        '{"text": "c", "text_pair": "d", "label": false}\n'
    )

    report = parse(content, filename="pairs.jsonl")

    assert report.labels == ["false", "true"]
    assert report.examples[1] == {"text": "c", "text_pair": "d", "label": "false"}


def test_empty_second_text_names_line_and_field():
    with pytest.raises(DatasetError, match="the second text is empty") as caught:
        parse("sentence1,sentence2,label\na,b,1\nc,  ,0\n")

    assert caught.value.line == 3
    assert caught.value.field == "sentence2"


def test_missing_pair_key_in_jsonl_rejected():
    with pytest.raises(DatasetError, match="the key 'text_pair' is missing") as caught:
        parse('{"text": "a", "label": 1}\n', filename="pairs.jsonl")

    assert caught.value.line == 1
    assert caught.value.field == "text_pair"


def test_single_label_rejected():
    with pytest.raises(DatasetError, match="found only 1 distinct label") as caught:
        parse("sentence1,sentence2,label\na,b,1\nc,d,1\n")

    assert caught.value.field == "label"


def test_repeated_and_conflicting_pairs_warned():
    content = "sentence1,sentence2,label\nA,B,1\na,b ,0\nA,C,1\nD,E,0\n"

    report = parse(content)

    assert report.warnings == [
        "1 of 4 rows (25.0%) repeat the pair of an earlier row (compared ignoring case and "
        "repeated whitespace).",
        "1 repeated pairs have conflicting labels. The model cannot learn both labels, so fix "
        "or remove these rows.",
    ]


def test_imbalance_warned():
    rows = "".join(f"a{i},b{i},1\n" for i in range(20)) + "x,y,0\n"

    report = parse("sentence1,sentence2,label\n" + rows)

    assert report.warnings == [
        "The labels are strongly imbalanced: '1' has 20 rows (95.2%) but '0' has only 1 (4.8%). "
        "Consider adding examples of the smaller classes."
    ]


def test_long_pairs_counted_together():
    content = "sentence1,sentence2,label\none two,three four,1\none,two,0\n"

    report = parse(content, count_tokens=count_words_plus_special, max_length=6)

    # The first pair is [CLS] one two [SEP] three four [SEP]: 7 tokens.
    assert report.warnings == [
        "1 of 2 pairs (50.0%) are longer than max_length (6 tokens, special tokens included), "
        "so they will be truncated to fit."
    ]
