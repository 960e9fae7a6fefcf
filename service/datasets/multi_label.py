"""Task type "multi_label": a text with zero or more labels.

Each example is normalised to {"text": str, "labels": [str, ...]}, its labels without
repeats and in the order of the report's label list. The labels are read from:

- CSV and TSV: one column whose labels are separated by label_delimiter ("|" unless given),
  such as "sports|politics". An empty cell means no label.
- JSON Lines: a JSON array of labels (strings, integers or booleans), such as
  ["sports", "politics"], or a string separated by label_delimiter as in CSV. [] and ""
  mean no label.

A row with no label is allowed, and teaches the model that none of the labels applies. The
report's labels are the sorted union of all labels, and label_counts the rows per label.
"""

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from service.datasets.codec import DatasetReport
from service.datasets.errors import DatasetError
from service.datasets.formats import (
    Column,
    Row,
    Table,
    join_limited,
    json_type_name,
    percent,
    preview_value,
    read_label,
    read_table,
    read_text,
    text_length_warnings,
)
from service.datasets.text_classification import sort_labels

TASK_TYPE = "multi_label"
FORMATS = ("csv", "tsv", "jsonl")
DEFAULT_LABEL_DELIMITER = "|"
RARE_LABEL_ROWS = 5  # warn about labels that occur in fewer rows than this

COLUMNS = (
    Column("text", ("text", "sentence", "content", "review", "document", "utterance", "query")),
    Column(
        "labels",
        ("labels", "label", "tags", "categories", "topics", "classes"),
        mapped_as="label",
    ),
)


def parse(
    data: bytes,
    *,
    filename: str,
    format: str,
    columns: Mapping[str, str | None],
    count_tokens: Callable[[list[str]], list[int]] | None,
    max_length: int,
    label_delimiter: str = DEFAULT_LABEL_DELIMITER,
) -> DatasetReport:
    """Read and validate a whole file. Raise DatasetError at the first invalid row.

    Args:
        label_delimiter: the string between two labels of one cell, not blank.
        (the others as in service.datasets.parse_dataset)
    """
    if not label_delimiter.strip():
        raise DatasetError(
            f"label_delimiter {label_delimiter!r} is blank. Pass a visible separator such "
            "as '|' or ';'.",
            filename=filename,
            field="label_delimiter",
        )
    table = read_table(data, filename=filename, format=format, columns=COLUMNS, mapping=columns)

    rows = [_read_row(row, table, label_delimiter, filename=filename) for row in table.rows]
    label_counts = Counter(label for _, labels in rows for label in labels)
    if not label_counts:
        raise DatasetError(
            "no row has a label. Check that label_column names the label column, and that "
            f"label_delimiter ({label_delimiter!r}) is the separator between labels.",
            filename=filename,
            field=table.fields["labels"],
        )
    labels = sort_labels(label_counts)
    order = {label: index for index, label in enumerate(labels)}
    examples = [
        {"text": text, "labels": sorted(row_labels, key=order.__getitem__)}
        for text, row_labels in rows
    ]

    warnings = [*_unlabelled_warnings(examples), *_rare_label_warnings(label_counts, labels)]
    if count_tokens is not None:
        texts = [example["text"] for example in examples]
        warnings.extend(text_length_warnings(texts, count_tokens, max_length))

    return DatasetReport(
        task_type=TASK_TYPE,
        format=table.format,
        examples=examples,
        labels=labels,
        label_counts={label: label_counts[label] for label in labels},
        warnings=warnings,
        num_rows=len(examples),
    )


def split_labels(cell: str, delimiter: str) -> list[str]:
    """Split a cell into stripped labels, dropping empty pieces: "a| b||" -> ["a", "b"]."""
    return [label.strip() for label in cell.split(delimiter) if label.strip()]


def _read_row(row: Row, table: Table, delimiter: str, *, filename: str) -> tuple[str, set[str]]:
    text = read_text(
        row.values["text"],
        name="text",
        filename=filename,
        line=row.line,
        field=table.fields["text"],
    )
    labels = _read_labels(
        row.values["labels"],
        delimiter,
        filename=filename,
        line=row.line,
        field=table.fields["labels"],
    )
    return text, labels


def _read_labels(value: Any, delimiter: str, *, filename: str, line: int, field: str) -> set[str]:
    if isinstance(value, str):
        return set(split_labels(value, delimiter))
    if value is None:
        raise DatasetError(
            "the labels are null. Use [] for a text that has no label.",
            filename=filename,
            line=line,
            field=field,
        )
    if not isinstance(value, list):
        raise DatasetError(
            f"the labels must be a JSON array or a string, but found a JSON "
            f"{json_type_name(value)} ({preview_value(value)}).",
            filename=filename,
            line=line,
            field=field,
        )
    return {
        read_label(item, filename=filename, line=line, field=f"{field}[{index}]")
        for index, item in enumerate(value)
    }


def _unlabelled_warnings(examples: list[dict[str, Any]]) -> list[str]:
    unlabelled = sum(1 for example in examples if not example["labels"])
    if not unlabelled:
        return []
    return [
        f"{unlabelled} of {len(examples)} rows ({percent(unlabelled, len(examples))}) have no "
        "label. They are kept, and teach the model that none of the labels applies."
    ]


def _rare_label_warnings(label_counts: Counter[str], labels: list[str]) -> list[str]:
    rare = [label for label in labels if label_counts[label] < RARE_LABEL_ROWS]
    if not rare:
        return []
    listed = join_limited([f"{label!r} ({label_counts[label]})" for label in rare])
    return [
        f"{len(rare)} of {len(labels)} labels occur in fewer than {RARE_LABEL_ROWS} rows: "
        f"{listed}. The model can hardly learn a label from so few examples, so add examples "
        "or remove these labels."
    ]
