"""`python -m service up`: the embedded deployment replaces a worker that died."""

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_stack import make_reviews_tsv
from tests.utils.stack import build_env, find_free_port, start_process, wait_for_job, wait_or_kill

pytestmark = pytest.mark.integration

WORKER_STARTED = re.compile(r"worker started \(pid (\d+)\)")


def worker_pids(log: Path) -> list[int]:
    return [int(pid) for pid in WORKER_STARTED.findall(log.read_text(errors="replace"))]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise TimeoutError(f"{what} after {timeout} s")


def ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def test_up_replaces_a_killed_worker_and_keeps_serving(tmp_path: Path, tiny_model_dir: Path):
    port = find_free_port()
    env = build_env(
        {
            "LORAPLEX_DATA_DIR": str(tmp_path / "data"),
            "LORAPLEX_BASE_MODEL_DIR": str(tiny_model_dir),
        }
    )
    log = tmp_path / "up.log"
    up = start_process("up", ["up", "--host", "127.0.0.1", "--port", str(port)], env, tmp_path)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        wait_for(lambda: ready(client), 120, "API not ready")
        wait_for(lambda: len(worker_pids(log)) == 1, 60, "no worker started")
        first = worker_pids(log)[0]

        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(log)) == 2, 60, "killed worker not replaced")

        # the API never stopped, and the new worker trains
        assert up.poll() is None
        dataset = client.post(
            "/v1/datasets",
            files={"file": ("train.tsv", make_reviews_tsv(20))},
            data={"task_type": "text_classification"},
        ).json()
        job = client.post(
            "/v1/jobs",
            json={
                "task": "reviews",
                "train_dataset_id": dataset["id"],
                "hyperparameters": {"epochs": 1, "bf16": False},
            },
        ).json()
        assert wait_for_job(client, job["id"], timeout=300)["status"] == "succeeded"
    finally:
        client.close()
        up.send_signal(signal.SIGTERM)
        wait_or_kill(up)
    assert up.returncode == 0, log.read_text()
