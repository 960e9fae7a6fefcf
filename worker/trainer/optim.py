"""Parameter groups with discriminative learning rates, and the AdamW optimizer over them.

Discriminative fine-tuning (Howard and Ruder, 2018, "Universal Language Model Fine-tuning",
section 3.2) gives each layer its own rate. With N blocks, layer l counts the embeddings as
l = 0 and block i as l = i + 1, so the top block is l = N, and

    lr_l = learning_rate / layer_lr_decay ** (N − l).

BERT's pooler sits above the top block and shares its rate. The task head has its own
`head_learning_rate`. Within each layer, matrices get weight decay and vectors (biases,
LayerNorm parameters, (IA)³ scales) do not: decaying a scale towards 0 would undo it.
"""

import re

import torch
from torch import nn

_BLOCK = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def layer_index(name: str, num_blocks: int) -> int:
    """Return the layer l of an encoder parameter name: 0 embeddings, i + 1 for block i."""
    if name.startswith("embeddings."):
        return 0
    match = _BLOCK.search(name)
    if match:
        return int(match.group(1)) + 1
    if name.startswith("pooler."):
        return num_blocks
    raise ValueError(f"Cannot tell which layer encoder parameter {name!r} belongs to.")


def layer_learning_rate(learning_rate: float, decay: float, layer: int, num_blocks: int) -> float:
    """Return learning_rate / decay ** (num_blocks − layer)."""
    return learning_rate / decay ** (num_blocks - layer)


def build_parameter_groups(
    encoder_parameters: dict[str, nn.Parameter],
    head_parameters: dict[str, nn.Parameter],
    *,
    num_blocks: int,
    learning_rate: float,
    head_learning_rate: float,
    layer_lr_decay: float,
    weight_decay: float,
) -> list[dict]:
    """Return AdamW parameter groups: one per (layer, decayed or not), then the head's.

    Each group also has "name" (e.g. "block 3", "embeddings", "head") and "layer" (the layer
    index, or None for the head), which the optimizer ignores.
    """
    buckets: dict[tuple[int | None, bool], list[nn.Parameter]] = {}
    for name, parameter in encoder_parameters.items():
        layer = layer_index(name, num_blocks)
        buckets.setdefault((layer, parameter.ndim >= 2), []).append(parameter)
    for parameter in head_parameters.values():
        buckets.setdefault((None, parameter.ndim >= 2), []).append(parameter)

    groups = []
    for (layer, decayed), parameters in sorted(
        buckets.items(), key=lambda item: (item[0][0] is None, item[0][0] or 0, item[0][1])
    ):
        if layer is None:
            name, lr = "head", head_learning_rate
        else:
            name = "embeddings" if layer == 0 else f"block {layer - 1}"
            lr = layer_learning_rate(learning_rate, layer_lr_decay, layer, num_blocks)
        groups.append(
            {
                "params": parameters,
                "lr": lr,
                "weight_decay": weight_decay if decayed else 0.0,
                "name": name,
                "layer": layer,
            }
        )
    return groups


def build_optimizer(groups: list[dict], device: torch.device) -> torch.optim.AdamW:
    """Return AdamW over `groups`, with the fused kernel (one launch for all tensors)."""
    # The fused AdamW runs on CPU and CUDA in the pinned torch (2.13).
    return torch.optim.AdamW(groups, fused=device.type in ("cpu", "cuda"))
