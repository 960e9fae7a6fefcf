"""Running one fine-tuning job: read it from the registry, train, register the adapter.

`run_training_job` is idempotent: a job already finished is skipped, a job delivered again
after a worker crash trains again from the start, and the unique `adapters.job_id` column
means it registers at most one adapter version.
"""

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.config import Settings
from service.datasets import decode_examples
from service.db import session_scope
from service.hyperparameters import TrainingHyperparameters, parse_hyperparameters
from service.modeling.base import fingerprint_base_model, load_tokenizer, read_base_model_spec
from service.modeling.delta import Delta, deserialize_delta, serialize_delta, sha256_hex
from service.queue import enqueue_training_job
from service.registry.models import (
    FINISHED_STATUSES,
    Adapter,
    Dataset,
    Job,
    JobEvent,
    JobStatus,
    Task,
)
from worker.heartbeat import heartbeat
from worker.promotion import decide_promotion
from worker.trainer.callbacks import TrainerCallback, TrainerState
from worker.trainer.loop import Trainer, TrainingResult
from worker.trainer.tasktypes import TaskOptions, TrainingTaskType, build_task_type

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside the training loop when the job's status became `cancelled`."""


class JobInterrupted(Exception):
    """Raised inside the training loop when the worker is shutting down."""


class JobInputError(ValueError):
    """Raised when a job's datasets cannot be trained on; the message is shown to the user."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class JobInputs:
    """A job's training inputs, read from the registry when it starts."""

    strategy: str
    hyperparameters: TrainingHyperparameters
    train_examples: list[dict]
    eval_examples: list[dict]
    labels: list[str]
    task_type: str
    # The init_from version's delta and training rows (empty unless replay or EWC needs them).
    init_delta: Delta | None = None
    init_examples: list[dict] = field(default_factory=list)


class RegistryProgress(TrainerCallback):
    """Writes progress, the loss curve and eval results to the registry.

    Stops the run by raising JobCancelled when the job was cancelled, and JobInterrupted
    when `interrupted` is set (the worker's warm shutdown), at the next write.
    """

    def __init__(
        self, job_id: str, database_url: str, interrupted: threading.Event | None = None
    ) -> None:
        self.job_id = job_id
        self.database_url = database_url
        self.interrupted = interrupted

    def on_train_begin(self, state: TrainerState) -> None:
        self._write(state, JobEvent(job_id=self.job_id, kind="log", message="training started"))

    def on_log(self, state: TrainerState) -> None:
        event = JobEvent(
            job_id=self.job_id,
            kind="train",
            step=state.step,
            epoch=state.epoch,
            loss=state.loss,
            learning_rate=state.learning_rate,
        )
        self._write(state, event)

    def on_evaluate(self, state: TrainerState, metrics: dict[str, float]) -> None:
        event = JobEvent(
            job_id=self.job_id, kind="eval", step=state.step, epoch=state.epoch, metrics=metrics
        )
        self._write(state, event, metrics=metrics)
        logger.info("job %s epoch %d eval %s", self.job_id, metrics.get("epoch", 0), metrics)

    def _write(self, state: TrainerState, event: JobEvent, metrics: dict | None = None) -> None:
        if self.interrupted is not None and self.interrupted.is_set():
            raise JobInterrupted(self.job_id)
        with session_scope(self.database_url) as session:
            job = session.get(Job, self.job_id)
            if job is None or job.status == JobStatus.cancelled:
                raise JobCancelled(self.job_id)
            job.step = state.step
            job.total_steps = state.total_steps
            job.epoch = state.epoch
            job.progress = state.step / state.total_steps if state.total_steps else 0.0
            job.loss = state.loss
            job.heartbeat_at = utcnow()
            if metrics is not None:
                job.metrics = {k: v for k, v in metrics.items() if k != "epoch"}
            session.add(event)


