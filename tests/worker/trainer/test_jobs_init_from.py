"""Jobs that continue from an earlier adapter version, run against a migrated SQLite registry."""

from pathlib import Path

import pytest
from sqlalchemy import select

from service.config import Settings
from service.datasets.codec import encode_examples
from service.db import session_scope
from service.hyperparameters import parse_hyperparameters
from service.migrate import upgrade_to_head
from service.modeling.delta import deserialize_delta
from service.registry.models import Adapter, Dataset, Job, JobStatus, Task
from tests.utils.settings import local_settings
from tests.worker.trainer.helpers import keyword_examples
from worker.jobs import run_training_job


@pytest.fixture
def settings(tmp_path: Path, tiny_model_dir: Path) -> Settings:
    settings = local_settings(tmp_path, tiny_model_dir)
    upgrade_to_head(settings.database_url)
    return settings


def add_dataset(settings: Settings, examples: list[dict]) -> str:
    labels = sorted({e["label"] for e in examples})
    with session_scope(settings.database_url) as session:
        dataset = Dataset(
            name="rows",
            task_type="text_classification",
            format="jsonl",
            filename="rows.jsonl",
            num_rows=len(examples),
            labels=labels,
            label_counts={label: sum(e["label"] == label for e in examples) for label in labels},
            warnings=[],
            sha256="0" * 64,
            size_bytes=0,
            content=encode_examples(examples),
        )
        session.add(dataset)
        session.flush()
        return dataset.id


def run_job(settings: Settings, task_name: str, dataset_id: str, strategy: str, values: dict):
    hyperparameters = parse_hyperparameters(strategy, {"epochs": 1, "bf16": False, **values})
    with session_scope(settings.database_url) as session:
        task = session.scalar(select(Task).where(Task.name == task_name))
        if task is None:
            task = Task(name=task_name, task_type="text_classification", labels=["bad", "good"])
            session.add(task)
            session.flush()
        job = Job(
            task_id=task.id,
            task_name=task_name,
            train_dataset_id=dataset_id,
            strategy=strategy,
            hyperparameters=hyperparameters.model_dump(mode="json"),
        )
        session.add(job)
        session.flush()
        job_id = job.id
    run_training_job(job_id, settings)
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        adapter = session.scalar(select(Adapter).where(Adapter.job_id == job_id))
        if adapter is not None:
            session.refresh(adapter, ["delta"])  # a deferred column, read before the session ends
        return job, adapter


def test_continued_job_replays_earlier_data(settings):
    first_rows = keyword_examples(40, 0)
    first, first_adapter = run_job(
        settings, "reviews", add_dataset(settings, first_rows), "lora", {"lora_rank": 4}
    )
    assert first.status == JobStatus.succeeded, first.error

    second, adapter = run_job(
        settings,
        "reviews",
        add_dataset(settings, keyword_examples(40, 1)),
        "lora",
        {
            "lora_rank": 4,
            "init_from": {"task": "reviews", "version": 1},
            "replay_fraction": 0.5,
            "l2sp_lambda": 0.1,
        },
    )

    assert second.status == JobStatus.succeeded, second.error
    assert adapter.version == 2
    # 36 own rows after the 10% eval split, plus half of the first job's 36 training rows.
    assert second.total_steps == -(-(36 + 18) // 32)
    assert adapter.config["init_from"] == {"task": "reviews", "version": 1}
    assert adapter.config["lora_alpha"] == 16.0
    assert deserialize_delta(adapter.delta).lora_rank == 4


def test_dense_job_reports_compression(settings):
    job, adapter = run_job(
        settings, "dense", add_dataset(settings, keyword_examples(40, 0)), "full", {"svd_rank": 4}
    )

    assert job.status == JobStatus.succeeded, job.error
    for metrics in (job.metrics, adapter.metrics):
        assert metrics["compression_rank"] == 4
        assert 0 < metrics["compression_relative_frobenius_error"] < 1
        assert "accuracy_before_compression" in metrics
        assert "accuracy" in metrics


def test_missing_init_version_fails_the_job(settings):
    job, adapter = run_job(
        settings,
        "reviews",
        add_dataset(settings, keyword_examples(20, 0)),
        "lora",
        {"init_from": {"task": "reviews", "version": 7}},
    )

    assert job.status == JobStatus.failed
    assert job.error == "init_from version 7 of task 'reviews' not found"
    assert adapter is None
