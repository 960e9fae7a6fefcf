"""Shared pieces of the serving benchmarks: SST-2 dev sentences, timing, random LoRA deltas."""

import csv
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from service.modeling.delta import Delta
from service.modeling.encoder import Encoder

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def read_sst2(path: Path) -> list[tuple[str, str]]:
    """Return (sentence, label) rows of an SST-2 TSV file (quoting off, trailing space cut)."""
    with path.open(encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [(text.strip(), label) for text, label in reader]


def median_seconds(run: Callable[[], object], repetitions: int, warmup: int = 1) -> float:
    """Return the median wall time of `run` over `repetitions` calls, after `warmup` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repetitions):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def random_lora_delta(
    encoder: Encoder,
    seed: int,
    fingerprint: str,
    rank: int = 8,
    targets: tuple[str, ...] = ("query", "value"),
    labels: tuple[str, ...] = ("0", "1"),
) -> Delta:
    """Return a LoRA delta with random weights shaped like a trained rank-`rank` adapter."""
    generator = torch.Generator().manual_seed(seed)
    lora = {
        path: (
            torch.randn(rank, layer.in_features, generator=generator) * 0.02,
            torch.randn(layer.out_features, rank, generator=generator) * 0.02,
        )
        for path, layer in encoder.adapted_layers(list(targets)).items()
    }
    hidden = encoder.config.hidden_size
    head = {
        "classifier.weight": torch.randn(len(labels), hidden, generator=generator) * 0.05,
        "classifier.bias": torch.zeros(len(labels)),
    }
    return Delta(
        "lora", "text_classification", list(labels), fingerprint, "mean", 64, 2.0, lora, head
    )


def rss_mb() -> float:
    """Return this process's resident set size in MiB."""
    with open(f"/proc/{os.getpid()}/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def print_json(figures: dict) -> None:
    """Print the figures as the last output line, one JSON object."""
    print(json.dumps(figures, sort_keys=True), flush=True)
