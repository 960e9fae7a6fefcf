"""Fine-tuning jobs: submission, progress, history and cancellation."""

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import queue
from service.api.deps import SessionDep, SettingsDep
from service.config import Settings
from service.datasets import decode_examples, find_overlap
from service.hyperparameters import TrainingHyperparameters, parse_hyperparameters
from service.modeling.base import read_base_model_spec
from service.registry.models import (
    Dataset,
    Job,
    JobEvent,
    JobStatus,
    Task,
    utcnow,
)
from service.schemas import JobCreate, JobEventPublic, JobEventsPublic, JobPublic, JobsPublic
from service.tasktypes.options import TaskOptionError, resolve_task_options

logger = logging.getLogger(__name__)

# Task types whose examples have exactly one label, so a stratified eval split needs a label
# with at least two rows.
SINGLE_LABEL_TASK_TYPES = frozenset({"text_classification", "sentence_pair"})

router = APIRouter(prefix="/jobs", tags=["jobs"])


def get_dataset_or_raise(session: Session, dataset_id: str, field: str) -> Dataset:
    """Return the dataset, or raise a 404 that names the request field holding the id."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise HTTPException(
            status_code=404, detail=f"Dataset not found: {field} {dataset_id[:64]!r}"
        )
    return dataset


def get_job_or_raise(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status_code=404, detail="Job not found")
    return job


def parse_hyperparameters_or_raise(job_in: JobCreate) -> TrainingHyperparameters:
    """Resolve the job's hyperparameters, raising a 422 that names each rejected field."""
    try:
        return parse_hyperparameters(job_in.strategy, job_in.hyperparameters)
    except ValidationError as exc:
        # The same shape as FastAPI's own 422s, with locations under body.hyperparameters.
        errors = exc.errors(include_url=False, include_context=False)
        for error in errors:
            error["loc"] = ("body", "hyperparameters", *error["loc"])
        raise RequestValidationError(errors) from exc
    except ValueError as exc:
        error = {"type": "value_error", "loc": ("body", "strategy"), "msg": str(exc)}
        raise RequestValidationError([{**error, "input": job_in.strategy}]) from exc


def resolve_task_options_or_raise(
    hyperparameters: TrainingHyperparameters, train_dataset: Dataset
) -> TrainingHyperparameters:
    """Fill in the task type's defaults, raising a 422 that names a rejected option."""
    try:
        return resolve_task_options(
            train_dataset.task_type, hyperparameters, list(train_dataset.labels)
        )
    except TaskOptionError as exc:
        if exc.field == "task_type":
            message = str(exc)
            raise HTTPException(
                status_code=422, detail=f"{message[0].upper()}{message[1:]}."
            ) from exc
        error = {
            "type": "value_error",
            "loc": ("body", "hyperparameters", exc.field),
            "msg": str(exc),
            "input": getattr(hyperparameters, exc.field, None),
        }
        raise RequestValidationError([error]) from exc


def check_task_types(
    train_dataset: Dataset, eval_dataset: Dataset | None, task: Task | None
) -> None:
    if eval_dataset is not None and eval_dataset.task_type != train_dataset.task_type:
        raise HTTPException(
            status_code=422,
            detail=f"The eval dataset is {eval_dataset.task_type} but the training dataset is "
            f"{train_dataset.task_type}. Upload both with the same task_type.",
        )
    if task is not None and task.task_type != train_dataset.task_type:
        raise HTTPException(
            status_code=409,
            detail=f"Task {task.name!r} is a {task.task_type} task, so it cannot be trained on "
            f"a {train_dataset.task_type} dataset. Use another task name.",
        )


def check_trainable_or_raise(
    settings: Settings,
    train_dataset: Dataset,
    eval_dataset: Dataset | None,
    hyperparameters: TrainingHyperparameters,
) -> None:
    """Reject, before queuing, jobs that the worker could only fail."""
    spec = read_base_model_spec(settings.resolved_base_model_dir)
    max_positions = spec.config.max_position_embeddings - spec.config.position_offset
    max_length = getattr(hyperparameters, "max_length", None)
    if max_length is not None and max_length > max_positions:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "hyperparameters", "max_length"),
                    "msg": f"max_length {max_length} is over the base model's limit of "
                    f"{max_positions} positions; use at most {max_positions}.",
                }
            ]
        )

    if eval_dataset is not None:
        unseen = sorted(set(eval_dataset.labels) - set(train_dataset.labels))
        if unseen:
            raise HTTPException(
                status_code=422,
                detail=f"The eval dataset has labels {unseen[:5]} that the training dataset "
                "lacks, so the model could never predict them. Upload an eval set with the "
                "training labels only.",
            )
    elif train_dataset.task_type in SINGLE_LABEL_TASK_TYPES:
        if max(train_dataset.label_counts.values(), default=0) < 2:
            raise HTTPException(
                status_code=422,
                detail="Every label of the training dataset has a single row, so no eval "
                "split can be held out. Add rows or pass eval_dataset_id.",
            )


def find_dataset_warnings(train_dataset: Dataset, eval_dataset: Dataset | None) -> list[str]:
    """Return warnings about the train/eval pair that do not stop the job."""
    if eval_dataset is None:
        return []
    warnings = []

    overlap = find_overlap(
        decode_examples(train_dataset.content), decode_examples(eval_dataset.content)
    )
    if overlap > 0:
        warnings.append(
            f"{overlap} of {eval_dataset.num_rows} eval examples also occur in the training "
            "dataset; eval metrics will be optimistic"
        )

    return warnings