def run_training_job(
    job_id: str, settings: Settings, interrupted: threading.Event | None = None
) -> None:
    """Train the job `job_id` and register its adapter; record any failure on the job.

    When `interrupted` is set during training (the worker is shutting down), the run stops
    within a few steps and the job goes back on the queue, to start again on a worker.
    """
    url = settings.database_url
    if interrupted is not None and interrupted.is_set():
        # A worker in warm shutdown still takes messages until its running task returns.
        logger.info("job %s received while the worker shuts down; sent back to the queue", job_id)
        enqueue_training_job(job_id, settings)
        return
    inputs = _start_job(job_id, url, settings.job_stale_after_s)
    if inputs is None:
        return

    try:
        # A beat every quarter of the timeout keeps a healthy job from looking orphaned.
        with heartbeat(job_id, url, max(1.0, settings.job_stale_after_s / 4)):
            result = _train(job_id, settings, inputs, interrupted)
    except JobInterrupted:
        _requeue_interrupted(job_id, settings)
        return
    except JobCancelled:
        logger.info("job %s cancelled while running; nothing registered", job_id)
        return
    except (JobInputError, ValueError) as exc:
        _fail_job(job_id, url, str(exc))
        logger.warning("job %s failed: %s", job_id, exc)
        return
    except Exception as exc:
        _fail_job(
            job_id, url, f"training failed with an internal error: {type(exc).__name__}: {exc}"
        )
        logger.exception("job %s failed with an internal error", job_id)
        return

    go_live, reason = _decide_promotion(job_id, settings, inputs, result)
    _register_adapter(job_id, url, inputs, result, go_live, reason)


def _heartbeat_is_fresh(job: Job, stale_after_s: int) -> bool:
    if job.heartbeat_at is None:
        return False
    heartbeat = job.heartbeat_at
    if heartbeat.tzinfo is None:  # SQLite returns naive datetimes
        heartbeat = heartbeat.replace(tzinfo=UTC)
    return utcnow() - heartbeat < timedelta(seconds=stale_after_s)


def _start_job(job_id: str, url: str, stale_after_s: int) -> JobInputs | None:
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        if job is None:
            logger.warning("job %s not found in the registry; skipping the message", job_id)
            return None
        if job.status in FINISHED_STATUSES:
            logger.info("job %s already %s; skipping the message", job_id, job.status)
            return None

        if job.status == JobStatus.running:
            if _heartbeat_is_fresh(job, stale_after_s):
                logger.info("job %s is running on another worker; skipping the duplicate", job_id)
                return None
            logger.warning("job %s was running when its worker stopped; training it again", job_id)
        job.status = JobStatus.running
        job.started_at = job.started_at or utcnow()
        job.heartbeat_at = utcnow()
        job.attempts += 1
        job.error = None
        logger.info("job %s started (attempt %d, task %s)", job_id, job.attempts, job.task_name)

        try:
            hyperparameters = parse_hyperparameters(job.strategy, job.hyperparameters)
            train_dataset = session.get(Dataset, job.train_dataset_id)
            eval_dataset = (
                session.get(Dataset, job.eval_dataset_id) if job.eval_dataset_id else None
            )
            if train_dataset is None:
                raise JobInputError(f"training dataset {job.train_dataset_id} no longer exists")
            train_examples = decode_examples(train_dataset.content)
            labels = list(train_dataset.labels)
            task_type = job_task_type(train_dataset.task_type, labels, hyperparameters)
            if eval_dataset is not None:
                eval_examples = decode_examples(eval_dataset.content)
            else:
                train_examples, eval_examples = split_examples(
                    task_type, train_examples, job.hyperparameters
                )
            unknown = task_type.unknown_labels(eval_examples)
            if unknown:
                raise JobInputError(
                    f"the eval dataset has labels {unknown[:5]} that the training dataset lacks; "
                    "upload an eval set with the training labels only"
                )
            inputs = JobInputs(
                job.strategy,
                hyperparameters,
                train_examples,
                eval_examples,
                labels,
                train_dataset.task_type,
            )
            if hyperparameters.init_from is not None:
                _load_init_from(session, inputs)
        except ValueError as exc:
            job.status = JobStatus.failed
            job.error = str(exc)
            job.finished_at = utcnow()
            logger.warning("job %s failed before training: %s", job_id, exc)
            return None
        return inputs


