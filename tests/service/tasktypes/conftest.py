"""Fixtures of the task-type tests: the real base model's fast tokenizer."""

import pytest
from transformers import PreTrainedTokenizerFast

from service.config import default_base_model_dir
from service.modeling.base import load_tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    """The all-MiniLM-L6-v2 tokenizer (uncased BERT WordPiece), loaded once."""
    return load_tokenizer(default_base_model_dir())
