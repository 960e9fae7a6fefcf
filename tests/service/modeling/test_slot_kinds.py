"""Per-slot tables of (IA)³ scales, bias shifts, LayerNorm changes and bottleneck adapters."""

import torch
import torch.nn.functional as F

from service.modeling.bottleneck import BottleneckAdapter
from service.modeling.lora import AdapterRoute
from service.modeling.vectors import LayerNormDelta, ScaleVector, ShiftVector


def mixed(route):
    return AdapterRoute(route.slots, single_slot=None, used=route.used)


def test_scale_rows_use_their_own_slot():
    scale = ScaleVector(4)
    scale.ensure_slot_table(3, torch.device("cpu"))
    vectors = {1: torch.tensor([1.0, 2.0, 3.0, 4.0]), 2: torch.tensor([0.5, 0.5, 0.5, 0.5])}
    for slot, vector in vectors.items():
        scale.write_slot(slot, vector)
    x = torch.randn(3, 5, 4)

    out = scale(x, AdapterRoute.for_rows([2, 0, 1]))

    assert torch.allclose(out[0], x[0] * vectors[2])
    assert torch.equal(out[1], x[1])
    assert torch.allclose(out[2], x[2] * vectors[1])


def test_single_slot_matches_mixed_path():
    shift = ShiftVector(4)
    shift.ensure_slot_table(2, torch.device("cpu"))
    shift.write_slot(1, torch.randn(4))
    x = torch.randn(2, 3, 4)
    route = AdapterRoute.for_rows([1, 1])

    assert torch.allclose(shift(x, route), shift(x, mixed(route)))
    assert torch.allclose(shift(x, route), x + shift.slot_table[1])


def test_cleared_and_grown_vectors_hold_identity():
    scale = ScaleVector(3)
    scale.ensure_slot_table(2, torch.device("cpu"))
    scale.write_slot(1, torch.tensor([2.0, 2.0, 2.0]))
    scale.ensure_slot_table(5, torch.device("cpu"))

    assert torch.equal(scale.slot_table[1], torch.full((3,), 2.0))
    assert torch.equal(scale.slot_table[4], torch.ones(3))
    scale.clear_slot(1)
    assert torch.equal(scale.slot_table[1], torch.ones(3))
    assert scale.filled_slots == set()


def test_trainable_vector_starts_at_identity():
    x = torch.randn(2, 3, 4)
    scale, shift = ScaleVector(4), ShiftVector(4)
    scale.attach_trainable(torch.device("cpu"), torch.float32)
    shift.attach_trainable(torch.device("cpu"), torch.float32)

    assert torch.equal(scale(x), x)
    assert torch.equal(shift(x), x)


def test_layer_norm_delta_matches_changed_layer_norm():
    norm = torch.nn.LayerNorm(6)
    torch.nn.init.normal_(norm.weight)
    delta = LayerNormDelta(6)
    delta.ensure_slot_table(3, torch.device("cpu"))
    weight_change, bias_change = torch.randn(6), torch.randn(6)
    delta.write_slot(2, weight_change, bias_change)
    pre_norm = torch.randn(2, 4, 6)

    with torch.no_grad():
        out = delta.apply(norm(pre_norm), pre_norm, norm.eps, AdapterRoute.for_rows([2, 0]))
        expected = F.layer_norm(
            pre_norm[0], (6,), norm.weight + weight_change, norm.bias + bias_change, norm.eps
        )

    assert torch.allclose(out[0], expected, atol=1e-5)
    assert torch.allclose(out[1], norm(pre_norm[1]), atol=1e-6)


def random_adapter(width, hidden=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "down_weight": torch.randn(width, hidden, generator=generator),
        "down_bias": torch.randn(width, generator=generator),
        "up_weight": torch.randn(hidden, width, generator=generator),
        "up_bias": torch.randn(hidden, generator=generator),
    }


def adapter_reference(h, tensors):
    hidden = F.relu(h @ tensors["down_weight"].T + tensors["down_bias"])
    return h + hidden @ tensors["up_weight"].T + tensors["up_bias"]


def test_adapter_rows_of_different_widths():
    adapter = BottleneckAdapter(6)
    adapters = {1: random_adapter(3, seed=1), 2: random_adapter(5, seed=2)}
    adapter.ensure_slot_table(3, 5, torch.device("cpu"))
    for slot, tensors in adapters.items():
        adapter.write_slot(slot, tensors)
    h = torch.randn(3, 4, 6)

    out = adapter(h, AdapterRoute.for_rows([1, 2, 0]))

    assert torch.allclose(out[0], adapter_reference(h[0], adapters[1]), atol=1e-5)
    assert torch.allclose(out[1], adapter_reference(h[1], adapters[2]), atol=1e-5)
    assert torch.equal(out[2], h[2])
    single = adapter(h[:1], AdapterRoute.for_rows([1]))
    assert torch.allclose(single[0], out[0], atol=1e-5)


def test_adapter_grows_and_clears():
    adapter = BottleneckAdapter(6)
    tensors = random_adapter(2)
    adapter.ensure_slot_table(2, 2, torch.device("cpu"))
    adapter.write_slot(1, tensors)
    h = torch.randn(1, 3, 6)
    before = adapter(h, AdapterRoute.for_rows([1]))

    adapter.ensure_slot_table(6, 8, torch.device("cpu"))
    assert torch.allclose(adapter(h, AdapterRoute.for_rows([1])), before, atol=1e-6)

    adapter.clear_slot(1)
    assert torch.equal(adapter(h, AdapterRoute.for_rows([1])), h)


def test_untrained_adapter_is_identity():
    adapter = BottleneckAdapter(6)
    adapter.attach_trainable(4, torch.device("cpu"))
    h = torch.randn(2, 3, 6)

    assert torch.equal(adapter(h), h)