def _load_init_from(session: Session, inputs: JobInputs) -> None:
    """Read the init_from version's delta and, when replay or EWC needs them, its training rows.

    Raises:
        JobInputError: the version does not exist, or its training rows are needed but unknown.
    """
    hyperparameters = inputs.hyperparameters
    reference = hyperparameters.init_from
    assert reference is not None
    task = session.scalar(select(Task).where(Task.name == reference.task))
    if task is None:
        raise JobInputError(f"init_from task {reference.task!r} not found")
    adapter = session.scalar(
        select(Adapter).where(Adapter.task_id == task.id, Adapter.version == reference.version)
    )
    if adapter is None:
        raise JobInputError(
            f"init_from version {reference.version} of task {reference.task!r} not found"
        )
    inputs.init_delta = deserialize_delta(adapter.delta)
    logger.info(
        "job continues from task %s version %d (%s)",
        reference.task,
        reference.version,
        adapter.strategy,
    )

    if hyperparameters.replay_fraction == 0 and getattr(hyperparameters, "ewc_lambda", 0) == 0:
        return
    source_job = session.get(Job, adapter.job_id) if adapter.job_id else None
    dataset = session.get(Dataset, source_job.train_dataset_id) if source_job else None
    if source_job is None or dataset is None:
        raise JobInputError(
            f"version {reference.version} of task {reference.task!r} has no training dataset "
            "in the registry, so it cannot be replayed or anchor EWC; set replay_fraction and "
            "ewc_lambda to 0"
        )
    examples = decode_examples(dataset.content)
    if source_job.eval_dataset_id is None:
        # That job held out an eval split, so replay only the rows it trained on.
        source_type = build_task_type(
            dataset.task_type, list(dataset.labels), TaskOptions(max_length=1)
        )
        examples, _ = split_examples(source_type, examples, source_job.hyperparameters)
    inputs.init_examples = examples


def job_task_type(
    name: str, labels: list[str], hyperparameters: TrainingHyperparameters
) -> TrainingTaskType:
    """Return the trainer's task type `name` with the job's options."""
    return build_task_type(name, labels, TaskOptions.from_hyperparameters(hyperparameters))


def split_examples(
    task_type: TrainingTaskType, examples: list[dict], hyperparameters: dict
) -> tuple[list[dict], list[dict]]:
    """Return the (train, eval) examples of a job without an eval dataset.

    The split is the task type's (stratified by label, or by article for QA) with the job's
    stored eval_fraction and seed, so a later job that replays this one's training rows
    recomputes exactly the same split.
    """
    train_rows, eval_rows = task_type.split(
        examples, hyperparameters.get("eval_fraction", 0.1), hyperparameters.get("seed", 0)
    )
    return [examples[i] for i in train_rows], [examples[i] for i in eval_rows]


def _train(
    job_id: str, settings: Settings, inputs: JobInputs, interrupted: threading.Event | None
) -> TrainingResult:
    base_dir = settings.resolved_base_model_dir
    fingerprint = fingerprint_base_model(base_dir)
    if inputs.init_delta is not None and inputs.init_delta.base_fingerprint != fingerprint:
        raise JobInputError(
            f"the init_from version was trained on base model "
            f"{inputs.init_delta.base_fingerprint[:12]}, but this worker runs "
            f"{fingerprint[:12]}; continue from a version trained on this base"
        )
    trainer = Trainer(
        spec=read_base_model_spec(base_dir),
        tokenizer=load_tokenizer(base_dir),
        fingerprint=fingerprint,
        strategy=inputs.strategy,
        hyperparameters=inputs.hyperparameters,
        train_examples=inputs.train_examples,
        eval_examples=inputs.eval_examples,
        labels=inputs.labels,
        callbacks=[RegistryProgress(job_id, settings.database_url, interrupted)],
        init_delta=inputs.init_delta,
        init_examples=inputs.init_examples,
        task_type=inputs.task_type,
    )
    return trainer.fit()


def _decide_promotion(
    job_id: str, settings: Settings, inputs: JobInputs, result: TrainingResult
) -> tuple[bool, str]:
    """Apply the task's promotion policy; evaluation for `if_better` runs outside any lock."""
    try:
        with session_scope(settings.database_url) as session:
            job = session.get(Job, job_id)
            task = session.get(Task, job.task_id)
            return decide_promotion(session, task, result.metrics, inputs.eval_examples, settings)
    except Exception as exc:
        # A failed comparison must not lose the trained adapter: register it, not live.
        logger.exception("job %s: promotion check failed; the new version stays not live", job_id)
        return False, f"promotion check failed ({type(exc).__name__}: {exc}); promote by hand"


