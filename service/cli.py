"""Command line of Loraplex: `loraplex migrate | api | worker | up | demo`.

`up` runs the embedded deployment (SQLite registry, SQLite broker, one worker) from a single
command. `demo` starts `up` in a child process, then fine-tunes and evaluates one task over
HTTP as a client would.
"""

import argparse
import csv
import ctypes
import fcntl
import io
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from service.config import get_settings
from service.queue import declare_broker_queue

logger = logging.getLogger("loraplex")

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
PR_SET_PDEATHSIG = 1  # prctl option, from <linux/prctl.h>
WORKER_STOP_TIMEOUT_S = 20  # grace period of a warm worker shutdown before SIGKILL
# `up` replaces a worker that died, unless more than this many died within the window.
WORKER_MAX_RESTARTS = 3
WORKER_RESTART_WINDOW_S = 300
DEMO_DATA_DIR = Path(".loraplex-demo")
DEMO_READY_TIMEOUT_S = 180  # the first start imports torch and creates the SQLite files
DEMO_PREDICT_CHUNK = 64  # texts per predict request
DEMO_POLL_INTERVAL_S = 2.0


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
    # alembic 1.20 logs one INFO line per built-in plugin whenever it is imported.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def echo(message: str = "") -> None:
    """Write one line of command output to stdout (logs go to stderr)."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


# migrate, api, worker


def run_migrate(args: argparse.Namespace) -> int:
    from service.migrate import upgrade_to_head

    settings = get_settings()
    upgrade_to_head(settings.database_url)
    declare_broker_queue(settings)
    declare_broker_queue(settings)
    return 0


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
    )
    return 0


def build_worker_command(concurrency: int) -> list[str]:
    """Return the `celery worker` command line for this process's settings."""
    settings = get_settings()
    # The solo pool runs one job at a time in the worker process itself, so torch's own
    # intra-op threads get the CPU. Prefork (concurrency > 1) runs one process per job.
    pool = ["--pool", "solo"] if concurrency <= 1 else ["--pool", "prefork", "-c", str(concurrency)]
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        *pool,
        "-Q",
        settings.queue,
        "--loglevel",
        "INFO",
        # A node name unique per process, so that several workers on one host do not clash.
        "-n",
        f"loraplex-{os.getpid()}@%h",
        # Gossip, mingle and heartbeats need fanout exchanges, which the SQLite broker lacks.
        # Jobs are coordinated through the registry instead.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def lock_embedded_worker(data_dir: Path) -> bool:
    """Take the embedded mode's one-worker lock on `data_dir`; return False if it is held.

    The embedded mode has exactly one worker, which at start queues again every job left
    `running`; a second worker on the same folder would train those jobs twice. The lock is
    held by an inheritable file descriptor, so it stays with the Celery process after exec
    and is released by the kernel when that process ends, however it ends.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "worker.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        logger.error(
            "another worker (pid %s) is running on %s; stop it before starting a new one",
            holder,
            data_dir,
        )
        return False
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    os.set_inheritable(fd, True)
    return True


def run_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if settings.is_embedded and not lock_embedded_worker(settings.data_dir):
        return 2
    command = build_worker_command(args.concurrency)
    logger.info("starting worker: %s", " ".join(command[1:]))
    # exec, not a child process: signals from a supervisor reach Celery directly.
    os.execv(command[0], command)


# up


def stop_process(process: subprocess.Popen, name: str, timeout: float) -> None:
    """Send SIGTERM, wait up to `timeout` seconds, then SIGKILL."""
    if process.poll() is not None:
        return
    logger.info("stopping %s (pid %d)", name, process.pid)
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning(
            "%s (pid %d) did not stop in %d s, so it is killed", name, process.pid, timeout
        )
        process.kill()
        process.wait()
    logger.info("%s stopped with exit code %s", name, process.returncode)


def stop_with_parent() -> None:
    """Ask Linux to send SIGTERM to this child when its parent dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: `up` still stops the worker on a normal exit


