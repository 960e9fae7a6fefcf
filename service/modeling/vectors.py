"""Per-feature vectors that scale or shift a layer's activations, trainable or per serving slot.

`ScaleVector` multiplies activations `[..., size]` by a vector (the (IA)³ scales of keys,
values and the feed-forward activation; ones leave the layer unchanged). `ShiftVector` adds a
vector (the change of a bias that a compressed dense update carries; zeros leave it
unchanged). `LayerNormDelta` adds per-slot changes of a LayerNorm's weight and bias.

Like `AdaptedLinear`'s LoRA tables, each has either one trainable vector (in the trainer's copy
of the encoder) or a slot table `[S, size]` whose row s serves slot s. Every row holds the
identity until a slot is written, so slot 0 always leaves activations unchanged.
"""

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from service.modeling.lora import AdapterRoute


class SlotVector(nn.Module, ABC):
    """A vector combined elementwise with activations `[B, T, size]`, by a subclass's rule."""

    identity: float

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.trainable: nn.Parameter | None = None
        self.slot_table: torch.Tensor | None = None
        self.filled_slots: set[int] = set()

    @abstractmethod
    def combine(self, x: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """Return `x` with `vector` applied: scaled by it or shifted by it."""

    # trainable vector

    def attach_trainable(self, device: torch.device, dtype: torch.dtype) -> nn.Parameter:
        """Create the trainable vector at the identity and return it."""
        if self.trainable is not None:
            raise ValueError("Attempted to attach a trainable vector, but one is attached.")
        self.trainable = nn.Parameter(
            torch.full((self.size,), self.identity, device=device, dtype=dtype)
        )
        return self.trainable

    # serving slot table

    @property
    def num_slots(self) -> int:
        return 0 if self.slot_table is None else self.slot_table.shape[0]

    def ensure_slot_table(
        self, num_slots: int, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> None:
        """Grow the table to at least `num_slots` rows, filling new rows with the identity."""
        if self.num_slots >= num_slots:
            return
        table = torch.full((num_slots, self.size), self.identity, device=device, dtype=dtype)
        if self.slot_table is not None:
            table[: self.num_slots] = self.slot_table
        self.slot_table = table

    def write_slot(self, slot: int, vector: torch.Tensor) -> None:
        if vector.shape != (self.size,):
            raise ValueError(
                f"Vector of shape {tuple(vector.shape)} does not fit a layer of width {self.size}."
            )
        assert self.slot_table is not None, "call ensure_slot_table first"
        self.slot_table[slot] = vector.to(self.slot_table)
        self.filled_slots.add(slot)

    def clear_slot(self, slot: int) -> None:
        if slot in self.filled_slots and self.slot_table is not None:
            self.slot_table[slot] = self.identity
        self.filled_slots.discard(slot)

    # forward

    def forward(self, x: torch.Tensor, route: AdapterRoute | None = None) -> torch.Tensor:
        if self.trainable is not None:
            return self.combine(x, self.trainable.to(x.dtype))
        if route is None or self.slot_table is None or not (route.used & self.filled_slots):
            return x
        if route.single_slot is not None:
            return self.combine(x, self.slot_table[route.single_slot].to(x.dtype))
        # Mixed batch: each row's vector [B, size], broadcast over the positions of its row.
        rows = self.slot_table.index_select(0, route.slots).to(x.dtype)
        return self.combine(x, rows.view(rows.shape[0], *([1] * (x.dim() - 2)), self.size))


class ScaleVector(SlotVector):
    """Multiplies activations by a vector: the (IA)³ rescaling (Liu et al., 2022)."""

    identity = 1.0

    def combine(self, x: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        return x * vector


class ShiftVector(SlotVector):
    """Adds a vector to activations: a served change of a linear layer's bias."""

    identity = 0.0

    def combine(self, x: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        return x + vector


class LayerNormDelta:
    """Per-slot changes (dγ, dβ) of a LayerNorm: LN'(z) = norm(z)·(γ + dγ) + β + dβ.

    Only the serving path uses it. Rows of a slot whose delta changed this LayerNorm get
    `norm(z)·dγ + dβ` added to the frozen LayerNorm's output. It stores tensors, not
    parameters, so it is a plain object that the adapted layer before the norm refers to.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.weight = ShiftVector(size)
        self.bias = ShiftVector(size)

    @property
    def filled_slots(self) -> set[int]:
        return self.weight.filled_slots

    def ensure_slot_table(
        self, num_slots: int, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> None:
        self.weight.ensure_slot_table(num_slots, device, dtype)
        self.bias.ensure_slot_table(num_slots, device, dtype)

    def write_slot(self, slot: int, weight_delta: torch.Tensor, bias_delta: torch.Tensor) -> None:
        self.weight.write_slot(slot, weight_delta)
        self.bias.write_slot(slot, bias_delta)

    def clear_slot(self, slot: int) -> None:
        self.weight.clear_slot(slot)
        self.bias.clear_slot(slot)

    def apply(
        self,
        normed: torch.Tensor,
        pre_norm: torch.Tensor,
        eps: float,
        route: AdapterRoute | None,
    ) -> torch.Tensor:
        """Return the LayerNorm output `normed` with the routed slots' changes added.

        `pre_norm` is the LayerNorm's input and `eps` its epsilon.
        """
        if route is None or not (route.used & self.filled_slots):
            return normed
        standardized = F.layer_norm(pre_norm, (self.size,), eps=eps).to(normed.dtype)
        zeros = torch.zeros_like(normed)
        return normed + self.weight(zeros, route) * standardized + self.bias(zeros, route)

    def nbytes(self) -> int:
        tables = (self.weight.slot_table, self.bias.slot_table)
        return sum(t.nbytes for t in tables if t is not None)
