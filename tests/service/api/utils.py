"""Small datasets and upload helpers for the API tests."""

from fastapi.testclient import TestClient

TRAIN_TSV = (
    b"sentence\tlabel\n"
    b"a gripping, beautifully acted film\t1\n"
    b"dull and far too long\t0\n"
    b"the best thing I have seen this year\t1\n"
    b"I walked out after an hour\t0\n"
    b"warm, funny and sharp\t1\n"
    b"a mess from start to finish\t0\n"
)

EVAL_TSV = (
    b"sentence\tlabel\ndull and far too long\t0\nwarm, funny and sharp\t1\nan instant classic\t1\n"
)


def upload_dataset(
    client: TestClient, data: bytes = TRAIN_TSV, filename: str = "train.tsv", **form: str
) -> dict:
    response = client.post(
        "/v1/datasets",
        files={"file": (filename, data)},
        data={"task_type": "text_classification", **form},
    )
    assert response.status_code == 201, response.text
    return response.json()


def submit_job(client: TestClient, **job_in) -> dict:
    response = client.post("/v1/jobs", json=job_in)
    assert response.status_code == 202, response.text
    return response.json()
