"""Word-level labels on sub-tokens, and overlapping windows over sentences that are too long.

Token classification labels words, but the encoder's input is sub-tokens ("Loraplex" ->
"lo", "##ra", "##plex"). A word's label goes to its first sub-token and every other position
gets IGNORE_INDEX, which the cross-entropy loss skips, so each word counts once. At
prediction time a word takes the prediction of its first sub-token.

A sentence with more sub-tokens than the model's max_length is never cut. It is split at word
boundaries into windows that overlap by about `stride` sub-tokens, each window is encoded on
its own, and merge_window_predictions takes each word's prediction from the window where the
word has the most context on both sides.

Word indexes always refer to the whole sentence, including inside a window.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

IGNORE_INDEX = -100  # the default ignore_index of torch.nn.CrossEntropyLoss

T = TypeVar("T")


@dataclass(frozen=True)
class WordWindow:
    """Words start to end - 1 of a sentence, encoded together."""

    start: int
    end: int


@dataclass(frozen=True)
class WindowEncoding:
    """One window of a sentence, tokenised with special tokens and without padding.

    word_ids has one entry per position of input_ids: the sentence-level index of the word
    that the sub-token belongs to, or None for a special token.
    """

    window: WordWindow
    input_ids: list[int]
    word_ids: list[int | None]


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Return one label per sub-token: the word's label on its first sub-token, else IGNORE_INDEX.

    Args:
        word_ids: per position, the index into word_labels of its word, or None for special
            tokens (a fast tokenizer's `encoding.word_ids()`).
        word_labels: label id per word.
    """
    labels = []
    previous: int | None = None
    for word_id in word_ids:
        if word_id is None or word_id == previous:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(word_labels[word_id])
        previous = word_id
    return labels


def first_subtoken_positions(word_ids: Sequence[int | None], num_words: int) -> list[int | None]:
    """Return, for each word, the position of its first sub-token, or None if it has none.

    A word has no sub-token when the tokenizer's normaliser removes all of its characters (a
    lone control character, for example), or when the window does not contain the word.
    """
    positions: list[int | None] = [None] * num_words
    for position, word_id in enumerate(word_ids):
        if word_id is not None and 0 <= word_id < num_words and positions[word_id] is None:
            positions[word_id] = position
    return positions


def count_subtokens(word_ids: Sequence[int | None], num_words: int) -> list[int]:
    """Return the number of sub-tokens of each word, from the word_ids of the whole sentence."""
    counts = [0] * num_words
    for word_id in word_ids:
        if word_id is not None:
            counts[word_id] += 1
    return counts


def plan_windows(
    subtoken_counts: Sequence[int], max_subtokens: int, stride: int
) -> list[WordWindow]:
    """Split a sentence into windows of whole words that overlap by up to `stride` sub-tokens.

    Each window contains as many words as fit in max_subtokens. The next window starts at the
    earliest word such that the words it shares with the previous window have at most
    `stride` sub-tokens and still leave room for the first word that the previous window
    lacked. It always starts at least one word later, so the loop ends. A single word longer
    than max_subtokens gets a window of its own, in which its last sub-tokens are cut when
    encoded. Its first sub-token, which carries the word's label, is always kept. An empty
    sentence has no windows.

    Args:
        subtoken_counts: sub-tokens per word, special tokens excluded.
        max_subtokens: sub-tokens that fit in one window, so max_length minus the special
            tokens (2 for BERT's [CLS] and [SEP]).
        stride: maximum overlap in sub-tokens between consecutive windows.
    """
    if max_subtokens < 1:
        raise ValueError(f"max_subtokens must be at least 1, got {max_subtokens}")
    if not 0 <= stride < max_subtokens:
        raise ValueError(f"stride must be in [0, max_subtokens), got {stride} for {max_subtokens}")

    windows: list[WordWindow] = []
    start = 0
    num_words = len(subtoken_counts)
    while start < num_words:
        end = _fill_window(subtoken_counts, start, max_subtokens)
        windows.append(WordWindow(start, end))
        if end >= num_words:
            break

        # The overlap also leaves room for the first new word, so that every window after
        # the first one reaches further than the one before.
        overlap = min(stride, max_subtokens - subtoken_counts[end])
        start = _next_window_start(subtoken_counts, start, end, overlap)
    return windows


