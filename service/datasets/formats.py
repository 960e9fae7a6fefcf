"""Read CSV, TSV and JSON Lines uploads into rows of named values.

A task type lists the values each example needs as `Column`s, for text_classification a
"text" and a "label". The caller maps them to the file with `mapping`, a dict from column
role to the column name or 0-based index given by the user (None when not given).

CSV and TSV:
- TSV is read with quoting disabled (csv.QUOTE_NONE), because real TSV files such as
  GLUE's MRPC contain unbalanced double quotes. CSV uses standard double-quote quoting.
- The first row is a header when it contains a column name given in `mapping`, or a known
  name (such as "text" or "label", compared case-insensitively) for every column.
- In a headerless file, a mapping may be a 0-based column index given as a string ("0").
  A column left unmapped takes the only column not used by the others. When nothing is
  mapped, the task type may guess the columns from their values.
- Every row must have as many fields as the header, or as the first row if there is no
  header. Rows whose fields are all blank are skipped.

JSON Lines: each non-blank line is one JSON object, and a column maps to the key of the
same name as its role unless `mapping` names another key.

The CoNLL and SQuAD formats have one reader each, in the task type that uses them
(token_classification and extractive_qa). This module resolves their names and extensions,
and contains the value checks that every task type shares.

Line numbers are 1-based physical lines, counting "\\r\\n", "\\r" and "\\n" as line ends.
"""

import codecs
import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from service.datasets.errors import DatasetError

logger = logging.getLogger(__name__)

# The formats that read_table reads, and the default formats of a task type.
SUPPORTED_FORMATS = ("csv", "tsv", "jsonl")
# Every format of any task type: "conll" is read by token_classification, "squad" by
# extractive_qa.
ALL_FORMATS = ("csv", "tsv", "jsonl", "conll", "squad")

_FORMAT_BY_EXTENSION = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "conll",
    ".conll": "conll",
    ".json": "squad",
}

# The same line ends that io.StringIO(newline="") splits on, so csv.reader counts lines alike.
_LINE_END = re.compile(r"\r\n|\r|\n")

_PREVIEW_CHARS = 40  # maximum characters of one cell value quoted in an error message
_PREVIEW_CELLS = 10  # maximum number of cells listed in an error message


@dataclass(frozen=True)
class Column:
    """A value every example needs, such as its text or its label."""

    role: str  # key in the normalised example, and the default JSON key
    known_names: tuple[str, ...]  # lower-case header names recognised without a mapping
    # The key of `mapping` (and so the parse_dataset argument) that maps this column, when it
    # differs from the role: a regression "target" is mapped by label_column.
    mapped_as: str | None = None

    @property
    def mapping_key(self) -> str:
        """Key of this column in the caller's mapping, such as "label"."""
        return self.mapped_as or self.role

    @property
    def argument(self) -> str:
        """Name of the parse_dataset argument that maps this column, such as "text_column"."""
        return f"{self.mapping_key}_column"


@dataclass(frozen=True)
class Row:
    """One data row: its first physical line and its raw value per column role."""

    line: int
    values: dict[str, Any]  # str for CSV and TSV, any JSON value for JSON Lines


@dataclass(frozen=True)
class Table:
    """Rows read from one file, with the field name that each column role was read from."""

    format: str
    fields: dict[str, str]  # role -> header name, 0-based index (headerless) or JSON key
    rows: list[Row]
    has_header: bool


# Given the values of every column of a headerless file (one list per column), return the
# column index per role, or None when no column can be identified with confidence.
HeaderlessGuess = Callable[[list[list[str]]], dict[str, int] | None]


def resolve_format(
    filename: str,
    format: str | None,
    *,
    formats: Sequence[str] = SUPPORTED_FORMATS,
    task_type: str | None = None,
) -> str:
    """Return the explicit format if given, else the one implied by the file name extension.

    Args:
        filename: the client's file name.
        format: the format the client passed, or None or "" to infer it.
        formats: the formats that the task type reads.
        task_type: the task type, named in the message when a format is not one of `formats`.
    """
    for_task_type = f" for task type {task_type!r}" if task_type else ""
    if format is not None and format.strip():
        resolved = format.strip().lower().lstrip(".")
        if resolved not in formats:
            raise DatasetError(
                f"format {format!r} is not supported{for_task_type}. Use one of "
                f"{', '.join(formats)}.",
                filename=filename,
                field="format",
            )
        return resolved

    extension = PurePath(filename).suffix.lower()
    if _FORMAT_BY_EXTENSION.get(extension) in formats:
        return _FORMAT_BY_EXTENSION[extension]
    extensions = [name for name, implied in _FORMAT_BY_EXTENSION.items() if implied in formats]
    raise DatasetError(
        f"the format cannot be inferred from the extension {extension or '(none)'!r}"
        f"{for_task_type}. Pass format={'|'.join(formats)}, or name the file with one of the "
        f"extensions {', '.join(extensions)}.",
        filename=filename,
        field="format",
    )


