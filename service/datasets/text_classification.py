"""Task type "text_classification": one text and one label per example.

Each example is normalised to {"text": str, "label": str}. The text is kept as given except
for stripping leading and trailing whitespace. A JSON label may be a string, an integer or
a boolean, and is stored as a string ("3", "true").

Headerless two-column CSV or TSV files with no mapping: the label column is the one with
fewer distinct values, and on a tie the one with shorter values on average. It must have at
most max(2, rows // 2) distinct values, because otherwise neither column looks like a label
set, and the caller has to pass text_column and label_column.
"""

import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from service.datasets.codec import DatasetReport, normalise_text
from service.datasets.errors import DatasetError
from service.datasets.formats import Column, Row, Table, json_type_name, read_table

TASK_TYPE = "text_classification"

# Known header names, in order of preference when a header contains several of them.
COLUMNS = (
    Column("text", ("text", "sentence", "content", "review", "document", "utterance", "query")),
    Column("label", ("label", "class", "category", "target", "intent", "sentiment")),
)

_IMBALANCE_RATIO = 0.1  # warn when the smallest class is under this share of the largest
_MAJORITY_SHARE = 0.9  # warn when the largest class is over this share of all examples
_CONFLICT_LINES_SHOWN = 3
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


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
    table = read_table(
        data,
        filename=filename,
        format=format,
        columns=COLUMNS,
        mapping=columns,
        guess_headerless=guess_columns,
    )

    # Per-row validation, then the checks that need the whole file.
    examples = [_build_example(row, table, filename=filename) for row in table.rows]
    label_counts = Counter(example["label"] for example in examples)
    if len(label_counts) < 2:
        raise DatasetError(
            f"found only 1 distinct label ({_quote_labels(label_counts)}), but text "
            "classification needs at least 2. Check that label_column names the label column.",
            filename=filename,
            field=table.fields["label"],
        )
    labels = sort_labels(label_counts)

    lines = [row.line for row in table.rows]
    warnings = [
        *_duplicate_warnings(examples, lines),
        *_imbalance_warnings(label_counts, labels),
        *_header_warnings(examples, lines, label_counts, table),
    ]
    if count_tokens is not None:
        warnings.extend(_length_warnings(examples, count_tokens, max_length))

    return DatasetReport(
        task_type=TASK_TYPE,
        format=table.format,
        examples=examples,
        labels=labels,
        label_counts={label: label_counts[label] for label in labels},
        warnings=warnings,
        num_rows=len(examples),
    )


def guess_columns(values: list[list[str]]) -> dict[str, int] | None:
    """Pick the text and label columns of a headerless two-column file (rule in module doc)."""
    if len(values) != 2:
        return None

    distinct = [len({value.strip() for value in column}) for column in values]
    mean_length = [sum(len(value) for value in column) / len(column) for column in values]
    if distinct[0] != distinct[1]:
        label_index = 0 if distinct[0] < distinct[1] else 1
    elif mean_length[0] != mean_length[1]:
        label_index = 0 if mean_length[0] < mean_length[1] else 1
    else:
        return None

    rows = len(values[0])
    if distinct[label_index] > max(2, rows // 2):
        return None
    return {"text": 1 - label_index, "label": label_index}


def sort_labels(labels: Mapping[str, int] | list[str]) -> list[str]:
    """Sort labels, numeric-looking ones first and by value ("2" before "10"), then the rest."""

    def key(label: str) -> tuple[int, float, str]:
        if _NUMBER.fullmatch(label):
            return (0, float(label), label)
        return (1, 0.0, label)

    return sorted(labels, key=key)


def _build_example(row: Row, table: Table, *, filename: str) -> dict[str, str]:
    text_field = table.fields["text"]
    label_field = table.fields["label"]

    text = row.values["text"]
    if text is None:
        raise DatasetError(
            "the text is null. Every row needs a text.",
            filename=filename,
            line=row.line,
            field=text_field,
        )
    if not isinstance(text, str):
        raise DatasetError(
            f"the text must be a JSON string, but found a JSON {json_type_name(text)}.",
            filename=filename,
            line=row.line,
            field=text_field,
        )
    text = text.strip()
    if not text:
        raise DatasetError(
            "the text is empty. Every row needs a non-blank text.",
            filename=filename,
            line=row.line,
            field=text_field,
        )
    _check_encodable(text, "text", filename=filename, line=row.line, field=text_field)

    label = _label_to_str(row.values["label"], filename=filename, line=row.line, field=label_field)
    return {"text": text, "label": label}


def _label_to_str(value: Any, *, filename: str, line: int, field: str) -> str:
    # bool is tested before int because bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        raise DatasetError(
            "the label is null. Every row needs a label.",
            filename=filename,
            line=line,
            field=field,
        )
    if not isinstance(value, str):
        raise DatasetError(
            f"a label must be a string, an integer or a boolean, but found a JSON "
            f"{json_type_name(value)} ({_preview_value(value)}).",
            filename=filename,
            line=line,
            field=field,
        )

    label = value.strip()
    if not label:
        raise DatasetError(
            "the label is empty. Every row needs a label.",
            filename=filename,
            line=line,
            field=field,
        )
    _check_encodable(label, "label", filename=filename, line=line, field=field)
    return label


