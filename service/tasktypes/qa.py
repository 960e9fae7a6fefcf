"""Extractive question answering: context windows, answer positions and best-span search.

A context longer than the model's max_length is split into overlapping windows, each
encoded as "[CLS] question [SEP] context part [SEP]". Consecutive windows share `stride`
context tokens, so an answer of at most `stride` tokens lies whole in at least one window.

Training: a window that contains the whole answer is labelled with the answer's first and
last token positions; any other window is labelled with the [CLS] position for both.
Prediction: every window proposes its best span of context tokens, and the span with the
highest probability over all windows wins. Its text is cut from the context by character
offsets, so it is exactly context[start:end].
"""

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

DEFAULT_MAX_LENGTH = 384
DEFAULT_STRIDE = 128
DEFAULT_MAX_QUESTION_TOKENS = 64
DEFAULT_MAX_ANSWER_TOKENS = 30


@dataclass(frozen=True)
class QAWindow:
    """One window of one (question, context) pair, with special tokens and without padding."""

    example_index: int  # index of the pair in the lists given to encode_qa_windows
    input_ids: list[int]
    token_type_ids: list[int] | None  # None for tokenizers without them, such as RoBERTa's
    offsets: list[tuple[int, int] | None]  # per position: span in the context, or None
    cls_index: int  # the position that stands for "no answer in this window"

    @property
    def context_positions(self) -> range:
        """Positions of the window's context tokens, which are contiguous."""
        positions = [index for index, offset in enumerate(self.offsets) if offset is not None]
        if not positions:
            return range(0)
        return range(positions[0], positions[-1] + 1)


@dataclass(frozen=True)
class AnswerSpan:
    """A predicted answer: context[start:end] == text."""

    text: str
    start: int  # character offset in the context
    end: int  # character offset one past the answer
    score: float  # p(start) * p(end) in the window that proposed it, in [0, 1]
    window_index: int  # index into the windows given to best_answer


def encode_qa_windows(
    tokenizer: "PreTrainedTokenizerFast",
    questions: Sequence[str],
    contexts: Sequence[str],
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    stride: int = DEFAULT_STRIDE,
    max_question_tokens: int = DEFAULT_MAX_QUESTION_TOKENS,
) -> list[QAWindow]:
    """Tokenise question and context pairs into overlapping windows, in pair order.

    Questions longer than max_question_tokens are cut to that many tokens, so that every
    window has room for at least max_length - max_question_tokens - 3 context tokens.

    Args:
        tokenizer: a fast tokenizer (offset mappings need one).
        questions: one question per pair.
        contexts: one context per pair.
        max_length: maximum tokens per window, special tokens included.
        stride: context tokens shared by consecutive windows of the same pair.
        max_question_tokens: maximum question tokens, special tokens excluded.

    Raises:
        ValueError: the lengths leave no room for a window to advance, because stride is
            not smaller than the context tokens that fit next to the longest question.
    """
    if len(questions) != len(contexts):
        raise ValueError(f"got {len(questions)} questions for {len(contexts)} contexts")
    room = max_length - max_question_tokens - tokenizer.num_special_tokens_to_add(pair=True)
    if not 0 <= stride < room:
        raise ValueError(
            f"stride must be in [0, {room}) for max_length {max_length} and "
            f"max_question_tokens {max_question_tokens}, got {stride}"
        )
    if not questions:
        return []

    truncated = truncate_questions(tokenizer, questions, max_question_tokens)
    encoding = tokenizer(
        truncated,
        list(contexts),
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )

    windows = []
    for index, input_ids in enumerate(encoding["input_ids"]):
        sequence_ids = encoding.sequence_ids(index)
        offsets = [
            (start, end) if sequence_id == 1 else None
            for (start, end), sequence_id in zip(
                encoding["offset_mapping"][index], sequence_ids, strict=True
            )
        ]
        token_type_ids = encoding.get("token_type_ids")
        windows.append(
            QAWindow(
                example_index=encoding["overflow_to_sample_mapping"][index],
                input_ids=list(input_ids),
                token_type_ids=list(token_type_ids[index]) if token_type_ids else None,
                offsets=offsets,
                cls_index=_cls_index(input_ids, tokenizer.cls_token_id),
            )
        )
    return windows


def truncate_questions(
    tokenizer: "PreTrainedTokenizerFast", questions: Sequence[str], max_question_tokens: int
) -> list[str]:
    """Cut each question after its first max_question_tokens tokens, at a token boundary."""
    encoding = tokenizer(list(questions), add_special_tokens=False, return_offsets_mapping=True)
    truncated = []
    for question, offsets in zip(questions, encoding["offset_mapping"], strict=True):
        if len(offsets) > max_question_tokens:
            question = question[: offsets[max_question_tokens - 1][1]]
        truncated.append(question)
    return truncated


