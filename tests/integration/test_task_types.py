"""Every task type end to end over HTTP: upload, train on a real worker, predict.

One embedded stack (API and Celery worker processes, SQLite) on the tiny BERT serves all the
tests of this module. The data are small synthetic sets with a learnable signal. Jobs run in
fp32, like serving on the CPU, so that the metric the worker reports can be compared with the
same metric computed from the served predictions.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.tasktypes.metrics import entity_scores, squad_scores
from tests.utils.stack import Stack, run_stack, wait_for_job
from tests.utils.task_data import (
    ner_examples,
    pair_examples,
    qa_examples,
    rating_examples,
    topic_examples,
)

pytestmark = pytest.mark.integration

JOB_TIMEOUT_S = 300
TRAINING = {
    "epochs": 2,
    "batch_size": 8,
    "bf16": False,
    "max_length": 64,
    "learning_rate": 0.01,
    "head_learning_rate": 0.01,
}
# LoRA at 0.01 collapses the tiny model's token states, which token-level heads need.
TOKEN_LEVEL_TRAINING = {"epochs": 4, "learning_rate": 0.003}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("task-types")
    env = {"LORAPLEX_DATA_DIR": str(data_dir), "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir)}
    with run_stack(env, log_dir=data_dir / "logs") as running:
        yield running


def upload(stack: Stack, filename: str, content: bytes, task_type: str, **fields) -> str:
    response = stack.client.post(
        "/v1/datasets",
        files={"file": (filename, content)},
        data={"task_type": task_type, **fields},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def train(stack: Stack, task: str, train_id: str, eval_id: str, **hyperparameters) -> dict:
    response = stack.client.post(
        "/v1/jobs",
        json={
            "task": task,
            "train_dataset_id": train_id,
            "eval_dataset_id": eval_id,
            "hyperparameters": {**TRAINING, **hyperparameters},
        },
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(stack.client, response.json()["id"], timeout=JOB_TIMEOUT_S)
    assert job["status"] == "succeeded", job["error"]
    return job


def predict(stack: Stack, task: str, inputs: list) -> list[dict]:
    response = stack.client.post(f"/v1/tasks/{task}/predict", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def to_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def to_csv(rows: list[dict]) -> bytes:
    """Write multi-label rows as CSV, the labels of a row joined by "|"."""
    lines = ["text,labels", *(f"{r['text']},{'|'.join(r['labels'])}" for r in rows)]
    return ("\n".join(lines) + "\n").encode()


# sentence pairs


def test_sentence_pair_trains_and_serves(stack: Stack) -> None:
    train_rows, eval_rows = pair_examples(96, seed=0), pair_examples(24, seed=1)
    train_id = upload(stack, "pairs.jsonl", to_jsonl(train_rows), "sentence_pair")
    eval_id = upload(stack, "pairs-eval.jsonl", to_jsonl(eval_rows), "sentence_pair")

    job = train(stack, "pairs", train_id, eval_id)
    predictions = predict(
        stack, "pairs", [{"text": r["text"], "text_pair": r["text_pair"]} for r in eval_rows]
    )

    assert job["hyperparameters"]["metric_for_best_model"] == "accuracy"
    assert {"accuracy", "macro_f1", "f1"} <= set(job["metrics"])
    assert all(set(p["scores"]) == {"different", "same"} for p in predictions)
    correct = sum(p["label"] == r["label"] for p, r in zip(predictions, eval_rows, strict=True))
    assert correct / len(eval_rows) == pytest.approx(job["metrics"]["accuracy"], abs=0.05)


# multi-label


def test_multi_label_trains_with_threshold(stack: Stack) -> None:
    train_rows, eval_rows = topic_examples(96, seed=0), topic_examples(24, seed=1)
    train_id = upload(stack, "topics.csv", to_csv(train_rows), "multi_label")
    eval_id = upload(stack, "topics-eval.csv", to_csv(eval_rows), "multi_label")

    job = train(stack, "topics", train_id, eval_id, threshold=0.4)
    predictions = predict(stack, "topics", [r["text"] for r in eval_rows])

    assert job["hyperparameters"]["threshold"] == 0.4
    assert job["hyperparameters"]["metric_for_best_model"] == "micro_f1"
    assert {"micro_f1", "macro_f1", "subset_accuracy"} <= set(job["metrics"])
    for prediction in predictions:
        assert set(prediction["scores"]) == {"politics", "sports", "weather"}
        over = [label for label, p in prediction["scores"].items() if p >= 0.4]
        assert prediction["labels"] == over


def test_threshold_rejected_for_other_task_types(stack: Stack) -> None:
    train_id = upload(stack, "pairs.jsonl", to_jsonl(pair_examples(8, seed=0)), "sentence_pair")

    response = stack.client.post(
        "/v1/jobs",
        json={"task": "wrong", "train_dataset_id": train_id, "hyperparameters": {"threshold": 0.3}},
    )

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "hyperparameters", "threshold"]
    assert "read only by multi_label" in error["msg"]


# regression


def test_regression_trains_and_predicts_values(stack: Stack) -> None:
    train_rows, eval_rows = rating_examples(96, seed=0), rating_examples(24, seed=1)
    train_id = upload(stack, "ratings.jsonl", to_jsonl(train_rows), "regression")
    eval_id = upload(stack, "ratings-eval.jsonl", to_jsonl(eval_rows), "regression")

    job = train(stack, "ratings", train_id, eval_id, epochs=3)
    predictions = predict(stack, "ratings", [r["text"] for r in eval_rows])
    rejected = stack.client.post(
        "/v1/tasks/ratings/predict", json={"inputs": [{"text": "a", "text_pair": "b"}]}
    )

    assert job["hyperparameters"]["metric_for_best_model"] == "pearson"
    assert {"pearson", "spearman", "mse"} <= set(job["metrics"])
    values = [p["value"] for p in predictions]
    assert all(isinstance(value, float) for value in values)
    # The head learns standardised targets; served values are back in target units.
    assert 0.0 < sum(values) / len(values) < 30.0
    assert rejected.status_code == 422
    assert "trained on single texts" in rejected.json()["detail"]


# token classification


def to_conll(rows: list[dict]) -> bytes:
    blocks = [
        "\n".join(f"{t} {g}" for t, g in zip(r["tokens"], r["tags"], strict=True)) for r in rows
    ]
    return ("\n\n".join(blocks) + "\n").encode()


def test_token_classification_trains_and_finds_entities(stack: Stack) -> None:
    train_rows, eval_rows = ner_examples(96, seed=0), ner_examples(24, seed=1)
    train_id = upload(stack, "ner.txt", to_conll(train_rows), "token_classification")
    eval_id = upload(stack, "ner-eval.jsonl", to_jsonl(eval_rows), "token_classification")

    # max_length 16 puts the longer sentences into several windows, in training and serving.
    job = train(stack, "ner", train_id, eval_id, max_length=16, **TOKEN_LEVEL_TRAINING)
    by_tokens = predict(stack, "ner", [{"tokens": r["tokens"]} for r in eval_rows])
    text = "  Chen 😀 visited   Quito , then Zoë  went to Oslo again and again and again ."
    (raw,) = predict(stack, "ner", [text])

    assert job["hyperparameters"]["doc_stride"] == 4
    assert {"entity_f1", "entity_precision", "entity_recall"} <= set(job["metrics"])
    served = entity_scores([r["tags"] for r in eval_rows], [p["tags"] for p in by_tokens])
    assert served["f1"] == pytest.approx(job["metrics"]["entity_f1"], abs=0.02)
    assert served["f1"] > 0.5
    for entity in raw["entities"]:
        assert entity["text"] == text[entity["start"] : entity["end"]]
        assert entity["type"] in {"PER", "LOC"}


# extractive QA


def test_extractive_qa_trains_and_answers_with_spans(stack: Stack) -> None:
    train_rows, eval_rows = qa_examples(96, seed=0), qa_examples(24, seed=1)
    train_id = upload(stack, "qa.jsonl", to_jsonl(train_rows), "extractive_qa")
    eval_id = upload(stack, "qa-eval.jsonl", to_jsonl(eval_rows), "extractive_qa")

    job = train(
        stack,
        "qa",
        train_id,
        eval_id,
        max_length=48,
        doc_stride=16,
        max_question_tokens=12,
        max_answer_tokens=4,
        **TOKEN_LEVEL_TRAINING,
    )
    predictions = predict(
        stack, "qa", [{"question": r["question"], "context": r["context"]} for r in eval_rows]
    )

    assert job["hyperparameters"]["metric_for_best_model"] == "f1"
    assert {"exact_match", "f1"} <= set(job["metrics"])
    for prediction, row in zip(predictions, eval_rows, strict=True):
        assert prediction["answer"] == row["context"][prediction["start"] : prediction["end"]]
        assert 0.0 <= prediction["score"] <= 1.0
    gold = [[answer["text"] for answer in r["answers"]] for r in eval_rows]
    served = squad_scores([p["answer"] for p in predictions], gold)
    assert served["f1"] == pytest.approx(job["metrics"]["f1"], abs=0.05)


def test_qa_stride_too_large_rejected(stack: Stack) -> None:
    train_id = upload(stack, "qa.jsonl", to_jsonl(qa_examples(4, seed=0)), "extractive_qa")

    response = stack.client.post(
        "/v1/jobs",
        json={
            "task": "qa-bad",
            "train_dataset_id": train_id,
            "hyperparameters": {"max_length": 48, "max_question_tokens": 12, "doc_stride": 40},
        },
    )

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "hyperparameters", "doc_stride"]
    assert "must be below the 33 context tokens" in error["msg"]
