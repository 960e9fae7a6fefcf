"""Parse real public data sets with the newer task types (CoNLL-2003, XQuAD, MRPC)."""

import pytest

from service.datasets import parse_dataset
from service.tasktypes.tags import extract_entities


def read_data_file(shared_data_dir, relative: str) -> bytes:
    path = shared_data_dir / relative
    if not path.is_file():
        pytest.skip(f"public data file {path} is absent; these tests need the shared data folder")
    return path.read_bytes()


def to_iob1(tags: list[str]) -> list[str]:
    """Rewrite IOB2 tags as IOB1: "B-" only where the previous tag has the same type."""
    converted = []
    for previous, tag in zip(["O", *tags], tags, strict=False):
        if tag.startswith("B-") and previous[2:] != tag[2:]:
            tag = "I-" + tag[2:]
        converted.append(tag)
    return converted


@pytest.fixture(scope="module")
def conll_train(shared_data_dir):
    # Parsed once for the module: the file has 203,621 tokens.
    data = read_data_file(shared_data_dir, "conll2003/train.txt")
    return parse_dataset(data, filename="train.txt", task_type="token_classification")


def test_conll2003_train_counts(conll_train):
    report = conll_train

    assert report.format == "conll"
    assert report.num_rows == 14_041
    assert report.stats == {"sentences": 14_041, "tokens": 203_621, "tag_scheme": "IOB2"}
    assert report.label_counts == {"LOC": 7_140, "MISC": 3_438, "ORG": 6_321, "PER": 6_600}
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
    assert report.warnings == []
    assert report.examples[0] == {
        "tokens": ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
        "tags": ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"],
    }


@pytest.mark.parametrize(
    ("name", "sentences", "tokens", "entities"),
    [
        ("valid.txt", 3_250, 51_362, {"LOC": 1_837, "MISC": 922, "ORG": 1_341, "PER": 1_842}),
        ("test.txt", 3_453, 46_435, {"LOC": 1_668, "MISC": 702, "ORG": 1_661, "PER": 1_617}),
    ],
)
def test_conll2003_eval_splits_counts(shared_data_dir, name, sentences, tokens, entities):
    data = read_data_file(shared_data_dir, f"conll2003/{name}")

    report = parse_dataset(data, filename=name, task_type="token_classification")

    assert report.stats["sentences"] == sentences
    assert report.stats["tokens"] == tokens
    assert report.label_counts == entities


def test_conll2003_iob1_copy_converted_back(conll_train):
    iob2 = conll_train.examples
    lines = []
    for example in iob2:
        for token, tag in zip(example["tokens"], to_iob1(example["tags"]), strict=True):
            lines.append(f"{token} {tag}\n")
        lines.append("\n")

    report = parse_dataset(
        "".join(lines).encode("utf-8"),
        filename="eng.train",
        task_type="token_classification",
        format="conll",
    )

    entities = sum(len(extract_entities(example["tags"])) for example in iob2)
    converted = int(report.warnings[0].split()[0])
    assert report.examples == iob2
    assert report.stats["tag_scheme"] == "IOB1"
    assert 0.95 * entities < converted < entities  # all but same-type neighbours start with I-


def test_xquad_counts(shared_data_dir):
    data = read_data_file(shared_data_dir, "squad/xquad.en.json")

    report = parse_dataset(data, filename="xquad.en.json", task_type="extractive_qa")

    assert report.format == "squad"
    assert report.stats == {
        "articles": 48,
        "paragraphs": 240,
        "questions": 1_190,
        "questions_without_answer": 0,
    }
    assert report.warnings == []
    assert report.examples[0]["id"] == "56beb4343aeaaa14008c925b"
    assert report.examples[0]["title"] == "Super_Bowl_50"
    assert report.examples[0]["answers"] == [{"text": "308", "answer_start": 34}]


@pytest.mark.parametrize(
    ("name", "pairs", "counts"),
    [
        ("train.tsv", 3_668, {"0": 1_194, "1": 2_474}),
        ("dev.tsv", 408, {"0": 129, "1": 279}),
        ("msr_paraphrase_test.txt", 1_725, {"0": 578, "1": 1_147}),
    ],
)
def test_mrpc_pairs_by_header_names(shared_data_dir, name, pairs, counts):
    data = read_data_file(shared_data_dir, f"mrpc/{name}")

    report = parse_dataset(data, filename=name, task_type="sentence_pair", format="tsv")

    assert report.num_rows == pairs
    assert report.label_counts == counts
    assert report.warnings == []


def test_mrpc_train_first_pair(shared_data_dir):
    data = read_data_file(shared_data_dir, "mrpc/train.tsv")

    report = parse_dataset(
        data,
        filename="train.tsv",
        task_type="sentence_pair",
        text_column="#1 String",
        text_pair_column="#2 String",
        label_column="Quality",
    )

    assert report.num_rows == 3_668
    assert report.examples[0] == {
        "text": 'Amrozi accused his brother, whom he called "the witness", of deliberately '
        "distorting his evidence.",
        "text_pair": 'Referring to him as only "the witness", Amrozi accused his brother of '
        "deliberately distorting his evidence.",
        "label": "1",
    }
