"""BIO tags: parsing, IOB1 to IOB2 conversion and entity spans.

A tag is "O" (outside any entity), "B-TYPE" (first token of an entity) or "I-TYPE" (inside
an entity). The two schemes differ only in where "B-" is required:

- IOB2 (also called BIO): every entity starts with "B-".
- IOB1 (the original CoNLL-2003 files): an entity starts with "I-", and "B-" is used only
  for an entity that directly follows another entity of the same type.

An "I-TYPE" that does not continue an entity of the same type therefore starts a new entity.
This is the IOB1 reading, and it is also how the CoNLL evaluation script (conlleval) and
seqeval's default mode read a malformed IOB2 sequence, so the same rule serves for
converting uploads, for decoding model predictions and for scoring.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

OUTSIDE = "O"

_TAG = re.compile(r"([BI])-(\S+)")


@dataclass(frozen=True)
class EntitySpan:
    """An entity over token (or word) indexes: tokens start to end - 1."""

    type: str
    start: int  # index of the first token
    end: int  # index one past the last token


def parse_tag(tag: str) -> tuple[str, str | None]:
    """Split a tag into its prefix and entity type: "B-PER" -> ("B", "PER"), "O" -> ("O", None).

    Raises:
        ValueError: the tag is neither "O" nor "B-TYPE" or "I-TYPE" with a non-blank type.
    """
    if tag == OUTSIDE:
        return OUTSIDE, None
    match = _TAG.fullmatch(tag)
    if match is None:
        raise ValueError(
            f"invalid tag {tag!r}: expected 'O', or 'B-' or 'I-' followed by an entity type "
            "such as 'B-PER'"
        )
    return match.group(1), match.group(2)


def is_valid_tag(tag: str) -> bool:
    """Return whether parse_tag accepts the tag."""
    return tag == OUTSIDE or _TAG.fullmatch(tag) is not None


def count_entity_starts_with_inside(tags: Sequence[str]) -> int:
    """Count the "I-" tags that start an entity, so the IOB1 tags that IOB2 would write as "B-"."""
    return sum(
        1
        for previous, tag in zip([OUTSIDE, *tags], tags, strict=False)
        if tag != _continued(previous, tag)
    )


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """Convert IOB1 tags to IOB2: an "I-" that starts an entity becomes "B-".

    IOB2 input is returned unchanged, so the conversion is safe on files of either scheme.
    """
    return [
        _continued(previous, tag) for previous, tag in zip([OUTSIDE, *tags], tags, strict=False)
    ]


def extract_entities(tags: Sequence[str]) -> list[EntitySpan]:
    """Return the entities of one sentence, in order.

    An "I-TYPE" that does not continue an entity of the same type starts a new one (the rule
    in the module docstring), so any sequence of valid tags can be decoded.
    """
    entities = []
    current: EntitySpan | None = None

    for index, tag in enumerate(tags):
        prefix, entity_type = parse_tag(tag)
        continues = prefix == "I" and current is not None and current.type == entity_type
        if continues and current is not None:
            current = EntitySpan(current.type, current.start, index + 1)
            continue

        if current is not None:
            entities.append(current)
        current = EntitySpan(entity_type, index, index + 1) if entity_type is not None else None

    if current is not None:
        entities.append(current)
    return entities


def build_tag_set(tags: Iterable[str]) -> list[str]:
    """Return the label list of a token classifier: "O", then "B-" and "I-" of every type seen.

    Both prefixes are listed for every entity type even when only one occurs, so that an eval
    file with a multi-token entity never has a tag that the model cannot output. After "O" the
    tags are in plain sorted order ("B-LOC", "B-PER", "I-LOC", "I-PER").
    """
    types = {entity_type for tag in tags if (entity_type := parse_tag(tag)[1]) is not None}
    return [OUTSIDE, *sorted(f"{prefix}-{entity_type}" for entity_type in types for prefix in "BI")]


def _continued(previous: str, tag: str) -> str:
    """Return tag in IOB2, given the previous tag: "I-X" after neither "B-X" nor "I-X" is "B-X"."""
    if not tag.startswith("I-"):
        return tag
    entity_type = tag[2:]
    if previous in (f"B-{entity_type}", f"I-{entity_type}"):
        return tag
    return f"B-{entity_type}"
