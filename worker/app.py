"""Celery app of the training worker.

Started by `loraplex worker`, which runs `celery -A worker.app worker --pool solo -Q <queue>`.
The API publishes to the same queue by task name (service/queue.py) and never imports this
module.
"""

import logging
import threading

from celery import Celery, signals
from kombu.utils.url import maybe_sanitize_url

from service.config import get_settings
from service.queue import broker_transport_options, create_broker_dir

logger = logging.getLogger(__name__)

# Set when the worker begins a warm shutdown (SIGTERM, or the first Ctrl+C). The solo pool
# waits for the running task, so the job's progress callback polls this every few steps and
# puts the job back on the queue (worker/jobs.py). The next worker trains it again from its
# start, and this one exits before its supervisor's grace period ends in a kill.
shutdown_requested = threading.Event()

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"

settings = get_settings()
create_broker_dir(settings.broker_url)

app = Celery("loraplex", broker=settings.broker_url, include=["worker.tasks"])
app.conf.update(
    task_default_queue=settings.queue,
    # A job message is acknowledged only after its task returns, and is put back on the queue
    # when a prefork pool process dies mid-run. worker.tasks must therefore be safe to run
    # twice for one job.
    # NOTE: the embedded sqla+sqlite broker (kombu 5.7) never delivers again a message whose
    # worker was killed outright (SIGKILL, power loss), because the row stays hidden in
    # kombu_message. Redis delivers it again once its visibility timeout (1 hour) has passed.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # A training job runs for minutes, so each worker reserves one message at a time and
    # leaves the others on the broker for idle workers.
    worker_prefetch_multiplier=1,
    # Progress and results go to the registry database, never to a Celery result backend.
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    broker_transport_options=broker_transport_options(settings.broker_url),
    worker_hijack_root_logger=False,
)


@signals.setup_logging.connect
def configure_logging(
    loglevel: int | str | None = None, logfile: str | None = None, **kwargs
) -> None:
    """Log to stderr (or --logfile) in the service's format instead of Celery's."""
    # Connecting to setup_logging at all is what stops Celery from configuring logging.
    logging.basicConfig(
        level=loglevel or logging.INFO, format=LOG_FORMAT, filename=logfile or None, force=True
    )


@signals.worker_init.connect
def init_worker(**kwargs) -> None:
    # Sent before the first task runs, but also before logging is set up.
    set_torch_threads()


@signals.worker_process_init.connect
def init_pool_process(**kwargs) -> None:
    # Only prefork pools start child processes. The solo pool runs tasks in the main process.
    set_torch_threads()


@signals.worker_ready.connect
def log_worker_start(**kwargs) -> None:
    logger.info(
        "worker ready: queue %s, broker %s, registry %s, torch threads %s",
        settings.queue,
        maybe_sanitize_url(settings.broker_url),
        maybe_sanitize_url(settings.database_url),
        settings.torch_threads or "torch's default",
    )
    recover_jobs(all_running=settings.is_embedded)
    threading.Thread(target=watch_heartbeats, name="heartbeat-watch", daemon=True).start()


def recover_jobs(all_running: bool) -> None:
    """Queue again the jobs that a lost worker left running; log and go on on failure."""
    from worker.jobs import recover_orphaned_jobs

    try:
        recover_orphaned_jobs(settings, all_running=all_running)
    except Exception:
        logger.exception("recovering orphaned jobs failed; will try again")


def watch_heartbeats() -> None:
    """Look for orphaned jobs every half heartbeat timeout, for the life of the worker."""
    interval = max(5.0, settings.job_stale_after_s / 2)
    while not shutdown_requested.wait(interval):
        recover_jobs(all_running=False)


@signals.worker_shutting_down.connect
def flag_shutdown(sig: str | None = None, how: str | None = None, **kwargs) -> None:
    shutdown_requested.set()
    logger.info("worker received %s: %s shutdown", sig, how)


@signals.worker_shutdown.connect
def log_worker_stop(**kwargs) -> None:
    logger.info("worker stopped: queue %s", settings.queue)


def set_torch_threads() -> None:
    """Apply LORAPLEX_TORCH_THREADS to torch's intra-op thread pool in this process."""
    if settings.torch_threads <= 0:
        return

    # Imported here so that loading the app for `celery inspect` and the like stays cheap.
    import torch

    torch.set_num_threads(settings.torch_threads)
