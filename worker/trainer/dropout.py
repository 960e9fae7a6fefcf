"""A faster dropout for CPU training.

PyTorch's CPU dropout draws one Bernoulli sample per element, and it is slower still on bf16
activations. On the 2-core AVX-512 machine of docs/benchmarks.md it took about 5 ms per
`[32, 34, 384]` activation, and a step of a 6-layer encoder with LoRA calls it 32 times.
`FastDropout` reads 16 random bits per element from 64-bit random words and compares them with
a threshold, which is several times faster. It saves the mask already scaled by 1/(1 − p) in
the input's dtype, so the backward pass is one multiplication. The drop probability is rounded
to a multiple of 2^-16, and the random stream differs from `nn.Dropout`'s, so runs are
reproducible only against themselves.
"""

import functools

import torch
from torch import nn

from service.modeling.encoder import Encoder

_BITS = 16


def dropout_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Return a boolean keep-mask of `shape` whose elements are True with probability 1 − p."""
    count = shape.numel()
    # Every bit of the words is random, so each int16 view element is uniform on
    # [-2^15, 2^15), and it is kept when it is at or above the p-quantile.
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(2**63), None)
    threshold = round(p * (1 << _BITS)) - (1 << (_BITS - 1))
    return (words.view(torch.int16)[:count] >= threshold).view(shape)


@functools.lru_cache(maxsize=16)
def _keep_scale(p: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(1.0 / (1.0 - p), dtype=dtype, device=device)


class _DropoutFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = dropout_mask(x.shape, p, x.device)
        scaled_mask = torch.where(keep, _keep_scale(p, x.dtype, x.device), 0.0)
        ctx.save_for_backward(scaled_mask)
        return x * scaled_mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (scaled_mask,) = ctx.saved_tensors
        return grad * scaled_mask, None


class FastDropout(nn.Module):
    """Inverted dropout with probability `p`, and the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout probability {p} is outside [0, 1).")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return _DropoutFunction.apply(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(module: nn.Module, encoder: Encoder | None = None) -> int:
    """Replace every `nn.Dropout` under `module` with `FastDropout`, and return how many.

    With `encoder`, its attention-probability dropout becomes a `FastDropout` too, which makes
    its self-attention compute the scores explicitly in training mode.
    """
    replaced = 0
    for parent in module.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p))
                replaced += 1
    if encoder is not None:
        p = encoder.config.attention_probs_dropout_prob
        for block in encoder.encoder.layer:
            if p > 0:
                block.attention.self.attention_dropout = FastDropout(p)
                replaced += 1
    return replaced
