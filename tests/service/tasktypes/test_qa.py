"""Extractive QA windows, answer positions and the best-span search."""

import math

import pytest

from service.tasktypes.qa import (
    QAWindow,
    answer_token_positions,
    best_answer,
    best_span_in_window,
    encode_qa_windows,
    truncate_questions,
)

QUESTION = "Which gate stands in Berlin?"
ANSWER = "the Brandenburg Gate"
WINDOW_OPTIONS = {"max_length": 32, "stride": 8, "max_question_tokens": 16}


def build_context(filler_words: int) -> tuple[str, int]:
    prefix = " ".join(["old"] * filler_words)
    context = f"{prefix} {ANSWER} " + " ".join(["new"] * 40)
    return context, len(prefix) + 1


def context_crossing_first_window_edge(tokenizer) -> tuple[str, int, list[QAWindow]]:
    """Return a context whose answer starts in the first window and ends after it."""
    for filler_words in range(1, 40):
        context, start = build_context(filler_words)
        windows = encode_qa_windows(tokenizer, [QUESTION], [context], **WINDOW_OPTIONS)
        last = windows[0].offsets[windows[0].context_positions[-1]]
        if start < last[1] < start + len(ANSWER):
            return context, start, windows
    raise AssertionError("no filler length puts the answer across the first window's edge")


def test_answer_across_edge_found_whole_in_later_window(tokenizer):
    context, start, windows = context_crossing_first_window_edge(tokenizer)
    end = start + len(ANSWER)

    positions = [answer_token_positions(window, start, end) for window in windows]

    assert positions[0] == (windows[0].cls_index, windows[0].cls_index) == (0, 0)
    whole = [
        (window, span)
        for window, span in zip(windows, positions, strict=True)
        if span != (window.cls_index, window.cls_index)
    ]
    assert whole
    for window, (first, last) in whole:
        assert context[window.offsets[first][0] : window.offsets[last][1]] == ANSWER


def test_best_span_returns_answer_across_edge(tokenizer):
    context, start, windows = context_crossing_first_window_edge(tokenizer)
    end = start + len(ANSWER)
    start_logits = [[0.0] * len(window.input_ids) for window in windows]
    end_logits = [[0.0] * len(window.input_ids) for window in windows]

    # The first window can only propose the part of the answer it contains, and less surely.
    first_window = windows[0]
    cut_start = next(
        position
        for position in first_window.context_positions
        if first_window.offsets[position][1] > start
    )
    start_logits[0][cut_start] = 5.0
    end_logits[0][first_window.context_positions[-1]] = 5.0
    for index, window in enumerate(windows[1:], start=1):
        first, last = answer_token_positions(window, start, end)
        if first != window.cls_index:
            start_logits[index][first] = 8.0
            end_logits[index][last] = 8.0
            break

    answer = best_answer(windows, start_logits, end_logits, context)

    assert answer is not None
    assert answer.text == ANSWER
    assert (answer.start, answer.end) == (start, end)
    assert context[answer.start : answer.end] == answer.text
    assert answer.window_index > 0
    assert 0.0 < answer.score <= 1.0


def synthetic_window() -> QAWindow:
    # [CLS] q [SEP] c0 c1 c2 c3 [SEP], with context tokens at positions 3 to 6.
    return QAWindow(
        example_index=0,
        input_ids=[101, 1, 102, 5, 6, 7, 8, 102],
        token_type_ids=None,
        offsets=[None, None, None, (0, 1), (2, 3), (4, 5), (6, 7), None],
        cls_index=0,
    )


def test_best_span_only_context_and_ordered():
    window = synthetic_window()
    # The question token and the last [SEP] have the highest logits but can never be chosen,
    # and the best end (position 4) comes before the best start (position 5).
    start_logits = [0.0, 9.0, 0.0, 1.0, 0.0, 5.0, 0.0, 0.0]
    end_logits = [0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 1.0, 9.0]

    start, end, score = best_span_in_window(window, start_logits, end_logits, max_answer_tokens=30)

    assert (start, end) == (5, 6)
    allowed = [0, 3, 4, 5, 6]
    start_norm = sum(math.exp(start_logits[i]) for i in allowed)
    end_norm = sum(math.exp(end_logits[i]) for i in allowed)
    assert score == pytest.approx(math.exp(5.0) / start_norm * math.exp(1.0) / end_norm)


def test_best_span_capped_by_max_answer_tokens():
    window = synthetic_window()
    start_logits = [0.0, 0.0, 0.0, 6.0, 0.0, 5.0, 0.0, 0.0]
    end_logits = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 6.5, 0.0]

    assert best_span_in_window(window, start_logits, end_logits, max_answer_tokens=4)[:2] == (3, 6)
    assert best_span_in_window(window, start_logits, end_logits, max_answer_tokens=2)[:2] == (5, 6)
    assert best_span_in_window(window, start_logits, end_logits, max_answer_tokens=1)[:2] == (6, 6)


def test_best_span_none_without_context():
    window = QAWindow(0, [101, 102, 102], None, [None, None, None], 0)

    assert best_span_in_window(window, [0.0] * 3, [0.0] * 3) is None
    assert best_answer([window], [[0.0] * 3], [[0.0] * 3], context="") is None


def test_best_span_ignores_padding_logits():
    window = synthetic_window()
    padded = [0.0] * 8 + [100.0, 100.0]

    start, end, _ = best_span_in_window(window, padded, padded)

    assert 3 <= start <= end <= 6


def test_windows_map_to_their_pair(tokenizer):
    long_context = " ".join(["word"] * 80)

    windows = encode_qa_windows(
        tokenizer, ["first?", "second?"], [long_context, "short context"], **WINDOW_OPTIONS
    )

    indexes = [window.example_index for window in windows]
    assert indexes[-1] == 1
    assert indexes.count(1) == 1
    assert indexes.count(0) > 1
    assert indexes == sorted(indexes)
    assert all(len(window.input_ids) <= 32 for window in windows)


def test_window_offsets_only_on_context_tokens(tokenizer):
    context = "Paris is the capital of France."
    (window,) = encode_qa_windows(tokenizer, ["What is Paris?"], [context])

    tokens = tokenizer.convert_ids_to_tokens(window.input_ids)
    context_tokens = [tokens[position] for position in window.context_positions]
    assert context_tokens == ["paris", "is", "the", "capital", "of", "france", "."]
    assert window.offsets[window.cls_index] is None
    assert window.token_type_ids is not None
    assert answer_token_positions(window, 13, 20) == (9, 9)  # "capital"


def test_long_question_truncated(tokenizer):
    question = " ".join(["why"] * 100) + "?"

    (truncated,) = truncate_questions(tokenizer, [question], max_question_tokens=10)
    windows = encode_qa_windows(tokenizer, [question], ["a short context"], **WINDOW_OPTIONS)

    assert truncated == " ".join(["why"] * 10)
    assert windows[0].context_positions[0] == 16 + 2  # [CLS], 16 question tokens, [SEP]


def test_stride_too_large_rejected(tokenizer):
    with pytest.raises(ValueError, match=r"stride must be in \[0, 13\)"):
        encode_qa_windows(tokenizer, ["q"], ["c"], max_length=32, stride=13, max_question_tokens=16)
