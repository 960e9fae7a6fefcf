import csv
import random

import pytest
import torch

from service.hyperparameters import parse_hyperparameters
from service.modeling.base import (
    build_encoder,
    fingerprint_base_model,
    load_tokenizer,
    read_base_model_spec,
)
from service.modeling.lora import AdapterRoute
from worker.trainer.callbacks import TrainerCallback
from worker.trainer.loop import Trainer


class Recorder(TrainerCallback):
    def __init__(self):
        self.logs, self.evals = [], []

    def on_log(self, state):
        self.logs.append((state.step, state.loss, state.learning_rate))

    def on_evaluate(self, state, metrics):
        self.evals.append(metrics)


def keyword_examples(count, seed):
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    examples = []
    for _ in range(count):
        label = rng.choice(["good", "bad"])
        marker = "excellent" if label == "good" else "awful"
        body = " ".join(rng.choice(words) for _ in range(rng.randint(2, 8)))
        examples.append({"text": f"{body} {marker} {body}", "label": label})
    return examples


def make_trainer(model_dir, train, eval_, callbacks=(), **overrides):
    hyperparameters = parse_hyperparameters(
        "lora", {"epochs": 2, "batch_size": 16, "bf16": False, **overrides}
    )
    return Trainer(
        spec=read_base_model_spec(model_dir),
        tokenizer=load_tokenizer(model_dir),
        fingerprint=fingerprint_base_model(model_dir),
        strategy="lora",
        hyperparameters=hyperparameters,
        train_examples=train,
        eval_examples=eval_,
        labels=["bad", "good"],
        callbacks=list(callbacks),
        log_every=2,
    )


def test_trainer_reports_progress_and_returns_delta(tiny_model_dir):
    recorder = Recorder()
    trainer = make_trainer(
        tiny_model_dir, keyword_examples(96, 0), keyword_examples(32, 1), [recorder]
    )

    result = trainer.fit()

    assert trainer.state.step == trainer.state.total_steps == 12
    assert [m["epoch"] for m in recorder.evals] == [1, 2]
    assert recorder.logs and all(loss is not None and loss > 0 for _, loss, _ in recorder.logs)
    assert set(result.metrics) == {"accuracy", "macro_f1"}
    assert result.delta.labels == ["bad", "good"]
    assert len(result.delta.lora) == 2 * 6  # two blocks, six target layers each
    assert set(result.delta.head) == {"classifier.weight", "classifier.bias"}


def test_trainer_is_reproducible_with_same_seed(tiny_model_dir):
    train, eval_ = keyword_examples(64, 0), keyword_examples(16, 1)

    first = make_trainer(tiny_model_dir, train, eval_).fit()
    second = make_trainer(tiny_model_dir, train, eval_).fit()

    assert first.metrics == second.metrics
    path = next(iter(first.delta.lora))
    assert torch.equal(first.delta.lora[path][1], second.delta.lora[path][1])


def test_trained_delta_served_through_slots_matches_training_model(tiny_model_dir):
    trainer = make_trainer(tiny_model_dir, keyword_examples(64, 0), keyword_examples(16, 1))
    result = trainer.fit()
    delta = result.delta
    encoder = build_encoder(read_base_model_spec(tiny_model_dir))
    layers = encoder.adapted_layers()
    for path, (lora_A, lora_B) in delta.lora.items():
        layers[path].ensure_slot_table(num_slots=2, rank=lora_A.shape[0])
        layers[path].write_slot(1, lora_A, lora_B, delta.lora_scale)
    trained = build_encoder(read_base_model_spec(tiny_model_dir))
    for path, layer in trained.adapted_layers().items():
        layer.attach_lora(8, 16.0, 0.0)
        layer.lora_A.data.copy_(delta.lora[path][0])
        layer.lora_B.data.copy_(delta.lora[path][1])
    input_ids = torch.tensor([[101, 7592, 2088, 102]])
    mask = torch.ones_like(input_ids)

    with torch.no_grad():
        served = encoder(input_ids, mask, route=AdapterRoute.for_rows([1]))
        reference = trained(input_ids, mask)

    assert torch.allclose(served, reference, atol=1e-5)


def read_sst2(path):
    with open(path, encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [{"text": text.strip(), "label": label} for text, label in reader]


@pytest.mark.real_model
def test_lora_on_real_base_beats_majority_on_sst2(shared_data_dir, real_model_dir):
    train = random.Random(0).sample(read_sst2(shared_data_dir / "sst2" / "train.tsv"), 600)
    dev = read_sst2(shared_data_dir / "sst2" / "dev.tsv")[:300]
    majority = max(sum(e["label"] == "0" for e in dev), sum(e["label"] == "1" for e in dev)) / len(
        dev
    )
    hyperparameters = parse_hyperparameters("lora", {"epochs": 3, "max_length": 64})
    trainer = Trainer(
        spec=read_base_model_spec(real_model_dir),
        tokenizer=load_tokenizer(real_model_dir),
        fingerprint=fingerprint_base_model(real_model_dir),
        strategy="lora",
        hyperparameters=hyperparameters,
        train_examples=train,
        eval_examples=dev,
        labels=["0", "1"],
    )

    result = trainer.fit()

    assert result.metrics["accuracy"] > majority + 0.1
