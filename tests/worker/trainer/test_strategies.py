"""Which encoder parameters each strategy trains, and that added modules start as identity."""

import pytest
import torch

from service.hyperparameters import parse_hyperparameters
from service.modeling.base import build_encoder, read_base_model_spec
from worker.trainer.strategies import STRATEGY_CLASSES, build_strategy


def prepared(model_dir, strategy, **values):
    encoder = build_encoder(read_base_model_spec(model_dir))
    instance = build_strategy(strategy, parse_hyperparameters(strategy, values))
    instance.prepare(encoder)
    return encoder, instance


def trainable_names(encoder):
    return {name for name, p in encoder.named_parameters() if p.requires_grad}


def block_names(encoder, blocks):
    return {
        name
        for name, _ in encoder.named_parameters()
        if name.startswith("encoder.layer.") and int(name.split(".")[2]) in blocks
    }


def test_every_strategy_has_a_class():
    assert set(STRATEGY_CLASSES) == {
        "lora",
        "adapter",
        "ia3",
        "linear_probe",
        "freeze_bottom",
        "gradual_unfreeze",
        "full",
    }


def test_lora_trains_only_its_targets(deep_tiny_model_dir):
    encoder, _ = prepared(deep_tiny_model_dir, "lora", target_modules=["query", "value"])

    expected = {
        f"encoder.layer.{i}.attention.self.{target}.lora_{factor}"
        for i in range(5)
        for target in ("query", "value")
        for factor in "AB"
    }
    assert trainable_names(encoder) == expected


def test_lora_rslora_scale(deep_tiny_model_dir):
    encoder, _ = prepared(deep_tiny_model_dir, "lora", lora_rank=4, lora_alpha=8, use_rslora=True)

    layer = encoder.adapted_layers(["query"])["encoder.layer.0.attention.self.query"]
    assert layer.lora_scale == pytest.approx(8 / 2)


def test_adapter_trains_only_bottlenecks(deep_tiny_model_dir):
    encoder, _ = prepared(deep_tiny_model_dir, "adapter", bottleneck_size=7)

    names = trainable_names(encoder)
    assert len(names) == 5 * 2 * 4  # blocks x (attention, feed-forward) x (down, up) x (W, b)
    assert all(".output_adapter." in name for name in names)
    assert all(
        name.split(".output_adapter.")[0].endswith(("attention.output.dense", ".output.dense"))
        for name in names
    )
    down = encoder.get_submodule("encoder.layer.0.output.dense.output_adapter.down")
    assert down.weight.shape == (7, 32)


def test_ia3_trains_key_value_and_feed_forward_scales(deep_tiny_model_dir):
    encoder, _ = prepared(deep_tiny_model_dir, "ia3")

    expected = set()
    for i in range(5):
        expected.add(f"encoder.layer.{i}.attention.self.key.output_scale.trainable")
        expected.add(f"encoder.layer.{i}.attention.self.value.output_scale.trainable")
        expected.add(f"encoder.layer.{i}.output.dense.input_scale.trainable")
    assert trainable_names(encoder) == expected
    assert all(torch.equal(p, torch.ones_like(p)) for p in encoder.parameters() if p.requires_grad)


def test_linear_probe_trains_no_encoder_weight(deep_tiny_model_dir):
    encoder, strategy = prepared(deep_tiny_model_dir, "linear_probe")

    assert trainable_names(encoder) == set()
    assert strategy.trainable_parameters(encoder) == {}
    assert strategy.uses_cached_features


def test_freeze_bottom_freezes_embeddings_and_bottom_blocks(deep_tiny_model_dir):
    encoder, _ = prepared(deep_tiny_model_dir, "freeze_bottom", frozen_blocks=3)

    assert trainable_names(encoder) == block_names(encoder, {3, 4})
    assert not any(p.requires_grad for p in encoder.embeddings.parameters())


def test_freeze_bottom_rejects_more_blocks_than_base(deep_tiny_model_dir):
    with pytest.raises(ValueError, match="frozen_blocks is 6, but the base model has only 5"):
        prepared(deep_tiny_model_dir, "freeze_bottom", frozen_blocks=6)


def test_gradual_unfreeze_adds_one_block_per_epoch(deep_tiny_model_dir):
    encoder, strategy = prepared(deep_tiny_model_dir, "gradual_unfreeze", epochs=7)

    assert trainable_names(encoder) == set()
    for epoch, blocks in [(1, {4}), (2, {3, 4}), (3, {2, 3, 4}), (5, set(range(5)))]:
        strategy.start_epoch(encoder, epoch)
        assert trainable_names(encoder) == block_names(encoder, blocks), f"epoch {epoch}"
    strategy.start_epoch(encoder, 6)
    assert not any(p.requires_grad for p in encoder.embeddings.parameters())
    strategy.start_epoch(encoder, 0)
    assert trainable_names(encoder) == set()


def test_gradual_unfreeze_lists_blocks_it_will_reach(deep_tiny_model_dir):
    encoder, strategy = prepared(deep_tiny_model_dir, "gradual_unfreeze", epochs=3)

    assert set(strategy.trainable_parameters(encoder)) == block_names(encoder, {3, 4})


def test_full_trains_everything(deep_tiny_model_dir):
    encoder, _ = prepared(deep_tiny_model_dir, "full")

    assert trainable_names(encoder) == {name for name, _ in encoder.named_parameters()}


@pytest.mark.parametrize("strategy", ["adapter", "ia3", "lora"])
def test_untrained_modules_leave_outputs_unchanged(deep_tiny_model_dir, strategy):
    base = build_encoder(read_base_model_spec(deep_tiny_model_dir))
    encoder, _ = prepared(deep_tiny_model_dir, strategy)
    input_ids = torch.tensor([[101, 7592, 2088, 999, 102], [101, 2307, 102, 0, 0]])
    mask = (input_ids != 0).long()

    with torch.no_grad():
        assert torch.equal(encoder.eval()(input_ids, mask), base(input_ids, mask))
