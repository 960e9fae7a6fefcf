"""Input parsing and sequence encoding shared by the serving task types."""

from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from transformers import PreTrainedTokenizerFast

from service.serving.cache import LoadedAdapter
from service.serving.tasktypes.base import EncodedRow
from service.tasktypes.encoding import encode_texts

Key = TypeVar("Key", bound=Hashable)


def parse_text(item: Any) -> str:
    """Return the text of a string input or of {"text": ...}; raise ValueError otherwise."""
    if isinstance(item, dict) and set(item) == {"text"}:
        item = item["text"]
    if not isinstance(item, str) or not item.strip():
        raise ValueError('each input must be a non-empty string (or {"text": ...}).')
    return item


def parse_fields(item: Any, fields: tuple[str, ...], example: str) -> dict[str, str]:
    """Return an object input's string fields, which must be exactly `fields`, all non-empty.

    Args:
        item: the input as the request sent it.
        fields: the keys the object must have.
        example: the expected form, quoted in the error message.
    """
    if not isinstance(item, dict) or set(item) != set(fields):
        raise ValueError(f"each input must be an object {example}.")
    for field in fields:
        value = item[field]
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f'"{field}" must be a non-empty string, as in {example}.')
    return {field: item[field] for field in fields}


def group_rows(
    rows: list[tuple[LoadedAdapter, Any]], key: Callable[[LoadedAdapter, Any], Key]
) -> dict[Key, list[int]]:
    """Return the indexes of `rows` grouped by `key(adapter, input)`, groups in first-seen order."""
    groups: dict[Key, list[int]] = defaultdict(list)
    for index, (loaded, item) in enumerate(rows):
        groups[key(loaded, item)].append(index)
    return groups


def encode_sequences(
    tokenizer: PreTrainedTokenizerFast,
    rows: list[tuple[LoadedAdapter, Any]],
    texts: list[str],
    text_pairs: list[str | None],
) -> list[EncodedRow]:
    """Return one encoder row per input: its text, or its pair where text_pairs has one.

    Rows are tokenised in one call per (max_length, single or pair) group, each adapter at
    the max_length it was trained with, so a pair is truncated exactly as in training.
    """
    encoded: list[EncodedRow | None] = [None] * len(rows)
    groups = group_rows(rows, lambda loaded, _: loaded.max_length)
    for max_length, indexes in groups.items():
        singles = [i for i in indexes if text_pairs[i] is None]
        pairs = [i for i in indexes if text_pairs[i] is not None]
        for members, with_pairs in ((singles, False), (pairs, True)):
            if not members:
                continue
            input_ids, token_type_ids = encode_texts(
                tokenizer,
                [texts[i] for i in members],
                [text_pairs[i] or "" for i in members] if with_pairs else None,
                max_length=max_length,
            )
            for position, index in enumerate(members):
                types = token_type_ids[position] if token_type_ids is not None else None
                encoded[index] = EncodedRow(index, input_ids[position], types)
    return encoded  # type: ignore[return-value]