def _check_encodable(value: str, role: str, *, filename: str, line: int, field: str) -> None:
    # Strict UTF-8 decoding cannot produce lone surrogates, but a JSON escape such as
    # "\ud800" can, and such a string cannot be stored as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DatasetError(
            f"the {role} contains an unpaired surrogate escape (such as \\ud800), which is "
            "not valid Unicode. Fix the escape sequence in the file.",
            filename=filename,
            line=line,
            field=field,
        ) from None


def _preview_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _duplicate_warnings(examples: list[dict[str, str]], lines: list[int]) -> list[str]:
    labels_by_text: dict[str, set[str]] = {}
    duplicates = 0
    conflict_lines: list[int] = []  # first line where each conflicting text gets a new label
    conflicting: set[str] = set()

    for example, line in zip(examples, lines, strict=True):
        key = normalise_text(example["text"])
        seen_labels = labels_by_text.setdefault(key, set())
        if seen_labels:
            duplicates += 1
            if example["label"] not in seen_labels and key not in conflicting:
                conflicting.add(key)
                conflict_lines.append(line)
        seen_labels.add(example["label"])

    warnings = []
    total = len(examples)
    if duplicates:
        warnings.append(
            f"{duplicates} of {total} rows ({_percent(duplicates, total)}) repeat the text of "
            "an earlier row (compared ignoring case and repeated whitespace)."
        )
    if conflicting:
        shown_lines = [str(line) for line in conflict_lines[:_CONFLICT_LINES_SHOWN]]
        if len(shown_lines) > 1:
            where = f"lines {', '.join(shown_lines[:-1])} and {shown_lines[-1]}"
        else:
            where = f"line {shown_lines[0]}"
        warnings.append(
            f"{len(conflicting)} duplicated texts have conflicting labels, for example at "
            f"{where}. The model cannot learn both labels, so fix or remove these rows."
        )
    return warnings


def _imbalance_warnings(label_counts: Counter[str], labels: list[str]) -> list[str]:
    total = sum(label_counts.values())
    # max and min keep the first of equal counts, so the sorted order breaks ties.
    largest = max(labels, key=lambda label: label_counts[label])
    smallest = min(labels, key=lambda label: label_counts[label])
    largest_count = label_counts[largest]
    smallest_count = label_counts[smallest]

    if smallest_count >= _IMBALANCE_RATIO * largest_count and (
        largest_count <= _MAJORITY_SHARE * total
    ):
        return []
    return [
        f"The labels are strongly imbalanced: {largest!r} has {largest_count} rows "
        f"({_percent(largest_count, total)}) but {smallest!r} has only {smallest_count} "
        f"({_percent(smallest_count, total)}). Consider adding examples of the smaller classes."
    ]


def _header_warnings(
    examples: list[dict[str, str]], lines: list[int], label_counts: Counter[str], table: Table
) -> list[str]:
    # A header whose names are not recognised is read as a data row. Its "label" is then
    # usually a column name that occurs nowhere else.
    if table.has_header or table.format == "jsonl" or len(examples) < 3:
        return []
    if label_counts[examples[0]["label"]] != 1:
        return []
    return [
        f"Line {lines[0]} was read as data, but its label occurs in no other row. If that line "
        "is a header, pass text_column and label_column with its column names."
    ]


def _length_warnings(
    examples: list[dict[str, str]], count_tokens: Callable[[list[str]], list[int]], max_length: int
) -> list[str]:
    texts = [example["text"] for example in examples]
    counts = count_tokens(texts)
    if len(counts) != len(texts):
        raise ValueError(f"count_tokens returned {len(counts)} counts for {len(texts)} texts")

    too_long = sum(1 for count in counts if count > max_length)
    if not too_long:
        return []
    return [
        f"{too_long} of {len(texts)} texts ({_percent(too_long, len(texts))}) are longer than "
        f"max_length ({max_length} tokens, special tokens included), so only their first "
        f"{max_length} tokens can be used."
    ]


def _quote_labels(label_counts: Counter[str]) -> str:
    return ", ".join(repr(label) for label in label_counts) or "none"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%"
