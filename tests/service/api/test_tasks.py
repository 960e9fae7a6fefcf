from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.config import Settings
from service.registry.models import Adapter, Task
from tests.service.api.utils import submit_job, upload_dataset


def add_adapter(session: Session, task: Task, version: int, accuracy: float) -> None:
    session.add(
        Adapter(
            task_id=task.id,
            version=version,
            strategy="lora",
            config={"lora_rank": 8},
            labels=["0", "1"],
            base_fingerprint="f" * 64,
            delta=b"not a real delta",
            sha256="0" * 64,
            size_bytes=16,
            metrics={"accuracy": accuracy},
        )
    )


@pytest.fixture
def task_with_adapters(client: TestClient, session: Session) -> Task:
    """Task "reviews" with versions 1 and 2, of which version 1 is live."""
    dataset = upload_dataset(client)
    submit_job(client, task="reviews", train_dataset_id=dataset["id"])
    task = session.scalar(select(Task).where(Task.name == "reviews"))
    add_adapter(session, task, version=1, accuracy=0.8)
    add_adapter(session, task, version=2, accuracy=0.9)
    task.live_version = 1
    session.commit()
    return task


def test_read_tasks(client: TestClient, task_with_adapters: Task) -> None:
    response = client.get("/v1/tasks")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    task = body["data"][0]
    assert task["name"] == "reviews"
    assert task["live_version"] == 1
    assert task["metrics"] == {"accuracy": 0.8}
    assert task["adapters_count"] == 2


def test_read_task_without_adapters(client: TestClient) -> None:
    dataset = upload_dataset(client)
    submit_job(client, task="reviews", train_dataset_id=dataset["id"])

    response = client.get("/v1/tasks/reviews")

    assert response.status_code == 200
    task = response.json()
    assert task["live_version"] is None
    assert task["metrics"] == {}
    assert task["adapters_count"] == 0


def test_read_task_missing(client: TestClient) -> None:
    response = client.get("/v1/tasks/nope")

    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found"}


def test_read_adapters_newest_first(client: TestClient, task_with_adapters: Task) -> None:
    response = client.get("/v1/tasks/reviews/adapters")

    assert response.status_code == 200
    adapters = response.json()["data"]
    assert [adapter["version"] for adapter in adapters] == [2, 1]
    assert [adapter["live"] for adapter in adapters] == [False, True]
    assert adapters[1]["metrics"] == {"accuracy": 0.8}
    assert "delta" not in adapters[0]


def test_read_adapters_missing_task(client: TestClient) -> None:
    response = client.get("/v1/tasks/nope/adapters")

    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found"}


def test_predict_unknown_task(client: TestClient, settings: Settings, tiny_model_dir: Path) -> None:
    # The real serving engine, with the tiny BERT as its base so that it loads quickly.
    settings.base_model_dir = tiny_model_dir

    response = client.post("/v1/tasks/nope/predict", json={"inputs": ["great film"]})

    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found: 'nope'"}


@pytest.mark.parametrize("inputs", [[], [""], ["fine", "   "], ["x"] * 1025, "not a list"])
def test_predict_invalid_inputs(client: TestClient, inputs: object) -> None:
    response = client.post("/v1/tasks/reviews/predict", json={"inputs": inputs})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "inputs"]


def test_update_task_sets_policy_and_pinning(client, session) -> None:
    session.add(Task(name="intent", task_type="text_classification", labels=["a", "b"]))
    session.commit()

    response = client.patch(
        "/v1/tasks/intent", json={"promotion_policy": "if_better", "pinned": True}
    )

    assert response.status_code == 200, response.text
    assert response.json()["promotion_policy"] == "if_better"
    assert response.json()["pinned"] is True


def test_update_task_rejects_unknown_policy(client, session) -> None:
    session.add(Task(name="intent", task_type="text_classification", labels=["a", "b"]))
    session.commit()

    response = client.patch("/v1/tasks/intent", json={"promotion_policy": "sometimes"})

    assert response.status_code == 422


def test_promote_missing_version_is_not_found(client, session) -> None:
    session.add(Task(name="intent", task_type="text_classification", labels=["a", "b"]))
    session.commit()

    response = client.post("/v1/tasks/intent/adapters/3/promote")

    assert response.status_code == 404
    assert response.json()["detail"] == "Adapter version not found"


def test_promote_version_out_of_range_is_rejected(client, session) -> None:
    session.add(Task(name="intent", task_type="text_classification", labels=["a", "b"]))
    session.commit()

    response = client.post("/v1/tasks/intent/adapters/99999999999999999999999/promote")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "version"]


def test_promote_on_missing_task_is_not_found(client) -> None:
    response = client.post("/v1/tasks/nope/adapters/1/promote")

    assert response.status_code == 404
    assert response.json()["detail"] == "Task not found"


def test_fan_out_rejects_repeated_tasks(client) -> None:
    response = client.post("/v1/predict", json={"tasks": ["a", "a"], "inputs": ["hello"]})

    assert response.status_code == 422
