from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import queue
from service.hyperparameters import LoraHyperparameters
from service.registry.models import Job, JobEvent, Task, utcnow
from tests.service.api.utils import EVAL_TSV, submit_job, upload_dataset


@pytest.fixture
def train_dataset(client: TestClient) -> dict:
    return upload_dataset(client)


def count_jobs(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Job))


def test_create_job_queues_job(
    client: TestClient, train_dataset: dict, enqueued: list[str]
) -> None:
    response = client.post(
        "/v1/jobs",
        json={
            "task": "reviews",
            "train_dataset_id": train_dataset["id"],
            "hyperparameters": {"epochs": 2, "lora_rank": 4},
        },
    )

    assert response.status_code == 202
    job = response.json()
    assert job["task"] == "reviews"
    assert job["status"] == "queued"
    assert job["strategy"] == "lora"
    # stored resolved: the task type's default selection metric is filled in
    assert (
        job["hyperparameters"]
        == LoraHyperparameters(epochs=2, lora_rank=4, metric_for_best_model="accuracy").model_dump()
    )
    assert job["eval_dataset_id"] is None
    assert job["warnings"] == []
    assert job["eta_seconds"] is None
    assert enqueued == [job["id"]]

    task = client.get("/v1/tasks/reviews").json()
    assert task["task_type"] == "text_classification"
    assert task["labels"] == ["0", "1"]
    assert task["live_version"] is None


def test_create_job_unknown_dataset(
    client: TestClient, session: Session, enqueued: list[str]
) -> None:
    response = client.post(
        "/v1/jobs", json={"task": "reviews", "train_dataset_id": "0123456789abcdef"}
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "Dataset not found: train_dataset_id '0123456789abcdef'"}
    assert count_jobs(session) == 0
    assert enqueued == []


def test_create_job_unknown_eval_dataset(client: TestClient, train_dataset: dict) -> None:
    response = client.post(
        "/v1/jobs",
        json={
            "task": "reviews",
            "train_dataset_id": train_dataset["id"],
            "eval_dataset_id": "0123456789abcdef",
        },
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "Dataset not found: eval_dataset_id '0123456789abcdef'"}


@pytest.mark.parametrize(
    ("hyperparameters", "field"),
    [
        ({"lora_rnak": 4}, "lora_rnak"),
        ({"lora_rank": 0}, "lora_rank"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"target_modules": ["query", "decoder"]}, "target_modules"),
    ],
)
def test_create_job_invalid_hyperparameter(
    client: TestClient,
    session: Session,
    enqueued: list[str],
    train_dataset: dict,
    hyperparameters: dict,
    field: str,
) -> None:
    response = client.post(
        "/v1/jobs",
        json={
            "task": "reviews",
            "train_dataset_id": train_dataset["id"],
            "hyperparameters": hyperparameters,
        },
    )

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [error["loc"] for error in errors] == [["body", "hyperparameters", field]]
    assert count_jobs(session) == 0
    assert enqueued == []


def test_create_job_unknown_strategy(client: TestClient, train_dataset: dict) -> None:
    response = client.post(
        "/v1/jobs",
        json={"task": "reviews", "train_dataset_id": train_dataset["id"], "strategy": "magic"},
    )

    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "strategy"]
    assert "'magic'" in error["msg"]
    assert "lora" in error["msg"]


@pytest.mark.parametrize("task", ["", "has space", "slash/name", "x" * 201])
def test_create_job_invalid_task_name(client: TestClient, train_dataset: dict, task: str) -> None:
    response = client.post("/v1/jobs", json={"task": task, "train_dataset_id": train_dataset["id"]})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "task"]


def test_create_job_overlap_warning(client: TestClient, train_dataset: dict) -> None:
    eval_dataset = upload_dataset(client, EVAL_TSV, filename="dev.tsv")

    job = submit_job(
        client,
        task="reviews",
        train_dataset_id=train_dataset["id"],
        eval_dataset_id=eval_dataset["id"],
    )

    assert job["eval_dataset_id"] == eval_dataset["id"]
    assert job["warnings"] == [
        "2 of 3 eval examples also occur in the training dataset; eval metrics will be optimistic"
    ]
    assert client.get(f"/v1/jobs/{job['id']}").json()["warnings"] == job["warnings"]


def test_create_job_task_type_conflict(
    client: TestClient, session: Session, train_dataset: dict
) -> None:
    submit_job(client, task="reviews", train_dataset_id=train_dataset["id"])
    # No second task type has a parser yet, so the task's row is changed directly.
    task = session.scalar(select(Task).where(Task.name == "reviews"))
    task.task_type = "regression"
    session.commit()

    response = client.post(
        "/v1/jobs", json={"task": "reviews", "train_dataset_id": train_dataset["id"]}
    )

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "Task 'reviews' is a regression task, so it cannot be trained on a "
        "text_classification dataset. Use another task name."
    )


def test_create_job_broker_down(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, train_dataset: dict
) -> None:
    def fail(job_id: str, settings=None) -> None:
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(queue, "enqueue_training_job", fail)

    response = client.post(
        "/v1/jobs", json={"task": "reviews", "train_dataset_id": train_dataset["id"]}
    )

    assert response.status_code == 503
    assert "marked failed" in response.json()["detail"]
    jobs = client.get("/v1/jobs").json()["data"]
    assert len(jobs) == 1
    assert jobs[0]["status"] == "failed"
    assert jobs[0]["error"] == "could not reach the broker: [Errno 111] Connection refused"
    assert jobs[0]["finished_at"] is not None


