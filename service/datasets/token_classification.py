"""Task type "token_classification" (named-entity recognition): one tag per token.

Each example is a sentence, normalised to {"tokens": [str, ...], "tags": [str, ...]} with
tags in IOB2 (BIO): "O", "B-TYPE" or "I-TYPE". Two formats are read:

- CoNLL ("conll", extensions .txt and .conll): one token per line, with whitespace-separated
  columns such as CoNLL-2003's "word POS chunk NER". The token is in column text_column and
  the tag in column label_column, both 0-based indexes, by default the first and the last.
  Every token line must have as many columns as the first one. A blank line ends a sentence,
  and "-DOCSTART-" lines (document markers) are skipped.
- JSON Lines: one sentence per line, {"tokens": [...], "tags": [...]}, with other keys
  mapped by text_column and label_column.

IOB1 tags, where an entity starts with "I-" unless it follows an entity of the same type,
are converted to IOB2 with a warning (service.tasktypes.tags explains the rule). The report's
labels are "O" and then "B-" and "I-" of every entity type, sorted, and label_counts is the
number of entities per type. Its stats hold the "sentences", "tokens" and "tag_scheme"
("IOB1" when any entity started with "I-", else "IOB2").
"""

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from service.datasets.codec import DatasetReport
from service.datasets.errors import DatasetError
from service.datasets.formats import (
    Column,
    Row,
    Table,
    decode_text,
    given,
    join_limited,
    json_type_name,
    percent,
    preview_value,
    read_table,
    split_lines,
)
from service.tasktypes.tags import (
    build_tag_set,
    count_entity_starts_with_inside,
    extract_entities,
    iob1_to_iob2,
    is_valid_tag,
)

TASK_TYPE = "token_classification"
FORMATS = ("conll", "jsonl")
DOCUMENT_MARKER = "-DOCSTART-"
RARE_ENTITY_MENTIONS = 5  # warn about entity types with fewer entities than this

JSONL_COLUMNS = (
    Column("tokens", ("tokens",), mapped_as="text"),
    Column("tags", ("tags",), mapped_as="label"),
)

_TAG_HELP = "A tag must be 'O', or 'B-' or 'I-' followed by an entity type, such as 'B-PER'."


@dataclass(frozen=True)
class Sentence:
    """One sentence as read from the file, before IOB1 conversion."""

    line: int  # line of the first token (CoNLL) or of the JSON object
    tokens: list[str]
    tags: list[str]


def parse(
    data: bytes,
    *,
    filename: str,
    format: str,
    columns: Mapping[str, str | None],
    count_tokens: Callable[[list[str]], list[int]] | None,
    max_length: int,
) -> DatasetReport:
    """Read and validate a whole file. Raise DatasetError at the first invalid sentence."""
    if format == "conll":
        sentences = read_conll(
            decode_text(data, filename=filename),
            filename=filename,
            token_column=given(columns.get("text")),
            tag_column=given(columns.get("label")),
        )
    else:
        sentences = _read_jsonl(data, filename=filename, columns=columns)

    # IOB1 to IOB2, then the counts and checks that need the whole file.
    converted = sum(count_entity_starts_with_inside(sentence.tags) for sentence in sentences)
    examples = [
        {"tokens": sentence.tokens, "tags": iob1_to_iob2(sentence.tags)} for sentence in sentences
    ]
    entity_counts = Counter(
        entity.type for example in examples for entity in extract_entities(example["tags"])
    )
    if not entity_counts:
        raise DatasetError(
            "every tag is 'O', so the file has no entity to learn. Check that label_column "
            "names the tag column.",
            filename=filename,
        )

    warnings = [*_conversion_warnings(converted), *_rare_type_warnings(entity_counts)]
    if count_tokens is not None:
        warnings.extend(_length_warnings(examples, count_tokens, max_length))

    return DatasetReport(
        task_type=TASK_TYPE,
        format=format,
        examples=examples,
        labels=build_tag_set(tag for example in examples for tag in example["tags"]),
        label_counts={
            entity_type: entity_counts[entity_type] for entity_type in sorted(entity_counts)
        },
        warnings=warnings,
        num_rows=len(examples),
        stats={
            "sentences": len(examples),
            "tokens": sum(len(example["tokens"]) for example in examples),
            "tag_scheme": "IOB1" if converted else "IOB2",
        },
    )


