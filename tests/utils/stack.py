"""Run the real service as subprocesses for integration tests: uvicorn API plus Celery worker.

    with run_stack({"LORAPLEX_DATA_DIR": str(tmp_path)}) as stack:
        response = stack.client.post("/v1/jobs", json=job_in)
        job = wait_for_job(stack.client, response.json()["id"], timeout=300)

The processes get only the LORAPLEX_* variables passed in `env` (the test runner's own are
dropped), plus HF_HUB_OFFLINE=1 and LORAPLEX_TORCH_THREADS=1 unless `env` sets them.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import mkdtemp

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0  # per process, before SIGKILL
FINISHED_STATUSES = ("succeeded", "failed", "cancelled")
LOG_TAIL_LINES = 200


@dataclass
class Stack:
    """A running API (and worker) with an HTTP client bound to the API's base URL."""

    base_url: str
    client: httpx.Client
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def read_log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def dump_logs(self) -> None:
        """Write the last lines of every process log to stderr, which pytest shows on failure."""
        for name in self.processes:
            lines = self.read_log(name).splitlines()[-LOG_TAIL_LINES:]
            sys.stderr.write(f"\n----- {name} log ({self.log_path(name)}) -----\n")
            sys.stderr.write("\n".join(lines) + "\n")


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_env(env: dict[str, str]) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("LORAPLEX_")}
    return {"HF_HUB_OFFLINE": "1", "LORAPLEX_TORCH_THREADS": "1", **base, **env}


def start_process(
    name: str, args: list[str], env: dict[str, str], log_dir: Path
) -> subprocess.Popen:
    with (log_dir / f"{name}.log").open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "service", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def wait_or_kill(process: subprocess.Popen) -> None:
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_ready(stack: Stack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        for name, process in stack.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode} during startup")
        try:
            response = stack.client.get("/readyz")
            if response.status_code == 200:
                return
            last_error = response.text
        except httpx.TransportError as exc:
            last_error = repr(exc)
        time.sleep(0.25)
    raise TimeoutError(f"API at {stack.base_url} not ready after {timeout} s: {last_error}")


@contextmanager
def run_stack(
    env: dict[str, str],
    *,
    worker: bool = True,
    log_dir: Path | None = None,
    dump_logs: bool = False,
    ready_timeout: float = READY_TIMEOUT_S,
) -> Iterator[Stack]:
    """Migrate the registry, start the API (and a worker) as subprocesses, and stop them on exit.

    Args:
        env: LORAPLEX_* settings of the processes, e.g. LORAPLEX_DATA_DIR or
            LORAPLEX_DATABASE_URL, LORAPLEX_BROKER_URL and LORAPLEX_QUEUE.
        worker: start `python -m service worker` too. False tests the API alone.
        log_dir: folder of api.log and worker.log (default: a new temporary folder).
        dump_logs: write the logs to stderr on exit even when the block succeeded (they are
            always written when it raises, e.g. on a failed assert).
        ready_timeout: seconds to wait for /readyz to return 200.
    """
    env = build_env(env)
    log_dir = log_dir or Path(mkdtemp(prefix="loraplex-stack-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    port = find_free_port()
    base_url = f"http://127.0.0.1:{port}"

    migrate = subprocess.run(
        [sys.executable, "-m", "service", "migrate"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"migrate failed with code {migrate.returncode}:\n{migrate.stderr}")

    client = httpx.Client(base_url=base_url, timeout=60)
    stack = Stack(base_url=base_url, client=client, env=env, log_dir=log_dir)
    failed = True
    try:
        stack.processes["api"] = start_process(
            "api", ["api", "--host", "127.0.0.1", "--port", str(port)], env, log_dir
        )
        if worker:
            stack.processes["worker"] = start_process("worker", ["worker"], env, log_dir)
        wait_until_ready(stack, ready_timeout)
        yield stack
        failed = False
    finally:
        client.close()
        # Both get SIGTERM first, so that the worker's warm shutdown overlaps the API's.
        for process in stack.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in stack.processes.values():
            wait_or_kill(process)
        if failed or dump_logs:
            stack.dump_logs()


def wait_for_job(client: httpx.Client, job_id: str, timeout: float) -> dict:
    """Poll GET /v1/jobs/{job_id} until the job has finished, then return the job."""
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        job = response.json()
        if job["status"] in FINISHED_STATUSES:
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} still {job.get('status')} after {timeout} s: {job}")