def answer_token_positions(window: QAWindow, answer_start: int, answer_end: int) -> tuple[int, int]:
    """Return the positions of the answer's first and last tokens in the window.

    Args:
        window: a window from encode_qa_windows.
        answer_start: character offset of the answer in the context.
        answer_end: character offset one past the answer.

    Returns:
        (start, end) positions, both inclusive, when the window's context tokens cover the
        whole answer; otherwise (cls_index, cls_index).
    """
    positions = window.context_positions
    no_answer = (window.cls_index, window.cls_index)
    if not positions or answer_end <= answer_start:
        return no_answer

    first = window.offsets[positions[0]]
    last = window.offsets[positions[-1]]
    assert first is not None and last is not None  # context positions all have offsets
    if first[0] > answer_start or last[1] < answer_end:
        return no_answer

    start = next(i for i in positions if _offset(window, i)[1] > answer_start)
    end = next(i for i in reversed(positions) if _offset(window, i)[0] < answer_end)
    if end < start:  # the answer is whitespace between two tokens
        return no_answer
    return start, end


def best_span_in_window(
    window: QAWindow,
    start_logits: Sequence[float],
    end_logits: Sequence[float],
    max_answer_tokens: int = DEFAULT_MAX_ANSWER_TOKENS,
) -> tuple[int, int, float] | None:
    """Return the most probable span of context tokens in one window, or None if it has none.

    A span runs from a start to an end position, both context tokens, with end >= start and
    at most max_answer_tokens tokens. Its score is p(start) * p(end), where each probability
    is a softmax over the [CLS] position and the context positions, so that a window in which
    the model points at [CLS] ("no answer here") gives all of its spans a low score.

    Args:
        window: a window from encode_qa_windows.
        start_logits: one logit per position; values past len(window.input_ids), such as
            padding, are ignored.
        end_logits: the same for the end of the answer.
        max_answer_tokens: maximum tokens in an answer.

    Returns:
        (start position, end position, score), positions inclusive.
    """
    positions = window.context_positions
    length = len(window.input_ids)
    if not positions:
        return None
    if len(start_logits) < length or len(end_logits) < length:
        raise ValueError(
            f"expected at least {length} start and end logits, got {len(start_logits)} and "
            f"{len(end_logits)}"
        )
    if max_answer_tokens < 1:
        raise ValueError(f"max_answer_tokens must be at least 1, got {max_answer_tokens}")

    # For each end, the best start in [end - max_answer_tokens + 1, end], found with a
    # monotonic deque of start candidates in decreasing logit order: O(n) in all.
    best: tuple[int, int] | None = None
    best_logit = -math.inf
    candidates: deque[int] = deque()
    for end in positions:
        while candidates and start_logits[candidates[-1]] <= start_logits[end]:
            candidates.pop()
        candidates.append(end)
        if candidates[0] <= end - max_answer_tokens:
            candidates.popleft()

        start = candidates[0]
        logit = start_logits[start] + end_logits[end]
        if logit > best_logit:
            best, best_logit = (start, end), logit

    assert best is not None  # positions is not empty
    allowed = [window.cls_index, *positions]
    score = math.exp(
        best_logit - _log_sum_exp(start_logits, allowed) - _log_sum_exp(end_logits, allowed)
    )
    return best[0], best[1], score


def best_answer(
    windows: Sequence[QAWindow],
    start_logits: Sequence[Sequence[float]],
    end_logits: Sequence[Sequence[float]],
    context: str,
    max_answer_tokens: int = DEFAULT_MAX_ANSWER_TOKENS,
) -> AnswerSpan | None:
    """Return the best answer over all windows of one question, or None if no window has context.

    Args:
        windows: every window of one (question, context) pair.
        start_logits: per window, the start logits (see best_span_in_window).
        end_logits: per window, the end logits.
        context: the context that the windows were encoded from.
        max_answer_tokens: maximum tokens in an answer.
    """
    if not len(windows) == len(start_logits) == len(end_logits):
        raise ValueError(
            f"got {len(windows)} windows, {len(start_logits)} start and {len(end_logits)} end "
            "logit lists; expected one of each per window"
        )

    best: AnswerSpan | None = None
    for index, window in enumerate(windows):
        span = best_span_in_window(
            window, start_logits[index], end_logits[index], max_answer_tokens
        )
        if span is None:
            continue
        start, end, score = span
        if best is None or score > best.score:
            char_start = _offset(window, start)[0]
            char_end = _offset(window, end)[1]
            best = AnswerSpan(context[char_start:char_end], char_start, char_end, score, index)
    return best


def _offset(window: QAWindow, position: int) -> tuple[int, int]:
    offset = window.offsets[position]
    if offset is None:
        raise ValueError(f"position {position} is not a context token")
    return offset


def _cls_index(input_ids: Sequence[int], cls_token_id: int | None) -> int:
    if cls_token_id is not None and cls_token_id in input_ids:
        return list(input_ids).index(cls_token_id)
    return 0


def _log_sum_exp(logits: Sequence[float], positions: Sequence[int]) -> float:
    peak = max(logits[position] for position in positions)
    return peak + math.log(sum(math.exp(logits[position] - peak) for position in positions))