def decode_text(data: bytes, *, filename: str) -> str:
    """Decode strict UTF-8, dropping a leading byte-order mark."""
    bom_length = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom_length:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom_length + exc.start
        # Everything before the first invalid byte decoded, so it can be split into lines.
        valid_prefix = data[bom_length:offset].decode("utf-8")
        line = len(_LINE_END.findall(valid_prefix)) + 1
        raise DatasetError(
            f"the file is not valid UTF-8: byte 0x{data[offset]:02x} cannot be decoded. "
            "Save the file with UTF-8 encoding and upload it again.",
            filename=filename,
            line=line,
        ) from None


def read_table(
    data: bytes,
    *,
    filename: str,
    format: str,
    columns: Sequence[Column],
    mapping: Mapping[str, str | None],
    guess_headerless: HeaderlessGuess | None = None,
) -> Table:
    """Decode and read a whole file, raising DatasetError at the first structural problem."""
    # NOTE: the file is held in memory several times over (bytes, text, fields, rows), so
    # the upload size limit also bounds this function's memory use.
    text = decode_text(data, filename=filename)
    if format == "jsonl":
        table = _read_jsonl(text, filename=filename, columns=columns, mapping=mapping)
    else:
        table = _read_delimited(
            text,
            filename=filename,
            format=format,
            columns=columns,
            mapping=mapping,
            guess_headerless=guess_headerless,
        )

    logger.debug("Read %d rows from %r with fields %s", len(table.rows), filename, table.fields)
    return table


def json_type_name(value: Any) -> str:
    """Return the JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def iter_jsonl_objects(text: str, *, filename: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line of JSON Lines text."""
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"invalid JSON at column {exc.colno}: {exc.msg}. Each line must contain one "
                "complete JSON object (JSON Lines).",
                filename=filename,
                line=number,
            ) from None
        if not isinstance(record, dict):
            raise DatasetError(
                f"expected a JSON object, found a JSON {json_type_name(record)}. Each line "
                "must contain one JSON object (JSON Lines).",
                filename=filename,
                line=number,
            )
        yield number, record


def split_lines(text: str) -> list[str]:
    """Split text at "\\r\\n", "\\r" and "\\n", so that line numbers match csv.reader's."""
    return _LINE_END.split(text)


def _read_jsonl(
    text: str, *, filename: str, columns: Sequence[Column], mapping: Mapping[str, str | None]
) -> Table:
    keys = {column.role: _requested(mapping, column) or column.role for column in columns}
    rows = []

    for number, record in iter_jsonl_objects(text, filename=filename):
        for column in columns:
            key = keys[column.role]
            if key not in record:
                raise DatasetError(
                    f"the key {key!r} is missing. The object has the keys "
                    f"{_preview(list(record))}. Add the key, or pass {column.argument} to "
                    "read another key.",
                    filename=filename,
                    line=number,
                    field=key,
                )
        rows.append(Row(number, {role: record[key] for role, key in keys.items()}))

    if not rows:
        raise DatasetError("the file contains no rows.", filename=filename)
    return Table(format="jsonl", fields=keys, rows=rows, has_header=False)


