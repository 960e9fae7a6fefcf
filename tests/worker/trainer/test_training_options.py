"""Accumulation, early stopping, reproducibility, init_from, replay and forgetting control."""

import math

import pytest
import torch

from service.hyperparameters import parse_hyperparameters
from tests.worker.trainer.helpers import keyword_examples, make_trainer
from worker.trainer.evaluation import build_served_model, served_route
from worker.trainer.precision import resolve_device, resolve_precision

STRATEGIES = ["lora", "adapter", "ia3", "linear_probe", "freeze_bottom", "gradual_unfreeze", "full"]


def test_accumulated_micro_batches_equal_one_batch(no_dropout_model_dir):
    train, eval_ = keyword_examples(32, 0), keyword_examples(8, 1)
    options = {"epochs": 1, "batch_size": 32, "keep_dense": True, "head_dropout": 0.0}

    whole = make_trainer(no_dropout_model_dir, "full", train, eval_, **options).fit()
    accumulated = make_trainer(
        no_dropout_model_dir, "full", train, eval_, micro_batch_size=8, **options
    ).fit()

    assert parse_hyperparameters("full", {"micro_batch_size": 8}).accumulation_steps == 4
    for name, tensor in whole.delta.dense.items():
        assert torch.allclose(accumulated.delta.dense[name], tensor, atol=1e-6), name
    for name, tensor in whole.delta.head.items():
        assert torch.allclose(accumulated.delta.head[name], tensor, atol=1e-6), name


def test_early_stopping_keeps_best_epoch(tiny_model_dir):
    trainer = make_trainer(
        tiny_model_dir,
        "lora",
        keyword_examples(32, 0),
        keyword_examples(8, 1),
        epochs=10,
        learning_rate=1e-12,
        head_learning_rate=1e-12,
        early_stopping_patience=2,
    )

    result = trainer.fit()

    assert len(trainer.state.eval_history) == 3
    assert result.best_epoch == 1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_gives_same_result(tiny_model_dir, strategy):
    train, eval_ = keyword_examples(48, 0), keyword_examples(16, 1)

    first = make_trainer(tiny_model_dir, strategy, train, eval_, bf16=True).fit()
    second = make_trainer(tiny_model_dir, strategy, train, eval_, bf16=True).fit()

    assert first.metrics == second.metrics
    for name, tensor in first.delta.head.items():
        assert torch.equal(second.delta.head[name], tensor), name


def test_fp16_on_cpu_is_rejected():
    hyperparameters = parse_hyperparameters("lora", {"fp16": True})

    with pytest.raises(ValueError, match="fp16 training needs a CUDA device"):
        resolve_precision(hyperparameters, torch.device("cpu"))


def test_bf16_and_fp16_together_are_rejected():
    with pytest.raises(ValueError, match="bf16 and fp16 are both set"):
        parse_hyperparameters("lora", {"fp16": True, "bf16": True})


def test_replay_and_ewc_need_init_from():
    with pytest.raises(ValueError, match="replay_fraction needs init_from"):
        parse_hyperparameters("lora", {"replay_fraction": 0.2})
    with pytest.raises(ValueError, match="ewc_lambda needs init_from"):
        parse_hyperparameters("full", {"ewc_lambda": 1.0})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda(tiny_model_dir):
    trainer = make_trainer(tiny_model_dir, "lora", keyword_examples(32, 0), keyword_examples(8, 1))

    result = trainer.fit()

    assert resolve_device() == torch.device("cuda")
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert set(result.metrics) == {"accuracy", "macro_f1"}


def served_logits(model_dir, delta, input_ids):
    from service.modeling.base import read_base_model_spec

    model = build_served_model(read_base_model_spec(model_dir), delta, torch.device("cpu"))
    with torch.no_grad():
        mask = torch.ones_like(input_ids)
        return model(input_ids, mask, served_route(delta, len(input_ids), torch.device("cpu")))


