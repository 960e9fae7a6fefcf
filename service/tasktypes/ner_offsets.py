"""Words with character offsets in raw text, and entities mapped back to character offsets.

A token classifier labels words. To tag raw text, split_words cuts it into the words that
BERT's basic tokenizer would produce, but keeps each word's exact span in the original
string. The words then go to the tokenizer with is_split_into_words=True, and the per-word
tags come back as entities whose text is always input[start:end].

Offsets are Python string indexes, so they count Unicode code points. A JavaScript client,
which counts UTF-16 code units, gets different numbers after any character outside the
Basic Multilingual Plane, such as most emoji.

The split mirrors the BertNormalizer and BertPreTokenizer of the Hugging Face `tokenizers`
library (src/normalizers/bert.rs and src/pre_tokenizers/bert.rs). A test checks that the
words give the same token ids as the raw text with the installed tokenizer:

- control and format characters (Unicode categories C*, except tab, line feed and carriage
  return), U+0000 and U+FFFD are removed, so they neither split a word nor start one;
- whitespace (tab, line feed, carriage return and Unicode White_Space characters) separates
  words, and several in a row count as one separator;
- every punctuation character (ASCII punctuation, or Unicode category P*) is a word of its
  own;
- every CJK ideograph (the ranges of BERT's _is_chinese_char) is a word of its own.

Everything else, including accented letters, combining marks and emoji, stays inside the
word it is part of.
"""

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from service.tasktypes.tags import extract_entities

# The CJK Unified Ideographs blocks that BERT's tokenizer isolates. Hangul, Hiragana and
# Katakana are not in them and are split like other letters.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
_ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


@dataclass(frozen=True)
class Word:
    """A word of the input text and its span: text == input[start:end]."""

    text: str
    start: int
    end: int


class Entity(TypedDict):
    """An entity found in raw text, as the serving engine returns it."""

    type: str
    text: str  # always input[start:end]
    start: int  # code point offset of the first character
    end: int  # code point offset one past the last character
    score: float  # mean of the per-word scores of the entity's words


def split_words(text: str) -> list[Word]:
    """Split raw text into words with their character offsets, as described in the module doc."""
    words: list[Word] = []
    start: int | None = None  # start of the word being read
    end = 0  # end of its last kept character

    for index, char in enumerate(text):
        if _is_removed(char):
            continue

        isolated = _is_punctuation(char) or _is_cjk(char)
        if _is_whitespace(char) or isolated:
            if start is not None:
                words.append(Word(text[start:end], start, end))
                start = None
            if isolated:
                words.append(Word(char, index, index + 1))
            continue

        if start is None:
            start = index
        end = index + 1

    if start is not None:
        words.append(Word(text[start:end], start, end))
    return words


def entities_from_word_tags(
    text: str, words: Sequence[Word], tags: Sequence[str], scores: Sequence[float]
) -> list[Entity]:
    """Turn per-word tags into entities with character offsets in `text`.

    Tags are decoded by tags.extract_entities, so an "I-" tag that continues no entity starts
    one. An entity spans from its first word's start to its last word's end, with the
    original characters between them.

    Args:
        text: the raw input that split_words was given.
        words: split_words(text).
        tags: one BIO tag per word.
        scores: one score per word, such as the probability of its predicted tag.
    """
    if not len(words) == len(tags) == len(scores):
        raise ValueError(
            f"got {len(words)} words, {len(tags)} tags and {len(scores)} scores; "
            "expected one tag and one score per word"
        )

    entities: list[Entity] = []
    for span in extract_entities(tags):
        start = words[span.start].start
        end = words[span.end - 1].end
        entity_scores = scores[span.start : span.end]
        entities.append(
            Entity(
                type=span.type,
                text=text[start:end],
                start=start,
                end=end,
                score=sum(entity_scores) / len(entity_scores),
            )
        )
    return entities


def _is_removed(char: str) -> bool:
    if char in "\t\n\r":
        return False
    return char in "\x00\ufffd" or unicodedata.category(char).startswith("C")


def _is_whitespace(char: str) -> bool:
    # Control characters never get here (they are removed first), so str.isspace matches
    # Unicode's White_Space property for what is left.
    return char in "\t\n\r" or char.isspace()


def _is_punctuation(char: str) -> bool:
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def _is_cjk(char: str) -> bool:
    code_point = ord(char)
    return any(low <= code_point <= high for low, high in _CJK_RANGES)
