"""Discriminative learning-rate groups and decay exclusions."""

import pytest

from service.hyperparameters import parse_hyperparameters
from service.modeling.base import build_encoder, read_base_model_spec
from worker.trainer.model import TaskModel
from worker.trainer.optim import build_parameter_groups, layer_index
from worker.trainer.strategies import build_strategy


def groups_for(model_dir, strategy, **values):
    hp = parse_hyperparameters(strategy, values)
    encoder = build_encoder(read_base_model_spec(model_dir))
    instance = build_strategy(strategy, hp)
    instance.prepare(encoder)
    model = TaskModel(encoder, "cls", 2)
    return build_parameter_groups(
        instance.trainable_parameters(encoder),
        dict(model.head.named_parameters()),
        num_blocks=5,
        learning_rate=hp.learning_rate,
        head_learning_rate=hp.head_learning_rate,
        layer_lr_decay=hp.layer_lr_decay,
        weight_decay=hp.weight_decay,
    )


def test_layer_index_of_parameter_names():
    assert layer_index("embeddings.word_embeddings.weight", 5) == 0
    assert layer_index("encoder.layer.0.attention.self.query.weight", 5) == 1
    assert layer_index("encoder.layer.4.output.LayerNorm.bias", 5) == 5
    assert layer_index("pooler.dense.weight", 5) == 5
    with pytest.raises(ValueError, match="Cannot tell which layer"):
        layer_index("head.classifier.weight", 5)


def test_discriminative_rates_fall_by_xi_per_layer(deep_tiny_model_dir):
    groups = groups_for(
        deep_tiny_model_dir,
        "full",
        learning_rate=1e-3,
        head_learning_rate=5e-3,
        layer_lr_decay=2.0,
    )

    rates = {group["name"]: group["lr"] for group in groups}
    assert rates["head"] == 5e-3
    assert rates["block 4"] == pytest.approx(1e-3)
    assert rates["block 3"] == pytest.approx(1e-3 / 2)
    assert rates["block 0"] == pytest.approx(1e-3 / 2**4)
    assert rates["embeddings"] == pytest.approx(1e-3 / 2**5)


def test_default_dense_decay_is_2_6(deep_tiny_model_dir):
    groups = groups_for(deep_tiny_model_dir, "full", learning_rate=1e-4)

    rates = {group["name"]: group["lr"] for group in groups}
    assert rates["block 2"] == pytest.approx(1e-4 / 2.6**2)


def test_xi_one_gives_every_layer_the_same_rate(deep_tiny_model_dir):
    groups = groups_for(deep_tiny_model_dir, "full", learning_rate=1e-4, layer_lr_decay=1.0)

    encoder_rates = {group["lr"] for group in groups if group["name"] != "head"}
    assert encoder_rates == {1e-4}


def test_vectors_get_no_weight_decay(deep_tiny_model_dir):
    groups = groups_for(deep_tiny_model_dir, "ia3", weight_decay=0.1)

    for group in groups:
        vectors = all(p.ndim == 1 for p in group["params"])
        assert group["weight_decay"] == (0.0 if vectors else 0.1), group["name"]


def test_lora_groups_follow_blocks(deep_tiny_model_dir):
    groups = groups_for(
        deep_tiny_model_dir,
        "lora",
        learning_rate=1e-3,
        layer_lr_decay=3.0,
        target_modules=["query"],
    )

    by_name = {group["name"]: group for group in groups}
    assert set(by_name) == {"block 0", "block 1", "block 2", "block 3", "block 4", "head"}
    assert len(by_name["block 2"]["params"]) == 2
    assert by_name["block 2"]["lr"] == pytest.approx(1e-3 / 9)
