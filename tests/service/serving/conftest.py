from pathlib import Path

import pytest

from service.config import Settings
from service.db import get_sessionmaker
from service.migrate import upgrade_to_head
from service.serving.engine import ServingEngine
from tests.utils.settings import local_settings


@pytest.fixture
def serving_settings(tmp_path: Path, tiny_model_dir: Path) -> Settings:
    settings = local_settings(tmp_path, tiny_model_dir, preload_tasks=0)
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