def _register_adapter(
    job_id: str,
    url: str,
    inputs: JobInputs,
    result: TrainingResult,
    go_live: bool = True,
    reason: str = "",
) -> None:
    delta_bytes = serialize_delta(result.delta)
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        if job is None or job.status == JobStatus.cancelled:
            logger.info("job %s was cancelled before registration; adapter dropped", job_id)
            return
        # Lock the task row so concurrent jobs of one task take distinct version numbers.
        task = session.get(Task, job.task_id, with_for_update=True)
        adapter = session.scalar(select(Adapter).where(Adapter.job_id == job_id))
        if adapter is None:
            latest = session.scalar(
                select(func.max(Adapter.version)).where(Adapter.task_id == task.id)
            )
            adapter = Adapter(
                task_id=task.id,
                version=(latest or 0) + 1,
                strategy=inputs.strategy,
                config=inputs.hyperparameters.model_dump(mode="json"),
                labels=result.delta.labels,
                base_fingerprint=result.delta.base_fingerprint,
                delta=delta_bytes,
                sha256=sha256_hex(delta_bytes),
                size_bytes=len(delta_bytes),
                metrics={**result.metrics, **result.report, "best_epoch": result.best_epoch},
                job_id=job_id,
            )
            session.add(adapter)
            if go_live:
                task.live_version = adapter.version
                task.labels = result.delta.labels

        job.status = JobStatus.succeeded
        job.adapter_version = adapter.version
        job.metrics = {
            **result.metrics,
            **result.report,
            "best_epoch": result.best_epoch,
            "train_samples_per_second": round(result.train_samples_per_second, 2),
        }
        job.progress = 1.0
        job.finished_at = utcnow()
        session.add(
            JobEvent(
                job_id=job_id,
                kind="log",
                message=f"registered adapter version {adapter.version}"
                f" ({'live' if go_live else 'not live'}: {reason or 'policy always'})",
            )
        )
    logger.info(
        "job %s succeeded: task %s version %d, %s, delta %d bytes",
        job_id,
        job.task_name,
        adapter.version,
        result.metrics,
        len(delta_bytes),
    )


def _fail_job(job_id: str, url: str, message: str) -> None:
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        if job is None or job.status == JobStatus.cancelled:
            return
        job.status = JobStatus.failed
        job.error = message
        job.finished_at = utcnow()
        session.add(JobEvent(job_id=job_id, kind="log", message=f"failed: {message}"))


def _requeue_interrupted(job_id: str, settings: Settings) -> None:
    """Put a job stopped by the worker's shutdown back on the queue, from its start."""
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.running:
            return
        job.status = JobStatus.queued
        job.heartbeat_at = None
        session.add(
            JobEvent(job_id=job_id, kind="log", message="worker shut down; job queued again")
        )
    logger.warning("job %s interrupted by the worker's shutdown; queued again", job_id)
    enqueue_training_job(job_id, settings)


def recover_orphaned_jobs(settings: Settings, *, all_running: bool) -> list[str]:
    """Queue again the running jobs whose worker is gone, and return their ids.

    A job is orphaned when its heartbeat is older than `settings.job_stale_after_s`, or, with
    `all_running` (the embedded mode, which has exactly one worker, calling at its start),
    whenever it is marked running. Its broker message may be lost: kombu's SQLite transport
    never delivers a message again once a killed worker took it.
    """
    recovered = []
    with session_scope(settings.database_url) as session:
        running = session.scalars(select(Job).where(Job.status == JobStatus.running)).all()
        for job in running:
            if not all_running and _heartbeat_is_fresh(job, settings.job_stale_after_s):
                continue
            job.status = JobStatus.queued
            job.heartbeat_at = None
            session.add(
                JobEvent(job_id=job.id, kind="log", message="worker lost; job queued again")
            )
            recovered.append(job.id)
    for job_id in recovered:
        logger.warning("job %s was orphaned by a lost worker; queued again", job_id)
        enqueue_training_job(job_id, settings)
    return recovered
