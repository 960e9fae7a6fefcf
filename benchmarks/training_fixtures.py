"""Shared pieces of the training benchmarks: the SST-2 sample and a Loraplex training run."""

import random
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.serving_fixtures import read_sst2
from service.config import default_base_model_dir
from service.hyperparameters import parse_hyperparameters
from service.modeling.base import fingerprint_base_model, load_tokenizer, read_base_model_spec
from worker.trainer.loop import Trainer

LABELS = ["0", "1"]


def sst2_examples(path: Path) -> list[dict]:
    """Return the rows of an SST-2 TSV file as `{"text", "label"}` examples."""
    return [{"text": text, "label": label} for text, label in read_sst2(path)]


def sst2_sample(data_dir: Path, rows: int, seed: int = 0) -> list[dict]:
    """Return `rows` training examples drawn with `random.Random(seed).sample`."""
    return random.Random(seed).sample(sst2_examples(data_dir / "sst2" / "train.tsv"), rows)


@dataclass
class LoraplexRun:
    """One `Trainer.fit` and what it measured."""

    accuracy: float
    last_epoch_accuracy: float
    samples_per_second: float
    train_seconds: float
    total_seconds: float
    report: dict


def train_loraplex(
    strategy: str,
    values: dict,
    train: list[dict],
    eval_: list[dict],
    base_dir: Path | None = None,
) -> LoraplexRun:
    """Train `strategy` with hyperparameters `values`, evaluating on `eval_` after each epoch."""
    base_dir = base_dir or default_base_model_dir()
    trainer = Trainer(
        spec=read_base_model_spec(base_dir),
        tokenizer=load_tokenizer(base_dir),
        fingerprint=fingerprint_base_model(base_dir),
        strategy=strategy,
        hyperparameters=parse_hyperparameters(strategy, values),
        train_examples=train,
        eval_examples=eval_,
        labels=LABELS,
    )
    started = time.perf_counter()
    result = trainer.fit()
    total = time.perf_counter() - started
    return LoraplexRun(
        accuracy=result.metrics["accuracy"],
        last_epoch_accuracy=trainer.state.eval_history[-1]["accuracy"],
        samples_per_second=result.train_samples_per_second,
        train_seconds=result.train_seconds,
        total_seconds=total,
        report=result.report,
    )