def create_task(session: Session, name: str, train_dataset: Dataset) -> Task:
    task = Task(name=name, task_type=train_dataset.task_type, labels=train_dataset.labels)
    session.add(task)
    try:
        session.flush()
    except IntegrityError as exc:
        logger.info("task %r was created by a concurrent request", name)
        raise HTTPException(
            status_code=409,
            detail=f"Task {name!r} was created by another request at the same moment. "
            "Submit the job again.",
        ) from exc
    logger.info("task %s created as %r (%s)", task.id, name, task.task_type)
    return task


def enqueue_job_or_raise(session: Session, settings: Settings, job: Job) -> None:
    """Publish the committed `job`. If the broker fails, mark the job failed and raise a 503."""
    try:
        queue.enqueue_training_job(job.id, settings)
    except Exception as exc:
        # Whatever the broker client raised (kombu, redis, socket, SQLite), the job was not
        # queued and no worker will ever run it.
        logger.exception("job %s could not be queued for task %s", job.id, job.task_name)
        job.status = JobStatus.failed
        job.error = f"could not reach the broker: {exc}"
        job.finished_at = utcnow()
        session.commit()
        raise HTTPException(
            status_code=503,
            detail=f"Could not reach the broker, so job {job.id} was marked failed. "
            "Check LORAPLEX_BROKER_URL and submit the job again.",
        ) from exc


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses={
        404: {},
        409: {},
        503: {"description": "Broker unreachable, so the job was marked failed"},
    },
)
def create_job(session: SessionDep, settings: SettingsDep, job_in: JobCreate) -> JobPublic:
    """Submit a fine-tuning job for a task, creating the task on first use."""
    train_dataset = get_dataset_or_raise(session, job_in.train_dataset_id, "train_dataset_id")
    eval_dataset = None
    if job_in.eval_dataset_id is not None:
        eval_dataset = get_dataset_or_raise(session, job_in.eval_dataset_id, "eval_dataset_id")
    existing_task = session.scalar(select(Task).where(Task.name == job_in.task))
    check_task_types(train_dataset, eval_dataset, existing_task)
    hyperparameters = resolve_task_options_or_raise(
        parse_hyperparameters_or_raise(job_in), train_dataset
    )

    check_trainable_or_raise(settings, train_dataset, eval_dataset, hyperparameters)

    task = existing_task or create_task(session, job_in.task, train_dataset)
    job = Job(
        task_id=task.id,
        task_name=task.name,
        train_dataset_id=train_dataset.id,
        eval_dataset_id=eval_dataset.id if eval_dataset is not None else None,
        strategy=job_in.strategy,
        hyperparameters=hyperparameters.model_dump(mode="json"),
        status=JobStatus.queued,
        warnings=find_dataset_warnings(train_dataset, eval_dataset),
    )
    session.add(job)

    # Commit before publishing: the worker may pick the message up at once and must find
    # the job row.
    session.commit()
    enqueue_job_or_raise(session, settings, job)

    logger.info("job %s queued for task %s", job.id, task.name)
    return JobPublic.model_validate(job)


@router.get("", response_model=JobsPublic)
def read_jobs(
    session: SessionDep,
    status: JobStatus | None = None,
    task: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobsPublic:
    """List jobs, newest first, optionally of one status or task."""
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == status)
    if task is not None:
        query = query.where(Job.task_name == task)

    count = session.scalar(select(func.count()).select_from(query.subquery()))
    jobs = session.scalars(
        query.order_by(Job.created_at.desc(), Job.id).offset(offset).limit(limit)
    ).all()

    return JobsPublic(data=[JobPublic.model_validate(job) for job in jobs], count=count or 0)


@router.get("/{job_id}", response_model=JobPublic, responses={404: {}})
def read_job(session: SessionDep, job_id: str) -> JobPublic:
    """Read a job's status, progress, metrics and ETA."""
    return JobPublic.model_validate(get_job_or_raise(session, job_id))


@router.get("/{job_id}/events", response_model=JobEventsPublic, responses={404: {}})
def read_job_events(
    session: SessionDep,
    job_id: str,
    kind: Literal["train", "eval", "log"] | None = None,
    after_id: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> JobEventsPublic:
    """List a job's events (losses, evaluations, log lines) in the order they were written."""
    get_job_or_raise(session, job_id)
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    if kind is not None:
        query = query.where(JobEvent.kind == kind)
    if after_id is not None:
        query = query.where(JobEvent.id > after_id)

    count = session.scalar(select(func.count()).select_from(query.subquery()))
    events = session.scalars(query.order_by(JobEvent.id).limit(limit)).all()

    return JobEventsPublic(
        data=[JobEventPublic.model_validate(event) for event in events], count=count or 0
    )


@router.post("/{job_id}/cancel", response_model=JobPublic, responses={404: {}, 409: {}})
def cancel_job(session: SessionDep, job_id: str) -> JobPublic:
    """Cancel a queued or running job. The worker stops it at its next status check."""
    # One conditional UPDATE, so a job that the worker finishes at this moment is never
    # marked cancelled after it succeeded.
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_([JobStatus.queued, JobStatus.running]))
        .values(status=JobStatus.cancelled, finished_at=utcnow())
    )
    job = get_job_or_raise(session, job_id)
    if result.rowcount == 0:
        raise HTTPException(status_code=409, detail="Job already finished")

    session.refresh(job)
    logger.info("job %s cancelled", job_id)
    return JobPublic.model_validate(job)