def read_conll(
    text: str, *, filename: str, token_column: str | None = None, tag_column: str | None = None
) -> list[Sentence]:
    """Read CoNLL column text into sentences, as described in the module docstring.

    Args:
        text: the decoded file.
        filename: the file name, for messages.
        token_column: 0-based index of the token column as a string, None for the first.
        tag_column: 0-based index of the tag column as a string, None for the last.
    """
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0  # line of the sentence's first token
    layout: _ConllLayout | None = None

    for number, line in enumerate(split_lines(text), start=1):
        fields = line.split()
        if not fields or fields[0] == DOCUMENT_MARKER:
            if tokens:
                sentences.append(Sentence(first_line, tokens, tags))
                tokens, tags = [], []
            continue

        if layout is None:
            layout = _ConllLayout.from_first_line(
                len(fields), token_column, tag_column, filename=filename, line=number
            )
        layout.check_width(len(fields), filename=filename, line=number)
        tag = fields[layout.tag_index]
        if not is_valid_tag(tag):
            raise DatasetError(
                f"invalid tag {preview_value(tag)}. {_TAG_HELP}",
                filename=filename,
                line=number,
                field=str(layout.tag_index),
            )

        if not tokens:
            first_line = number
        tokens.append(fields[layout.token_index])
        tags.append(tag)

    if tokens:
        sentences.append(Sentence(first_line, tokens, tags))
    if not sentences:
        raise DatasetError("the file contains no sentences.", filename=filename)
    return sentences


@dataclass(frozen=True)
class _ConllLayout:
    width: int  # columns per token line
    first_line: int
    token_index: int
    tag_index: int

    @classmethod
    def from_first_line(
        cls,
        width: int,
        token_column: str | None,
        tag_column: str | None,
        *,
        filename: str,
        line: int,
    ) -> "_ConllLayout":
        if width < 2 and tag_column is None:
            raise DatasetError(
                "the line has 1 column, but each token line needs the token and its tag, "
                "separated by whitespace.",
                filename=filename,
                line=line,
            )
        token_index = _column_index(token_column, "text_column", width, filename, line, default=0)
        tag_index = _column_index(tag_column, "label_column", width, filename, line, default=-1)
        if token_index == tag_index:
            raise DatasetError(
                f"text_column and label_column both refer to column {tag_index}. Map them to "
                "different columns.",
                filename=filename,
                field=str(tag_index),
            )
        return cls(width, line, token_index, tag_index)

    def check_width(self, width: int, *, filename: str, line: int) -> None:
        if width != self.width:
            raise DatasetError(
                f"expected {self.width} whitespace-separated columns, as in line "
                f"{self.first_line}, but found {width}. A token cannot contain whitespace in "
                "CoNLL files.",
                filename=filename,
                line=line,
            )


def _column_index(
    requested: str | None, argument: str, width: int, filename: str, line: int, *, default: int
) -> int:
    if requested is None:
        return default % width
    if not (requested.isascii() and requested.isdigit()):
        raise DatasetError(
            f"CoNLL columns have no names, so {argument} must be a 0-based column index such "
            f"as '0', not {requested!r}.",
            filename=filename,
            field=argument,
        )
    index = int(requested)
    if index >= width:
        raise DatasetError(
            f"column index {index} is out of range, because the line has {width} columns "
            f"(indexes 0 to {width - 1}). Pass {argument} as a valid index.",
            filename=filename,
            line=line,
            field=requested,
        )
    return index


