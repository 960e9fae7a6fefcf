"""Writing a delta's tensors into, and clearing them from, the encoder's serving slots."""

from service.modeling.delta import Delta
from service.modeling.lora import AdaptedLinear


def write_delta_to_slot(
    layers: dict[str, AdaptedLinear], slot: int, delta: Delta, num_slots: int
) -> None:
    """Copy every per-layer tensor of `delta` into `slot` of the layers it targets.

    `layers` maps module paths to the encoder's adapted layers; slot tables grow to
    `num_slots` slots and to the delta's rank where needed.
    """
    unknown = sorted(set(delta.lora) - set(layers))
    if unknown:
        raise ValueError(f"Delta targets layers the base model lacks, for example {unknown[:2]}.")
    rank = delta.lora_rank
    for path, (lora_A, lora_B) in delta.lora.items():
        layer = layers[path]
        layer.ensure_slot_table(num_slots, rank)
        layer.write_slot(slot, lora_A, lora_B, delta.lora_scale)


def clear_slot(layers: dict[str, AdaptedLinear], slot: int) -> None:
    """Zero `slot` in every layer, so the slot can take another delta."""
    for layer in layers.values():
        layer.clear_slot(slot)


def grow_slot_tables(layers: dict[str, AdaptedLinear], num_slots: int) -> None:
    """Grow the allocated slot tables to `num_slots` slots, keeping their contents."""
    for layer in layers.values():
        if layer.slot_A is not None:
            layer.ensure_slot_table(num_slots, layer.slot_rank)
