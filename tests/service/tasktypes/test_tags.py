"""BIO tag parsing, IOB1 to IOB2 conversion and entity spans over token indexes."""

import pytest

from service.tasktypes.tags import (
    EntitySpan,
    build_tag_set,
    count_entity_starts_with_inside,
    extract_entities,
    iob1_to_iob2,
    is_valid_tag,
    parse_tag,
)


def test_parse_tag_prefix_and_type():
    assert parse_tag("O") == ("O", None)
    assert parse_tag("B-PER") == ("B", "PER")
    assert parse_tag("I-MISC") == ("I", "MISC")
    assert parse_tag("B-DATE-TIME") == ("B", "DATE-TIME")


@pytest.mark.parametrize(
    "tag", ["", "o", "B", "B-", "I-", "E-PER", "S-LOC", "B PER", "B-PE R", "PER"]
)
def test_parse_tag_malformed_rejected(tag):
    assert not is_valid_tag(tag)
    with pytest.raises(ValueError, match="invalid tag"):
        parse_tag(tag)


def test_iob1_entity_starts_become_b():
    # CoNLL-2003 in IOB1: "B-" only where two entities of one type touch.
    iob1 = ["I-ORG", "O", "I-MISC", "O", "I-PER", "I-PER", "B-PER", "I-LOC", "I-PER"]

    iob2 = iob1_to_iob2(iob1)

    assert iob2 == ["B-ORG", "O", "B-MISC", "O", "B-PER", "I-PER", "B-PER", "B-LOC", "B-PER"]


def test_iob1_conversion_keeps_iob2_unchanged():
    iob2 = ["B-ORG", "I-ORG", "O", "B-PER", "B-PER", "I-PER", "O"]

    assert iob1_to_iob2(iob2) == iob2
    assert iob1_to_iob2(iob1_to_iob2(["I-X", "I-X", "I-Y"])) == ["B-X", "I-X", "B-Y"]


def test_iob1_starts_counted():
    assert count_entity_starts_with_inside(["I-ORG", "I-ORG", "O", "I-PER", "B-PER"]) == 2
    assert count_entity_starts_with_inside(["B-ORG", "I-ORG", "B-PER"]) == 0
    assert count_entity_starts_with_inside([]) == 0


def test_entities_from_iob2_tags():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]

    assert extract_entities(tags) == [
        EntitySpan("PER", 0, 2),
        EntitySpan("LOC", 3, 4),
        EntitySpan("LOC", 4, 6),
        EntitySpan("ORG", 7, 8),
    ]


def test_entities_stray_inside_starts_entity():
    tags = ["I-PER", "I-PER", "I-LOC", "O", "I-ORG", "B-PER", "I-ORG"]

    assert extract_entities(tags) == [
        EntitySpan("PER", 0, 2),
        EntitySpan("LOC", 2, 3),
        EntitySpan("ORG", 4, 5),
        EntitySpan("PER", 5, 6),
        EntitySpan("ORG", 6, 7),
    ]


def test_entities_none_for_outside_only():
    assert extract_entities(["O", "O"]) == []
    assert extract_entities([]) == []


def test_tag_set_lists_both_prefixes():
    assert build_tag_set(["O", "B-PER", "B-LOC", "I-LOC", "O"]) == [
        "O",
        "B-LOC",
        "B-PER",
        "I-LOC",
        "I-PER",
    ]
    assert build_tag_set(["O"]) == ["O"]