def _read_jsonl(data: bytes, *, filename: str, columns: Mapping[str, str | None]) -> list[Sentence]:
    table = read_table(
        data, filename=filename, format="jsonl", columns=JSONL_COLUMNS, mapping=columns
    )
    return [_read_jsonl_sentence(row, table, filename=filename) for row in table.rows]


def _read_jsonl_sentence(row: Row, table: Table, *, filename: str) -> Sentence:
    tokens_key = table.fields["tokens"]
    tags_key = table.fields["tags"]
    tokens = _read_string_list(row.values["tokens"], "tokens", filename, row.line, tokens_key)
    tags = _read_string_list(row.values["tags"], "tags", filename, row.line, tags_key)

    if not tokens:
        raise DatasetError(
            "the sentence has no tokens. Every sentence needs at least one token.",
            filename=filename,
            line=row.line,
            field=tokens_key,
        )
    if len(tags) != len(tokens):
        raise DatasetError(
            f"the sentence has {len(tokens)} tokens but {len(tags)} tags. Give exactly one tag "
            "per token.",
            filename=filename,
            line=row.line,
            field=tags_key,
        )
    for index, token in enumerate(tokens):
        if not token.strip():
            raise DatasetError(
                f"token {index} is empty. Every token needs at least one visible character.",
                filename=filename,
                line=row.line,
                field=f"{tokens_key}[{index}]",
            )
    for index, tag in enumerate(tags):
        if not is_valid_tag(tag):
            raise DatasetError(
                f"invalid tag {preview_value(tag)} for token {index}. {_TAG_HELP}",
                filename=filename,
                line=row.line,
                field=f"{tags_key}[{index}]",
            )
    return Sentence(row.line, tokens, tags)


def _read_string_list(value: Any, name: str, filename: str, line: int, key: str) -> list[str]:
    if not isinstance(value, list):
        raise DatasetError(
            f"the {name} must be a JSON array of strings, but found a JSON "
            f"{json_type_name(value)} ({preview_value(value)}).",
            filename=filename,
            line=line,
            field=key,
        )
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise DatasetError(
                f"the {name} must be strings, but item {index} is a JSON "
                f"{json_type_name(item)} ({preview_value(item)}).",
                filename=filename,
                line=line,
                field=f"{key}[{index}]",
            )
    return value


def _conversion_warnings(converted: int) -> list[str]:
    if not converted:
        return []
    return [
        f"{converted} entities start with 'I-', as in the IOB1 tag scheme. They were converted "
        "to IOB2 (BIO), where every entity starts with 'B-'."
    ]


def _rare_type_warnings(entity_counts: Counter[str]) -> list[str]:
    rare = sorted(
        entity_type for entity_type, count in entity_counts.items() if count < RARE_ENTITY_MENTIONS
    )
    if not rare:
        return []
    listed = join_limited(
        [f"{entity_type!r} ({entity_counts[entity_type]})" for entity_type in rare]
    )
    return [
        f"{len(rare)} of {len(entity_counts)} entity types have fewer than "
        f"{RARE_ENTITY_MENTIONS} entities: {listed}. The model can hardly learn a type from so "
        "few examples, so add examples or remove these tags."
    ]


def _length_warnings(
    examples: list[dict[str, list[str]]],
    count_tokens: Callable[[list[str]], list[int]],
    max_length: int,
) -> list[str]:
    # A BERT tokenizer splits at whitespace first, so the tokens joined by spaces give the
    # same sub-tokens as the token list.
    texts = [" ".join(example["tokens"]) for example in examples]
    counts = count_tokens(texts)
    if len(counts) != len(texts):
        raise ValueError(f"count_tokens returned {len(counts)} counts for {len(texts)} texts")
    too_long = sum(1 for count in counts if count > max_length)
    if not too_long:
        return []
    return [
        f"{too_long} of {len(texts)} sentences ({percent(too_long, len(texts))}) are longer "
        f"than max_length ({max_length} sub-word tokens, special tokens included). They are "
        "split into overlapping windows for training and prediction, so no token is cut off."
    ]
