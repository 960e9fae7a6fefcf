"""Device and mixed-precision policy: autocast type, loss scaling, frozen weights' dtype.

Trainable parameters always stay fp32 (the master weights), and autocast runs the matmuls in
bf16 or fp16. On CPU that is bf16 where the CPU has native bf16 instructions. On CUDA it is bf16
where the GPU supports it, else fp16 with a `torch.amp.GradScaler`, which scales the loss so
that small fp16 gradients do not flush to zero.
"""

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import torch

from service.hyperparameters import TrainingHyperparameters
from service.modeling.encoder import Encoder

logger = logging.getLogger(__name__)


def cpu_supports_bf16() -> bool:
    """Return True when this CPU has native bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """Return `device`, or CUDA when it is available and CPU otherwise."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Precision:
    """The compute setup of one run: device, autocast dtype (None for fp32) and loss scaling."""

    device: torch.device
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None = None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        )


def resolve_precision(hp: TrainingHyperparameters, device: torch.device) -> Precision:
    """Pick the precision of a run from `hp.bf16`, `hp.fp16` and what `device` supports.

    Raises:
        ValueError: fp16 was asked for on a device other than CUDA.
    """
    if hp.fp16:
        if device.type != "cuda":
            raise ValueError(
                f"fp16 training needs a CUDA device, but this worker trains on {device.type}. "
                "Set bf16 instead, or leave both unset."
            )
        return Precision(device, torch.float16, torch.amp.GradScaler("cuda"))
    if hp.bf16 is False:
        return Precision(device, None)
    if device.type == "cuda":
        if hp.bf16 or torch.cuda.is_bf16_supported():
            return Precision(device, torch.bfloat16)
        return Precision(device, torch.float16, torch.amp.GradScaler("cuda"))
    if hp.bf16 or cpu_supports_bf16():
        return Precision(device, torch.bfloat16)
    return Precision(device, None)


def cast_frozen_weights(encoder: Encoder, dtype: torch.dtype, trainable: set[str]) -> int:
    """Store the linear layers' frozen weights and biases in `dtype`, and return how many.

    Autocast casts a frozen fp32 weight again on every call (its cast cache keeps only leaf
    tensors that require grad), so storing the autocast dtype saves one copy of every frozen
    matrix per forward pass. Parameters named in `trainable` stay fp32. Embeddings and
    LayerNorms stay fp32 too: autocast never casts them, and they are small.
    """
    cast = 0
    for path, layer in encoder.adapted_layers().items():
        for name in ("weight", "bias"):
            parameter = getattr(layer, name)
            if parameter is None or f"{path}.{name}" in trainable:
                continue
            parameter.data = parameter.data.to(dtype)
            cast += 1
    return cast


@contextmanager
def limited_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` intra-op CPU threads; None leaves the setting alone."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