def run_up(args: argparse.Namespace) -> int:
    import uvicorn

    from service.migrate import upgrade_to_head

    # Set in the environment, so that the worker child reads the same settings.
    if args.data_dir:
        os.environ["LORAPLEX_DATA_DIR"] = str(Path(args.data_dir).expanduser().resolve())
        get_settings.cache_clear()
    settings = get_settings()
    upgrade_to_head(settings.database_url)

    server = uvicorn.Server(
        uvicorn.Config(
            "service.api.app:create_app",
            factory=True,
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_config=None,
        )
    )
    # uvicorn handles SIGINT and SIGTERM while it runs. Before it starts, and after it has
    # restored these handlers and raised the signal again, a signal only sets should_exit,
    # so that the worker is always stopped below.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: setattr(server, "should_exit", True))

    # A session of its own keeps a terminal's Ctrl+C away from the worker, which this
    # process stops after the API.
    def start_worker() -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "worker"],
            start_new_session=True,
            preexec_fn=stop_with_parent,
        )
        logger.info("worker started (pid %d)", process.pid)
        return process

    workers = [start_worker()]
    stopping = threading.Event()
    worker_failed = threading.Event()

    def supervise_worker() -> None:
        # A worker that dies (a crash, the OOM killer) is replaced; the new one queues again
        # the job it left running. A worker that keeps dying stops the API too.
        exits: deque[float] = deque()
        while True:
            returncode = workers[-1].wait()
            if stopping.is_set():
                return
            now = time.monotonic()
            exits.append(now)
            while exits and now - exits[0] > WORKER_RESTART_WINDOW_S:
                exits.popleft()
            if len(exits) > WORKER_MAX_RESTARTS:
                logger.error(
                    "worker exited with code %s, %d times in %d s, so the API stops too",
                    returncode,
                    len(exits),
                    WORKER_RESTART_WINDOW_S,
                )
                worker_failed.set()
                server.should_exit = True
                return
            # Code 0 is a clean stop (a SIGTERM sent to the worker alone), not a crash.
            log = logger.warning if returncode == 0 else logger.error
            log("worker exited with code %s; starting a new one", returncode)
            time.sleep(1)
            if stopping.is_set():
                return
            workers.append(start_worker())

    threading.Thread(target=supervise_worker, name="worker-watch", daemon=True).start()

    try:
        server.run()
    finally:
        stopping.set()
        stop_process(workers[-1], "worker", WORKER_STOP_TIMEOUT_S)

    if worker_failed.is_set() or not server.started:
        return 1
    return 0


# demo


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_task_name(train_path: Path) -> str:
    """Derive a task name from the train file's folder, e.g. data/sst2/train.tsv -> "sst2"."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", train_path.resolve().parent.name).strip("-.")
    return name[:200] or "demo"


def sample_rows(data: bytes, filename: str, max_rows: int, seed: int) -> bytes:
    """Keep a seeded sample of `max_rows` data rows in file order, with the header line.

    A CSV or TSV file's first line is kept as its header. A JSON Lines file has none.
    `max_rows` 0 keeps every row.
    """
    text = data.decode("utf-8-sig")
    suffix = Path(filename).suffix.lower()
    if suffix == ".csv":
        # csv.reader, so that a quoted field spanning several lines stays in one row.
        records = list(csv.reader(io.StringIO(text, newline="")))
        header, rows = records[:1], [row for row in records[1:] if any(row)]
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        has_header = suffix not in (".jsonl", ".ndjson")
        header, rows = (lines[:1], lines[1:]) if has_header else ([], lines)

    if 0 < max_rows < len(rows):
        sampled_indexes = sorted(random.Random(seed).sample(range(len(rows)), max_rows))
        rows = [rows[index] for index in sampled_indexes]

    if suffix == ".csv":
        output = io.StringIO()
        csv.writer(output, lineterminator="\n").writerows(header + rows)
        return output.getvalue().encode("utf-8")
    return "".join(line + "\n" for line in header + rows).encode("utf-8")


class DemoError(Exception):
    """Raised when the demo cannot go on. The message is shown to the user."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