def test_read_jobs_filters(client: TestClient, train_dataset: dict) -> None:
    first = submit_job(client, task="reviews", train_dataset_id=train_dataset["id"])
    second = submit_job(client, task="other", train_dataset_id=train_dataset["id"])
    client.post(f"/v1/jobs/{first['id']}/cancel")

    all_jobs = client.get("/v1/jobs").json()
    queued = client.get("/v1/jobs", params={"status": "queued"}).json()
    reviews = client.get("/v1/jobs", params={"task": "reviews"}).json()
    bad_status = client.get("/v1/jobs", params={"status": "sleeping"})

    assert [job["id"] for job in all_jobs["data"]] == [second["id"], first["id"]]
    assert all_jobs["count"] == 2
    assert [job["id"] for job in queued["data"]] == [second["id"]]
    assert [job["id"] for job in reviews["data"]] == [first["id"]]
    assert bad_status.status_code == 422


def test_read_job_missing(client: TestClient) -> None:
    response = client.get("/v1/jobs/0123456789abcdef")

    assert response.status_code == 404
    assert response.json() == {"detail": "Job not found"}


def test_read_job_events(client: TestClient, session: Session, train_dataset: dict) -> None:
    job = submit_job(client, task="reviews", train_dataset_id=train_dataset["id"])
    session.add_all(
        [
            JobEvent(job_id=job["id"], kind="train", step=10, loss=0.7, learning_rate=1e-4),
            JobEvent(job_id=job["id"], kind="eval", step=10, metrics={"accuracy": 0.5}),
            JobEvent(job_id=job["id"], kind="train", step=20, loss=0.5, learning_rate=2e-4),
        ]
    )
    session.commit()

    events = client.get(f"/v1/jobs/{job['id']}/events").json()
    train_events = client.get(f"/v1/jobs/{job['id']}/events", params={"kind": "train"}).json()
    first_id = events["data"][0]["id"]
    later = client.get(f"/v1/jobs/{job['id']}/events", params={"after_id": first_id}).json()

    assert [event["step"] for event in events["data"]] == [10, 10, 20]
    assert events["data"][1]["metrics"] == {"accuracy": 0.5}
    assert [event["loss"] for event in train_events["data"]] == [0.7, 0.5]
    assert [event["kind"] for event in later["data"]] == ["eval", "train"]
    assert later["count"] == 2


def test_read_job_events_unknown_kind_rejected(client: TestClient, train_dataset: dict) -> None:
    job = submit_job(client, task="reviews", train_dataset_id=train_dataset["id"])

    response = client.get(f"/v1/jobs/{job['id']}/events", params={"kind": "bogus"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "kind"]


def test_read_job_events_missing_job(client: TestClient) -> None:
    response = client.get("/v1/jobs/0123456789abcdef/events")

    assert response.status_code == 404
    assert response.json() == {"detail": "Job not found"}


def test_cancel_job(client: TestClient, train_dataset: dict) -> None:
    job = submit_job(client, task="reviews", train_dataset_id=train_dataset["id"])

    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
    again = client.post(f"/v1/jobs/{job['id']}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert again.status_code == 409
    assert again.json() == {"detail": "Job already finished"}


def test_cancel_job_missing(client: TestClient) -> None:
    response = client.post("/v1/jobs/0123456789abcdef/cancel")

    assert response.status_code == 404
    assert response.json() == {"detail": "Job not found"}


def test_read_job_eta_while_running(
    client: TestClient, session: Session, train_dataset: dict
) -> None:
    job = submit_job(client, task="reviews", train_dataset_id=train_dataset["id"])
    row = session.get(Job, job["id"])
    row.status = "running"
    row.progress = 0.25
    row.started_at = utcnow() - timedelta(seconds=30)
    session.commit()

    running = client.get(f"/v1/jobs/{job['id']}").json()
    row.status = "succeeded"
    row.progress = 1.0
    session.commit()
    succeeded = client.get(f"/v1/jobs/{job['id']}").json()

    # 30 s for the first quarter, so about 90 s for the other three.
    assert 89 <= running["eta_seconds"] <= 95
    assert succeeded["eta_seconds"] is None


def test_create_job_eval_labels_unknown_to_training(client: TestClient, session: Session) -> None:
    train = upload_dataset(client)
    eval_ = upload_dataset(client, b"sentence\tlabel\nfine\t0\ngreat\t2\n", "dev.tsv")

    response = client.post(
        "/v1/jobs",
        json={"task": "reviews", "train_dataset_id": train["id"], "eval_dataset_id": eval_["id"]},
    )

    assert response.status_code == 422
    assert "labels ['2'] that the training dataset lacks" in response.json()["detail"]
    assert count_jobs(session) == 0


def test_create_job_without_room_for_eval_split(client: TestClient, session: Session) -> None:
    train = upload_dataset(client, b"sentence\tlabel\nfoo\t1\nbar\t0\n")

    response = client.post("/v1/jobs", json={"task": "reviews", "train_dataset_id": train["id"]})

    assert response.status_code == 422
    assert "pass eval_dataset_id" in response.json()["detail"]
    assert count_jobs(session) == 0


def test_create_job_max_length_over_base_limit(
    client: TestClient, session: Session, tiny_model_dir
) -> None:
    train = upload_dataset(client)
    # The tiny base has 128 positions, the real one 512.
    client.app.state.settings = client.app.state.settings.model_copy(
        update={"base_model_dir": tiny_model_dir}
    )

    response = client.post(
        "/v1/jobs",
        json={
            "task": "reviews",
            "train_dataset_id": train["id"],
            "hyperparameters": {"max_length": 512},
        },
    )

    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "hyperparameters", "max_length"]
    assert "over the base model's limit of 128 positions" in error["msg"]
    assert count_jobs(session) == 0


def test_create_job_error_does_not_echo_input(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"task": "x" * 5000, "train_dataset_id": "nope"})

    assert response.status_code == 422
    assert "x" * 300 not in response.text
