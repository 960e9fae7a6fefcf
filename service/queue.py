"""Celery client that puts training jobs on the broker.

The API only publishes messages by task name. It never imports worker/ and runs no tasks.
"""

import logging
from functools import lru_cache
from pathlib import Path

from celery import Celery
from kombu import Connection
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy import make_url

from service.config import Settings, get_settings

logger = logging.getLogger(__name__)

TRAIN_JOB_TASK = "loraplex.train_job"


def broker_transport_options(broker_url: str) -> dict:
    """Return kombu transport options for `broker_url`, shared by the API and the worker."""
    if broker_url.startswith(("sqla+", "sqlalchemy+")):
        # kombu's SQLAlchemy channel passes its transport options to create_engine (kombu 5.7),
        # so only engine arguments may go here, and "polling_interval" would make it raise.
        # The SQLite file is shared with the other process, so writers wait up to 30 s for
        # its lock instead of failing after sqlite3's default 5 s.
        return {"connect_args": {"timeout": 30}} if "sqlite" in broker_url else {}
    if broker_url.startswith(("redis://", "rediss://")):
        # Redis hands an unacknowledged message to another worker after the visibility
        # timeout (one hour by default), which would start a long job twice. Orphaned jobs
        # are found by their heartbeat instead (worker/jobs.py), so the timeout only has
        # to outlast the longest job.
        return {"visibility_timeout": 24 * 3600}
    return {}


def create_broker_dir(broker_url: str) -> None:
    """Create the folder of an SQLite broker file, which sqlite3 will not create itself."""
    if broker_url.startswith(("sqla+sqlite:", "sqlalchemy+sqlite:")):
        database = make_url(broker_url.split("+", 1)[1]).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=4)
def get_celery_client(broker_url: str) -> Celery:
    """Return the process's Celery client for `broker_url`, created on first use."""
    create_broker_dir(broker_url)
    client = Celery("loraplex", broker=broker_url)
    client.conf.update(
        broker_transport_options=broker_transport_options(broker_url),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
    )
    logger.info("Celery client created for broker %s", maybe_sanitize_url(broker_url))
    return client


def enqueue_training_job(job_id: str, settings: Settings | None = None) -> None:
    """Send job `job_id` to the training queue. Raise the broker's error if it is unreachable."""
    settings = settings or get_settings()
    client = get_celery_client(settings.broker_url)
    client.send_task(TRAIN_JOB_TASK, args=[job_id], queue=settings.queue)
    logger.info("job %s sent to queue %s", job_id, settings.queue)


def declare_broker_queue(settings: Settings) -> None:
    """Create the SQLite broker's tables and the job queue's row before any process uses them.

    kombu's SQLAlchemy transport creates them on first use, and when the API and a new worker
    both do so at the same moment on one SQLite file, one of them fails on the unique queue
    name. `loraplex migrate` and `loraplex up` call this first, so neither process has to.
    """
    if not settings.broker_url.startswith(("sqla+", "sqlalchemy+")):
        return
    create_broker_dir(settings.broker_url)
    options = broker_transport_options(settings.broker_url)
    with Connection(settings.broker_url, transport_options=options) as connection:
        channel = connection.channel()
        try:
            channel.queue_declare(queue=settings.queue)
        finally:
            channel.close()
    logger.info("broker queue %s declared", settings.queue)