@contextmanager
def start_demo_service(data_dir: Path, port: int, log_path: Path) -> Iterator[subprocess.Popen]:
    """Run `loraplex up` in a child process, stopping it on exit."""
    env = dict(os.environ, LORAPLEX_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1")
    # The demo always uses its own SQLite registry and broker, never a configured server.
    env.pop("LORAPLEX_DATABASE_URL", None)
    env.pop("LORAPLEX_BROKER_URL", None)

    command = [sys.executable, "-m", "service", "up", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            # SIGINT, like Ctrl+C: `up` stops its worker, then exits.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(WORKER_STOP_TIMEOUT_S + 15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_ready(client: httpx.Client, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + DEMO_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the service exited with code {process.returncode}", log_path)
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise DemoError(f"the service was not ready after {DEMO_READY_TIMEOUT_S} s", log_path)


def check_response(response: httpx.Response, action: str) -> dict:
    if response.is_success:
        return response.json()
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise DemoError(f"{action} failed with HTTP {response.status_code}: {detail}")


def upload_dataset(client: httpx.Client, filename: str, data: bytes) -> dict:
    response = client.post(
        "/v1/datasets",
        files={"file": (filename, data)},
        data={"task_type": "text_classification"},
    )
    dataset = check_response(response, f"uploading {filename}")
    echo(
        f"uploaded {filename}: {dataset['num_rows']} rows, labels {dataset['labels']} "
        f"(dataset {dataset['id']})"
    )
    for warning in dataset["warnings"]:
        echo(f"  warning: {warning}")
    return dataset


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def follow_job(client: httpx.Client, job_id: str, process: subprocess.Popen) -> dict:
    """Print the job's progress until it finishes, then return the finished job."""
    last_step = None
    while True:
        if process.poll() is not None:
            raise DemoError(f"the service exited with code {process.returncode} mid-job")
        job = check_response(client.get(f"/v1/jobs/{job_id}"), "reading the job")

        # total_steps is 0 until the worker has tokenised the data and planned the run.
        if job["status"] == "running" and job["total_steps"] and job["step"] != last_step:
            last_step = job["step"]
            loss = "-" if job["loss"] is None else f"{job['loss']:.4f}"
            echo(
                f"  step {job['step']}/{job['total_steps']}  epoch {job['epoch']:.2f}  "
                f"loss {loss}  ETA {format_duration(job['eta_seconds'])}"
            )
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(DEMO_POLL_INTERVAL_S)


def predict_all(client: httpx.Client, task: str, texts: list[str]) -> list[str]:
    labels = []
    for start in range(0, len(texts), DEMO_PREDICT_CHUNK):
        chunk = texts[start : start + DEMO_PREDICT_CHUNK]
        response = client.post(f"/v1/tasks/{task}/predict", json={"inputs": chunk})
        result = check_response(response, f"predicting with task {task}")
        labels.extend(prediction["label"] for prediction in result["predictions"])
    return labels


def run_demo_job(args: argparse.Namespace, client: httpx.Client, process: subprocess.Popen) -> int:
    """Upload, train, follow and evaluate one task against a running service."""
    from service.datasets import parse_dataset

    train_path, eval_path = Path(args.train), Path(args.eval)
    task = args.task or default_task_name(train_path)

    # upload the eval file whole and a seeded sample of the train file
    eval_data = eval_path.read_bytes()
    train_data = sample_rows(
        train_path.read_bytes(), train_path.name, args.max_train_rows, args.seed
    )
    train_dataset = upload_dataset(client, train_path.name, train_data)
    eval_dataset = upload_dataset(client, eval_path.name, eval_data)

    # submit the job and follow it
    hyperparameters = {"seed": args.seed}
    if args.epochs is not None:
        hyperparameters["epochs"] = args.epochs
    job_in = {
        "task": task,
        "train_dataset_id": train_dataset["id"],
        "eval_dataset_id": eval_dataset["id"],
        "strategy": "lora",
        "hyperparameters": hyperparameters,
    }
    job = check_response(client.post("/v1/jobs", json=job_in), "submitting the job")
    echo(f"job {job['id']} queued for task {task}")
    for warning in job["warnings"]:
        echo(f"  warning: {warning}")
    job = follow_job(client, job["id"], process)
    if job["status"] != "succeeded":
        echo(f"job {job['id']} {job['status']}: {job['error'] or 'no error recorded'}")
        return 1
    echo(f"job {job['id']} succeeded: adapter version {job['adapter_version']}")
    echo(f"  metrics reported by the trainer: {job['metrics']}")

    # predict every eval text over HTTP and measure the accuracy here
    report = parse_dataset(eval_data, filename=eval_path.name, task_type="text_classification")
    texts = [example["text"] for example in report.examples]
    expected = [example["label"] for example in report.examples]
    predicted = predict_all(client, task, texts)
    correct = sum(p == e for p, e in zip(predicted, expected, strict=True))
    echo(f"accuracy on {eval_path.name}: {correct / len(texts):.4f} ({correct}/{len(texts)})")
    echo("sample predictions:")
    for text, label, truth in list(zip(texts, predicted, expected, strict=True))[:5]:
        preview = text if len(text) <= 80 else text[:77] + "..."
        echo(f"  predicted {label}, true {truth}: {preview}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    for option, path in (("--train", args.train), ("--eval", args.eval)):
        if not os.access(path, os.R_OK) or not Path(path).is_file():
            echo(f"demo failed: {option} {path} is not a readable file")
            return 2
    data_dir = Path(args.data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = args.port or find_free_port()
    log_path = data_dir / "service.log"
    base_url = f"http://127.0.0.1:{port}"
    echo(f"starting the service on {base_url} (data in {data_dir}, log in {log_path})")

    try:
        with (
            start_demo_service(data_dir, port, log_path) as process,
            httpx.Client(base_url=base_url, timeout=300) as client,
        ):
            wait_until_ready(client, process, log_path)
            returncode = run_demo_job(args, client, process)
            if args.keep_running:
                echo(f"the service keeps running on {base_url}. Press Ctrl+C to stop it.")
                try:
                    process.wait()
                except KeyboardInterrupt:
                    pass
            echo("stopping the service")
    except KeyboardInterrupt:
        echo("interrupted, so the service was stopped")
        return 130
    except DemoError as exc:
        echo(f"demo failed: {exc}")
        if exc.log_path is None:
            echo(f"the service log is {log_path}")
        else:
            echo(f"last lines of {exc.log_path}:")
            for line in exc.log_path.read_text(errors="replace").splitlines()[-30:]:
                echo(f"  {line}")
        return 1
    return returncode


# argument parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loraplex",
        description="Fine-tune encoders on labelled text and serve every task from one base.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = commands.add_parser("migrate", help="upgrade the registry schema to the latest")
    migrate.set_defaults(handler=run_migrate)

    api = commands.add_parser("api", help="serve the HTTP API")
    add_server_options(api)
    api.set_defaults(handler=run_api)

    worker = commands.add_parser("worker", help="run a training worker")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="jobs run at once. 1 (default) runs them in the worker process (Celery's solo "
        "pool), more starts that many processes",
    )
    worker.set_defaults(handler=run_worker)

    up = commands.add_parser("up", help="migrate, then run a worker and the API together")
    add_server_options(up)
    up.add_argument(
        "--data-dir",
        help="folder of the SQLite registry and broker (sets LORAPLEX_DATA_DIR)",
    )
    up.set_defaults(handler=run_up)

    demo = commands.add_parser(
        "demo", help="start the service, fine-tune one task over HTTP and measure its accuracy"
    )
    demo.add_argument("--train", required=True, help="training file (CSV, TSV or JSON Lines)")
    demo.add_argument("--eval", required=True, help="evaluation file, in the same layout")
    demo.add_argument("--task", help="task name (default: the train file's folder name, e.g. sst2)")
    demo.add_argument(
        "--max-train-rows",
        type=int,
        default=4000,
        help="rows sampled from the train file (default 4000). 0 uploads every row.",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the sample and the job")
    demo.add_argument("--epochs", type=int, help="training epochs (default: the job default)")
    demo.add_argument(
        "--data-dir",
        default=str(DEMO_DATA_DIR),
        help=f"folder of the demo's registry, broker and log (default {DEMO_DATA_DIR})",
    )
    demo.add_argument("--port", type=int, help="API port on 127.0.0.1 (default: a free one)")
    demo.add_argument(
        "--keep-running", action="store_true", help="keep the service up until Ctrl+C"
    )
    demo.set_defaults(handler=run_demo)
    return parser


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default: LORAPLEX_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: LORAPLEX_PORT or 8000)")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # The demo writes its own output to stdout, and its HTTP client logs each request at INFO.
    configure_logging(logging.WARNING if args.command == "demo" else logging.INFO)
    sys.exit(args.handler(args))
