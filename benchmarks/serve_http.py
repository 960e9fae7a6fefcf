"""Does serving over HTTP keep up with the engine? 32 clients, 64 tasks, 60 seconds.

Starts a real API process (`python -m service api`) on 127.0.0.1 over a fresh SQLite registry
holding 64 tasks (random rank-8 LoRA deltas on query and value, each with its own head), and
runs 32 concurrent clients for --duration seconds. Each request carries 1 to 8 SST-2 dev
sentences for a random task. Then, in this process, it measures the engine's own mixed-batch
throughput (`ServingEngine.run_rows`) at the mean batch size the server formed, and reports
HTTP throughput against it, with latency percentiles and the error count.

    python benchmarks/serve_http.py                 # 60 s of traffic
    python benchmarks/serve_http.py --duration 10   # shorter

The last output line is one JSON object with the figures.
"""

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import torch  # noqa: E402

from benchmarks.serving_fixtures import (  # noqa: E402
    DEFAULT_DATA_DIR,
    median_seconds,
    print_json,
    random_lora_delta,
    read_sst2,
)
from service.config import Settings  # noqa: E402
from service.db import session_scope  # noqa: E402
from service.migrate import upgrade_to_head  # noqa: E402
from service.registry.adapters import add_adapter_version, get_or_create_task  # noqa: E402
from service.serving.engine import ServingEngine  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run_clients(
    base_url: str, tasks: list[str], texts: list[str], clients: int, duration: float, seed: int
):
    latencies: list[float] = []
    counters = {"sentences": 0, "errors": 0, "requests": 0}
    deadline = time.monotonic() + duration

    async def client_loop(index: int) -> None:
        rng = random.Random(seed + index)
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            while time.monotonic() < deadline:
                task = rng.choice(tasks)
                inputs = rng.sample(texts, rng.randint(1, 8))
                started = time.perf_counter()
                try:
                    response = await client.post(
                        f"/v1/tasks/{task}/predict", json={"inputs": inputs}
                    )
                    ok = response.status_code == 200 and len(response.json()["predictions"]) == len(
                        inputs
                    )
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - started) * 1000)
                counters["requests"] += 1
                if ok:
                    counters["sentences"] += len(inputs)
                else:
                    counters["errors"] += 1

    started = time.monotonic()
    await asyncio.gather(*(client_loop(i) for i in range(clients)))
    return counters, latencies, time.monotonic() - started


def read_counter(base_url: str, name: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    texts = [text for text, _ in read_sst2(args.data_dir / "sst2" / "dev.tsv")]
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            data_dir=Path(folder),
            database_url=f"sqlite:///{Path(folder) / 'registry.db'}",
            broker_url="memory://",
            preload_tasks=args.tasks,
        )
        upgrade_to_head(settings.database_url)
        engine = ServingEngine(settings)
        names = [f"task{index:03d}" for index in range(args.tasks)]
        with session_scope(settings.database_url) as session:
            for index, name in enumerate(names):
                delta = random_lora_delta(engine.base.encoder, index, engine.base.fingerprint)
                add_adapter_version(
                    session, get_or_create_task(session, name, delta.task_type, delta.labels), delta
                )

        # the API process, on the same registry
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LORAPLEX_")},
            "LORAPLEX_DATA_DIR": folder,
            "LORAPLEX_BROKER_URL": "memory://",
            "LORAPLEX_PRELOAD_TASKS": str(args.tasks),
        }
        log = open(Path(folder) / "api.log", "wb")  # noqa: SIM115
        api = subprocess.Popen(
            [sys.executable, "-m", "service", "api", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(240):
                try:
                    if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            # warm up: every task once, so the timed window starts with all adapters resident
            for name in names:
                httpx.post(
                    f"{base_url}/v1/tasks/{name}/predict", json={"inputs": texts[:2]}, timeout=60
                ).raise_for_status()
            batches_before = read_counter(base_url, "loraplex_serving_batches_total")
            rows_before = read_counter(base_url, "loraplex_serving_rows_total")

            counters, latencies, elapsed = asyncio.run(
                run_clients(base_url, names, texts, args.clients, args.duration, args.seed)
            )
            batches = read_counter(base_url, "loraplex_serving_batches_total") - batches_before
            rows = read_counter(base_url, "loraplex_serving_rows_total") - rows_before
        finally:
            api.terminate()
            api.wait(30)
            log.close()

        # the engine alone, at the mean batch size the server formed
        mean_batch = max(1, round(rows / max(batches, 1)))
        rng = random.Random(args.seed)
        with session_scope(settings.database_url) as session:
            held = engine.acquire_many(session, names)
        work = [
            [(rng.choice(held), rng.choice(texts)) for _ in range(mean_batch)]
            for _ in range(max(1, 320 // mean_batch))
        ]

        def run_engine() -> None:
            for rows_of_batch in work:
                engine.run_rows(rows_of_batch)

        engine_sps = sum(len(w) for w in work) / median_seconds(run_engine, 5)

    http_sps = counters["sentences"] / elapsed
    figures = {
        "http_sps": round(http_sps, 1),
        "engine_sps": round(engine_sps, 1),
        "ratio": round(http_sps / engine_sps, 3),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "mean_latency_ms": round(statistics.mean(latencies), 1),
        "errors": counters["errors"],
        "requests": counters["requests"],
        "mean_batch_rows": mean_batch,
        "clients": args.clients,
        "tasks": args.tasks,
        "duration_s": round(elapsed, 1),
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"HTTP {figures['http_sps']} sentences/s vs engine {figures['engine_sps']} "
        f"(ratio {figures['ratio']}); p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, "
        f"p99 {figures['p99_ms']} ms; {figures['errors']} errors in {figures['requests']} requests",
        flush=True,
    )
    print_json(figures)


if __name__ == "__main__":
    main()
