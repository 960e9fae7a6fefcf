"""A non-LoRA strategy end to end: HTTP API, a real worker, and predictions from the slots."""

from pathlib import Path

import pytest

from tests.utils.stack import run_stack, wait_for_job
from tests.worker.trainer.helpers import keyword_examples

pytestmark = pytest.mark.integration


def to_tsv(examples: list[dict]) -> bytes:
    lines = ["sentence\tlabel", *(f"{e['text']}\t{e['label']}" for e in examples)]
    return ("\n".join(lines) + "\n").encode()


def upload(client, examples: list[dict], filename: str) -> str:
    response = client.post(
        "/v1/datasets",
        files={"file": (filename, to_tsv(examples))},
        data={"task_type": "text_classification"},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_full_strategy_serves_reported_accuracy(tmp_path: Path, tiny_model_dir):
    env = {"LORAPLEX_DATA_DIR": str(tmp_path), "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir)}
    eval_rows = keyword_examples(40, 1)

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        client = stack.client
        submitted = client.post(
            "/v1/jobs",
            json={
                "task": "keywords",
                "strategy": "full",
                "train_dataset_id": upload(client, keyword_examples(96, 0), "train.tsv"),
                "eval_dataset_id": upload(client, eval_rows, "eval.tsv"),
                # fp32, the precision the server runs in on CPU, so both see the same logits.
                "hyperparameters": {"epochs": 2, "batch_size": 16, "bf16": False, "svd_rank": 8},
            },
        )
        assert submitted.status_code == 202, submitted.text
        job = wait_for_job(client, submitted.json()["id"], timeout=300)
        assert job["status"] == "succeeded", job["error"]

        predicted = client.post(
            "/v1/tasks/keywords/predict", json={"inputs": [e["text"] for e in eval_rows]}
        )
        assert predicted.status_code == 200, predicted.text

    labels = [p["label"] for p in predicted.json()["predictions"]]
    served_accuracy = sum(
        label == e["label"] for label, e in zip(labels, eval_rows, strict=True)
    ) / len(eval_rows)
    assert job["metrics"]["compression_rank"] == 8
    assert "accuracy_before_compression" in job["metrics"]
    assert served_accuracy == pytest.approx(job["metrics"]["accuracy"])
