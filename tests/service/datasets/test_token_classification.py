"""CoNLL and JSON Lines reading, IOB1 conversion, validation and warnings for NER."""

import json

import pytest

from service.datasets import DatasetError, parse_dataset

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""


def parse(content: str, filename: str = "train.txt", **options):
    return parse_dataset(
        content.encode("utf-8"), filename=filename, task_type="token_classification", **options
    )


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def test_conll_sentences_tokens_and_tags():
    report = parse(CONLL)

    assert report.task_type == "token_classification"
    assert report.format == "conll"
    assert report.examples == [
        {
            "tokens": ["EU", "rejects", "German", "call", "."],
            "tags": ["B-ORG", "O", "B-MISC", "O", "O"],
        },
        {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]},
        {"tokens": ["BRUSSELS", "1996-08-22"], "tags": ["B-LOC", "O"]},
    ]
    assert report.num_rows == 3
    assert report.labels == [
        "O",
        "B-LOC",
        "B-MISC",
        "B-ORG",
        "B-PER",
        "I-LOC",
        "I-MISC",
        "I-ORG",
        "I-PER",
    ]
    assert report.label_counts == {"LOC": 1, "MISC": 1, "ORG": 1, "PER": 1}
    assert report.stats == {"sentences": 3, "tokens": 9, "tag_scheme": "IOB2"}


def test_conll_tag_column_chosen_by_index():
    report = parse(CONLL, label_column="2")

    assert report.examples[0]["tags"] == ["B-NP", "B-VP", "B-NP", "I-NP", "O"]
    assert report.label_counts == {"NP": 4, "VP": 1}


def test_conll_token_column_chosen_by_index():
    report = parse(CONLL, text_column="1")

    assert report.examples[0]["tokens"] == ["NNP", "VBZ", "JJ", "NN", "."]


def test_conll_tabs_and_crlf_accepted():
    content = "John\tB-PER\r\nlives\tO\r\n\r\nParis\tB-LOC\r\n"

    report = parse(content, filename="train.conll")

    assert report.examples == [
        {"tokens": ["John", "lives"], "tags": ["B-PER", "O"]},
        {"tokens": ["Paris"], "tags": ["B-LOC"]},
    ]


def test_iob1_converted_with_warning():
    content = "Peter I-PER\nBlackburn I-PER\nand O\nEU I-ORG\nUN B-ORG\n\nbig O\nI-PER-like O\n"

    report = parse(content)

    assert report.examples[0]["tags"] == ["B-PER", "I-PER", "O", "B-ORG", "B-ORG"]
    assert report.stats["tag_scheme"] == "IOB1"
    assert report.warnings[0] == (
        "2 entities start with 'I-', as in the IOB1 tag scheme. They were converted to IOB2 "
        "(BIO), where every entity starts with 'B-'."
    )


def test_rare_entity_types_warned():
    report = parse(CONLL)

    assert report.warnings == [
        "4 of 4 entity types have fewer than 5 entities: 'LOC' (1), 'MISC' (1), 'ORG' (1), "
        "'PER' (1). The model can hardly learn a type from so few examples, so add examples "
        "or remove these tags."
    ]


def test_long_sentences_warned_as_windowed():
    content = "".join(f"w{i} B-X\n" for i in range(5)) + "\n" + "one B-X\n"

    report = parse(
        content, count_tokens=lambda texts: [len(t.split()) + 2 for t in texts], max_length=6
    )

    assert report.warnings[-1] == (
        "1 of 2 sentences (50.0%) are longer than max_length (6 sub-word tokens, special "
        "tokens included). They are split into overlapping windows for training and "
        "prediction, so no token is cut off."
    )


def test_jsonl_sentences():
    content = jsonl(
        {"tokens": ["Ann", "sings"], "tags": ["B-PER", "O"]},
        {"tokens": ["in", "Rome"], "tags": ["O", "I-LOC"]},
    )

    report = parse(content, filename="train.jsonl")

    assert report.format == "jsonl"
    assert report.examples == [
        {"tokens": ["Ann", "sings"], "tags": ["B-PER", "O"]},
        {"tokens": ["in", "Rome"], "tags": ["O", "B-LOC"]},
    ]
    assert report.stats == {"sentences": 2, "tokens": 4, "tag_scheme": "IOB1"}


def test_jsonl_keys_mapped_by_column_arguments():
    content = jsonl({"words": ["x", "y"], "ner": ["B-LOC", "O"], "tokens": "ignored"})

    report = parse(content, filename="train.jsonl", text_column="words", label_column="ner")

    assert report.examples == [{"tokens": ["x", "y"], "tags": ["B-LOC", "O"]}]


