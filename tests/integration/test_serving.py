"""Serving several tasks from one API process, across restarts and worker crashes."""

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.utils.stack import Stack, run_stack, start_process, wait_for_job

pytestmark = pytest.mark.integration

SENTIMENT = {
    "pos": ["a joy to watch", "brilliant and moving", "great fun", "superb acting"],
    "neg": ["a waste of time", "dull and lifeless", "awful script", "painfully boring"],
}
QUESTION = {
    "LOC": ["where is the station", "where can I find paris"],
    "NUM": ["how many cats are there", "how much does it cost"],
    "HUM": ["who wrote this book", "who is the president"],
}


def make_tsv(examples: dict[str, list[str]], copies: int) -> bytes:
    lines = ["text\tlabel"]
    for index in range(copies):
        for label, texts in examples.items():
            lines.append(f"{texts[index % len(texts)]} {index}\t{label}")
    return ("\n".join(lines) + "\n").encode()


def train_task(
    stack: Stack, task: str, examples: dict, copies: int = 12, **hyperparameters
) -> dict:
    upload = stack.client.post(
        "/v1/datasets",
        files={"file": (f"{task}.tsv", make_tsv(examples, copies))},
        data={"task_type": "text_classification", "name": task},
    )
    assert upload.status_code == 201, upload.text
    submitted = stack.client.post(
        "/v1/jobs",
        json={
            "task": task,
            "train_dataset_id": upload.json()["id"],
            "hyperparameters": {"epochs": 1, "batch_size": 8, **hyperparameters},
        },
    )
    assert submitted.status_code == 202, submitted.text
    return submitted.json()


def predict(stack: Stack, task: str, inputs: list[str]) -> dict:
    response = stack.client.post(f"/v1/tasks/{task}/predict", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    return response.json()


def test_two_tasks_interleaved_requests_keep_their_adapters(tmp_path: Path, tiny_model_dir: Path):
    env = {"LORAPLEX_DATA_DIR": str(tmp_path), "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir)}
    texts = ["great fun 3", "who wrote this", "how many", "dull and lifeless", "where is it"]

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        for job in (
            train_task(stack, "sentiment", SENTIMENT),
            train_task(stack, "question", QUESTION),
        ):
            assert wait_for_job(stack.client, job["id"], timeout=300)["status"] == "succeeded"
        alone = {
            (task, text): predict(stack, task, [text])["predictions"][0]
            for task in ("sentiment", "question")
            for text in texts
        }
        requests = [
            (task, text) for _ in range(6) for text in texts for task in ("sentiment", "question")
        ]

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda pair: predict(stack, pair[0], [pair[1]]), requests))

    for (task, text), answer in zip(requests, answers, strict=True):
        prediction = answer["predictions"][0]
        assert answer["task"] == task
        assert set(prediction["scores"]) == set(alone[task, text]["scores"])
        assert prediction["label"] == alone[task, text]["label"]
        for label, score in prediction["scores"].items():
            assert score == pytest.approx(alone[task, text]["scores"][label], abs=1e-5)


