"""Pooling and task heads applied after the shared encoder pass."""

import torch
from torch import nn

from service.modeling.encoder import Encoder


def pool(
    hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str, encoder: Encoder | None = None
) -> torch.Tensor:
    """Pool hidden states `[B, T, H]` into one vector per row `[B, H]`.

    `mode` is one of "mean" (over real tokens), "cls", "max" or "cls_pooler" (BERT's trained
    pooler on the [CLS] state, which needs `encoder` to hold a pooler).
    """
    if mode == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        masked = hidden.masked_fill(~attention_mask.bool().unsqueeze(-1), float("-inf"))
        return masked.max(dim=1).values
    if mode == "cls_pooler":
        if encoder is None or encoder.pooler is None:
            raise ValueError("Pooling mode 'cls_pooler' needs an encoder with a pooler layer.")
        weight = encoder.pooler.dense.weight
        return encoder.pooler(hidden.to(weight.dtype)).to(hidden.dtype)
    raise ValueError(f"Unknown pooling mode {mode!r}; expected mean, cls, max or cls_pooler.")


class ClassificationHead(nn.Module):
    """Dropout then a linear map from the pooled vector `[B, H]` to logits `[B, num_labels]`."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))
