"""Bottleneck adapters h + W_up·σ(W_down·h + b_down) + b_up on a sublayer's output.

Houlsby et al. (2019, "Parameter-Efficient Transfer Learning for NLP", section 2.1) place one
adapter after the attention sublayer and one after the feed-forward sublayer, on the output of
the projection back to the hidden size and before the residual add and LayerNorm. Loraplex
applies it inside that projection's `AdaptedLinear`, so it also runs before the sublayer's
dropout. W_up and b_up start at zero, so an untrained adapter is the identity.

σ is ReLU for every adapter, so rows of different adapters share one batched matmul per
projection. Slot tables: `down_weight [S, m, h]`, `down_bias [S, m]`, `up_weight [S, h, m]`,
`up_bias [S, h]`. Bottleneck sizes below the table's m are padded with zeros, which is exact
because the padded columns of `up_weight` are zero.
"""

import torch
import torch.nn.functional as F
from torch import nn

from service.modeling.lora import AdapterRoute

ADAPTER_TENSORS = ("down_weight", "down_bias", "up_weight", "up_bias")


class BottleneckAdapter(nn.Module):
    """An adapter on activations `[B, T, hidden]`: trainable, or per serving slot."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.down: nn.Linear | None = None
        self.up: nn.Linear | None = None
        self.slot_tables: dict[str, torch.Tensor] | None = None
        self.filled_slots: set[int] = set()

    # trainable adapter

    def attach_trainable(self, bottleneck_size: int, device: torch.device) -> list[nn.Parameter]:
        """Create a trainable adapter whose up-projection is zero, and return its parameters."""
        if self.down is not None:
            raise ValueError("Attempted to attach an adapter, but this layer already has one.")
        self.down = nn.Linear(self.hidden_size, bottleneck_size, device=device)
        self.up = nn.Linear(bottleneck_size, self.hidden_size, device=device)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        return [*self.down.parameters(), *self.up.parameters()]

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """Return the trainable adapter's tensors, keyed as in `ADAPTER_TENSORS`."""
        assert self.down is not None and self.up is not None, "no trainable adapter attached"
        return {
            "down_weight": self.down.weight.detach().clone(),
            "down_bias": self.down.bias.detach().clone(),
            "up_weight": self.up.weight.detach().clone(),
            "up_bias": self.up.bias.detach().clone(),
        }

    # serving slot tables

    @property
    def num_slots(self) -> int:
        return 0 if self.slot_tables is None else self.slot_tables["down_bias"].shape[0]

    @property
    def slot_bottleneck(self) -> int:
        return 0 if self.slot_tables is None else self.slot_tables["down_bias"].shape[1]

    def ensure_slot_table(
        self,
        num_slots: int,
        bottleneck_size: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Grow the tables to at least `num_slots` slots of width `bottleneck_size`."""
        if self.num_slots >= num_slots and self.slot_bottleneck >= bottleneck_size:
            return
        slots = max(num_slots, self.num_slots)
        width = max(bottleneck_size, self.slot_bottleneck)
        hidden = self.hidden_size
        tables = {
            "down_weight": torch.zeros(slots, width, hidden, device=device, dtype=dtype),
            "down_bias": torch.zeros(slots, width, device=device, dtype=dtype),
            "up_weight": torch.zeros(slots, hidden, width, device=device, dtype=dtype),
            "up_bias": torch.zeros(slots, hidden, device=device, dtype=dtype),
        }
        if self.slot_tables is not None:
            old_slots, old_width = self.num_slots, self.slot_bottleneck
            tables["down_weight"][:old_slots, :old_width] = self.slot_tables["down_weight"]
            tables["down_bias"][:old_slots, :old_width] = self.slot_tables["down_bias"]
            tables["up_weight"][:old_slots, :, :old_width] = self.slot_tables["up_weight"]
            tables["up_bias"][:old_slots] = self.slot_tables["up_bias"]
        self.slot_tables = tables

    def write_slot(self, slot: int, tensors: dict[str, torch.Tensor]) -> None:
        """Copy one adapter's tensors (keys of `ADAPTER_TENSORS`) into `slot`."""
        width = tensors["down_bias"].shape[0]
        expected = {
            "down_weight": (width, self.hidden_size),
            "down_bias": (width,),
            "up_weight": (self.hidden_size, width),
            "up_bias": (self.hidden_size,),
        }
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                raise ValueError(
                    f"Adapter tensor {name} has shape {tuple(tensors[name].shape)}, but a "
                    f"bottleneck of {width} on width {self.hidden_size} needs {shape}."
                )
        assert self.slot_tables is not None, "call ensure_slot_table first"
        self.clear_slot(slot)
        tables = self.slot_tables
        tables["down_weight"][slot, :width] = tensors["down_weight"].to(tables["down_weight"])
        tables["down_bias"][slot, :width] = tensors["down_bias"].to(tables["down_bias"])
        tables["up_weight"][slot, :, :width] = tensors["up_weight"].to(tables["up_weight"])
        tables["up_bias"][slot] = tensors["up_bias"].to(tables["up_bias"])
        self.filled_slots.add(slot)

    def clear_slot(self, slot: int) -> None:
        if self.slot_tables is not None:
            for table in self.slot_tables.values():
                table[slot].zero_()
        self.filled_slots.discard(slot)

    def nbytes(self) -> int:
        return 0 if self.slot_tables is None else sum(t.nbytes for t in self.slot_tables.values())

    # forward

    def forward(self, h: torch.Tensor, route: AdapterRoute | None = None) -> torch.Tensor:
        if self.down is not None and self.up is not None:
            return h + self.up(F.relu(self.down(h)))
        if route is None or self.slot_tables is None or not (route.used & self.filled_slots):
            return h
        tables = self.slot_tables

        if route.single_slot is not None:
            slot = route.single_slot
            hidden = F.relu(
                F.linear(h, tables["down_weight"][slot].to(h.dtype), None)
                + tables["down_bias"][slot].to(h.dtype)
            )
            return (
                h
                + F.linear(hidden, tables["up_weight"][slot].to(h.dtype))
                + tables["up_bias"][slot].to(h.dtype)
            )

        # Mixed batch: h [B, T, hidden] @ down_rowsᵀ [B, hidden, m] -> [B, T, m] -> up.
        rows = {
            name: table.index_select(0, route.slots).to(h.dtype) for name, table in tables.items()
        }
        hidden = F.relu(
            torch.baddbmm(rows["down_bias"].unsqueeze(1), h, rows["down_weight"].transpose(1, 2))
        )
        update = torch.baddbmm(
            rows["up_bias"].unsqueeze(1), hidden, rows["up_weight"].transpose(1, 2)
        )
        return h + update