def _read_delimited(
    text: str,
    *,
    filename: str,
    format: str,
    columns: Sequence[Column],
    mapping: Mapping[str, str | None],
    guess_headerless: HeaderlessGuess | None,
) -> Table:
    records = _split_records(text, filename=filename, format=format)
    if not records:
        raise DatasetError("the file contains no rows.", filename=filename)

    # The first row fixes the number of fields, whether or not it is a header.
    first_line, first = records[0]
    width = len(first)
    if width < len(columns):
        raise DatasetError(
            f"the row has {width} field(s), but each row needs "
            f"{len(columns)} ({', '.join(column.role for column in columns)}). "
            + _delimiter_hint(format),
            filename=filename,
            line=first_line,
        )
    for line, fields in records:
        if len(fields) != width:
            raise DatasetError(
                f"expected {width} fields, as in line {first_line}, but found {len(fields)}. "
                + _delimiter_hint(format),
                filename=filename,
                line=line,
            )

    header = _detect_header(first, columns, mapping)
    body = records[1:] if header is not None else records
    if not body:
        raise DatasetError("the file contains a header but no data rows.", filename=filename)

    # Resolve each role to a column index, then read the rows through that mapping.
    indexes = _map_columns(
        header,
        first,
        [fields for _, fields in body],
        columns,
        mapping,
        filename=filename,
        first_line=first_line,
        guess_headerless=guess_headerless,
    )
    names = {
        role: header[index].strip() if header is not None else str(index)
        for role, index in indexes.items()
    }
    rows = [
        Row(line, {role: fields[index] for role, index in indexes.items()}) for line, fields in body
    ]
    return Table(format=format, fields=names, rows=rows, has_header=header is not None)


def _split_records(text: str, *, filename: str, format: str) -> list[tuple[int, list[str]]]:
    """Split delimited text into (first physical line, fields) pairs, skipping blank rows."""
    if format == "tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=",", strict=True)

    # A quoted CSV field may span lines, so a record starts one line after the previous one
    # ended, and reader.line_num is the line where the current record ended.
    records = []
    end_of_previous = 0
    try:
        for fields in reader:
            start = end_of_previous + 1
            end_of_previous = reader.line_num
            if any(field.strip() for field in fields):
                records.append((start, fields))
    except csv.Error as exc:
        # An unclosed quote is only noticed at the end of the file, so the error names the
        # line where the failing row starts. NOTE: a field longer than csv.field_size_limit()
        # (131,072 characters by default) is also rejected here.
        raise DatasetError(
            f"invalid {format.upper()} in the row that starts on this line ({exc}). "
            + _delimiter_hint(format),
            filename=filename,
            line=end_of_previous + 1,
        ) from None
    return records


def _detect_header(
    first: list[str], columns: Sequence[Column], mapping: Mapping[str, str | None]
) -> list[str] | None:
    """Return the first row if it is a header, following the rules in the module docstring."""
    cells = [cell.strip() for cell in first]
    named = [
        requested
        for column in columns
        if (requested := _requested(mapping, column)) is not None and not _is_index(requested)
    ]
    found = any(_find_name(cells, name) is not None for name in named) or all(
        _find_known_name(cells, column) is not None for column in columns
    )
    return cells if found else None


def _map_columns(
    header: list[str] | None,
    first: list[str],
    body: list[list[str]],
    columns: Sequence[Column],
    mapping: Mapping[str, str | None],
    *,
    filename: str,
    first_line: int,
    guess_headerless: HeaderlessGuess | None,
) -> dict[str, int]:
    indexes: dict[str, int] = {}

    # Mapped columns, then columns found by a known header name.
    for column in columns:
        requested = _requested(mapping, column)
        if requested is not None:
            indexes[column.role] = _resolve_requested(
                requested, column, header, first, filename=filename, first_line=first_line
            )
        elif header is not None:
            indexes[column.role] = _resolve_known_name(
                column, header, filename=filename, first_line=first_line
            )

    # Headerless columns that were not mapped.
    unmapped = [column for column in columns if column.role not in indexes]
    if unmapped:
        indexes.update(
            _resolve_headerless(unmapped, indexes, body, filename=filename, guess=guess_headerless)
        )

    _check_distinct(indexes, columns, filename=filename)
    return indexes


def _resolve_requested(
    requested: str,
    column: Column,
    header: list[str] | None,
    first: list[str],
    *,
    filename: str,
    first_line: int,
) -> int:
    width = len(first)
    if header is not None:
        index = _find_name(header, requested)
        if index is not None:
            return index

    if _is_index(requested):
        index = int(requested)
        if index >= width:
            raise DatasetError(
                f"column index {index} is out of range, because the file has {width} columns "
                f"(indexes 0 to {width - 1}). Pass {column.argument} as a valid index.",
                filename=filename,
                field=requested,
            )
        return index

    if header is not None:
        where = f"the header contains the columns {_preview(header)}"
    else:
        where = f"the first row is not a header, and it contains {_preview(first)}"
    raise DatasetError(
        f"column {requested!r} was not found: {where}. Pass {column.argument} as one of the "
        "header's column names, or as a 0-based column index if the file has no header.",
        filename=filename,
        line=first_line,
        field=requested,
    )


