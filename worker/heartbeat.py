"""A job's heartbeat, written from a timer thread while the job trains.

Progress writes happen every few optimizer steps, which can be minutes apart with large
batches or a large eval set; orphan detection must not depend on them.
"""

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import update

from service.db import session_scope
from service.registry.models import Job, JobStatus

logger = logging.getLogger(__name__)


@contextmanager
def heartbeat(job_id: str, database_url: str, interval_s: float) -> Iterator[None]:
    """Refresh `jobs.heartbeat_at` of a running job every `interval_s` seconds until exit."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval_s):
            try:
                with session_scope(database_url) as session:
                    session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.status == JobStatus.running)
                        .values(heartbeat_at=datetime.now(UTC))
                    )
            except Exception:
                logger.exception("job %s: writing the heartbeat failed; will try again", job_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
