"""Writing a delta's tensors into, and clearing them from, the encoder's serving slots.

Every per-layer tensor kind of a delta has its slot table on the adapted linear layer it acts
on: LoRA factors (`slot_A`, `slot_B`), (IA)³ scales, bias shifts, bottleneck adapters, and
the changes of the LayerNorm after the layer's residual add. A table is allocated on the first
delta that needs it and every row of it is the identity until written.
"""

import torch

from service.modeling.bottleneck import BottleneckAdapter
from service.modeling.delta import Delta
from service.modeling.lora import AdaptedLinear
from service.modeling.vectors import LayerNormDelta, ScaleVector, ShiftVector


def norm_layer_path(layer_norm_path: str) -> str:
    """Return the path of the adapted layer whose residual add feeds this LayerNorm.

    `encoder.layer.3.output.LayerNorm` follows `encoder.layer.3.output.dense`.
    """
    if not layer_norm_path.endswith(".LayerNorm"):
        raise ValueError(f"{layer_norm_path!r} is not the path of a block's LayerNorm.")
    return layer_norm_path.removesuffix(".LayerNorm") + ".dense"


def delta_layer_paths(delta: Delta) -> set[str]:
    """Return the paths of the adapted layers that `delta` writes into."""
    paths = set(delta.lora) | set(delta.input_scale) | set(delta.output_scale)
    paths |= set(delta.bias) | set(delta.adapters)
    paths |= {norm_layer_path(path) for path in delta.layer_norm}
    return paths


def write_delta_to_slot(
    layers: dict[str, AdaptedLinear], slot: int, delta: Delta, num_slots: int
) -> None:
    """Copy every per-layer tensor of `delta` into `slot` of the layers it targets.

    `layers` maps module paths to the encoder's adapted layers; slot tables grow to
    `num_slots` slots and to the delta's rank (or bottleneck size) where needed.

    Raises:
        ValueError: the delta targets layers the base lacks, or it contains a dense update
            (served by `service.modeling.dense.build_dedicated_encoder` instead), or `slot` is
            0, which must stay the identity.
    """
    if delta.dense:
        raise ValueError(
            "Delta contains a dense encoder update (keep_dense), which slots cannot serve. "
            "Serve it with service.modeling.dense.build_dedicated_encoder."
        )
    try:
        paths = delta_layer_paths(delta)
    except ValueError as exc:
        raise ValueError(f"Delta has an invalid LayerNorm path: {exc}") from exc
    unknown = sorted(paths - set(layers))
    if unknown:
        raise ValueError(f"Delta targets layers the base model lacks, for example {unknown[:2]}.")
    if slot == 0 and paths:
        raise ValueError("Slot 0 is the identity for rows without an adapter, so use another slot.")

    rank = delta.lora_rank
    for path, (lora_A, lora_B) in delta.lora.items():
        layer = layers[path]
        layer.ensure_slot_table(num_slots, rank)
        layer.write_slot(slot, lora_A, lora_B, delta.lora_scale)

    for path, vector in delta.input_scale.items():
        layer = layers[path]
        layer.input_scale = layer.input_scale or ScaleVector(layer.in_features)
        _write_vector(layer.input_scale, layer, slot, vector, num_slots)
    for path, vector in delta.output_scale.items():
        layer = layers[path]
        layer.output_scale = layer.output_scale or ScaleVector(layer.out_features)
        _write_vector(layer.output_scale, layer, slot, vector, num_slots)
    for path, vector in delta.bias.items():
        layer = layers[path]
        layer.bias_shift = layer.bias_shift or ShiftVector(layer.out_features)
        _write_vector(layer.bias_shift, layer, slot, vector, num_slots)

    bottleneck = delta.adapter_bottleneck
    for path, tensors in delta.adapters.items():
        layer = layers[path]
        layer.output_adapter = layer.output_adapter or BottleneckAdapter(layer.out_features)
        layer.output_adapter.ensure_slot_table(num_slots, bottleneck, layer.weight.device)
        layer.output_adapter.write_slot(slot, tensors)

    for path, (weight_delta, bias_delta) in delta.layer_norm.items():
        layer = layers[norm_layer_path(path)]
        layer.norm_delta = layer.norm_delta or LayerNormDelta(layer.out_features)
        layer.norm_delta.ensure_slot_table(num_slots, layer.weight.device)
        layer.norm_delta.write_slot(slot, weight_delta, bias_delta)


def _write_vector(
    table: ScaleVector | ShiftVector,
    layer: AdaptedLinear,
    slot: int,
    vector: torch.Tensor,
    num_slots: int,
) -> None:
    table.ensure_slot_table(num_slots, layer.weight.device)
    table.write_slot(slot, vector)


def clear_slot(layers: dict[str, AdaptedLinear], slot: int) -> None:
    """Reset `slot` to the identity in every layer, so the slot can take another delta."""
    for layer in layers.values():
        layer.clear_slot(slot)
        for extension in layer.slot_extensions():
            extension.clear_slot(slot)


def grow_slot_tables(layers: dict[str, AdaptedLinear], num_slots: int) -> None:
    """Grow the allocated slot tables to `num_slots` slots, keeping their contents."""
    for layer in layers.values():
        if layer.slot_A is not None:
            layer.ensure_slot_table(num_slots, layer.slot_rank)
        device = layer.weight.device
        for extension in layer.slot_extensions():
            if isinstance(extension, BottleneckAdapter):
                if extension.slot_tables is not None:
                    extension.ensure_slot_table(num_slots, extension.slot_bottleneck, device)
            elif isinstance(extension, LayerNormDelta):
                extension.ensure_slot_table(num_slots, device)
            elif extension.slot_table is not None:
                extension.ensure_slot_table(num_slots, device)


def slot_table_bytes(layers: dict[str, AdaptedLinear]) -> int:
    """Return the bytes of every slot table of `layers`, LoRA and the other kinds."""
    total = 0
    for layer in layers.values():
        if layer.slot_A is not None and layer.slot_B is not None:
            total += layer.slot_A.nbytes + layer.slot_B.nbytes
        for extension in layer.slot_extensions():
            if isinstance(extension, BottleneckAdapter | LayerNormDelta):
                total += extension.nbytes()
            elif extension.slot_table is not None:
                total += extension.slot_table.nbytes
    return total