def _resolve_known_name(
    column: Column, header: list[str], *, filename: str, first_line: int
) -> int:
    index = _find_known_name(header, column)
    if index is None:
        raise DatasetError(
            f"the header has no {column.role} column: it contains {_preview(header)}. Name "
            f"the column {column.known_names[0]!r}, or pass {column.argument} with its name.",
            filename=filename,
            line=first_line,
        )
    return index


def _resolve_headerless(
    unmapped: list[Column],
    indexes: dict[str, int],
    body: list[list[str]],
    *,
    filename: str,
    guess: HeaderlessGuess | None,
) -> dict[str, int]:
    width = len(body[0])
    unused = [index for index in range(width) if index not in indexes.values()]
    if len(unmapped) == 1 and len(unused) == 1:
        return {unmapped[0].role: unused[0]}

    if not indexes and guess is not None:
        values = [[fields[index] for fields in body] for index in range(width)]
        guessed = guess(values)
        if guessed is not None:
            return guessed

    roles = " and ".join(column.role for column in unmapped)
    arguments = " and ".join(column.argument for column in unmapped)
    raise DatasetError(
        f"the file has no recognised header, and the {roles} columns could not be identified "
        f"among its {width} columns. Pass {arguments} with the header's column names, or as "
        "0-based column indexes such as '0' if the file has no header.",
        filename=filename,
    )


def _check_distinct(indexes: dict[str, int], columns: Sequence[Column], *, filename: str) -> None:
    arguments = {column.role: column.argument for column in columns}
    seen: dict[int, str] = {}
    for role, index in indexes.items():
        if index in seen:
            raise DatasetError(
                f"{arguments[seen[index]]} and {arguments[role]} both refer to column {index}. "
                "Map them to different columns.",
                filename=filename,
            )
        seen[index] = role


def _requested(mapping: Mapping[str, str | None], column: Column) -> str | None:
    return given(mapping.get(column.mapping_key))


def given(value: str | None) -> str | None:
    """Return a mapping value stripped, or None when it is None or blank.

    An empty string, as an HTML form sends for a blank field, counts as not given.
    """
    if value is None or not value.strip():
        return None
    return value.strip()


def _is_index(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _find_name(cells: list[str], name: str) -> int | None:
    """Return the index of `name` among the cells, exact match first, then case-insensitive."""
    if name in cells:
        return cells.index(name)
    folded = [cell.casefold() for cell in cells]
    if name.casefold() in folded:
        return folded.index(name.casefold())
    return None


def _find_known_name(cells: list[str], column: Column) -> int | None:
    folded = [cell.strip().casefold() for cell in cells]
    for name in column.known_names:
        if name in folded:
            return folded.index(name)
    return None


def _delimiter_hint(format: str) -> str:
    if format == "tsv":
        return (
            "In TSV, fields are separated by tabs and quotes are not special, so check that "
            "no text contains a tab character."
        )
    return (
        "In CSV, fields are separated by commas, so quote any field that contains a comma, "
        'quote or line break ("like, this"). If the file is tab-separated, pass format=tsv.'
    )


def _preview(cells: list[str]) -> str:
    quoted_cells = []
    for cell in cells[:_PREVIEW_CELLS]:
        if len(cell) > _PREVIEW_CHARS:
            cell = cell[:_PREVIEW_CHARS] + "..."
        quoted_cells.append(repr(cell))
    if len(cells) > _PREVIEW_CELLS:
        quoted_cells.append(f"and {len(cells) - _PREVIEW_CELLS} more")
    return ", ".join(quoted_cells) if quoted_cells else "(nothing)"


# Checks and messages shared by the task types. `name` is the value's name in messages,
# such as "text" or "second text". `record` locates the value in a JSON document (see
# DatasetError).


def read_text(
    value: Any,
    *,
    name: str,
    filename: str,
    line: int | None = None,
    field: str | None = None,
    record: str | None = None,
    strip: bool = True,
) -> str:
    """Return a non-blank string value, stripped unless strip=False, or raise DatasetError.

    strip=False keeps the value exactly, for a text that character offsets point into.
    """
    location: dict[str, Any] = {
        "filename": filename,
        "line": line,
        "field": field,
        "record": record,
    }
    if value is None:
        raise DatasetError(f"the {name} is null. Every row needs a {name}.", **location)
    if not isinstance(value, str):
        raise DatasetError(
            f"the {name} must be a JSON string, but found a JSON {json_type_name(value)}.",
            **location,
        )
    if not value.strip():
        raise DatasetError(f"the {name} is empty. Every row needs a non-blank {name}.", **location)

    check_encodable(value, name, **location)
    return value.strip() if strip else value


def read_label(value: Any, *, filename: str, line: int | None, field: str | None) -> str:
    """Return a label as a string. A JSON label may be a string, an integer or a boolean."""
    location: dict[str, Any] = {"filename": filename, "line": line, "field": field}
    # bool is tested before int because bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        raise DatasetError("the label is null. Every row needs a label.", **location)
    if not isinstance(value, str):
        raise DatasetError(
            f"a label must be a string, an integer or a boolean, but found a JSON "
            f"{json_type_name(value)} ({preview_value(value)}).",
            **location,
        )

    label = value.strip()
    if not label:
        raise DatasetError("the label is empty. Every row needs a label.", **location)
    check_encodable(label, "label", **location)
    return label


def check_encodable(
    value: str,
    name: str,
    *,
    filename: str,
    line: int | None = None,
    field: str | None = None,
    record: str | None = None,
) -> None:
    """Raise DatasetError if the string cannot be stored as UTF-8."""
    # Strict UTF-8 decoding cannot produce lone surrogates, but a JSON escape such as
    # "\ud800" can, and such a string cannot be stored as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DatasetError(
            f"the {name} contains an unpaired surrogate escape (such as \\ud800), which is "
            "not valid Unicode. Fix the escape sequence in the file.",
            filename=filename,
            line=line,
            field=field,
            record=record,
        ) from None


