"""A TestClient on a real app with a migrated SQLite registry and a recording enqueue."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service import queue
from service.api.app import create_app
from service.config import Settings
from service.db import get_sessionmaker
from service.migrate import upgrade_to_head


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        broker_url="memory://",
        # The route tests never predict; preloading would only load the base model.
        preload_tasks=0,
    )


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Job ids that the API sent to the queue, recorded instead of published.

    These tests check validation and the registry rows, which need no broker or worker.
    tests/integration publishes to real brokers.
    """
    job_ids: list[str] = []

    def record(job_id: str, settings: Settings | None = None) -> None:
        job_ids.append(job_id)

    monkeypatch.setattr(queue, "enqueue_training_job", record)
    return job_ids


@pytest.fixture
def client(settings: Settings, enqueued: list[str]) -> Iterator[TestClient]:
    upgrade_to_head(settings.database_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def session(settings: Settings, client: TestClient) -> Iterator[Session]:
    """A registry session for checking what the routes wrote."""
    with get_sessionmaker(settings.database_url)() as registry_session:
        yield registry_session
