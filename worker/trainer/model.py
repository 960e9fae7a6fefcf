"""The task model the trainer optimises: the encoder, then the task's head."""

import torch
from torch import nn

from service.modeling.encoder import Encoder
from service.modeling.heads import ClassificationHead, pool
from service.modeling.lora import AdapterRoute


class TaskModel(nn.Module):
    """Encoder and head: input ids `[B, T]` to outputs `[B, C]`, or `[B, T, C]` per token.

    Args:
        encoder: the base encoder, with the strategy's trainable parts in place.
        pooling: how pooled task types reduce the token states to one vector per row.
        num_outputs: the head's outputs (labels, one value, or a start and an end logit).
        head_dropout: dropout before the head's linear map.
        token_level: run the head on every token instead of on the pooled row.
    """

    def __init__(
        self,
        encoder: Encoder,
        pooling: str,
        num_outputs: int,
        head_dropout: float = 0.1,
        token_level: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.token_level = token_level
        self.head = ClassificationHead(encoder.config.hidden_size, num_outputs, head_dropout)

    def features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        route: AdapterRoute | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return what the head reads in fp32: pooled `[B, H]`, or token states `[B, T, H]`."""
        hidden = self.encoder(input_ids, attention_mask, token_type_ids, route=route)
        if self.token_level:
            return hidden.float()
        return pool(hidden, attention_mask, self.pooling, self.encoder).float()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        route: AdapterRoute | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask, route, token_type_ids))
