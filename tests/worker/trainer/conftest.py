"""Fixtures of the trainer tests: a deeper tiny BERT for per-block strategies."""

from pathlib import Path

import pytest

from tests.worker.trainer.helpers import save_tiny_bert


@pytest.fixture(scope="session")
def deep_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 5-layer BERT (hidden 32) without a pooler, pooled by [CLS]."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert-5"), num_layers=5, with_pooler=False)


@pytest.fixture(scope="session")
def no_dropout_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT (hidden 32) whose dropout probabilities are all 0."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert-nodrop"), num_layers=2, dropout=0.0)
