"""The whole flow on the real all-MiniLM-L6-v2 base and real SST-2 rows."""

import csv
import io
import random
from pathlib import Path

import pytest

from tests.utils.stack import run_stack, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.real_model]


def read_tsv(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [(text, label) for text, label in reader]


def to_tsv(rows: list[tuple[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
    writer.writerow(["sentence", "label"])
    writer.writerows(rows)
    return buffer.getvalue().encode()


def test_sst2_sample_trains_and_serves_over_http(tmp_path: Path, shared_data_dir: Path):
    train = random.Random(0).sample(read_tsv(shared_data_dir / "sst2" / "train.tsv"), 500)
    dev = read_tsv(shared_data_dir / "sst2" / "dev.tsv")[:200]
    env = {"LORAPLEX_DATA_DIR": str(tmp_path), "LORAPLEX_TORCH_THREADS": "2"}

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        client = stack.client
        train_id = client.post(
            "/v1/datasets",
            files={"file": ("train.tsv", to_tsv(train))},
            data={"task_type": "text_classification"},
        ).json()["id"]
        eval_id = client.post(
            "/v1/datasets",
            files={"file": ("dev.tsv", to_tsv(dev))},
            data={"task_type": "text_classification"},
        ).json()["id"]
        submitted = client.post(
            "/v1/jobs",
            json={
                "task": "sst2",
                "train_dataset_id": train_id,
                "eval_dataset_id": eval_id,
                "hyperparameters": {"epochs": 3, "max_length": 64},
            },
        )
        job = wait_for_job(client, submitted.json()["id"], timeout=600)
        predicted = client.post(
            "/v1/tasks/sst2/predict", json={"inputs": [text for text, _ in dev]}
        ).json()

    assert job["status"] == "succeeded", job["error"]
    labels = [p["label"] for p in predicted["predictions"]]
    accuracy = sum(p == gold for p, (_, gold) in zip(labels, dev, strict=True)) / len(dev)
    majority = max(sum(gold == "1" for _, gold in dev), sum(gold == "0" for _, gold in dev)) / len(
        dev
    )
    assert accuracy > majority + 0.1
    # The accuracy measured through predict equals the worker's own evaluation on the same set.
    assert accuracy == pytest.approx(job["metrics"]["accuracy"], abs=0.011)
