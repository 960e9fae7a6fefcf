"""Linear layers that add low-rank deltas to a frozen base weight.

An `AdaptedLinear` computes base(x) and, on top of it, one of:

* a trainable LoRA update scale·(dropout(x)·Aᵀ)·Bᵀ, attached by the trainer;
* per-row deltas from a slot table, selected by an `AdapterRoute`: row i of the batch adds
  (x_i·A[s_i]ᵀ)·B[s_i]ᵀ, where s_i is that row's slot. Slot 0 is the zero delta.

The slot tables live in the layer, but which slot a row uses is passed with each forward call,
so two concurrent calls never share an "active adapter" setting.

The same layer also carries the other strategies' deltas, each trainable or per slot, and each
the identity until set. They are an (IA)³ scale of the input or output
(`service.modeling.vectors`), a bias shift, a bottleneck adapter on the output
(`service.modeling.bottleneck`), and the changes of the LayerNorm that follows the layer's
residual add (applied by the encoder block).
"""

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from service.modeling.bottleneck import BottleneckAdapter
    from service.modeling.vectors import LayerNormDelta, ScaleVector, ShiftVector


@dataclass(frozen=True)
class AdapterRoute:
    """Per-call adapter selection for a batch.

    Attributes:
        slots: `LongTensor[B]`, the slot of each row (0 means no adapter).
        single_slot: the slot shared by every row, or None for a mixed batch. It selects the
            fast path that multiplies by one adapter without gathering per row.
        used: the distinct slots in `slots`, so layers that none of them adapt are skipped.
    """

    slots: torch.Tensor
    single_slot: int | None
    used: frozenset[int]

    @classmethod
    def for_rows(cls, slots: list[int], device: torch.device | str = "cpu") -> "AdapterRoute":
        used = frozenset(slots)
        single = next(iter(used)) if len(used) == 1 else None
        return cls(torch.tensor(slots, dtype=torch.long, device=device), single, used)


