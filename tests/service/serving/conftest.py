from pathlib import Path

import pytest

from service.config import Settings
from service.db import get_sessionmaker
from service.migrate import upgrade_to_head
from service.serving.engine import ServingEngine


@pytest.fixture
def serving_settings(tmp_path: Path, tiny_model_dir: Path) -> Settings:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'registry.db'}",
        broker_url="memory://",
        base_model_dir=tiny_model_dir,
        preload_tasks=0,
    )
    upgrade_to_head(settings.database_url)
    return settings


@pytest.fixture
def engine(serving_settings: Settings) -> ServingEngine:
    return ServingEngine(serving_settings)


@pytest.fixture
def session(serving_settings: Settings):
    session = get_sessionmaker(serving_settings.database_url)()
    yield session
    session.close()
