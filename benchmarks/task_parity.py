"""Does the Loraplex trainer match Hugging Face's Trainer with peft on each task type?

One run trains LoRA on the all-MiniLM-L6-v2 base twice per data set, with the same
hyperparameters and the same examples: with Loraplex's trainer, and with transformers'
Trainer on a peft model (benchmarks/hf_baselines.py). Both are scored with the data set's
standard metric on the same eval examples:

- conll2003 (token classification): entity-level F1 by seqeval, on a sample of train.txt,
  scored on a sample of valid.txt;
- xquad (extractive QA): SQuAD v1.1 F1 by the official formula. XQuAD has no training
  split, so its 48 articles are split with a fixed seed: about 80% for training and the
  rest for evaluation, no article on both sides;
- mrpc (sentence pairs): accuracy on a sample of dev.tsv.

Loraplex is scored on the predictions of its serving engine, which loads the trained delta
into a slot of the shared base, so the figure is what a client would get. The run also
checks that Loraplex's metric code (service.tasktypes.metrics) gives the same numbers as
seqeval and the official SQuAD v1.1 functions on the same predictions.

The sizes are cut so that the whole run finishes in under 20 minutes on two CPU cores; they
are printed with the figures. Results on such small samples move by a point or more with
the seed, so a gap below that is noise.

    python benchmarks/task_parity.py            # the measured run
    python benchmarks/task_parity.py --quick    # smoke run on a few examples

The last output line is one JSON object: per data set the metric and both trainers' values,
in percent.
"""

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402
from seqeval.metrics import f1_score, precision_score, recall_score  # noqa: E402

from benchmarks import hf_baselines  # noqa: E402
from benchmarks.hf_baselines import RunSettings  # noqa: E402
from benchmarks.serving_fixtures import DEFAULT_DATA_DIR, print_json  # noqa: E402
from service.config import Settings, default_base_model_dir  # noqa: E402
from service.datasets import parse_dataset  # noqa: E402
from service.hyperparameters import parse_hyperparameters  # noqa: E402
from service.modeling.base import (  # noqa: E402
    fingerprint_base_model,
    load_base_model,
    load_tokenizer,
    read_base_model_spec,
)
from service.serving.engine import ServingEngine  # noqa: E402
from service.serving.tasktypes import get_serving_task_type  # noqa: E402
from service.tasktypes.metrics import entity_scores, squad_scores  # noqa: E402
from service.tasktypes.options import resolve_task_options  # noqa: E402
from worker.trainer.loop import Trainer  # noqa: E402
from worker.trainer.tasktypes.extractive_qa import group_split  # noqa: E402

XQUAD_TRAIN_ARTICLES = 0.8
SPLIT_SEED = 0


@dataclass(frozen=True)
class Sizes:
    """How much of each data set a run uses."""

    train: int
    eval: int


# Sized for under 20 minutes in all on two shared CPU cores (AMD EPYC, bf16 autocast).
SIZES = {
    "conll2003": Sizes(train=4000, eval=1000),
    "xquad": Sizes(train=1000, eval=300),  # all questions of each side of the article split
    "mrpc": Sizes(train=3668, eval=408),  # the whole GLUE training and dev sets
}
QUICK_SIZES = {name: Sizes(train=24, eval=12) for name in SIZES}

SETTINGS = {
    "conll2003": RunSettings(epochs=1, learning_rate=2e-3, batch_size=16, max_length=128),
    # At 384 tokens most XQuAD paragraphs fit in one window, so a question costs fewer
    # tokens than in several overlapping windows of a shorter length.
    "xquad": RunSettings(
        epochs=1, learning_rate=3e-3, batch_size=8, max_length=384, doc_stride=128
    ),
    "mrpc": RunSettings(epochs=1, learning_rate=1e-3, batch_size=16, max_length=128),
}


@dataclass
class DataSet:
    name: str
    task_type: str
    metric: str
    labels: list[str]
    train: list[dict]
    eval: list[dict]


# data


def parse_file(path: Path, task_type: str) -> list[dict]:
    return parse_dataset(path.read_bytes(), filename=path.name, task_type=task_type).examples


def load_conll(data_dir: Path, sizes: Sizes) -> DataSet:
    folder = data_dir / "conll2003"
    report = parse_dataset(
        (folder / "train.txt").read_bytes(), filename="train.txt", task_type="token_classification"
    )
    eval_ = parse_file(folder / "valid.txt", "token_classification")
    train = random.Random(SPLIT_SEED).sample(report.examples, sizes.train)
    eval_ = random.Random(SPLIT_SEED + 1).sample(eval_, sizes.eval)
    # The full training file's tag set, so that every eval tag is one the model can output.
    return DataSet("conll2003", "token_classification", "entity_f1", report.labels, train, eval_)


