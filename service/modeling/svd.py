"""Compressing a dense update of the encoder into the delta kinds that slots can serve.

Each adapted weight matrix's update ΔW = W_trained − W_base `[out, in]` becomes a rank-r LoRA
pair by truncated SVD: ΔW ≈ U_r·diag(S_r)·V_rᵀ = B·A with B = U_r·diag(√S_r) `[out, r]` and
A = diag(√S_r)·V_rᵀ `[r, in]`, served with scale 1. By the Eckart–Young theorem this is the
best rank-r approximation in Frobenius norm, and its squared error is the sum of the squared
singular values left out. Bias and LayerNorm changes of the blocks are stored exactly as
vectors. Changes that no slot table carries (the embeddings, BERT's pooler) are dropped and
reported.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch


@dataclass
class CompressedUpdate:
    """A dense update split into servable parts, with what the split lost.

    Attributes:
        lora: adapted layer path -> (A `[r, in]`, B `[out, r]`), to serve with scale 1.
        bias: adapted layer path -> bias change `[out]`.
        layer_norm: LayerNorm path -> (weight change, bias change), each `[hidden]`.
        relative_error: ||ΔW − B·A||_F / ||ΔW||_F over all weight matrices together.
        dropped: parameter name -> Frobenius norm of its change, for changes not carried.
        dropped_fraction: Frobenius norm of the dropped changes over that of the whole update.
    """

    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    bias: dict[str, torch.Tensor] = field(default_factory=dict)
    layer_norm: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    relative_error: float = 0.0
    dropped: dict[str, float] = field(default_factory=dict)
    dropped_fraction: float = 0.0


def low_rank_factors(update: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Return (A `[r, in]`, B `[out, r]`, squared Frobenius error) of `update` `[out, in]`."""
    U, S, Vh = torch.linalg.svd(update.double(), full_matrices=False)
    kept = min(rank, S.shape[0])
    root = S[:kept].sqrt()
    lora_B = (U[:, :kept] * root).float()
    lora_A = (root[:, None] * Vh[:kept]).float()
    squared_error = float((S[kept:] ** 2).sum())
    return lora_A, lora_B, squared_error


def compress_dense_update(
    trained: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor],
    adapted_paths: set[str],
    rank: int,
) -> CompressedUpdate:
    """Split the update `trained − base` into LoRA pairs, bias and LayerNorm changes.

    Args:
        trained: encoder parameters after training, by name; only trained ones are needed.
        base: the shared base's parameters by name.
        adapted_paths: paths of the encoder's `AdaptedLinear` layers.
        rank: the truncated SVD's rank r.
    """
    result = CompressedUpdate()
    matrix_total = matrix_error = dropped_total = 0.0
    for name, tensor in trained.items():
        change = tensor.detach().float().cpu() - base[name].detach().float().cpu()
        if not torch.any(change):
            continue
        squared_norm = float(change.double().pow(2).sum())
        path, _, kind = name.rpartition(".")

        if path in adapted_paths and kind == "weight":
            lora_A, lora_B, squared_error = low_rank_factors(change, rank)
            result.lora[path] = (lora_A, lora_B)
            matrix_total += squared_norm
            matrix_error += squared_error
        elif path in adapted_paths and kind == "bias":
            result.bias[path] = change
        elif path.startswith("encoder.layer.") and path.endswith(".LayerNorm"):
            weight_change, bias_change = result.layer_norm.get(
                path, (torch.zeros_like(change), torch.zeros_like(change))
            )
            if kind == "weight":
                weight_change = change
            else:
                bias_change = change
            result.layer_norm[path] = (weight_change, bias_change)
        else:
            result.dropped[name] = math.sqrt(squared_norm)
            dropped_total += squared_norm

    result.relative_error = math.sqrt(matrix_error / matrix_total) if matrix_total else 0.0
    whole = (
        matrix_total
        + dropped_total
        + sum(float(t.double().pow(2).sum()) for t in result.bias.values())
        + sum(
            float((w.double() ** 2).sum() + (b.double() ** 2).sum())
            for w, b in result.layer_norm.values()
        )
    )
    result.dropped_fraction = math.sqrt(dropped_total / whole) if whole else 0.0
    return result
