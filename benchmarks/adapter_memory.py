"""How much resident memory does each loaded adapter add to a serving process?

Registers 40 tasks with random deltas shaped like the job defaults (LoRA rank 8 on all six
linear layers of every block of all-MiniLM-L6-v2, plus a 2-label head), loads them all into
one serving engine, and reports the growth of the process's resident set per adapter.

    python benchmarks/adapter_memory.py

The last output line is one JSON object with the figures.
"""

import gc
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serve_throughput import make_settings  # noqa: E402
from benchmarks.serving_fixtures import print_json, random_lora_delta, rss_mb  # noqa: E402
from service.db import session_scope  # noqa: E402
from service.hyperparameters import LORA_TARGETS  # noqa: E402
from service.registry.adapters import add_adapter_version, get_or_create_task  # noqa: E402
from service.serving.engine import ServingEngine  # noqa: E402

ADAPTERS = 40


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = make_settings(Path(folder))
        engine = ServingEngine(settings)
        with session_scope(settings.database_url) as session:
            for index in range(ADAPTERS):
                delta = random_lora_delta(
                    engine.base.encoder, index, engine.base.fingerprint, targets=LORA_TARGETS
                )
                task = get_or_create_task(session, f"task{index}", delta.task_type, delta.labels)
                add_adapter_version(session, task, delta)

        gc.collect()
        before = rss_mb()
        with session_scope(settings.database_url) as session:
            for index in range(ADAPTERS):
                engine.release(engine.acquire(session, f"task{index}"))
        gc.collect()
        after = rss_mb()

    print_json(
        {
            "adapters": ADAPTERS,
            "rss_mb_before": round(before, 1),
            "rss_mb_after": round(after, 1),
            "rss_mb_per_adapter": round((after - before) / ADAPTERS, 2),
            "delta_mb_per_adapter": round(delta.nbytes / 2**20, 2),
        }
    )


if __name__ == "__main__":
    main()
