"""Serving of token classification (NER): raw text or tokens in, entities with offsets out.

A raw text is split into words by ner_offsets.split_words, which keeps every word's
character span, so an entity's text is always input[start:end] whatever the input holds
(emoji, accents, CJK, repeated spaces). An input {"tokens": [...]} is taken as words as
given, as in a CoNLL file. Its offsets refer to the tokens joined by single spaces, and the
prediction adds one tag per token.

Words go to the tokenizer in overlapping windows (alignment.encode_windows), so a long text
is never cut. Each word takes the tag of its first sub-token, from the window where the word
is most central, as in training.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from service.serving.cache import LoadedAdapter
from service.serving.tasktypes.base import EncodedRow, ServingTaskType
from service.serving.tasktypes.inputs import parse_text
from service.tasktypes.alignment import (
    WindowEncoding,
    encode_windows,
    first_subtoken_positions,
    merge_window_predictions,
)
from service.tasktypes.ner_offsets import Word, entities_from_word_tags, split_words
from service.tasktypes.tags import OUTSIDE

INPUT_FORMS = 'a non-empty string, {"text": "..."} or {"tokens": ["...", ...]}'

# (label index, probability) of a word's predicted tag.
WordPrediction = tuple[int, float]


@dataclass(frozen=True)
class TokenInput:
    """A parsed input: the text whose offsets entities refer to, and its words."""

    text: str
    words: list[Word]
    from_tokens: bool  # True for {"tokens": [...]}, whose prediction adds "tags"


@dataclass(frozen=True)
class WindowPlan:
    """The inputs' words, and where each input's windows are among the encoded rows."""

    inputs: list[TokenInput]
    first_row: list[int]  # per input, the index of its first window in the encoded rows
    windows: list[list[WindowEncoding]]  # per input, its windows in order


def parse_token_input(item: Any) -> dict[str, Any]:
    """Return {"text": str} or {"tokens": [str, ...]} of an input in one of INPUT_FORMS.

    Raises:
        ValueError: the input has none of those forms.
    """
    if isinstance(item, dict) and set(item) == {"tokens"}:
        tokens = item["tokens"]
        if not isinstance(tokens, list) or not tokens:
            raise ValueError('"tokens" must be a non-empty list of strings.')
        if not all(isinstance(token, str) and token for token in tokens):
            raise ValueError('every token in "tokens" must be a non-empty string.')
        return {"tokens": tokens}
    try:
        return {"text": parse_text(item)}
    except ValueError:
        raise ValueError(f"each input must be {INPUT_FORMS}.") from None


def split_input(item: dict[str, Any]) -> TokenInput:
    """Return the text and words of a parsed input."""
    if "tokens" in item:
        tokens = item["tokens"]
        return TokenInput(" ".join(tokens), words_of_tokens(tokens), from_tokens=True)
    return TokenInput(item["text"], split_words(item["text"]), from_tokens=False)


def words_of_tokens(tokens: Sequence[str]) -> list[Word]:
    """Return the tokens as words with their offsets in " ".join(tokens)."""
    words = []
    start = 0
    for token in tokens:
        words.append(Word(token, start, start + len(token)))
        start += len(token) + 1
    return words


def window_stride(loaded: LoadedAdapter) -> int:
    """Return the window overlap the adapter was trained with, in sub-tokens."""
    return int(loaded.extra.get("doc_stride", loaded.max_length // 4))


def predict_word_tags(
    windows: Sequence[WindowEncoding], logits: Sequence[torch.Tensor], num_words: int
) -> list[WordPrediction | None]:
    """Return each word's predicted tag from its first sub-token, merged over the windows.

    Args:
        windows: every window of one sentence, as encode_windows returned them.
        logits: per window, the head output `[num_tokens, num_labels]`.
        num_words: words in the sentence.

    Returns:
        Per word, (label index, probability), or None for a word that has no sub-token.
    """
    per_window: list[list[WordPrediction | None]] = []
    for window, window_logits in zip(windows, logits, strict=True):
        probabilities, indexes = window_logits.float().softmax(dim=-1).max(dim=-1)
        probabilities_list, indexes_list = probabilities.tolist(), indexes.tolist()
        positions = first_subtoken_positions(window.word_ids, num_words)
        predictions: list[WordPrediction | None] = []
        for word in range(window.window.start, window.window.end):
            position = positions[word]
            if position is None:
                predictions.append(None)
            else:
                predictions.append((indexes_list[position], probabilities_list[position]))
        per_window.append(predictions)
    return merge_window_predictions(
        [encoding.window for encoding in windows], per_window, num_words, default=None
    )


class TokenClassification(ServingTaskType):
    name = "token_classification"
    token_level = True

    def parse_input(self, item: Any) -> dict[str, Any]:
        # A plain dict, which the micro-batcher can measure (serving.batcher.estimate_tokens).
        return parse_token_input(item)

    def encode(
        self, tokenizer: PreTrainedTokenizerFast, rows: list[tuple[LoadedAdapter, Any]]
    ) -> tuple[list[EncodedRow], WindowPlan]:
        encoded: list[EncodedRow] = []
        plan = WindowPlan([], [], [])
        for index, (loaded, parsed) in enumerate(rows):
            item = split_input(parsed)
            windows = []
            if item.words:
                windows = encode_windows(
                    tokenizer,
                    [word.text for word in item.words],
                    max_length=loaded.max_length,
                    stride=window_stride(loaded),
                )
            plan.inputs.append(item)
            plan.first_row.append(len(encoded))
            plan.windows.append(windows)
            encoded.extend(EncodedRow(index, window.input_ids) for window in windows)
        return encoded, plan

    def decode(
        self,
        rows: list[tuple[LoadedAdapter, Any]],
        encoded: list[EncodedRow],
        plan: WindowPlan,
        outputs: list[torch.Tensor],
    ) -> list[dict]:
        predictions = []
        for index, (loaded, _) in enumerate(rows):
            item = plan.inputs[index]
            windows = plan.windows[index]
            first = plan.first_row[index]
            words = predict_word_tags(
                windows, outputs[first : first + len(windows)], len(item.words)
            )
            tags = [OUTSIDE if word is None else loaded.labels[word[0]] for word in words]
            scores = [0.0 if word is None else word[1] for word in words]
            prediction: dict[str, Any] = {
                "entities": entities_from_word_tags(item.text, item.words, tags, scores)
            }
            if item.from_tokens:
                prediction["tags"] = tags
            predictions.append(prediction)
        return predictions
