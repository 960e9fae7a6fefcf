"""Every task type trained with LoRA on the real all-MiniLM-L6-v2 base and real data, then served.

- token_classification: a CoNLL-2003 sample (train.txt, scored on valid.txt);
- sentence_pair: an MRPC sample (train.tsv, scored on dev.tsv);
- extractive_qa: XQuAD split by article, about 80% of the articles for training;
- multi_label and regression: no real set of either kind is at hand, so both take CoNLL-2003
  sentences with targets derived from their gold entities: the set of entity types in the
  sentence, and the number of entities.

Each test trains for well under a minute on one CPU thread, then checks that the serving
engine's predictions score what the trainer reported.
"""

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from service.datasets import DatasetReport, parse_dataset
from service.hyperparameters import parse_hyperparameters
from service.modeling.base import (
    fingerprint_base_model,
    load_base_model,
    load_tokenizer,
    read_base_model_spec,
)
from service.serving.engine import ServingEngine
from service.serving.tasktypes import get_serving_task_type
from service.tasktypes.metrics import entity_scores, regression_scores, squad_scores
from tests.utils.settings import local_settings
from worker.trainer.loop import Trainer
from worker.trainer.tasktypes.extractive_qa import group_split

pytestmark = pytest.mark.real_model

ENTITY_TYPES = ["LOC", "MISC", "ORG", "PER"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # On a small machine shared with other processes, two intra-op threads were up to seven
    # times slower than one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, real_model_dir: Path) -> ServingEngine:
    data_dir = tmp_path_factory.mktemp("serving")
    settings = local_settings(data_dir, real_model_dir, preload_tasks=0, serve_dtype="float32")
    return ServingEngine(settings, base=load_base_model(real_model_dir))


@pytest.fixture(scope="module")
def conll(shared_data_dir: Path) -> dict[str, DatasetReport]:
    folder = shared_data_dir / "conll2003"
    return {
        split: parse_dataset(
            (folder / f"{split}.txt").read_bytes(),
            filename=f"{split}.txt",
            task_type="token_classification",
        )
        for split in ("train", "valid")
    }


def sample(examples: list[dict], count: int, seed: int) -> list[dict]:
    return random.Random(seed).sample(examples, min(count, len(examples)))


def train(
    model_dir: Path,
    task_type: str,
    train_examples: list[dict],
    eval_examples: list[dict],
    labels: list[str],
    **overrides,
):
    hyperparameters = parse_hyperparameters(
        "lora",
        {
            "epochs": 1,
            "batch_size": 16,
            "learning_rate": 2e-3,
            "head_learning_rate": 2e-3,
            **overrides,
        },
    )
    trainer = Trainer(
        spec=read_base_model_spec(model_dir),
        tokenizer=load_tokenizer(model_dir),
        fingerprint=fingerprint_base_model(model_dir),
        strategy="lora",
        hyperparameters=hyperparameters,
        train_examples=train_examples,
        eval_examples=eval_examples,
        labels=labels,
        task_type=task_type,
    )
    return trainer.fit()


def serve(engine: ServingEngine, delta, inputs: list) -> list[dict]:
    key = f"real-{delta.task_type}"
    loaded = engine.cache.put(key, key, 1, delta)
    try:
        task_type = get_serving_task_type(delta.task_type)
        return engine.run_items([(loaded, task_type.parse_input_for(loaded, i)) for i in inputs])
    finally:
        engine.cache.evict(key)


def test_conll_entities_learned_and_served(real_model_dir, engine, conll):
    train_examples = sample(conll["train"].examples, 1000, seed=0)
    eval_examples = sample(conll["valid"].examples, 300, seed=1)
    labels = conll["train"].labels

    result = train(real_model_dir, "token_classification", train_examples, eval_examples, labels)
    served = serve(engine, result.delta, [{"tokens": e["tokens"]} for e in eval_examples])
    text = "EU rejects German call to boycott British lamb, says Peter  Blackburn in Brussels."
    (raw,) = serve(engine, result.delta, [text])

    assert result.metrics["entity_f1"] > 0.4
    scores = entity_scores([e["tags"] for e in eval_examples], [p["tags"] for p in served])
    assert scores["f1"] == pytest.approx(result.metrics["entity_f1"], abs=0.02)
    assert raw["entities"], "a trained model should find entities in a news sentence"
    for entity in raw["entities"]:
        assert entity["text"] == text[entity["start"] : entity["end"]]
        assert entity["type"] in ENTITY_TYPES


def test_mrpc_pairs_learned_and_served(real_model_dir, engine, shared_data_dir):
    folder = shared_data_dir / "mrpc"
    reports = {
        name: parse_dataset(
            (folder / f"{name}.tsv").read_bytes(), filename=f"{name}.tsv", task_type="sentence_pair"
        )
        for name in ("train", "dev")
    }
    train_examples = sample(reports["train"].examples, 1200, seed=0)
    eval_examples = reports["dev"].examples[:200]

    result = train(
        real_model_dir,
        "sentence_pair",
        train_examples,
        eval_examples,
        reports["train"].labels,
        learning_rate=5e-3,
        head_learning_rate=5e-3,
    )
    served = serve(
        engine,
        result.delta,
        [{"text": e["text"], "text_pair": e["text_pair"]} for e in eval_examples],
    )

    majority = sum(e["label"] == "1" for e in eval_examples) / len(eval_examples)
    assert result.metrics["accuracy"] > majority + 0.02
    correct = sum(p["label"] == e["label"] for p, e in zip(served, eval_examples, strict=True))
    assert correct / len(eval_examples) == pytest.approx(result.metrics["accuracy"], abs=0.02)


def test_xquad_answers_learned_and_served(real_model_dir, engine, shared_data_dir):
    examples = parse_dataset(
        (shared_data_dir / "squad" / "xquad.en.json").read_bytes(),
        filename="xquad.en.json",
        task_type="extractive_qa",
    ).examples
    train_rows, eval_rows = group_split([e["title"] for e in examples], 0.2, seed=0)
    train_examples = sample([examples[i] for i in train_rows], 500, seed=0)
    eval_examples = sample([examples[i] for i in eval_rows], 100, seed=1)

    result = train(
        real_model_dir,
        "extractive_qa",
        train_examples,
        eval_examples,
        [],
        max_length=192,
        doc_stride=64,
        learning_rate=5e-3,
        head_learning_rate=5e-3,
    )
    served = serve(
        engine,
        result.delta,
        [{"question": e["question"], "context": e["context"]} for e in eval_examples],
    )

    assert {examples[i]["title"] for i in train_rows}.isdisjoint(
        examples[i]["title"] for i in eval_rows
    )
    assert result.metrics["f1"] > 0.1
    gold = [[answer["text"] for answer in e["answers"]] for e in eval_examples]
    scores = squad_scores([p["answer"] for p in served], gold)
    assert scores["f1"] == pytest.approx(result.metrics["f1"], abs=0.03)
    for prediction, example in zip(served, eval_examples, strict=True):
        assert prediction["answer"] == example["context"][prediction["start"] : prediction["end"]]


def entity_type_examples(sentences: list[dict]) -> list[dict]:
    """Return each sentence as text labelled with the entity types it contains."""
    return [
        {
            "text": " ".join(s["tokens"]),
            "labels": sorted({tag[2:] for tag in s["tags"] if tag != "O"}),
        }
        for s in sentences
    ]


def test_conll_entity_types_as_multi_label(real_model_dir, engine, conll):
    train_examples = entity_type_examples(sample(conll["train"].examples, 400, seed=0))
    eval_examples = entity_type_examples(sample(conll["valid"].examples, 200, seed=1))

    result = train(
        real_model_dir,
        "multi_label",
        train_examples,
        eval_examples,
        ENTITY_TYPES,
        epochs=2,
        learning_rate=5e-3,
        head_learning_rate=1e-2,
    )
    served = serve(engine, result.delta, [e["text"] for e in eval_examples])

    assert result.metrics["micro_f1"] > 0.5
    served_sets = [set(p["labels"]) for p in served]
    exact = sum(p == set(e["labels"]) for p, e in zip(served_sets, eval_examples, strict=True))
    assert exact / len(eval_examples) == pytest.approx(result.metrics["subset_accuracy"], abs=0.03)


def test_conll_entity_count_as_regression(real_model_dir, engine, conll):
    def entity_counts(sentences: list[dict]) -> list[dict]:
        return [
            {
                "text": " ".join(s["tokens"]),
                "target": float(sum(tag.startswith("B-") for tag in s["tags"])),
            }
            for s in sentences
        ]

    train_examples = entity_counts(sample(conll["train"].examples, 400, seed=0))
    eval_examples = entity_counts(sample(conll["valid"].examples, 200, seed=1))

    result = train(real_model_dir, "regression", train_examples, eval_examples, [])
    served = serve(engine, result.delta, [e["text"] for e in eval_examples])

    assert result.metrics["pearson"] > 0.5
    scores = regression_scores([p["value"] for p in served], [e["target"] for e in eval_examples])
    assert scores["pearson"] == pytest.approx(result.metrics["pearson"], abs=0.02)
