"""Tasks, their adapter versions, and predictions from a task's live version."""

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from service.api.deps import SessionDep
from service.api.serving import predict_tasks
from service.registry.models import Adapter, Task
from service.schemas import (
    AdapterPublic,
    AdaptersPublic,
    PredictRequest,
    PredictResponse,
    TaskPublic,
    TasksPublic,
    TaskUpdate,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/tasks", tags=["tasks"])


def get_task_or_raise(session: Session, name: str) -> Task:
    task = session.scalar(select(Task).where(Task.name == name))
    if task is None:
        raise HTTPException(status_code=404, detail="Task not found")
    return task


def build_tasks_public(session: Session, tasks: list[Task]) -> list[TaskPublic]:
    """Add each task's adapter count and live-version metrics, in two queries for all tasks."""
    task_ids = [task.id for task in tasks]
    counts = dict(
        session.execute(
            select(Adapter.task_id, func.count())
            .where(Adapter.task_id.in_(task_ids))
            .group_by(Adapter.task_id)
        ).all()
    )
    live_metrics = dict(
        session.execute(
            select(Adapter.task_id, Adapter.metrics)
            .join(Task, and_(Task.id == Adapter.task_id, Task.live_version == Adapter.version))
            .where(Adapter.task_id.in_(task_ids))
        ).all()
    )

    return [
        TaskPublic(
            name=task.name,
            task_type=task.task_type,
            labels=task.labels,
            live_version=task.live_version,
            promotion_policy=task.promotion_policy,
            pinned=task.pinned,
            predictions_count=task.predictions_count,
            metrics=live_metrics.get(task.id, {}),
            adapters_count=counts.get(task.id, 0),
            created_at=task.created_at,
        )
        for task in tasks
    ]


@router.get("", response_model=TasksPublic)
def read_tasks(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> TasksPublic:
    """List tasks by name."""
    count = session.scalar(select(func.count()).select_from(Task))
    tasks = session.scalars(select(Task).order_by(Task.name).offset(offset).limit(limit)).all()

    return TasksPublic(data=build_tasks_public(session, list(tasks)), count=count or 0)


@router.get("/{task_name}", response_model=TaskPublic, responses={404: {}})
def read_task(session: SessionDep, task_name: str) -> TaskPublic:
    """Read a task with its live version and that version's metrics."""
    task = get_task_or_raise(session, task_name)
    return build_tasks_public(session, [task])[0]


@router.get("/{task_name}/adapters", response_model=AdaptersPublic, responses={404: {}})
def read_adapters(session: SessionDep, task_name: str) -> AdaptersPublic:
    """List a task's adapter versions, newest first, marking the live one."""
    task = get_task_or_raise(session, task_name)
    adapters = session.scalars(
        select(Adapter).where(Adapter.task_id == task.id).order_by(Adapter.version.desc())
    ).all()

    data = [
        AdapterPublic.model_validate(adapter).model_copy(
            update={"live": adapter.version == task.live_version}
        )
        for adapter in adapters
    ]
    return AdaptersPublic(data=data, count=len(data))


@router.patch("/{task_name}", response_model=TaskPublic, responses={404: {}})
def update_task(session: SessionDep, task_name: str, task_in: TaskUpdate) -> TaskPublic:
    """Change a task's promotion policy or pinning."""
    task = get_task_or_raise(session, task_name)
    for field, value in task_in.model_dump(exclude_none=True).items():
        setattr(task, field, value)
    session.flush()
    logger.info("task %s updated: %s", task_name, task_in.model_dump(exclude_none=True))
    return build_tasks_public(session, [task])[0]


@router.post(
    "/{task_name}/adapters/{version}/promote",
    response_model=TaskPublic,
    responses={404: {}},
)
def promote_adapter(
    session: SessionDep,
    task_name: str,
    version: Annotated[int, Path(ge=1, le=2**31 - 1, description="Adapter version.")],
) -> TaskPublic:
    """Make one adapter version the task's live version (also rolls back)."""
    task = get_task_or_raise(session, task_name)
    exists = session.scalar(
        select(func.count()).where(Adapter.task_id == task.id, Adapter.version == version)
    )
    if not exists:
        raise HTTPException(status_code=404, detail="Adapter version not found")

    # One UPDATE: every request reads either the old or the new live version, never a mix.
    previous = task.live_version
    task.live_version = version
    session.flush()
    logger.info("task %s live version %s -> %d", task_name, previous, version)
    return build_tasks_public(session, [task])[0]


@router.post("/{task_name}/predict", response_model=PredictResponse, responses={404: {}, 409: {}})
async def create_predictions(
    request: Request, session: SessionDep, task_name: str, predict_in: PredictRequest
) -> PredictResponse:
    """Predict a label for each input with the task's live adapter version."""
    responses = await predict_tasks(request.app, session, [task_name], predict_in.inputs)
    return responses[0]
