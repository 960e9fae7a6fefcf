"""Parse, validate and normalise uploaded dataset files, by task type.

parse_dataset reads the whole file and validates every row before it returns, so a caller
can store the returned examples knowing that nothing in them was rejected. Each task type
is a module with a `parse` function, registered below under its task-type name. A new task
type (sentence pairs, multi-label, regression, CoNLL token classification, SQuAD question
answering) is added as a new module and one entry in TASK_PARSERS.

Modules:
    errors               DatasetError and UnsupportedTaskType
    formats              CSV, TSV and JSON Lines reading, header detection, column mapping
    codec                DatasetReport, storage encoding of examples, overlap between splits
    text_classification  the "text_classification" task type
"""

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from service.datasets import text_classification
from service.datasets.codec import (
    DatasetReport,
    decode_examples,
    encode_examples,
    find_overlap,
    normalise_text,
)
from service.datasets.errors import DatasetError, UnsupportedTaskType
from service.datasets.formats import SUPPORTED_FORMATS, resolve_format

__all__ = [
    "SUPPORTED_FORMATS",
    "TASK_PARSERS",
    "DatasetError",
    "DatasetReport",
    "UnsupportedTaskType",
    "decode_examples",
    "encode_examples",
    "find_overlap",
    "normalise_text",
    "parse_dataset",
]

logger = logging.getLogger(__name__)


class TaskParser(Protocol):
    """Signature of a task type's `parse` function."""

    def __call__(
        self,
        data: bytes,
        *,
        filename: str,
        format: str,
        columns: Mapping[str, str | None],
        count_tokens: Callable[[list[str]], list[int]] | None,
        max_length: int,
    ) -> DatasetReport: ...


TASK_PARSERS: dict[str, TaskParser] = {
    text_classification.TASK_TYPE: text_classification.parse,
}


def parse_dataset(
    data: bytes,
    *,
    filename: str,
    task_type: str,
    format: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    count_tokens: Callable[[list[str]], list[int]] | None = None,
    max_length: int = 128,
) -> DatasetReport:
    """Parse and validate a whole uploaded file. Raise DatasetError if any part is rejected.

    Args:
        data: the file's bytes, UTF-8 with or without a byte-order mark.
        filename: the client's file name, used to infer the format and in messages.
        task_type: a key of TASK_PARSERS, such as "text_classification".
        format: "csv", "tsv" or "jsonl"; None infers it from the file name extension.
        text_column: header name, 0-based column index as a string, or JSON key of the text.
        label_column: the same for the label.
        count_tokens: returns the token count of each text, special tokens included. When
            given, the report warns about texts longer than `max_length`.
        max_length: the model's maximum sequence length in tokens.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}")

    try:
        parse = _get_parser_or_raise(task_type, filename=filename)
        resolved_format = resolve_format(filename, format)
        report = parse(
            data,
            filename=filename,
            format=resolved_format,
            columns={"text": text_column, "label": label_column},
            count_tokens=count_tokens,
            max_length=max_length,
        )
    except DatasetError as exc:
        # The message can quote values from the file, so only the location is logged.
        logger.info(
            "Rejected dataset file %r: line %s, field %r", exc.filename, exc.line, exc.field
        )
        raise

    logger.info(
        "Parsed dataset file %r as %s %s: %d rows, %d labels, %d warnings",
        filename,
        report.format,
        report.task_type,
        report.num_rows,
        len(report.labels),
        len(report.warnings),
    )
    return report


def _get_parser_or_raise(task_type: str, *, filename: str) -> TaskParser:
    parse = TASK_PARSERS.get(task_type)
    if parse is None:
        raise UnsupportedTaskType(
            f"task type {task_type!r} is not supported. Use one of: {', '.join(TASK_PARSERS)}.",
            filename=filename,
            field="task_type",
        )
    return parse
