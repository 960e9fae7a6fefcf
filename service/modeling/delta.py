"""The delta format: what a job stores in the registry and the serving engine loads.

A delta is one safetensors file. Tensors:
    `<module path>.lora_A`  [r, in_features]   for each adapted linear layer
    `<module path>.lora_B`  [out_features, r]
    `head.<name>`           the task head's parameters
The metadata (string values) records the format version, strategy, task type, labels (JSON),
LoRA scale, pooling, max length and the fingerprint of the base model it was trained on.
"""

import hashlib
import json
from dataclasses import dataclass, field

import torch
from safetensors.torch import load, save

DELTA_FORMAT = "loraplex-delta/1"


class DeltaFormatError(ValueError):
    """Raised when bytes are not a readable Loraplex delta."""


@dataclass
class Delta:
    """A task's trained update to the shared base, plus its head."""

    strategy: str
    task_type: str
    labels: list[str]
    base_fingerprint: str
    pooling: str
    max_length: int
    lora_scale: float = 1.0
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def lora_rank(self) -> int:
        return max((a.shape[0] for a, _ in self.lora.values()), default=0)

    @property
    def nbytes(self) -> int:
        tensors = [t for pair in self.lora.values() for t in pair] + list(self.head.values())
        return sum(t.numel() * t.element_size() for t in tensors)


def serialize_delta(delta: Delta) -> bytes:
    """Encode `delta` as safetensors bytes."""
    tensors: dict[str, torch.Tensor] = {}
    for path, (lora_A, lora_B) in delta.lora.items():
        tensors[f"{path}.lora_A"] = lora_A.detach().float().contiguous().cpu()
        tensors[f"{path}.lora_B"] = lora_B.detach().float().contiguous().cpu()
    for name, tensor in delta.head.items():
        tensors[f"head.{name}"] = tensor.detach().float().contiguous().cpu()
    metadata = {
        "format": DELTA_FORMAT,
        "strategy": delta.strategy,
        "task_type": delta.task_type,
        "labels": json.dumps(delta.labels),
        "base_fingerprint": delta.base_fingerprint,
        "pooling": delta.pooling,
        "max_length": str(delta.max_length),
        "lora_scale": repr(delta.lora_scale),
        "extra": json.dumps(delta.extra),
    }
    return save(tensors, metadata=metadata)


def deserialize_delta(data: bytes) -> Delta:
    """Decode safetensors bytes written by `serialize_delta`."""
    try:
        tensors = load(data)
        metadata = _read_metadata(data)
    except Exception as exc:  # safetensors raises its own error types and plain ones
        raise DeltaFormatError(f"Delta is not a readable safetensors file: {exc}") from exc
    if metadata.get("format") != DELTA_FORMAT:
        raise DeltaFormatError(
            f"Delta format {metadata.get('format')!r} is not supported; expected {DELTA_FORMAT!r}."
        )

    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    head: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        if key.startswith("head."):
            head[key.removeprefix("head.")] = tensor
        elif key.endswith(".lora_A"):
            path = key.removesuffix(".lora_A")
            lora[path] = (tensor, tensors[f"{path}.lora_B"])
    return Delta(
        strategy=metadata["strategy"],
        task_type=metadata["task_type"],
        labels=json.loads(metadata["labels"]),
        base_fingerprint=metadata["base_fingerprint"],
        pooling=metadata["pooling"],
        max_length=int(metadata["max_length"]),
        lora_scale=float(metadata["lora_scale"]),
        lora=lora,
        head=head,
        extra=json.loads(metadata.get("extra", "{}")),
    )


def _read_metadata(data: bytes) -> dict[str, str]:
    # safetensors layout: an 8-byte little-endian header length, then the JSON header.
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    return header.get("__metadata__", {})


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