def test_restart_keeps_registry_and_predictions(tmp_path: Path, tiny_model_dir: Path):
    env = {"LORAPLEX_DATA_DIR": str(tmp_path), "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir)}
    texts = ["great fun", "awful script"]

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        job = train_task(stack, "sentiment", SENTIMENT)
        assert wait_for_job(stack.client, job["id"], timeout=300)["status"] == "succeeded"
        before = {
            path: stack.client.get(path).json()
            for path in ("/v1/datasets", "/v1/jobs", "/v1/tasks", "/v1/tasks/sentiment/adapters")
        }
        predictions_before = predict(stack, "sentiment", texts)

    with run_stack(env, log_dir=tmp_path / "logs-after") as stack:
        after = {path: stack.client.get(path).json() for path in before}
        predictions_after = predict(stack, "sentiment", texts)

    # The served-prediction counter is the one field that moves: it was flushed on shutdown.
    counts = [task.pop("predictions_count") for task in after["/v1/tasks"]["data"]]
    for task in before["/v1/tasks"]["data"]:
        task.pop("predictions_count")
    assert after == before
    assert counts == [len(texts)]
    assert predictions_after == predictions_before


def wait_until_training(stack: Stack, job_id: str, timeout: float = 120) -> None:
    """Wait until the job is running and has taken at least one optimizer step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = stack.client.get(f"/v1/jobs/{job_id}").json()
        if current["status"] == "running" and current["step"] > 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} not training after {timeout} s: {current}")


def test_job_survives_worker_killed_mid_run(tmp_path: Path, tiny_model_dir: Path):
    env = {"LORAPLEX_DATA_DIR": str(tmp_path), "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir)}

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        job = train_task(stack, "sentiment", SENTIMENT, copies=60, epochs=40)
        wait_until_training(stack, job["id"])

        stack.processes["worker"].send_signal(signal.SIGKILL)
        stack.processes["worker"].wait(timeout=30)
        stack.processes["worker"] = start_process("worker", ["worker"], stack.env, stack.log_dir)
        finished = wait_for_job(stack.client, job["id"], timeout=600)
        adapters = stack.client.get("/v1/tasks/sentiment/adapters").json()
        events = stack.client.get(f"/v1/jobs/{job['id']}/events", params={"kind": "log"}).json()

    assert finished["status"] == "succeeded", finished["error"]
    assert "worker lost; job queued again" in [e["message"] for e in events["data"]]
    assert [a["version"] for a in adapters["data"]] == [1]


def test_worker_sigterm_mid_job_requeues_and_exits_promptly(tmp_path: Path, tiny_model_dir: Path):
    env = {"LORAPLEX_DATA_DIR": str(tmp_path), "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir)}

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        job = train_task(stack, "sentiment", SENTIMENT, copies=60, epochs=40)
        wait_until_training(stack, job["id"])

        # A warm shutdown stops the job within a few steps: the worker exits by itself, long
        # before the 40 epochs would end, and the job waits on the queue.
        stack.processes["worker"].send_signal(signal.SIGTERM)
        assert stack.processes["worker"].wait(timeout=60) == 0
        waiting = stack.client.get(f"/v1/jobs/{job['id']}").json()
        assert waiting["status"] == "queued", waiting

        stack.processes["worker"] = start_process("worker", ["worker"], stack.env, stack.log_dir)
        finished = wait_for_job(stack.client, job["id"], timeout=600)
        events = stack.client.get(f"/v1/jobs/{job['id']}/events", params={"kind": "log"}).json()
        adapters = stack.client.get("/v1/tasks/sentiment/adapters").json()

    assert finished["status"] == "succeeded", finished["error"]
    assert finished["attempts"] == 2
    assert "worker shut down; job queued again" in [e["message"] for e in events["data"]]
    assert [a["version"] for a in adapters["data"]] == [1]


def test_promote_under_concurrent_traffic_never_mixes_versions(
    tmp_path: Path, tiny_model_dir: Path
):
    env = {"LORAPLEX_DATA_DIR": str(tmp_path), "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir)}
    texts = ["great fun 3", "who wrote this", "dull and lifeless", "where is it"]

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        jobs = [
            train_task(stack, "sentiment", SENTIMENT, seed=1),
            train_task(stack, "question", QUESTION),
        ]
        for job in jobs:
            assert wait_for_job(stack.client, job["id"], timeout=300)["status"] == "succeeded"
        second = train_task(stack, "sentiment", SENTIMENT, epochs=2, seed=2)
        assert wait_for_job(stack.client, second["id"], timeout=300)["adapter_version"] == 2

        expected = {}
        for version in (1, 2):
            promoted = stack.client.post(f"/v1/tasks/sentiment/adapters/{version}/promote")
            assert promoted.status_code == 200, promoted.text
            expected["sentiment", version] = predict(stack, "sentiment", texts)["predictions"]
        expected["question", 1] = predict(stack, "question", texts)["predictions"]
        assert expected["sentiment", 1] != expected["sentiment", 2]

        def flip_versions() -> None:
            for round_index in range(10):
                stack.client.post(f"/v1/tasks/sentiment/adapters/{1 + round_index % 2}/promote")
                time.sleep(0.05)

        requests = ["sentiment", "question"] * 30
        with ThreadPoolExecutor(max_workers=8) as pool:
            flipper = pool.submit(flip_versions)
            answers = list(pool.map(lambda task: predict(stack, task, texts), requests))
            flipper.result()
        final = predict(stack, "sentiment", texts)

    versions_seen = set()
    for task, answer in zip(requests, answers, strict=True):
        versions_seen.add((task, answer["adapter_version"]))
        got = answer["predictions"]
        want = expected[task, answer["adapter_version"]]
        assert [p["label"] for p in got] == [p["label"] for p in want]
        for got_row, want_row in zip(got, want, strict=True):
            for label, score in want_row["scores"].items():
                assert got_row["scores"][label] == pytest.approx(score, abs=1e-5)
    assert final["adapter_version"] == 2  # the last of ten flips promotes version 2
    assert ("question", 1) in versions_seen


def test_fan_out_matches_each_task_alone(tmp_path: Path, tiny_model_dir: Path):
    env = {"LORAPLEX_DATA_DIR": str(tmp_path), "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir)}
    texts = ["great fun", "where is the station", "how many cats"]

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        for job in (
            train_task(stack, "sentiment", SENTIMENT),
            train_task(stack, "question", QUESTION),
        ):
            assert wait_for_job(stack.client, job["id"], timeout=300)["status"] == "succeeded"
        alone = {task: predict(stack, task, texts) for task in ("sentiment", "question")}
        fanned = stack.client.post(
            "/v1/predict", json={"tasks": ["question", "sentiment"], "inputs": texts}
        )
        missing = stack.client.post(
            "/v1/predict", json={"tasks": ["question", "nope"], "inputs": texts}
        )
        repeated = stack.client.post(
            "/v1/predict", json={"tasks": ["question", "question"], "inputs": texts}
        )

    assert fanned.status_code == 200, fanned.text
    results = fanned.json()["results"]
    assert [r["task"] for r in results] == ["question", "sentiment"]
    for result in results:
        want = alone[result["task"]]["predictions"]
        assert [p["label"] for p in result["predictions"]] == [p["label"] for p in want]
    assert missing.status_code == 404
    assert missing.json()["detail"] == "Task not found: 'nope'"
    assert repeated.status_code == 422


def test_promotion_policies_decide_live_version(tmp_path: Path, tiny_model_dir: Path):
    env = {"LORAPLEX_DATA_DIR": str(tmp_path), "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir)}

    with run_stack(env, log_dir=tmp_path / "logs") as stack:
        first = train_task(stack, "sentiment", SENTIMENT)
        assert wait_for_job(stack.client, first["id"], timeout=300)["status"] == "succeeded"
        patched = stack.client.patch("/v1/tasks/sentiment", json={"promotion_policy": "manual"})
        assert patched.status_code == 200, patched.text

        manual = train_task(stack, "sentiment", SENTIMENT, seed=3)
        assert wait_for_job(stack.client, manual["id"], timeout=300)["adapter_version"] == 2
        after_manual = stack.client.get("/v1/tasks/sentiment").json()["live_version"]

        stack.client.patch("/v1/tasks/sentiment", json={"promotion_policy": "if_better"})
        better = train_task(stack, "sentiment", SENTIMENT, seed=4)
        assert wait_for_job(stack.client, better["id"], timeout=300)["adapter_version"] == 3
        after_if_better = stack.client.get("/v1/tasks/sentiment").json()["live_version"]
        events = stack.client.get(f"/v1/jobs/{better['id']}/events", params={"kind": "log"})
        registered = [e["message"] for e in events.json()["data"] if "registered" in e["message"]]

    assert after_manual == 1
    assert len(registered) == 1
    if "(live:" in registered[0]:
        assert after_if_better == 3
    else:
        assert "(not live:" in registered[0]
        assert after_if_better == 1
    assert "accuracy" in registered[0]
