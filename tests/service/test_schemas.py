"""Request schemas: how the size limits count an input."""

import pytest
from pydantic import ValidationError

from service.schemas import MAX_REQUEST_CHARS, FanOutRequest, count_chars


def test_token_list_counts_as_joined_text() -> None:
    assert count_chars({"tokens": ["ab", "c", "def"]}) == len("ab c def")
    assert count_chars({"tokens": []}) == 0


def test_pair_counts_both_texts() -> None:
    assert count_chars({"text": "abc", "text_pair": "de"}) == 5


def test_fan_out_cost_counts_every_task() -> None:
    text = "a" * 50_000
    tasks = [f"task{i}" for i in range(MAX_REQUEST_CHARS // len(text) + 1)]

    with pytest.raises(ValidationError, match="tasks times the inputs"):
        FanOutRequest(tasks=tasks, inputs=[text])
    assert FanOutRequest(tasks=tasks[:-1], inputs=[text]).tasks == tasks[:-1]