def load_xquad(data_dir: Path, sizes: Sizes) -> DataSet:
    examples = parse_file(data_dir / "squad" / "xquad.en.json", "extractive_qa")
    train_rows, eval_rows = group_split(
        [e["title"] for e in examples], 1 - XQUAD_TRAIN_ARTICLES, SPLIT_SEED
    )
    train = [examples[i] for i in train_rows]
    eval_ = [examples[i] for i in eval_rows]
    train = random.Random(SPLIT_SEED).sample(train, min(sizes.train, len(train)))
    eval_ = random.Random(SPLIT_SEED + 1).sample(eval_, min(sizes.eval, len(eval_)))
    return DataSet("xquad", "extractive_qa", "f1", [], train, eval_)


def load_mrpc(data_dir: Path, sizes: Sizes) -> DataSet:
    folder = data_dir / "mrpc"
    train = parse_file(folder / "train.tsv", "sentence_pair")
    eval_ = parse_file(folder / "dev.tsv", "sentence_pair")
    train = random.Random(SPLIT_SEED).sample(train, sizes.train)
    eval_ = random.Random(SPLIT_SEED + 1).sample(eval_, min(sizes.eval, len(eval_)))
    return DataSet("mrpc", "sentence_pair", "accuracy", ["0", "1"], train, eval_)


# Loraplex


def loraplex_hyperparameters(data: DataSet, settings: RunSettings):
    values = {
        "epochs": settings.epochs,
        "learning_rate": settings.learning_rate,
        "head_learning_rate": settings.learning_rate,  # transformers' Trainer has one rate
        "batch_size": settings.batch_size,
        "max_length": settings.max_length,
        "warmup_ratio": settings.warmup_ratio,
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        "lora_rank": settings.lora_rank,
        "lora_alpha": settings.lora_alpha,
        "lora_dropout": settings.lora_dropout,
        "seed": settings.seed,
        "bf16": True,
    }
    if settings.doc_stride is not None:
        values["doc_stride"] = settings.doc_stride
        values["max_answer_tokens"] = settings.max_answer_tokens
    hyperparameters = parse_hyperparameters("lora", values)
    return resolve_task_options(data.task_type, hyperparameters, data.labels)


def run_loraplex(
    data: DataSet, settings: RunSettings, base_dir: Path, engine: ServingEngine
) -> tuple[list, dict[str, float], float, float]:
    """Train with Loraplex; return served predictions, trainer metrics and the seconds taken."""
    trainer = Trainer(
        spec=read_base_model_spec(base_dir),
        tokenizer=load_tokenizer(base_dir),
        fingerprint=fingerprint_base_model(base_dir),
        strategy="lora",
        hyperparameters=loraplex_hyperparameters(data, settings),
        train_examples=data.train,
        eval_examples=data.eval,
        labels=data.labels,
        task_type=data.task_type,
    )
    started = time.perf_counter()
    result = trainer.fit()
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    loaded = engine.cache.put(f"parity-{data.name}", data.name, 1, result.delta)
    task_type = get_serving_task_type(data.task_type)
    items = [(loaded, task_type.parse_input_for(loaded, served_input(data, e))) for e in data.eval]
    predictions = [served_prediction(data, p) for p in engine.run_items(items)]
    engine.cache.evict(f"parity-{data.name}")
    return predictions, result.metrics, train_seconds, time.perf_counter() - started


def served_input(data: DataSet, example: dict):
    if data.task_type == "token_classification":
        return {"tokens": example["tokens"]}
    if data.task_type == "extractive_qa":
        return {"question": example["question"], "context": example["context"]}
    return {"text": example["text"], "text_pair": example["text_pair"]}


def served_prediction(data: DataSet, prediction: dict):
    if data.task_type == "token_classification":
        return prediction["tags"]
    if data.task_type == "extractive_qa":
        return prediction["answer"]
    return prediction["label"]


# Hugging Face


def run_hf(data: DataSet, settings: RunSettings, base_dir: Path) -> hf_baselines.BaselineRun:
    tokenizer = load_tokenizer(base_dir)
    if data.task_type == "token_classification":
        return hf_baselines.train_token_classification(
            base_dir, tokenizer, data.labels, data.train, data.eval, settings
        )
    if data.task_type == "extractive_qa":
        return hf_baselines.train_extractive_qa(
            base_dir, tokenizer, data.train, data.eval, settings
        )
    return hf_baselines.train_sentence_pair(
        base_dir, tokenizer, data.labels, data.train, data.eval, settings
    )