class AdaptedLinear(nn.Module):
    """A frozen `nn.Linear` with an optional trainable LoRA update and a serving slot table.

    Shapes: input `[..., in_features]`, output `[..., out_features]`. Slot tables are
    `slot_A: [S, R, in_features]` and `slot_B: [S, out_features, R]`, with the LoRA scale
    folded into `slot_B` and ranks below R padded with zeros, which leaves the product exact.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

        # Trainable update, present only in a trainer's copy of the encoder.
        self.lora_A: nn.Parameter | None = None
        self.lora_B: nn.Parameter | None = None
        self.lora_scale = 0.0
        self.lora_dropout: nn.Module = nn.Identity()

        # Serving slot table; allocated on the first adapter that targets this layer.
        self.slot_A: torch.Tensor | None = None
        self.slot_B: torch.Tensor | None = None
        self.filled_slots: set[int] = set()

        # Other strategies' updates, trainable or per slot; None until a trainer or a slot
        # write sets them. Applied in this order: input scale, linear (+ LoRA), bias shift,
        # output scale, bottleneck adapter.
        self.input_scale: ScaleVector | None = None
        self.bias_shift: ShiftVector | None = None
        self.output_scale: ScaleVector | None = None
        self.output_adapter: BottleneckAdapter | None = None
        # Per-slot changes of the LayerNorm after this layer's residual add: set only on the
        # output projections of `ResidualOutput`, which applies them.
        self.norm_delta: LayerNormDelta | None = None

    # trainable LoRA

    def attach_lora(
        self, rank: int, alpha: float, dropout: float, use_rslora: bool = False
    ) -> None:
        """Attach a trainable update B·A, with B zero so the layer starts unchanged."""
        if self.lora_A is not None:
            raise ValueError("Attempted to attach a LoRA update, but this layer already has one.")
        device, dtype = self.weight.device, self.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=device, dtype=dtype))
        # Kaiming-uniform A and zero B, as in the LoRA paper (Hu et al., 2021, section 4.1).
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_scale = alpha / math.sqrt(rank) if use_rslora else alpha / rank
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def detach_lora(self) -> None:
        self.lora_A = None
        self.lora_B = None
        self.lora_scale = 0.0
        self.lora_dropout = nn.Identity()

    # serving slot table

    @property
    def slot_rank(self) -> int:
        return 0 if self.slot_A is None else self.slot_A.shape[1]

    @property
    def num_slots(self) -> int:
        return 0 if self.slot_A is None else self.slot_A.shape[0]

    def ensure_slot_table(self, num_slots: int, rank: int) -> None:
        """Grow the slot table to at least `num_slots` slots of rank `rank`, keeping contents."""
        if self.num_slots >= num_slots and self.slot_rank >= rank:
            return
        new_slots, new_rank = max(num_slots, self.num_slots), max(rank, self.slot_rank)
        device, dtype = self.weight.device, self.weight.dtype
        slot_A = torch.zeros(new_slots, new_rank, self.in_features, device=device, dtype=dtype)
        slot_B = torch.zeros(new_slots, self.out_features, new_rank, device=device, dtype=dtype)
        if self.slot_A is not None and self.slot_B is not None:
            slot_A[: self.num_slots, : self.slot_rank] = self.slot_A
            slot_B[: self.num_slots, :, : self.slot_rank] = self.slot_B
        self.slot_A, self.slot_B = slot_A, slot_B

    def write_slot(
        self, slot: int, lora_A: torch.Tensor, lora_B: torch.Tensor, scale: float
    ) -> None:
        """Copy one adapter's `lora_A: [r, in]` and `lora_B: [out, r]` into `slot`."""
        rank = lora_A.shape[0]
        if lora_A.shape != (rank, self.in_features) or lora_B.shape != (self.out_features, rank):
            raise ValueError(
                f"LoRA shapes {tuple(lora_A.shape)} and {tuple(lora_B.shape)} do not fit a "
                f"{self.in_features}->{self.out_features} layer."
            )
        assert self.slot_A is not None and self.slot_B is not None, "call ensure_slot_table first"
        self.slot_A[slot].zero_()
        self.slot_B[slot].zero_()
        self.slot_A[slot, :rank] = lora_A.to(self.slot_A.dtype)
        self.slot_B[slot, :, :rank] = (lora_B * scale).to(self.slot_B.dtype)
        self.filled_slots.add(slot)

    def clear_slot(self, slot: int) -> None:
        if slot in self.filled_slots and self.slot_A is not None and self.slot_B is not None:
            self.slot_A[slot].zero_()
            self.slot_B[slot].zero_()
        self.filled_slots.discard(slot)

    def slot_extensions(self) -> list:
        """Return the per-slot objects other than the LoRA tables that this layer holds."""
        candidates = (
            self.input_scale,
            self.bias_shift,
            self.output_scale,
            self.output_adapter,
            self.norm_delta,
        )
        return [extension for extension in candidates if extension is not None]

    # forward

    def forward(self, x: torch.Tensor, route: AdapterRoute | None = None) -> torch.Tensor:
        if self.input_scale is not None:
            x = self.input_scale(x, route)
        out = self._forward_lora(x, route)
        if self.bias_shift is not None:
            out = self.bias_shift(out, route)
        if self.output_scale is not None:
            out = self.output_scale(out, route)
        if self.output_adapter is not None:
            out = self.output_adapter(out, route)
        return out

    def _forward_lora(self, x: torch.Tensor, route: AdapterRoute | None) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)

        if self.lora_A is not None and self.lora_B is not None:
            update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)
            return out + self.lora_scale * update

        if route is None or self.slot_A is None or self.slot_B is None:
            return out
        if not (route.used & self.filled_slots):
            return out

        if route.single_slot is not None:
            # Fast path: one adapter for the whole batch, two plain matmuls.
            lora_A = self.slot_A[route.single_slot].to(x.dtype)
            lora_B = self.slot_B[route.single_slot].to(x.dtype)
            return out + F.linear(F.linear(x, lora_A), lora_B)

        # Mixed batch: gather each row's A and B (casting only the gathered rows under
        # autocast), then batched matmuls over the rows.
        # x: [B, T, in] @ A_rowsᵀ: [B, in, R] -> [B, T, R] @ B_rowsᵀ: [B, R, out] -> [B, T, out]
        rows_A = self.slot_A.index_select(0, route.slots).to(x.dtype)
        rows_B = self.slot_B.index_select(0, route.slots).to(x.dtype)
        projected = torch.bmm(x, rows_A.transpose(1, 2))
        return torch.baddbmm(out, projected, rows_B.transpose(1, 2))
