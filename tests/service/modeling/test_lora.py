import pytest
import torch

from service.modeling.lora import AdaptedLinear, AdapterRoute


def make_layer(in_features=6, out_features=5):
    torch.manual_seed(0)
    layer = AdaptedLinear(in_features, out_features)
    torch.nn.init.normal_(layer.weight)
    return layer


def random_lora(rank, in_features=6, out_features=5):
    return torch.randn(rank, in_features), torch.randn(out_features, rank)


def test_untrained_lora_leaves_output_unchanged():
    layer = make_layer()
    x = torch.randn(2, 3, 6)
    before = layer(x)

    layer.attach_lora(rank=4, alpha=8, dropout=0.0)

    assert torch.equal(layer(x), before)


def test_mixed_rows_match_each_adapter_alone():
    layer = make_layer()
    adapters = {1: random_lora(2), 2: random_lora(4), 3: random_lora(3)}
    layer.ensure_slot_table(num_slots=4, rank=4)
    for slot, (lora_A, lora_B) in adapters.items():
        layer.write_slot(slot, lora_A, lora_B, scale=0.5)
    x = torch.randn(4, 3, 6)
    slots = [2, 0, 1, 3]

    mixed = layer(x, AdapterRoute.for_rows(slots))

    for row, slot in enumerate(slots):
        expected = x[row] @ layer.weight.T + layer.bias
        if slot:
            lora_A, lora_B = adapters[slot]
            expected = expected + 0.5 * (x[row] @ lora_A.T) @ lora_B.T
        assert torch.allclose(mixed[row], expected, atol=1e-5), f"row {row} (slot {slot})"


def test_single_slot_fast_path_matches_mixed_path():
    layer = make_layer()
    lora_A, lora_B = random_lora(3)
    layer.ensure_slot_table(num_slots=2, rank=8)
    layer.write_slot(1, lora_A, lora_B, scale=2.0)
    x = torch.randn(3, 4, 6)
    route = AdapterRoute.for_rows([1, 1, 1])
    mixed_route = AdapterRoute(route.slots, single_slot=None, used=route.used)

    assert route.single_slot == 1
    assert torch.allclose(layer(x, route), layer(x, mixed_route), atol=1e-5)


def test_slot_zero_is_the_base_output():
    layer = make_layer()
    layer.ensure_slot_table(num_slots=2, rank=2)
    layer.write_slot(1, *random_lora(2), scale=1.0)
    x = torch.randn(2, 3, 6)

    assert torch.allclose(layer(x, AdapterRoute.for_rows([0, 0])), layer(x), atol=1e-6)


def test_growing_slot_table_keeps_contents():
    layer = make_layer()
    layer.ensure_slot_table(num_slots=2, rank=2)
    layer.write_slot(1, *random_lora(2), scale=1.0)
    x = torch.randn(1, 3, 6)
    before = layer(x, AdapterRoute.for_rows([1]))

    layer.ensure_slot_table(num_slots=8, rank=6)

    assert layer.num_slots == 8
    assert layer.slot_rank == 6
    assert torch.allclose(layer(x, AdapterRoute.for_rows([1])), before, atol=1e-6)


def test_cleared_slot_adds_nothing():
    layer = make_layer()
    layer.ensure_slot_table(num_slots=2, rank=2)
    layer.write_slot(1, *random_lora(2), scale=1.0)
    x = torch.randn(1, 3, 6)

    layer.clear_slot(1)

    assert torch.allclose(layer(x, AdapterRoute.for_rows([1])), layer(x), atol=1e-6)


def test_write_slot_rejects_wrong_shapes():
    layer = make_layer()
    layer.ensure_slot_table(num_slots=2, rank=2)

    with pytest.raises(ValueError, match="do not fit a 6->5 layer"):
        layer.write_slot(1, torch.randn(2, 7), torch.randn(5, 2), scale=1.0)