# scoring and the metric check


def score(data: DataSet, predictions: list) -> float:
    """Return the data set's metric of `predictions` in percent, by the reference code."""
    if data.task_type == "token_classification":
        return 100 * f1_score([e["tags"] for e in data.eval], predictions)
    if data.task_type == "extractive_qa":
        return hf_baselines.squad_evaluate(predictions, gold_answers(data))["f1"]
    correct = sum(p == e["label"] for p, e in zip(predictions, data.eval, strict=True))
    return 100 * correct / len(data.eval)


def gold_answers(data: DataSet) -> list[list[str]]:
    return [[answer["text"] for answer in e["answers"]] for e in data.eval]


def metric_differences(data: DataSet, predictions: list) -> dict[str, float] | None:
    """Return |Loraplex's metric - the reference| per metric, or None for accuracy."""
    if data.task_type == "token_classification":
        gold = [e["tags"] for e in data.eval]
        ours = entity_scores(gold, predictions)
        reference = {
            "precision": precision_score(gold, predictions),
            "recall": recall_score(gold, predictions),
            "f1": f1_score(gold, predictions),
        }
        return {name: abs(ours[name] - reference[name]) for name in reference}
    if data.task_type == "extractive_qa":
        ours = squad_scores(predictions, gold_answers(data))
        reference = hf_baselines.squad_evaluate(predictions, gold_answers(data))
        return {name: abs(100 * ours[name] - reference[name]) for name in reference}
    return None


def make_engine(base_dir: Path, data_dir: Path) -> ServingEngine:
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'registry.db'}",
        broker_url="memory://",
        base_model_dir=base_dir,
        preload_tasks=0,
        adapter_cache_mb=1024,
        serve_dtype="float32",
    )
    return ServingEngine(settings, base=load_base_model(base_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    # One intra-op thread: on the shared two-core machine of docs/benchmarks.md, two threads
    # ran up to 7 times slower than one whenever other processes were busy.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="a smoke run on a few examples")
    parser.add_argument(
        "--only", nargs="+", choices=["conll2003", "xquad", "mrpc"], help="data sets to run"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    base_dir = default_base_model_dir()
    sizes = QUICK_SIZES if args.quick else SIZES
    loaders = {"conll2003": load_conll, "xquad": load_xquad, "mrpc": load_mrpc}
    if args.only:
        loaders = {name: load for name, load in loaders.items() if name in args.only}

    started = time.perf_counter()
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="task-parity-") as scratch:
        engine = make_engine(base_dir, Path(scratch))
        for name, load in loaders.items():
            data = load(args.data_dir, sizes[name])
            settings = SETTINGS[name]
            if args.quick:
                settings = replace(settings, batch_size=4)
            print(
                f"{name}: {data.task_type}, {len(data.train)} train and {len(data.eval)} eval "
                f"examples, {settings}",
                flush=True,
            )

            ours, trainer_metrics, ours_train, ours_eval = run_loraplex(
                data, settings, base_dir, engine
            )
            baseline = run_hf(data, settings, base_dir)
            figures[name] = {
                "metric": data.metric,
                "loraplex": round(score(data, ours), 2),
                "hf": round(score(data, baseline.predictions), 2),
                "train_examples": len(data.train),
                "eval_examples": len(data.eval),
            }
            print(
                f"  loraplex {figures[name]['loraplex']:.2f} (trainer's own eval "
                f"{100 * trainer_metrics[data.metric]:.2f}), train {ours_train:.0f} s, served "
                f"eval {ours_eval:.0f} s",
                flush=True,
            )
            print(
                f"  hf       {figures[name]['hf']:.2f}, train {baseline.train_seconds:.0f} s, "
                f"eval {baseline.eval_seconds:.0f} s",
                flush=True,
            )
            for trainer_name, predictions in (("loraplex", ours), ("hf", baseline.predictions)):
                differences = metric_differences(data, predictions)
                if differences is not None:
                    reference = "seqeval" if data.name == "conll2003" else "official SQuAD v1.1"
                    largest = max(differences.values())
                    verdict = "agree" if largest < 1e-9 else "DIFFER"
                    print(
                        f"  metric check on {trainer_name}'s predictions: Loraplex's code and "
                        f"{reference} {verdict} (largest difference {largest:.2e})",
                        flush=True,
                    )

    print(f"total {time.perf_counter() - started:.0f} s", flush=True)
    print_json(figures)


if __name__ == "__main__":
    main()
