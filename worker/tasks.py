"""Celery tasks: thin wrappers that take ids and call the job logic in worker/jobs.py."""

from celery.utils.log import get_task_logger
from sqlalchemy.exc import OperationalError

from service.config import get_settings
from worker.app import app, shutdown_requested
from worker.jobs import run_training_job

logger = get_task_logger(__name__)


@app.task(name="loraplex.train_job", bind=True, max_retries=5)
def train_job(self, job_id: str) -> None:
    """Run the fine-tuning job `job_id`; retry while the registry is unreachable."""
    try:
        run_training_job(job_id, get_settings(), shutdown_requested)
    except OperationalError as exc:
        logger.warning(
            "job %s: registry unreachable (%s); retry %d of %d",
            job_id,
            exc.orig,
            self.request.retries + 1,
            self.max_retries,
        )
        raise self.retry(exc=exc, countdown=min(60, 5 * 2**self.request.retries)) from exc
