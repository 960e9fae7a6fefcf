"""The delta format: what a job stores in the registry and the serving engine loads.

A delta is one safetensors file. Tensors:
    `<module path>.lora_A`  [r, in_features]   for each adapted linear layer
    `<module path>.lora_B`  [out_features, r]
    `head.<name>`           the task head's parameters
Deltas of the other strategies (format version 2) may also contain, by module path:
    `<path>.ia3_input_scale`   [in_features]    (IA)³ scale of the layer's input
    `<path>.ia3_output_scale`  [out_features]   (IA)³ scale of the layer's output
    `<path>.bias_delta`        [out_features]   change of the layer's bias
    `<path>.adapter.<tensor>`  bottleneck adapter on the layer's output (see bottleneck.py)
    `<LayerNorm path>.norm_weight_delta`, `.norm_bias_delta`  [hidden]   LayerNorm changes
    `dense.<parameter name>`   a trained encoder parameter, served by a dedicated encoder copy
A delta with none of these is written as version 1, which older servers can read.
The metadata (string values) records the format version, strategy, task type, labels (JSON),
LoRA scale, pooling, max length and the fingerprint of the base model it was trained on.
"""

import hashlib
import json
from dataclasses import dataclass, field

import torch
from safetensors.torch import load, save

DELTA_FORMAT = "loraplex-delta/1"
# Version 2 adds the tensor kinds of the strategies other than LoRA; readers accept both.
DELTA_FORMAT_V2 = "loraplex-delta/2"
SUPPORTED_DELTA_FORMATS = (DELTA_FORMAT, DELTA_FORMAT_V2)

_VECTOR_SUFFIXES = {
    ".ia3_input_scale": "input_scale",
    ".ia3_output_scale": "output_scale",
    ".bias_delta": "bias",
}


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
    # The other strategies' tensors, keyed by the path of the adapted linear layer they act on
    # (LayerNorm changes by the LayerNorm's path, dense tensors by parameter name).
    input_scale: dict[str, torch.Tensor] = field(default_factory=dict)
    output_scale: dict[str, torch.Tensor] = field(default_factory=dict)
    bias: dict[str, torch.Tensor] = field(default_factory=dict)
    layer_norm: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    adapters: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    dense: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def lora_rank(self) -> int:
        return max((a.shape[0] for a, _ in self.lora.values()), default=0)

    @property
    def has_encoder_update(self) -> bool:
        """Return True when the delta changes encoder layers, not only the head."""
        return bool(self.lora) or self.has_non_lora_update

    @property
    def has_non_lora_update(self) -> bool:
        """Return True when the delta has encoder tensors of a kind other than LoRA."""
        kinds = (
            self.input_scale,
            self.output_scale,
            self.bias,
            self.layer_norm,
            self.adapters,
            self.dense,
        )
        return any(kinds)

    @property
    def adapter_bottleneck(self) -> int:
        return max((t["down_bias"].shape[0] for t in self.adapters.values()), default=0)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in _flat_tensors(self).values())


def _flat_tensors(delta: Delta) -> dict[str, torch.Tensor]:
    """Return every tensor of `delta` under its safetensors key."""
    tensors: dict[str, torch.Tensor] = {}
    for path, (lora_A, lora_B) in delta.lora.items():
        tensors[f"{path}.lora_A"] = lora_A
        tensors[f"{path}.lora_B"] = lora_B
    for name, tensor in delta.head.items():
        tensors[f"head.{name}"] = tensor
    for suffix, attribute in _VECTOR_SUFFIXES.items():
        for path, vector in getattr(delta, attribute).items():
            tensors[f"{path}{suffix}"] = vector
    for path, (weight_delta, bias_delta) in delta.layer_norm.items():
        tensors[f"{path}.norm_weight_delta"] = weight_delta
        tensors[f"{path}.norm_bias_delta"] = bias_delta
    for path, adapter in delta.adapters.items():
        for name, tensor in adapter.items():
            tensors[f"{path}.adapter.{name}"] = tensor
    for name, tensor in delta.dense.items():
        tensors[f"dense.{name}"] = tensor
    return tensors


def serialize_delta(delta: Delta) -> bytes:
    """Encode `delta` as safetensors bytes."""
    tensors = {
        key: tensor.detach().float().contiguous().cpu()
        for key, tensor in _flat_tensors(delta).items()
    }
    metadata = {
        "format": DELTA_FORMAT_V2 if delta.has_non_lora_update else DELTA_FORMAT,
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
    if metadata.get("format") not in SUPPORTED_DELTA_FORMATS:
        raise DeltaFormatError(
            f"Delta format {metadata.get('format')!r} is not supported; expected one of "
            f"{list(SUPPORTED_DELTA_FORMATS)}."
        )

    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    head: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        if key.startswith("head."):
            head[key.removeprefix("head.")] = tensor
        elif key.endswith(".lora_A"):
            path = key.removesuffix(".lora_A")
            lora[path] = (tensor, tensors[f"{path}.lora_B"])
    others = _read_other_tensors(tensors)
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
        **others,
    )


def _read_other_tensors(tensors: dict[str, torch.Tensor]) -> dict:
    """Group the tensors of format version 2 into the `Delta` fields they belong to."""
    others: dict = {
        "input_scale": {},
        "output_scale": {},
        "bias": {},
        "layer_norm": {},
        "adapters": {},
        "dense": {},
    }
    for key, tensor in tensors.items():
        if key.startswith("dense."):
            others["dense"][key.removeprefix("dense.")] = tensor
        elif ".adapter." in key:
            path, name = key.rsplit(".adapter.", 1)
            others["adapters"].setdefault(path, {})[name] = tensor
        elif key.endswith(".norm_weight_delta"):
            path = key.removesuffix(".norm_weight_delta")
            others["layer_norm"][path] = (tensor, tensors[f"{path}.norm_bias_delta"])
        else:
            for suffix, attribute in _VECTOR_SUFFIXES.items():
                if key.endswith(suffix):
                    others[attribute][key.removesuffix(suffix)] = tensor
    return others


def _read_metadata(data: bytes) -> dict[str, str]:
    # safetensors layout: an 8-byte little-endian header length, then the JSON header.
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    return header.get("__metadata__", {})


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
