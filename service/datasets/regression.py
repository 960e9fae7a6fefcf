"""Task type "regression": a text, or a pair of texts, with a real-valued target.

Each example is normalised to {"text": str, "target": float}, with "text_pair": str as well
when text_pair_column is given (as for STS-B similarity scores). The target column is mapped
by label_column, or found by a header name such as "target", "score" or "label". In a
headerless two-column file with no mapping, the target is the column whose every value is a
number, if the other column has a value that is not. A JSON
target may be a number or a string holding one. A target that is not a decimal number, or
that is NaN or infinite, rejects the file.

The report's stats hold the targets' "min", "max", "mean" and "std" (population standard
deviation).
"""

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from service.datasets.codec import DatasetReport
from service.datasets.errors import DatasetError
from service.datasets.formats import (
    Column,
    Row,
    Table,
    given,
    json_type_name,
    pair_length_warnings,
    preview_value,
    read_table,
    read_text,
    text_length_warnings,
)

TASK_TYPE = "regression"
FORMATS = ("csv", "tsv", "jsonl")

TEXT = Column("text", ("text", "sentence", "sentence1", "content", "review", "document"))
TEXT_PAIR = Column("text_pair", ("text_pair", "sentence2", "text_b"))
TARGET = Column(
    "target", ("target", "score", "label", "value", "rating", "similarity", "y"), mapped_as="label"
)

# A plain decimal number, with an optional exponent: no thousands separators, no "nan".
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


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
    has_pair = given(columns.get("text_pair")) is not None
    table_columns = (TEXT, TEXT_PAIR, TARGET) if has_pair else (TEXT, TARGET)
    table = read_table(
        data,
        filename=filename,
        format=format,
        columns=table_columns,
        mapping=columns,
        guess_headerless=guess_columns,
    )

    examples = [_build_example(row, table, has_pair, filename=filename) for row in table.rows]
    targets = [example["target"] for example in examples]
    if min(targets) == max(targets):
        raise DatasetError(
            f"every target is {targets[0]:g}, but regression needs at least 2 distinct values. "
            "Check that label_column names the target column.",
            filename=filename,
            field=table.fields["target"],
        )

    warnings: list[str] = []
    if count_tokens is not None:
        texts = [example["text"] for example in examples]
        if has_pair:
            text_pairs = [example["text_pair"] for example in examples]
            warnings.extend(pair_length_warnings(texts, text_pairs, count_tokens, max_length))
        else:
            warnings.extend(text_length_warnings(texts, count_tokens, max_length))

    return DatasetReport(
        task_type=TASK_TYPE,
        format=table.format,
        examples=examples,
        labels=[],
        label_counts={},
        warnings=warnings,
        num_rows=len(examples),
        stats=target_stats(targets),
    )


def guess_columns(values: list[list[str]]) -> dict[str, int] | None:
    """Pick the columns of a headerless two-column file: the target is the only numeric one."""
    if len(values) != 2:
        return None
    numeric = [all(_DECIMAL.fullmatch(value.strip()) for value in column) for column in values]
    if numeric[0] == numeric[1]:
        return None
    target_index = 0 if numeric[0] else 1
    return {"text": 1 - target_index, "target": target_index}


def parse_target(value: Any, *, filename: str, line: int, field: str) -> float:
    """Return a finite float from a JSON number or a decimal string, or raise DatasetError."""
    location: dict[str, Any] = {"filename": filename, "line": line, "field": field}
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise DatasetError("the target is empty. Every row needs a number.", **location)
        if not _DECIMAL.fullmatch(text):
            raise DatasetError(
                f"the target {preview_value(text)} is not a number. Write it as a decimal "
                "number with a dot, such as 3.25 or -1e-3.",
                **location,
            )
        number = float(text)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif value is None:
        raise DatasetError("the target is null. Every row needs a number.", **location)
    else:
        raise DatasetError(
            f"the target must be a number, but found a JSON {json_type_name(value)} "
            f"({preview_value(value)}).",
            **location,
        )

    # float() turns a literal too large for a double into inf, and JSON Lines may hold NaN.
    if not math.isfinite(number):
        raise DatasetError(f"the target is {number}, but it must be a finite number.", **location)
    return number


def target_stats(targets: list[float]) -> dict[str, float]:
    """Return the "min", "max", "mean" and population "std" of the targets."""
    mean = math.fsum(targets) / len(targets)
    variance = math.fsum((target - mean) ** 2 for target in targets) / len(targets)
    return {"min": min(targets), "max": max(targets), "mean": mean, "std": math.sqrt(variance)}


def _build_example(row: Row, table: Table, has_pair: bool, *, filename: str) -> dict[str, Any]:
    example: dict[str, Any] = {
        "text": read_text(
            row.values["text"],
            name="text",
            filename=filename,
            line=row.line,
            field=table.fields["text"],
        )
    }
    if has_pair:
        example["text_pair"] = read_text(
            row.values["text_pair"],
            name="second text",
            filename=filename,
            line=row.line,
            field=table.fields["text_pair"],
        )
    example["target"] = parse_target(
        row.values["target"], filename=filename, line=row.line, field=table.fields["target"]
    )
    return example
