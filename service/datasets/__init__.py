"""Parse, validate and normalise uploaded dataset files, by task type.

parse_dataset reads the whole file and validates every row before it returns, so a caller
can store the returned examples knowing that nothing in them was rejected. Each task type
is a module with a `parse` function, registered below under its task-type name with the
formats it reads. A new task type is added as a new module and one entry in TASK_PARSERS,
TASK_FORMATS and TASK_ARGUMENTS.

Modules:
    errors                DatasetError and UnsupportedTaskType
    formats               CSV, TSV and JSON Lines reading, header detection, column mapping,
                          and the value checks that the task types share
    codec                 DatasetReport, storage encoding of examples, overlap between splits
    text_classification   "text_classification": a text and a label
    sentence_pair         "sentence_pair": two texts and a label
    multi_label           "multi_label": a text and zero or more labels
    regression            "regression": a text or a pair, and a real-valued target
    token_classification  "token_classification": CoNLL or JSON Lines tokens with BIO tags
    extractive_qa         "extractive_qa": SQuAD JSON or JSON Lines questions with answers
"""

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from service.datasets import (
    extractive_qa,
    multi_label,
    regression,
    sentence_pair,
    text_classification,
    token_classification,
)
from service.datasets.codec import (
    DatasetReport,
    decode_examples,
    encode_examples,
    find_overlap,
    normalise_text,
    overlap_key,
)
from service.datasets.errors import DatasetError, UnsupportedTaskType
from service.datasets.formats import ALL_FORMATS, SUPPORTED_FORMATS, given, resolve_format

__all__ = [
    "ALL_FORMATS",
    "SUPPORTED_FORMATS",
    "TASK_ARGUMENTS",
    "TASK_FORMATS",
    "TASK_PARSERS",
    "DatasetError",
    "DatasetReport",
    "UnsupportedTaskType",
    "decode_examples",
    "encode_examples",
    "find_overlap",
    "normalise_text",
    "overlap_key",
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
    sentence_pair.TASK_TYPE: sentence_pair.parse,
    multi_label.TASK_TYPE: multi_label.parse,
    regression.TASK_TYPE: regression.parse,
    token_classification.TASK_TYPE: token_classification.parse,
    extractive_qa.TASK_TYPE: extractive_qa.parse,
}

# The formats each task type reads. A format is inferred from a file name extension only
# among these, so "train.txt" is CoNLL for token_classification and rejected for
# text_classification.
TASK_FORMATS: dict[str, tuple[str, ...]] = {
    text_classification.TASK_TYPE: SUPPORTED_FORMATS,
    sentence_pair.TASK_TYPE: sentence_pair.FORMATS,
    multi_label.TASK_TYPE: multi_label.FORMATS,
    regression.TASK_TYPE: regression.FORMATS,
    token_classification.TASK_TYPE: token_classification.FORMATS,
    extractive_qa.TASK_TYPE: extractive_qa.FORMATS,
}

# The optional parse_dataset arguments that each task type reads. Passing another one is
# rejected, because silently ignoring it would hide a mistake such as a wrong task type.
TASK_ARGUMENTS: dict[str, tuple[str, ...]] = {
    text_classification.TASK_TYPE: ("text_column", "label_column"),
    sentence_pair.TASK_TYPE: ("text_column", "text_pair_column", "label_column"),
    multi_label.TASK_TYPE: ("text_column", "label_column", "label_delimiter"),
    regression.TASK_TYPE: ("text_column", "text_pair_column", "label_column"),
    token_classification.TASK_TYPE: ("text_column", "label_column"),
    extractive_qa.TASK_TYPE: (),
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
    text_pair_column: str | None = None,
    label_delimiter: str | None = None,
) -> DatasetReport:
    """Parse and validate a whole uploaded file. Raise DatasetError if any part is rejected.

    Args:
        data: the file's bytes, UTF-8 with or without a byte-order mark.
        filename: the client's file name, used to infer the format and in messages.
        task_type: a key of TASK_PARSERS, such as "text_classification".
        format: one of TASK_FORMATS[task_type] ("csv", "tsv", "jsonl", "conll", "squad");
            None infers it from the file name extension.
        text_column: header name, 0-based column index as a string, or JSON key of the text
            (of the tokens for token_classification, whose CoNLL columns are indexes only).
        label_column: the same for the label (the labels, the regression target or the tags).
        count_tokens: returns the token count of each text, special tokens included. When
            given, the report warns about texts longer than `max_length`.
        max_length: the model's maximum sequence length in tokens.
        text_pair_column: the same as text_column for the second text of sentence_pair and
            regression examples. A regression file has a second text only when it is given.
        label_delimiter: the separator between the labels of one multi_label cell, or "|"
            when None or blank.

    Text, pair and label columns are ignored when blank, as an HTML form sends an empty
    field. An optional argument that the task type does not read (TASK_ARGUMENTS) is
    rejected.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}")
    arguments = {
        "text_column": text_column,
        "text_pair_column": text_pair_column,
        "label_column": label_column,
        "label_delimiter": label_delimiter,
    }

    try:
        parse = _get_parser_or_raise(task_type, filename=filename)
        _check_arguments(task_type, arguments, filename=filename)
        resolved_format = resolve_format(
            filename, format, formats=TASK_FORMATS[task_type], task_type=task_type
        )
        if given(label_delimiter) is not None:
            parse = functools.partial(multi_label.parse, label_delimiter=label_delimiter)
        report = parse(
            data,
            filename=filename,
            format=resolved_format,
            columns={"text": text_column, "text_pair": text_pair_column, "label": label_column},
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


def _check_arguments(task_type: str, arguments: Mapping[str, str | None], *, filename: str) -> None:
    for name, value in arguments.items():
        if given(value) is None or name in TASK_ARGUMENTS[task_type]:
            continue
        readers = [task for task, names in TASK_ARGUMENTS.items() if name in names]
        raise DatasetError(
            f"{name} is not used by task type {task_type!r}. Remove it, or use a task type "
            f"that reads it: {', '.join(readers)}.",
            filename=filename,
            field=name,
        )


def _get_parser_or_raise(task_type: str, *, filename: str) -> TaskParser:
    parse = TASK_PARSERS.get(task_type)
    if parse is None:
        raise UnsupportedTaskType(
            f"task type {task_type!r} is not supported. Use one of: {', '.join(TASK_PARSERS)}.",
            filename=filename,
            field="task_type",
        )
    return parse
