"""The real processes end to end: `python -m service api` and `python -m service worker`."""

from pathlib import Path

import pytest

from tests.utils.stack import Stack, run_stack, wait_for_job

pytestmark = pytest.mark.integration

POSITIVE = ["a joy to watch", "brilliant and moving", "great fun", "superb acting"]
NEGATIVE = ["a waste of time", "dull and lifeless", "awful script", "painfully boring"]


def make_reviews_tsv(rows_per_label: int) -> bytes:
    lines = ["sentence\tlabel"]
    for index in range(rows_per_label):
        lines.append(f"{POSITIVE[index % len(POSITIVE)]} {index}\tpos")
        lines.append(f"{NEGATIVE[index % len(NEGATIVE)]} {index}\tneg")
    return ("\n".join(lines) + "\n").encode()


def train_and_predict(stack: Stack) -> None:
    client = stack.client
    upload = client.post(
        "/v1/datasets",
        files={"file": ("reviews.tsv", make_reviews_tsv(24))},
        data={"task_type": "text_classification"},
    )
    assert upload.status_code == 201, upload.text

    submitted = client.post(
        "/v1/jobs",
        json={
            "task": "reviews",
            "train_dataset_id": upload.json()["id"],
            "hyperparameters": {"epochs": 1, "batch_size": 8},
        },
    )
    assert submitted.status_code == 202, submitted.text
    job = wait_for_job(client, submitted.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    assert job["adapter_version"] == 1

    predicted = client.post("/v1/tasks/reviews/predict", json={"inputs": ["great fun", "dull"]})
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    assert body["task"] == "reviews"
    assert body["adapter_version"] == 1
    assert [set(p["scores"]) for p in body["predictions"]] == [{"neg", "pos"}] * 2


def test_stack_embedded_sqlite(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {"LORAPLEX_DATA_DIR": str(tmp_path), "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir)}

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        train_and_predict(stack)

    assert (tmp_path / "registry.db").is_file()
    assert (tmp_path / "broker.db").is_file()


def test_stack_postgres_and_redis(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str, redis_url: str, queue_name: str
) -> None:
    env = {
        "LORAPLEX_DATA_DIR": str(tmp_path),
        "LORAPLEX_DATABASE_URL": postgres_url,
        "LORAPLEX_BROKER_URL": redis_url,
        "LORAPLEX_QUEUE": queue_name,
        "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir),
    }

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        train_and_predict(stack)
        worker_log = stack.read_log("worker")

    assert f"queue {queue_name}" in worker_log
    assert not (tmp_path / "registry.db").exists()
    assert not (tmp_path / "broker.db").exists()