def encode_windows(
    tokenizer: "PreTrainedTokenizerFast", words: Sequence[str], *, max_length: int, stride: int
) -> list[WindowEncoding]:
    """Tokenise a pre-split sentence into overlapping windows of at most max_length tokens.

    Args:
        tokenizer: a fast tokenizer (word_ids() is only available on fast tokenizers).
        words: the sentence's words or tokens.
        max_length: maximum sequence length, special tokens included.
        stride: maximum overlap in sub-tokens between consecutive windows.
    """
    # NOTE: only BERT's WordPiece tokenizer is tested here. A RoBERTa tokenizer needs
    # add_prefix_space=True for is_split_into_words.
    num_special = tokenizer.num_special_tokens_to_add(pair=False)
    whole = tokenizer(list(words), is_split_into_words=True, add_special_tokens=False)
    counts = count_subtokens(whole.word_ids(), len(words))

    encodings = []
    for window in plan_windows(counts, max_length - num_special, stride):
        encoding = tokenizer(
            list(words[window.start : window.end]),
            is_split_into_words=True,
            truncation=True,
            max_length=max_length,
        )
        word_ids = [
            None if word_id is None else word_id + window.start for word_id in encoding.word_ids()
        ]
        encodings.append(WindowEncoding(window, list(encoding["input_ids"]), word_ids))
    return encodings


def merge_window_predictions(
    windows: Sequence[WordWindow],
    window_predictions: Sequence[Sequence[T | None]],
    num_words: int,
    default: T,
) -> list[T]:
    """Return one prediction per word, taken from the window where the word is most central.

    A word's centrality in a window is the smaller of its context on the left and on the
    right, in words, where a side that reaches the start or end of the sentence counts as
    unlimited context. On a tie the earlier window wins.

    Args:
        windows: the windows, as plan_windows returned them.
        window_predictions: per window, one prediction per word of the window (index 0 is
            word window.start), or None where the window has no prediction for the word.
        num_words: number of words in the sentence.
        default: the prediction for a word that no window predicts, such as the "O" tag.
    """
    if len(window_predictions) != len(windows):
        raise ValueError(f"got predictions for {len(window_predictions)} of {len(windows)} windows")

    merged: list[T] = [default] * num_words
    best_centrality = [-1.0] * num_words
    for window, predictions in zip(windows, window_predictions, strict=True):
        for offset, prediction in enumerate(predictions):
            word = window.start + offset
            if prediction is None or word >= window.end:
                continue
            centrality = _centrality(window, word, num_words)
            if centrality > best_centrality[word]:
                best_centrality[word] = centrality
                merged[word] = prediction
    return merged


def _fill_window(subtoken_counts: Sequence[int], start: int, max_subtokens: int) -> int:
    end = start + 1  # the first word always goes in, even if it alone is too long
    total = subtoken_counts[start]
    while end < len(subtoken_counts) and total + subtoken_counts[end] <= max_subtokens:
        total += subtoken_counts[end]
        end += 1
    return end


def _next_window_start(
    subtoken_counts: Sequence[int], start: int, end: int, max_overlap: int
) -> int:
    next_start = end
    overlap = 0
    while next_start - 1 > start and overlap + subtoken_counts[next_start - 1] <= max_overlap:
        next_start -= 1
        overlap += subtoken_counts[next_start]
    return next_start


def _centrality(window: WordWindow, word: int, num_words: int) -> float:
    left = float("inf") if window.start == 0 else word - window.start
    right = float("inf") if window.end == num_words else window.end - 1 - word
    return min(left, right)
