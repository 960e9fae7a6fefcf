"""Task type "sentence_pair": two texts and one label per example, such as paraphrase pairs.

Each example is normalised to {"text": str, "text_pair": str, "label": str}. Both texts are
stripped of leading and trailing whitespace, and labels are read as in text_classification
(a JSON label may be a string, an integer or a boolean). The columns are mapped by
text_column, text_pair_column and label_column. Without a mapping, a header is recognised
by names such as "sentence1", "sentence2" and "label", or MRPC's "#1 String", "#2 String"
and "Quality".
"""

from collections import Counter
from collections.abc import Callable, Mapping

from service.datasets.codec import DatasetReport, overlap_key
from service.datasets.errors import DatasetError
from service.datasets.formats import (
    Column,
    Row,
    Table,
    pair_length_warnings,
    percent,
    read_label,
    read_table,
    read_text,
)
from service.datasets.text_classification import sort_labels

TASK_TYPE = "sentence_pair"
FORMATS = ("csv", "tsv", "jsonl")

# Known header names, in order of preference when a header contains several of them.
COLUMNS = (
    Column("text", ("text", "sentence1", "text_a", "question1", "premise", "#1 string")),
    Column(
        "text_pair", ("text_pair", "sentence2", "text_b", "question2", "hypothesis", "#2 string")
    ),
    Column("label", ("label", "quality", "class", "category", "target", "is_duplicate")),
)

_IMBALANCE_RATIO = 0.1  # warn when the smallest class is under this share of the largest


def parse(
    data: bytes,
    *,
    filename: str,
    format: str,
    columns: Mapping[str, str | None],
    count_tokens: Callable[[list[str]], list[int]] | None,
    max_length: int,
) -> DatasetReport:
    """Read and validate a whole file. Raise DatasetError at the first invalid row."""
    table = read_table(data, filename=filename, format=format, columns=COLUMNS, mapping=columns)

    examples = [_build_example(row, table, filename=filename) for row in table.rows]
    label_counts = Counter(example["label"] for example in examples)
    if len(label_counts) < 2:
        raise DatasetError(
            f"found only 1 distinct label ({', '.join(map(repr, label_counts))}), but "
            "sentence-pair classification needs at least 2. Check that label_column names "
            "the label column.",
            filename=filename,
            field=table.fields["label"],
        )
    labels = sort_labels(label_counts)

    warnings = [*_duplicate_warnings(examples), *_imbalance_warnings(label_counts, labels)]
    if count_tokens is not None:
        texts = [example["text"] for example in examples]
        text_pairs = [example["text_pair"] for example in examples]
        warnings.extend(pair_length_warnings(texts, text_pairs, count_tokens, max_length))

    return DatasetReport(
        task_type=TASK_TYPE,
        format=table.format,
        examples=examples,
        labels=labels,
        label_counts={label: label_counts[label] for label in labels},
        warnings=warnings,
        num_rows=len(examples),
    )


def _build_example(row: Row, table: Table, *, filename: str) -> dict[str, str]:
    text = read_text(
        row.values["text"],
        name="text",
        filename=filename,
        line=row.line,
        field=table.fields["text"],
    )
    text_pair = read_text(
        row.values["text_pair"],
        name="second text",
        filename=filename,
        line=row.line,
        field=table.fields["text_pair"],
    )
    label = read_label(
        row.values["label"], filename=filename, line=row.line, field=table.fields["label"]
    )
    return {"text": text, "text_pair": text_pair, "label": label}


def _duplicate_warnings(examples: list[dict[str, str]]) -> list[str]:
    labels_by_pair: dict[str, set[str]] = {}
    duplicates = 0
    for example in examples:
        seen = labels_by_pair.setdefault(overlap_key(example), set())
        duplicates += bool(seen)
        seen.add(example["label"])

    conflicting = sum(1 for labels in labels_by_pair.values() if len(labels) > 1)
    warnings = []
    if duplicates:
        warnings.append(
            f"{duplicates} of {len(examples)} rows ({percent(duplicates, len(examples))}) repeat "
            "the pair of an earlier row (compared ignoring case and repeated whitespace)."
        )
    if conflicting:
        warnings.append(
            f"{conflicting} repeated pairs have conflicting labels. The model cannot learn both "
            "labels, so fix or remove these rows."
        )
    return warnings


def _imbalance_warnings(label_counts: Counter[str], labels: list[str]) -> list[str]:
    # max and min keep the first of equal counts, so the sorted order breaks ties.
    largest = max(labels, key=lambda label: label_counts[label])
    smallest = min(labels, key=lambda label: label_counts[label])
    if label_counts[smallest] >= _IMBALANCE_RATIO * label_counts[largest]:
        return []

    total = sum(label_counts.values())
    return [
        f"The labels are strongly imbalanced: {largest!r} has {label_counts[largest]} rows "
        f"({percent(label_counts[largest], total)}) but {smallest!r} has only "
        f"{label_counts[smallest]} ({percent(label_counts[smallest], total)}). Consider adding "
        "examples of the smaller classes."
    ]
