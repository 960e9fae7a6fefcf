import hashlib

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.config import Settings
from service.datasets import decode_examples
from service.registry.models import Dataset
from tests.service.api.utils import TRAIN_TSV, upload_dataset


def count_datasets(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Dataset))


def test_create_dataset_stores_examples(client: TestClient, session: Session) -> None:
    response = client.post(
        "/v1/datasets",
        files={"file": ("train.tsv", TRAIN_TSV)},
        data={"task_type": "text_classification"},
    )

    assert response.status_code == 201
    dataset = response.json()
    assert dataset["name"] == "train.tsv"
    assert dataset["task_type"] == "text_classification"
    assert dataset["format"] == "tsv"
    assert dataset["num_rows"] == 6
    assert dataset["labels"] == ["0", "1"]
    assert dataset["label_counts"] == {"0": 3, "1": 3}
    assert dataset["sha256"] == hashlib.sha256(TRAIN_TSV).hexdigest()
    assert dataset["created_at"].endswith("Z")

    row = session.get(Dataset, dataset["id"])
    assert row.size_bytes == len(TRAIN_TSV)
    examples = decode_examples(row.content)
    assert examples[0] == {"text": "a gripping, beautifully acted film", "label": "1"}


def test_create_dataset_with_name_and_columns(client: TestClient) -> None:
    data = b"review,verdict\ngreat fun,pos\nawful,neg\nlovely,pos\nboring,neg\n"

    dataset = upload_dataset(
        client,
        data,
        filename="reviews.txt",
        name="my reviews",
        text_column="review",
        label_column="verdict",
        format="csv",
    )

    assert dataset["name"] == "my reviews"
    assert dataset["format"] == "csv"
    assert dataset["labels"] == ["neg", "pos"]


def test_create_dataset_rejected_row(client: TestClient, session: Session) -> None:
    data = b"sentence\tlabel\ngood\t1\nbad\t\nfine\t1\n"

    response = client.post(
        "/v1/datasets",
        files={"file": ("train.tsv", data)},
        data={"task_type": "text_classification"},
    )

    assert response.status_code == 422
    body = response.json()
    assert body["line"] == 3
    assert body["field"] == "label"
    assert body["detail"].startswith("train.tsv, line 3, field 'label':")
    assert count_datasets(session) == 0


def test_create_dataset_unsupported_task_type(client: TestClient, session: Session) -> None:
    response = client.post(
        "/v1/datasets",
        files={"file": ("train.tsv", TRAIN_TSV)},
        data={"task_type": "summarization"},
    )

    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "task_type"
    assert "'summarization'" in body["detail"]
    assert "text_classification" in body["detail"]
    assert count_datasets(session) == 0


def test_create_dataset_missing_file(client: TestClient) -> None:
    response = client.post("/v1/datasets", data={"task_type": "text_classification"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


def test_create_dataset_over_limit(
    client: TestClient, settings: Settings, session: Session
) -> None:
    settings.max_upload_mb = 1
    data = TRAIN_TSV + b"x" * (1024 * 1024)

    response = client.post(
        "/v1/datasets",
        files={"file": ("train.tsv", data)},
        data={"task_type": "text_classification"},
    )

    assert response.status_code == 413
    assert response.json()["detail"] == (
        "File is larger than the 1 MiB upload limit (LORAPLEX_MAX_UPLOAD_MB)."
    )
    assert count_datasets(session) == 0


def test_create_dataset_body_over_limit(client: TestClient, settings: Settings) -> None:
    # Over the limit plus the 1 MiB allowed for the form, so the body is never parsed.
    settings.max_upload_mb = 1
    data = b"x" * (2 * 1024 * 1024 + 1)

    response = client.post(
        "/v1/datasets",
        files={"file": ("train.tsv", data)},
        data={"task_type": "text_classification"},
    )

    assert response.status_code == 413
    assert "1 MiB upload limit" in response.json()["detail"]


def test_read_datasets_newest_first(client: TestClient) -> None:
    first = upload_dataset(client, name="first")
    second = upload_dataset(client, name="second")

    response = client.get("/v1/datasets")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [dataset["id"] for dataset in body["data"]] == [second["id"], first["id"]]


def test_read_dataset(client: TestClient) -> None:
    dataset = upload_dataset(client)

    response = client.get(f"/v1/datasets/{dataset['id']}")

    assert response.status_code == 200
    assert response.json() == dataset


def test_read_dataset_missing(client: TestClient) -> None:
    response = client.get("/v1/datasets/0123456789abcdef")

    assert response.status_code == 404
    assert response.json() == {"detail": "Dataset not found"}


def test_create_dataset_streamed_body_over_limit(client: TestClient, session: Session) -> None:
    limit = client.app.state.settings.max_upload_mb
    boundary = "x" * 16
    chunk = b"a" * (1024 * 1024)

    def body():
        disposition = 'form-data; name="file"; filename="big.tsv"'
        yield f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        for _ in range(limit + 3):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/v1/datasets",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status_code == 413, response.text
    assert count_datasets(session) == 0
