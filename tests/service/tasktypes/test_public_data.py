"""Windows and alignment on real public data (CoNLL-2003 dev, XQuAD) with the real tokenizer."""

import pytest

from service.datasets import parse_dataset
from service.tasktypes.alignment import (
    encode_windows,
    first_subtoken_positions,
    merge_window_predictions,
)
from service.tasktypes.qa import answer_token_positions, best_answer, encode_qa_windows

# The one XQuAD answer that ends inside a token: its gold text "(2,70" cuts "2,700".
ANSWER_ENDING_INSIDE_TOKEN = "5729e2316aef0514001550c5"


def parse_data_file(shared_data_dir, relative: str, task_type: str):
    path = shared_data_dir / relative
    if not path.is_file():
        pytest.skip(f"public data file {path} is absent; these tests need the shared data folder")
    return parse_dataset(path.read_bytes(), filename=path.name, task_type=task_type)


def test_conll_dev_windows_recover_every_tag(shared_data_dir, tokenizer):
    report = parse_data_file(shared_data_dir, "conll2003/valid.txt", "token_classification")
    windowed = 0

    for example in report.examples:
        tokens, tags = example["tokens"], example["tags"]
        encodings = encode_windows(tokenizer, tokens, max_length=32, stride=8)
        windowed += len(encodings) > 1

        # Each window "predicts" the gold tag at each word's first sub-token.
        predictions = []
        for encoding in encodings:
            positions = first_subtoken_positions(encoding.word_ids, len(tokens))
            window = encoding.window
            predictions.append(
                [
                    tags[word] if positions[word] is not None else None
                    for word in range(window.start, window.end)
                ]
            )
        merged = merge_window_predictions(
            [encoding.window for encoding in encodings], predictions, len(tokens), default="?"
        )

        assert merged == tags
    assert windowed > 500  # max_length 32 forces windows on many sentences


def test_xquad_answers_whole_in_a_window(shared_data_dir, tokenizer):
    report = parse_data_file(shared_data_dir, "squad/xquad.en.json", "extractive_qa")
    examples = report.examples
    windows = encode_qa_windows(
        tokenizer,
        [example["question"] for example in examples],
        [example["context"] for example in examples],
        max_length=128,
        stride=32,
    )
    windows_by_example: dict[int, list] = {}
    for window in windows:
        windows_by_example.setdefault(window.example_index, []).append(window)

    mismatched = []
    for index, example in enumerate(examples):
        answer = example["answers"][0]
        start = answer["answer_start"]
        end = start + len(answer["text"])

        # Logits that point at the labelled positions of every window.
        start_logits, end_logits = [], []
        for window in windows_by_example[index]:
            first, last = answer_token_positions(window, start, end)
            start_logits.append([10.0 if i == first else 0.0 for i in range(len(window.input_ids))])
            end_logits.append([10.0 if i == last else 0.0 for i in range(len(window.input_ids))])
        assert any(
            answer_token_positions(window, start, end) != (window.cls_index, window.cls_index)
            for window in windows_by_example[index]
        ), example["id"]

        predicted = best_answer(
            windows_by_example[index], start_logits, end_logits, example["context"]
        )
        assert predicted is not None
        assert predicted.start <= start
        assert end <= predicted.end
        if predicted.text != answer["text"]:
            mismatched.append(example["id"])

    assert len(windows) > len(examples)
    assert mismatched == [ANSWER_ENDING_INSIDE_TOKEN]
