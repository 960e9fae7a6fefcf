"""The task model the trainer optimises: encoder, pooling and a classification head."""

import torch
from torch import nn

from service.modeling.encoder import Encoder
from service.modeling.heads import ClassificationHead, pool
from service.modeling.lora import AdapterRoute


class TaskModel(nn.Module):
    """Encoder, pooling and classification head: input ids `[B, T]` to logits `[B, C]`."""

    def __init__(
        self, encoder: Encoder, pooling: str, num_labels: int, head_dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.head = ClassificationHead(encoder.config.hidden_size, num_labels, head_dropout)

    def features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        route: AdapterRoute | None = None,
    ) -> torch.Tensor:
        """Return the pooled encoder output `[B, hidden]` in fp32."""
        hidden = self.encoder(input_ids, attention_mask, route=route)
        return pool(hidden, attention_mask, self.pooling, self.encoder).float()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        route: AdapterRoute | None = None,
    ) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask, route))
