"""Registry operations on adapter versions."""

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.modeling.delta import Delta, serialize_delta, sha256_hex
from service.registry.models import Adapter, Task


def get_or_create_task(session: Session, name: str, task_type: str, labels: list[str]) -> Task:
    """Return the task called `name`, creating it with `task_type` and `labels` if missing."""
    task = session.scalar(select(Task).where(Task.name == name))
    if task is None:
        task = Task(name=name, task_type=task_type, labels=labels)
        session.add(task)
        session.flush()
    return task


def add_adapter_version(
    session: Session,
    task: Task,
    delta: Delta,
    *,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    job_id: str | None = None,
    make_live: bool = True,
) -> Adapter:
    """Store `delta` as the task's next version, and make it live unless `make_live` is False.

    Locks the task row first, so that concurrent writers take distinct version numbers.
    """
    session.refresh(task, with_for_update=True)
    latest = session.scalar(select(func.max(Adapter.version)).where(Adapter.task_id == task.id))
    data = serialize_delta(delta)
    adapter = Adapter(
        task_id=task.id,
        version=(latest or 0) + 1,
        strategy=delta.strategy,
        config=config or {},
        labels=delta.labels,
        base_fingerprint=delta.base_fingerprint,
        delta=data,
        sha256=sha256_hex(data),
        size_bytes=len(data),
        metrics=metrics or {},
        job_id=job_id,
    )
    session.add(adapter)
    if make_live:
        task.live_version = adapter.version
        task.labels = delta.labels
    session.flush()
    return adapter
