"""Word labels on sub-tokens, windows over long sentences, and merging window predictions."""

import random

import pytest

from service.tasktypes.alignment import (
    IGNORE_INDEX,
    WordWindow,
    align_labels,
    count_subtokens,
    encode_windows,
    first_subtoken_positions,
    merge_window_predictions,
    plan_windows,
)

WORDS = ["Loraplex", "runs", "in", "Zürich", "."]
LABELS = [1, 0, 0, 2, 0]  # B-ORG, O, O, B-LOC, O as label ids


def test_label_on_first_subtoken_only(tokenizer):
    encoding = tokenizer(WORDS, is_split_into_words=True)
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    assert tokens == ["[CLS]", "lo", "##ra", "##plex", "runs", "in", "zurich", ".", "[SEP]"]

    labels = align_labels(encoding.word_ids(), LABELS)

    assert labels == [IGNORE_INDEX, 1, IGNORE_INDEX, IGNORE_INDEX, 0, 0, 2, 0, IGNORE_INDEX]


def test_first_subtoken_positions_per_word(tokenizer):
    word_ids = tokenizer(WORDS, is_split_into_words=True).word_ids()

    assert first_subtoken_positions(word_ids, len(WORDS)) == [1, 4, 5, 6, 7]
    assert count_subtokens(word_ids, len(WORDS)) == [3, 1, 1, 1, 1]


def test_word_without_subtokens_has_no_position(tokenizer):
    # A lone zero-width space is removed by BERT's normaliser, so it yields no sub-token.
    words = ["a", "\u200b", "b"]
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()

    assert first_subtoken_positions(word_ids, len(words)) == [1, None, 2]
    assert align_labels(word_ids, [5, 6, 7]) == [IGNORE_INDEX, 5, 7, IGNORE_INDEX]


def test_windows_overlap_by_stride():
    windows = plan_windows([1] * 10, max_subtokens=4, stride=2)

    assert windows == [WordWindow(0, 4), WordWindow(2, 6), WordWindow(4, 8), WordWindow(6, 10)]


def test_windows_overlap_leaves_room_for_next_word():
    # Words of 3, 1, 2, 5 and 1 sub-tokens: the 5-token word fits beside an overlap of 1.
    windows = plan_windows([3, 1, 2, 5, 1], max_subtokens=6, stride=2)

    assert windows == [WordWindow(0, 3), WordWindow(3, 5)]


def test_windows_oversized_word_alone():
    windows = plan_windows([2, 10, 2], max_subtokens=4, stride=1)

    assert windows == [WordWindow(0, 1), WordWindow(1, 2), WordWindow(2, 3)]


def test_windows_single_for_short_sentence():
    assert plan_windows([2, 3], max_subtokens=126, stride=32) == [WordWindow(0, 2)]
    assert plan_windows([], max_subtokens=126, stride=32) == []


@pytest.mark.parametrize(("max_subtokens", "stride"), [(0, 0), (4, 4), (4, -1)])
def test_windows_invalid_sizes_rejected(max_subtokens, stride):
    with pytest.raises(ValueError, match="must be"):
        plan_windows([1, 1], max_subtokens=max_subtokens, stride=stride)


def test_windows_cover_every_word_randomised():
    generator = random.Random(7)
    for _ in range(300):
        counts = [generator.choice([0, 1, 1, 1, 2, 3, 7]) for _ in range(generator.randint(1, 60))]
        max_subtokens = generator.randint(1, 12)
        stride = generator.randint(0, max_subtokens - 1)

        windows = plan_windows(counts, max_subtokens, stride)

        assert windows[0].start == 0
        assert windows[-1].end == len(counts)
        for previous, window in zip(windows, windows[1:], strict=False):
            assert previous.start < window.start <= previous.end < window.end
            assert sum(counts[window.start : previous.end]) <= stride
        for window in windows:
            size = sum(counts[window.start : window.end])
            assert size <= max_subtokens or window.end - window.start == 1


def test_long_sentence_encoded_in_windows(tokenizer):
    words = [f"word{index}" if index % 3 else "Zürich" for index in range(60)]

    encodings = encode_windows(tokenizer, words, max_length=16, stride=4)

    assert len(encodings) > 1
    covered = set()
    for encoding in encodings:
        assert len(encoding.input_ids) <= 16
        assert encoding.input_ids[0] == tokenizer.cls_token_id
        assert encoding.input_ids[-1] == tokenizer.sep_token_id
        word_ids = {word_id for word_id in encoding.word_ids if word_id is not None}
        assert word_ids == set(range(encoding.window.start, encoding.window.end))
        covered |= word_ids
    assert covered == set(range(len(words)))


def test_window_labels_use_sentence_word_ids(tokenizer):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    labels = list(range(len(words)))

    encodings = encode_windows(tokenizer, words, max_length=5, stride=1)

    for encoding in encodings:
        aligned = align_labels(encoding.word_ids, labels)
        first = [label for label in aligned if label != IGNORE_INDEX]
        assert first == labels[encoding.window.start : encoding.window.end]


def test_merge_takes_most_central_window():
    windows = [WordWindow(0, 4), WordWindow(2, 6), WordWindow(4, 8), WordWindow(6, 10)]
    predictions = [[index] * (window.end - window.start) for index, window in enumerate(windows)]

    merged = merge_window_predictions(windows, predictions, num_words=10, default=-1)

    assert merged == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]


def test_merge_skips_missing_predictions():
    windows = [WordWindow(0, 3), WordWindow(1, 4)]
    predictions = [["a", "a", None], [None, "b", "b"]]

    merged = merge_window_predictions(windows, predictions, num_words=5, default="O")

    assert merged == ["a", "a", "b", "b", "O"]


def test_merge_wrong_window_count_rejected():
    with pytest.raises(ValueError, match="got predictions for 1 of 2 windows"):
        merge_window_predictions([WordWindow(0, 1), WordWindow(1, 2)], [[0]], 2, default=0)
