"""Settings of an in-process deployment for tests: a SQLite registry in a folder, no broker."""

from pathlib import Path

from service.config import Settings


def local_settings(data_dir: Path, base_model_dir: Path, **overrides) -> Settings:
    """Return settings with the registry at `data_dir`/registry.db and an in-memory broker."""
    return Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'registry.db'}",
        broker_url="memory://",
        base_model_dir=base_model_dir,
        **overrides,
    )