INPUT_IDS = torch.tensor([[101, 7592, 6581, 2088, 102], [101, 9643, 2307, 2307, 102]])


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("lora", "lora"),
        ("adapter", "adapter"),
        ("ia3", "ia3"),
        ("lora", "full"),
        ("ia3", "freeze_bottom"),
        ("adapter", "linear_probe"),
    ],
)
def test_init_from_starts_where_the_version_ended(tiny_model_dir, source, target):
    train, eval_ = keyword_examples(32, 0), keyword_examples(8, 1)
    earlier = make_trainer(tiny_model_dir, source, train, eval_, epochs=1).fit().delta
    options = {"full": {"svd_rank": 32}, "freeze_bottom": {"svd_rank": 32, "frozen_blocks": 0}}

    # Rates too small to move anything: the new version must serve like the earlier one.
    continued = (
        make_trainer(
            tiny_model_dir,
            target,
            train,
            eval_,
            epochs=1,
            learning_rate=1e-12,
            head_learning_rate=1e-12,
            init_delta=earlier,
            init_from={"task": "earlier", "version": 1},
            **options.get(target, {}),
        )
        .fit()
        .delta
    )

    expected = served_logits(tiny_model_dir, earlier, INPUT_IDS)
    assert torch.allclose(served_logits(tiny_model_dir, continued, INPUT_IDS), expected, atol=1e-4)


def test_init_from_other_kind_is_rejected(tiny_model_dir):
    train, eval_ = keyword_examples(16, 0), keyword_examples(8, 1)
    earlier = make_trainer(tiny_model_dir, "ia3", train, eval_, epochs=1).fit().delta

    trainer = make_trainer(
        tiny_model_dir,
        "lora",
        train,
        eval_,
        init_delta=earlier,
        init_from={"task": "earlier", "version": 1},
    )
    with pytest.raises(ValueError, match="continues only from lora deltas"):
        trainer.fit()


def test_replay_adds_rows_to_every_epoch(tiny_model_dir):
    train, eval_ = keyword_examples(40, 0), keyword_examples(8, 1)
    earlier_rows = keyword_examples(30, 2)
    earlier = make_trainer(tiny_model_dir, "lora", earlier_rows, eval_, epochs=1).fit().delta

    trainer = make_trainer(
        tiny_model_dir,
        "lora",
        train,
        eval_,
        epochs=2,
        batch_size=8,
        init_delta=earlier,
        init_examples=earlier_rows,
        init_from={"task": "earlier", "version": 1},
        replay_fraction=0.5,
    )
    trainer.fit()

    assert trainer.state.total_steps == 2 * math.ceil((40 + 15) / 8)


def test_replay_rejects_unknown_labels(tiny_model_dir):
    train, eval_ = keyword_examples(16, 0), keyword_examples(8, 1)
    earlier = make_trainer(tiny_model_dir, "lora", train, eval_, epochs=1).fit().delta
    other_rows = [{"text": "something else", "label": "neutral"}]

    trainer = make_trainer(
        tiny_model_dir,
        "lora",
        train,
        eval_,
        init_delta=earlier,
        init_examples=other_rows,
        init_from={"task": "earlier", "version": 1},
        replay_fraction=1.0,
    )
    with pytest.raises(ValueError, match=r"labels \['neutral'\] that this job lacks"):
        trainer.fit()


def drift(delta, start, weights=None):
    total = 0.0
    for name, tensor in delta.dense.items():
        squared = (tensor - start[name]).pow(2)
        total += float((squared if weights is None else squared * weights[name]).sum())
    return total


@pytest.mark.parametrize(("penalty", "strength"), [("l2sp_lambda", 100.0), ("ewc_lambda", 1e9)])
def test_anchor_penalties_limit_drift(tiny_model_dir, penalty, strength):
    train, eval_ = keyword_examples(48, 0), keyword_examples(8, 1)
    earlier_rows = keyword_examples(32, 3)
    earlier = (
        make_trainer(tiny_model_dir, "full", earlier_rows, eval_, epochs=1, keep_dense=True)
        .fit()
        .delta
    )
    options = {
        "epochs": 3,
        "batch_size": 8,
        "keep_dense": True,
        "learning_rate": 1e-3,
        "layer_lr_decay": 1.0,
        "init_delta": earlier,
        "init_examples": earlier_rows,
        "init_from": {"task": "earlier", "version": 1},
    }

    free = make_trainer(tiny_model_dir, "full", train, eval_, **options).fit().delta
    anchored_trainer = make_trainer(
        tiny_model_dir, "full", train, eval_, **{penalty: strength}, **options
    )
    anchored = anchored_trainer.fit().delta

    # EWC measures drift in its own metric: squared change weighted by the Fisher.
    weights = anchored_trainer.penalties[0].weights
    assert drift(anchored, earlier.dense, weights) < 0.5 * drift(free, earlier.dense, weights)
