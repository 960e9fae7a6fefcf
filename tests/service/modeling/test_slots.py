"""Writing deltas of every kind into an encoder's slots, and clearing them."""

import pytest
import torch

from service.modeling.base import build_encoder, read_base_model_spec
from service.modeling.delta import Delta, deserialize_delta, serialize_delta
from service.modeling.dense import merge_delta_into_encoder
from service.modeling.lora import AdapterRoute
from service.modeling.slots import (
    clear_slot,
    grow_slot_tables,
    slot_table_bytes,
    write_delta_to_slot,
)

BLOCK = "encoder.layer.1"
INPUT_IDS = torch.tensor([[101, 7592, 2088, 999, 102], [101, 2307, 3185, 102, 0]])
MASK = (INPUT_IDS != 0).long()


def make_delta(**kinds) -> Delta:
    return Delta(
        strategy="test",
        task_type="text_classification",
        labels=["a", "b"],
        base_fingerprint="f" * 64,
        pooling="cls",
        max_length=32,
        **kinds,
    )


def vector_delta(seed=0) -> Delta:
    generator = torch.Generator().manual_seed(seed)

    def noise(*shape):
        return 0.3 * torch.randn(*shape, generator=generator)

    return make_delta(
        lora={f"{BLOCK}.attention.self.query": (noise(2, 32), noise(32, 2))},
        lora_scale=1.0,
        output_scale={f"{BLOCK}.attention.self.value": 1 + noise(32)},
        input_scale={f"{BLOCK}.output.dense": 1 + noise(64)},
        bias={f"{BLOCK}.intermediate.dense": noise(64)},
        layer_norm={f"{BLOCK}.attention.output.LayerNorm": (noise(32), noise(32))},
    )


@pytest.fixture
def encoder(tiny_model_dir):
    return build_encoder(read_base_model_spec(tiny_model_dir))


def test_serialized_delta_keeps_every_kind():
    delta = vector_delta()
    delta.adapters = {
        f"{BLOCK}.output.dense": {
            "down_weight": torch.randn(4, 32),
            "down_bias": torch.randn(4),
            "up_weight": torch.randn(32, 4),
            "up_bias": torch.randn(32),
        }
    }

    restored = deserialize_delta(serialize_delta(delta))

    for kind in ("input_scale", "output_scale", "bias"):
        assert getattr(restored, kind).keys() == getattr(delta, kind).keys(), kind
    weight_change, _ = restored.layer_norm[f"{BLOCK}.attention.output.LayerNorm"]
    assert torch.equal(weight_change, delta.layer_norm[f"{BLOCK}.attention.output.LayerNorm"][0])
    assert torch.equal(
        restored.adapters[f"{BLOCK}.output.dense"]["up_weight"],
        delta.adapters[f"{BLOCK}.output.dense"]["up_weight"],
    )
    assert restored.nbytes == delta.nbytes
    assert restored.has_encoder_update


def test_lora_only_delta_keeps_format_version_1():
    delta = make_delta(lora={"x": (torch.zeros(1, 2), torch.zeros(2, 1))})

    assert b"loraplex-delta/1" in serialize_delta(delta)[:400]


def test_slots_serve_what_merging_computes(tiny_model_dir, encoder):
    delta = vector_delta()
    merged = build_encoder(read_base_model_spec(tiny_model_dir))
    merge_delta_into_encoder(merged, delta)
    layers = encoder.adapted_layers()

    write_delta_to_slot(layers, 3, delta, num_slots=4)
    with torch.no_grad():
        served = encoder(INPUT_IDS, MASK, route=AdapterRoute.for_rows([3, 0]))
        expected = merged(INPUT_IDS, MASK)
        base = encoder(INPUT_IDS, MASK)

    assert torch.allclose(served[0], expected[0], atol=1e-5)
    assert torch.allclose(served[1], base[1], atol=1e-6)


def test_clear_slot_restores_base(encoder):
    layers = encoder.adapted_layers()
    with torch.no_grad():
        base = encoder(INPUT_IDS, MASK)
    write_delta_to_slot(layers, 1, vector_delta(), num_slots=2)
    grow_slot_tables(layers, 6)
    assert slot_table_bytes(layers) > 0

    clear_slot(layers, 1)
    with torch.no_grad():
        served = encoder(INPUT_IDS, MASK, route=AdapterRoute.for_rows([1, 1]))

    assert torch.allclose(served, base, atol=1e-6)


def test_slot_zero_refuses_encoder_tensors(encoder):
    with pytest.raises(ValueError, match="Slot 0 is the identity"):
        write_delta_to_slot(encoder.adapted_layers(), 0, vector_delta(), num_slots=2)


def test_dense_delta_is_refused_by_slots(encoder):
    delta = make_delta(dense={"encoder.layer.0.output.dense.bias": torch.zeros(32)})

    with pytest.raises(ValueError, match="build_dedicated_encoder"):
        write_delta_to_slot(encoder.adapted_layers(), 1, delta, num_slots=2)


def test_unknown_layer_norm_path_is_refused(encoder):
    delta = make_delta(layer_norm={"embeddings.LayerNorm": (torch.zeros(32), torch.zeros(32))})

    with pytest.raises(ValueError, match="targets layers the base model lacks"):
        write_delta_to_slot(encoder.adapted_layers(), 1, delta, num_slots=2)
