"""The strategy interface: which encoder parameters train, when, and what the delta holds."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from service.hyperparameters import TrainingHyperparameters
from service.modeling.base import BaseModelSpec
from service.modeling.delta import Delta
from service.modeling.encoder import TARGET_PATHS, Encoder
from service.modeling.lora import AdapterRoute


@dataclass
class EncoderUpdate:
    """The encoder part of a delta (see `Delta` for each field), plus export measurements."""

    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    lora_scale: float = 1.0
    input_scale: dict[str, torch.Tensor] = field(default_factory=dict)
    output_scale: dict[str, torch.Tensor] = field(default_factory=dict)
    bias: dict[str, torch.Tensor] = field(default_factory=dict)
    layer_norm: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    adapters: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    dense: dict[str, torch.Tensor] = field(default_factory=dict)
    # Measurements for the job's metrics, e.g. the SVD's relative Frobenius error.
    report: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_delta(cls, delta: Delta) -> "EncoderUpdate":
        """Return the encoder part of an existing delta, unchanged."""
        return cls(
            lora=dict(delta.lora),
            lora_scale=delta.lora_scale,
            input_scale=dict(delta.input_scale),
            output_scale=dict(delta.output_scale),
            bias=dict(delta.bias),
            layer_norm=dict(delta.layer_norm),
            adapters=dict(delta.adapters),
            dense=dict(delta.dense),
        )

    def delta_fields(self) -> dict:
        """Return the fields to pass to `Delta(...)`."""
        return {
            "lora": self.lora,
            "lora_scale": self.lora_scale,
            "input_scale": self.input_scale,
            "output_scale": self.output_scale,
            "bias": self.bias,
            "layer_norm": self.layer_norm,
            "adapters": self.adapters,
            "dense": self.dense,
        }


class Strategy(ABC):
    """Prepares a trainer's private encoder copy and extracts its delta after training.

    Lifecycle: `prepare` (attach modules, set the first epoch's trainable set), optionally
    `load_init` (start from an earlier version), then `start_epoch` before every epoch, and
    `export` on the best epoch's weights.
    """

    name: ClassVar[str]
    # True when only the head trains, on encoder features computed once per job.
    uses_cached_features: ClassVar[bool] = False

    def __init__(self, hyperparameters: TrainingHyperparameters) -> None:
        self.hp = hyperparameters

    @abstractmethod
    def prepare(self, encoder: Encoder) -> None:
        """Attach the strategy's modules to `encoder` and set the first epoch's trainable set."""

    def trainable_parameters(self, encoder: Encoder) -> dict[str, nn.Parameter]:
        """Return every encoder parameter that trains in some epoch, by name in `encoder`."""
        return {name: p for name, p in encoder.named_parameters() if p.requires_grad}

    def start_epoch(self, encoder: Encoder, epoch: int) -> None:  # noqa: B027 (an optional hook)
        """Set which parameters train in `epoch` (0-based). Most strategies keep one set."""

    def load_init(self, encoder: Encoder, delta: Delta) -> None:
        """Start from an earlier version's delta instead of from scratch."""
        raise ValueError(f"init_from is not supported (yet) by the {self.name} strategy.")

    def route(self, batch_size: int, device: torch.device) -> AdapterRoute | None:
        """Return the route of a training batch, which only frozen deltas in slots need."""
        return None

    @abstractmethod
    def export(self, encoder: Encoder, spec: BaseModelSpec) -> EncoderUpdate:
        """Return the trained encoder tensors as the delta's encoder update."""


def target_name(path: str) -> str:
    """Return the LoRA target name ("query", "output"...) of an adapted layer path."""
    for name, suffix in TARGET_PATHS.items():
        if path.endswith("." + suffix):
            return name
    raise ValueError(f"{path!r} is not an adapted layer path.")


def check_same_paths(kind: str, expected: set[str], found: set[str]) -> None:
    """Raise a ValueError naming the difference when an init delta targets other layers."""
    if expected != found:
        missing = sorted(expected - found)[:2]
        extra = sorted(found - expected)[:2]
        raise ValueError(
            f"init_from version's {kind} layers differ from this job's: this job has "
            f"{missing or 'no others'} that it lacks, it has {extra or 'no others'} that this "
            "job lacks."
        )


def reject_other_kinds(delta: Delta, strategy: str, allowed: set[str]) -> None:
    """Raise a ValueError when `delta` has encoder tensors of kinds outside `allowed`."""
    present = {
        kind
        for kind in (
            "lora",
            "input_scale",
            "output_scale",
            "bias",
            "layer_norm",
            "adapters",
            "dense",
        )
        if getattr(delta, kind)
    }
    other = sorted(present - allowed)
    if other:
        raise ValueError(
            f"init_from version is a {delta.strategy} delta (with {other}), but the {strategy} "
            f"strategy continues only from {strategy} deltas."
        )
