"""Parse real public data sets as a user would upload them (SST-2, TREC, MRPC)."""

import json
from pathlib import Path

import pytest

from service.datasets import DatasetError, find_overlap, parse_dataset

DATA_DIR = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def read_data_file(relative: str) -> bytes:
    path = DATA_DIR / relative
    if not path.is_file():
        pytest.skip(f"public data file {path} is absent; these tests need the shared data folder")
    return path.read_bytes()


def parse_text_classification(data: bytes, filename: str, **options):
    return parse_dataset(data, filename=filename, task_type="text_classification", **options)


@pytest.fixture(scope="module")
def sst2_train():
    # Parsed once for the module: the file has 67,349 rows.
    return parse_text_classification(read_data_file("sst2/train.tsv"), "train.tsv")


def test_sst2_train_parsed_with_counts(sst2_train):
    report = sst2_train

    assert report.format == "tsv"
    assert report.num_rows == 67_349
    assert report.labels == ["0", "1"]
    assert report.label_counts == {"0": 29_780, "1": 37_569}


def test_sst2_train_trailing_space_stripped(sst2_train):
    report = sst2_train

    assert report.examples[0] == {
        "text": "hide new secretions from the parental units",
        "label": "0",
    }
    assert all(example["text"] == example["text"].strip() for example in report.examples)


def test_sst2_train_duplicate_warnings(sst2_train):
    report = sst2_train

    assert report.warnings[0].startswith("371 of 67349 rows (0.6%) repeat the text")
    assert report.warnings[1].startswith("5 duplicated texts have conflicting labels")
    assert len(report.warnings) == 2


def test_sst2_dev_parsed_without_overlap(sst2_train):
    train = sst2_train
    dev = parse_text_classification(read_data_file("sst2/dev.tsv"), "dev.tsv")

    assert dev.num_rows == 872
    assert dev.label_counts == {"0": 428, "1": 444}
    assert dev.warnings == []
    assert find_overlap(train.examples, dev.examples) == 0
    assert find_overlap(train.examples, train.examples[:10]) == 10


def test_trec_coarse_labels_from_jsonl():
    lines = read_data_file("trec/train_5500.label").decode("utf-8").splitlines()[:300]
    expected = []
    for line in lines:
        fine_label, question = line.split(" ", 1)
        expected.append({"text": question.strip(), "label": fine_label.split(":", 1)[0]})
    jsonl = "".join(json.dumps(example) + "\n" for example in expected).encode("utf-8")

    report = parse_text_classification(jsonl, "trec.jsonl")

    assert report.format == "jsonl"
    assert report.num_rows == 300
    assert report.examples == expected
    assert set(report.labels) <= {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
    assert report.labels == sorted(report.labels)
    assert sum(report.label_counts.values()) == 300


def test_mrpc_train_mapped_by_header_name():
    data = read_data_file("mrpc/train.tsv")
    assert data.startswith(b"\xef\xbb\xbfQuality\t")  # the header's first name follows a BOM

    report = parse_text_classification(
        data, "train.tsv", text_column="#1 String", label_column="Quality"
    )

    assert report.num_rows == 3_668
    assert report.label_counts == {"0": 1_194, "1": 2_474}
    assert report.examples[0] == {
        "text": 'Amrozi accused his brother, whom he called "the witness", of deliberately '
        "distorting his evidence.",
        "label": "1",
    }
    assert report.warnings == []


def test_mrpc_train_keeps_unbalanced_quotes():
    report = parse_text_classification(
        read_data_file("mrpc/train.tsv"),
        "train.tsv",
        text_column="#1 String",
        label_column="Quality",
    )

    unbalanced = [example for example in report.examples if example["text"].count('"') % 2 == 1]
    assert unbalanced  # these rows would merge with their neighbours under CSV quoting


def test_mrpc_train_unmapped_columns_rejected():
    with pytest.raises(DatasetError, match="could not be identified among its 5 columns") as caught:
        parse_text_classification(read_data_file("mrpc/train.tsv"), "train.tsv")

    assert caught.value.line is None


def test_mrpc_train_wrong_column_name_lists_header():
    with pytest.raises(DatasetError, match="column 'String 1' was not found") as caught:
        parse_text_classification(
            read_data_file("mrpc/train.tsv"),
            "train.tsv",
            text_column="String 1",
            label_column="Quality",
        )

    assert "'Quality', '#1 ID', '#2 ID', '#1 String', '#2 String'" in str(caught.value)
    assert caught.value.line == 1
    assert caught.value.field == "String 1"
