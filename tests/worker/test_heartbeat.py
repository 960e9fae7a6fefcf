import time
from pathlib import Path

from service.db import session_scope
from service.migrate import upgrade_to_head
from service.registry.models import Dataset, Job, JobStatus, Task
from worker.heartbeat import heartbeat


def make_job(url: str, status: JobStatus) -> str:
    with session_scope(url) as session:
        task = Task(name="t", task_type="text_classification", labels=["a", "b"])
        dataset = Dataset(
            name="d",
            task_type="text_classification",
            format="tsv",
            filename="d.tsv",
            num_rows=0,
            labels=[],
            label_counts={},
            warnings=[],
            sha256="0" * 64,
            size_bytes=0,
            content=b"",
        )
        session.add_all([task, dataset])
        session.flush()
        job = Job(
            task_id=task.id,
            task_name="t",
            train_dataset_id=dataset.id,
            strategy="lora",
            hyperparameters={},
            status=status,
        )
        session.add(job)
        session.flush()
        return job.id


def read_heartbeat(url: str, job_id: str):
    with session_scope(url) as session:
        return session.get(Job, job_id).heartbeat_at


def test_heartbeat_refreshes_running_job(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade_to_head(url)
    job_id = make_job(url, JobStatus.running)

    with heartbeat(job_id, url, interval_s=0.05):
        time.sleep(0.3)
        during = read_heartbeat(url, job_id)

    assert during is not None


def test_heartbeat_leaves_cancelled_job_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade_to_head(url)
    job_id = make_job(url, JobStatus.cancelled)

    with heartbeat(job_id, url, interval_s=0.05):
        time.sleep(0.2)

    assert read_heartbeat(url, job_id) is None