# Rejections: CoNLL


def test_conll_invalid_tag_names_line_and_column():
    content = "John B-PER\nlives O\n\nin O\nParis E-LOC\n"

    with pytest.raises(DatasetError, match="invalid tag 'E-LOC'") as caught:
        parse(content)

    assert caught.value.line == 5
    assert caught.value.field == "1"
    assert str(caught.value).startswith("train.txt, line 5, field '1': ")


@pytest.mark.parametrize("tag", ["B-", "PER", "b-PER", "I"])
def test_conll_malformed_tags_rejected(tag):
    with pytest.raises(DatasetError, match="A tag must be 'O', or 'B-' or 'I-'") as caught:
        parse(f"John NNP {tag}\n")

    assert caught.value.line == 1
    assert caught.value.field == "2"


def test_conll_column_count_mismatch_rejected():
    content = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nNew York NNP B-NP B-LOC\n"

    with pytest.raises(
        DatasetError, match="expected 4 whitespace-separated columns, as in line 3, but found 5"
    ) as caught:
        parse(content)

    assert caught.value.line == 4


def test_conll_single_column_rejected():
    with pytest.raises(DatasetError, match="the line has 1 column") as caught:
        parse("\n\nJohn\n")

    assert caught.value.line == 3


def test_conll_column_name_rejected():
    with pytest.raises(DatasetError, match="label_column must be a 0-based column index") as caught:
        parse(CONLL, label_column="NER")

    assert caught.value.field == "label_column"


def test_conll_column_index_out_of_range():
    with pytest.raises(DatasetError, match="column index 7 is out of range") as caught:
        parse(CONLL, label_column="7")

    assert caught.value.line == 3
    assert caught.value.field == "7"


def test_conll_same_token_and_tag_column_rejected():
    with pytest.raises(DatasetError, match="both refer to column 0"):
        parse(CONLL, text_column="0", label_column="0")


def test_conll_without_sentences_rejected():
    with pytest.raises(DatasetError, match="the file contains no sentences"):
        parse("-DOCSTART- -X- -X- O\n\n\n")


def test_outside_tags_only_rejected():
    with pytest.raises(DatasetError, match="every tag is 'O'") as caught:
        parse("a O\nb O\n")

    assert caught.value.line is None


# Rejections: JSON Lines


def test_jsonl_tag_count_mismatch_rejected():
    content = jsonl(
        {"tokens": ["a"], "tags": ["B-X"]},
        {"tokens": ["Ann", "sings", "."], "tags": ["B-PER", "O"]},
    )

    with pytest.raises(DatasetError, match="the sentence has 3 tokens but 2 tags") as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 2
    assert caught.value.field == "tags"


def test_jsonl_malformed_tag_names_index():
    content = jsonl({"tokens": ["Ann", "sings"], "tags": ["B-PER", "X-VERB"]})

    with pytest.raises(DatasetError, match="invalid tag 'X-VERB' for token 1") as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 1
    assert caught.value.field == "tags[1]"


def test_jsonl_empty_token_rejected():
    content = jsonl({"tokens": ["Ann", "sings", " "], "tags": ["B-PER", "O", "O"]})

    with pytest.raises(DatasetError, match="token 2 is empty") as caught:
        parse(content, filename="train.jsonl")

    assert caught.value.line == 1
    assert caught.value.field == "tokens[2]"


def test_jsonl_empty_sentence_rejected():
    with pytest.raises(DatasetError, match="the sentence has no tokens") as caught:
        parse(jsonl({"tokens": [], "tags": []}), filename="train.jsonl")

    assert caught.value.field == "tokens"


def test_jsonl_tokens_not_list_rejected():
    with pytest.raises(DatasetError, match="the tokens must be a JSON array of strings") as caught:
        parse(jsonl({"tokens": "Ann sings", "tags": ["B-PER", "O"]}), filename="train.jsonl")

    assert caught.value.field == "tokens"


def test_jsonl_token_not_string_rejected():
    with pytest.raises(DatasetError, match="item 1 is a JSON number") as caught:
        parse(jsonl({"tokens": ["Ann", 5], "tags": ["B-PER", "O"]}), filename="train.jsonl")

    assert caught.value.field == "tokens[1]"


def test_jsonl_missing_tags_key_rejected():
    with pytest.raises(DatasetError, match="the key 'tags' is missing") as caught:
        parse(jsonl({"tokens": ["Ann"]}), filename="train.jsonl")

    assert caught.value.line == 1
    assert caught.value.field == "tags"
