"""Registry tables. The schema is created only by the Alembic migrations in migrations/."""

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class PromotionPolicy(enum.StrEnum):
    """What a succeeded job does with the task's live version."""

    manual = "manual"  # the new version waits for POST .../promote
    always = "always"  # the new version goes live at once
    if_better = "if_better"  # live only if its eval metric is at least the live version's


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


FINISHED_STATUSES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


# An uploaded, validated dataset; `content` holds the normalised examples as JSON lines.
class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    task_type: Mapped[str] = mapped_column(String(40))
    format: Mapped[str] = mapped_column(String(10))
    filename: Mapped[str] = mapped_column(String(255))
    num_rows: Mapped[int] = mapped_column(Integer)
    labels: Mapped[list[Any]] = mapped_column(JSON)
    label_counts: Mapped[dict[str, Any]] = mapped_column(JSON)
    warnings: Mapped[list[Any]] = mapped_column(JSON)
    # Per-task-type figures such as a regression target's range or a QA set's article count.
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# A named model that predictions are asked of; `live_version` points at one of its adapters.
class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task_type: Mapped[str] = mapped_column(String(40))
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    live_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    promotion_policy: Mapped[str] = mapped_column(
        String(20), default=PromotionPolicy.always, server_default="always"
    )
    # A pinned task's live adapter is never evicted from a serving engine's cache.
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    # Predictions served, flushed by the serving engines; preloading starts with the busiest.
    predictions_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    adapters: Mapped[list["Adapter"]] = relationship(back_populates="task", lazy="raise")


# One trained version of a task: the delta (safetensors bytes) and what it was trained with.
class Adapter(Base):
    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("task_id", "version", name="uq_adapters_task_version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(40))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    labels: Mapped[list[Any]] = mapped_column(JSON)
    base_fingerprint: Mapped[str] = mapped_column(String(64))
    delta: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # A job registers at most one adapter, even when a crashed worker runs it again.
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), unique=True, nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    task: Mapped[Task] = relationship(back_populates="adapters", lazy="raise")


# A fine-tuning job and its live progress, written by the worker while it runs.
class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    task_name: Mapped[str] = mapped_column(String(200))
    train_dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    eval_dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), nullable=True)
    strategy: Mapped[str] = mapped_column(String(40))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.queued, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[float] = mapped_column(Float, default=0.0)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    adapter_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# One point of a job's history: a training loss, an evaluation, or a log line.
class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    step: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[float] = mapped_column(Float, default=0.0)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    learning_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