def preview_value(value: Any) -> str:
    """Return repr(value), cut to 40 characters, for quoting a value in a message."""
    text = repr(value)
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "..."


def percent(part: int, whole: int) -> str:
    """Format part / whole as a percentage with one decimal, such as "12.5%"."""
    return f"{100 * part / whole:.1f}%"


def join_limited(parts: Sequence[str], limit: int = _PREVIEW_CELLS) -> str:
    """Join message parts with commas, listing at most `limit` of them and counting the rest."""
    joined = ", ".join(parts[:limit])
    if len(parts) > limit:
        joined += f" and {len(parts) - limit} more"
    return joined


def text_length_warnings(
    texts: list[str], count_tokens: Callable[[list[str]], list[int]], max_length: int
) -> list[str]:
    """Warn about texts longer than max_length tokens, special tokens included."""
    counts = count_tokens(texts)
    if len(counts) != len(texts):
        raise ValueError(f"count_tokens returned {len(counts)} counts for {len(texts)} texts")
    too_long = sum(1 for count in counts if count > max_length)
    if not too_long:
        return []
    return [
        f"{too_long} of {len(texts)} texts ({percent(too_long, len(texts))}) are longer than "
        f"max_length ({max_length} tokens, special tokens included), so only their first "
        f"{max_length} tokens can be used."
    ]


def pair_length_warnings(
    texts: list[str],
    text_pairs: list[str],
    count_tokens: Callable[[list[str]], list[int]],
    max_length: int,
) -> list[str]:
    """Warn about pairs whose two texts together have more than max_length tokens.

    count_tokens counts one text with its special tokens ([CLS] text [SEP] for BERT). A pair
    is encoded as [CLS] text [SEP] text_pair [SEP], one token fewer than the two texts
    counted apart.
    """
    text_counts = count_tokens(texts)
    pair_counts = count_tokens(text_pairs)
    if len(text_counts) != len(texts) or len(pair_counts) != len(text_pairs):
        raise ValueError(f"count_tokens returned {len(text_counts)} counts for {len(texts)} texts")

    too_long = sum(
        1
        for first, second in zip(text_counts, pair_counts, strict=True)
        if first + second - 1 > max_length
    )
    if not too_long:
        return []
    return [
        f"{too_long} of {len(texts)} pairs ({percent(too_long, len(texts))}) are longer than "
        f"max_length ({max_length} tokens, special tokens included), so they will be "
        "truncated to fit."
    ]
